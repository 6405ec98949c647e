# SPDX-License-Identifier: Apache-2.0
"""A real systemd manager (org.freedesktop.systemd1) on a test's private bus.

systemd 252 runs here without being PID 1: `systemd --user`, started as root in
a private mount namespace (so `User=` works and nothing on the host changes),
owns org.freedesktop.systemd1 on the test's private system-type bus. Each test
gets its own manager in its own cgroup subtree (/sys/fs/cgroup/.../sdp-<dir>),
removed at teardown with everything still in it. The recipe and its pitfalls
are in /work/shared/design/testing.md ("A real systemd"):

- it refuses to start unless /run/systemd/system exists: a tmpfs on
  /run/systemd inside its namespace only (64 MB: daemon-reload fails below 16);
- it joins the bus only once its own dbus.socket and dbus.service run:
  placeholder units;
- SYSTEMD_UNIT_PATH needs a trailing ':' (or exit.target is missing and it
  cannot stop);
- there is no journal: unit output goes nowhere unless StandardOutput=file:;
- units live in app.slice.

Units the test needs are files in `units/`, then `reload()`. Use as a fixture:

    from real_systemd import real_systemd   # noqa: F401 (the fixture)
    def test_x(harness, bus, real_systemd): ...
"""
import os
import shutil
import signal
import subprocess
import time

import pytest

import harness as H

NAME = 'org.freedesktop.systemd1'
PATH = '/org/freedesktop/systemd1'
MANAGER = 'org.freedesktop.systemd1.Manager'
UNIT = 'org.freedesktop.systemd1.Unit'
SERVICE = 'org.freedesktop.systemd1.Service'
SYSTEMD = '/lib/systemd/systemd'

# In its own mount namespace: /run/systemd/system so it starts (and sd_booted()
# is true for what it runs), its console on a file, itself in the test's cgroups.
START = r'''
mount -t tmpfs -o mode=755,size=64m sdp /run/systemd
mkdir /run/systemd/system
mount --bind "$1/systemd.log" /dev/console
for c in $3; do mkdir -p "$c"; echo $$ > "$c/cgroup.procs"; done
exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$1" XDG_RUNTIME_DIR="$1/run" SYSTEMD_UNIT_PATH="$1/units:" \
    DBUS_SESSION_BUS_ADDRESS="unix:path=$2" /lib/systemd/systemd --user --unit=sdp.target --log-level=info
'''


def cgroup_dirs(name):
    if os.path.exists('/sys/fs/cgroup/cgroup.controllers'):   # unified (cgroup2) only
        return ['/sys/fs/cgroup/' + name]
    return [d + '/' + name for d in ('/sys/fs/cgroup/systemd', '/sys/fs/cgroup/unified') if os.path.isdir(d)]


class RealSystemd:
    def __init__(self, bus, workdir, procs):
        self.bus, self.procs = bus, procs
        self.dir = os.path.join(workdir, 'systemd')
        self.units = os.path.join(self.dir, 'units')
        self.log_path = os.path.join(self.dir, 'systemd.log')
        self.cgroups = cgroup_dirs('sdp-' + self.dir.strip('/').replace('/', '_'))
        self.proc = None

    # ---- life cycle ----

    def start(self, timeout=H.DEFAULT_TIMEOUT):
        if not H.is_root():
            H.need_root('a real systemd manager (mount namespace, cgroups, User=)')
        if not os.path.exists(SYSTEMD) or not shutil.which('unshare'):
            pytest.skip('%s or unshare is not installed' % SYSTEMD)
        os.makedirs(self.units)
        os.makedirs(os.path.join(self.dir, 'run'), mode=0o700)
        open(self.log_path, 'w').close()
        self.write('sdp.target', '[Unit]\nDescription=test root target\nWants=dbus.service\n')
        self.write('basic.target', '[Unit]\nDescription=empty basic.target (no sockets, no timers)\n')
        self.write('dbus.socket', '[Socket]\nListenStream=%s/run/placeholder-bus\n' % self.dir)
        self.write('dbus.service', '[Service]\nSockets=dbus.socket\nExecStart=/bin/sleep infinity\n')
        argv = ['unshare', '--mount', '--propagation', 'private', 'sh', '-ec', START, 'sdp', self.dir,
                self.bus.socket, ' '.join(self.cgroups)]
        self.proc = self.procs.spawn('systemd', argv, env={'PATH': '/usr/sbin:/usr/bin:/sbin:/bin'},
                                     stdout=open(self.log_path, 'ab'), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            self.bus.wait_for_name(NAME, timeout, proc=self.proc)
        except H.HarnessError as e:
            raise H.HarnessError('%s; systemd log:\n%s' % (e, self.log_text()[-3000:]))
        return self

    def stop(self):
        """SIGTERM to the manager (it stops its units), then whatever is left in
        its cgroups is killed and the cgroups removed."""
        if self.proc is not None and self.proc.poll() is None:
            self.procs.stop(self.proc, timeout=10)
        deadline = time.monotonic() + 10
        while True:
            pids = self.cgroup_pids()
            if not pids or time.monotonic() > deadline:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)   # the kernel empties the cgroup asynchronously
        for c in self.cgroups:
            for root, dirs, _ in sorted(os.walk(c, topdown=False), key=lambda t: -len(t[0])):
                try:
                    os.rmdir(root)
                except OSError:
                    pass
        left = [c for c in self.cgroups if os.path.exists(c)]
        return left

    def cgroup_pids(self):
        pids = set()
        for c in self.cgroups:
            for root, _, files in os.walk(c):
                if 'cgroup.procs' in files:
                    try:
                        with open(os.path.join(root, 'cgroup.procs')) as f:
                            pids.update(int(x) for x in f.read().split())
                    except OSError:
                        pass
        return pids

    def log_text(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    # ---- units ----

    def write(self, name, text):
        with open(os.path.join(self.units, name), 'w') as f:
            f.write(text)

    def add_unit(self, name, text):
        """A unit file, then daemon-reload (synchronous: Reload replies when done)."""
        self.write(name, text)
        self.reload()

    def reload(self):
        self.manager('Reload', timeout=30)

    def manager(self, method, signature=None, args=None, timeout=H.DEFAULT_TIMEOUT):
        r = self.bus.call(NAME, PATH, MANAGER, method, signature, args, timeout=timeout)
        if not r.ok:
            raise H.HarnessError('systemd %s: %r' % (method, r))
        return r.result

    def unit_path(self, unit):
        return self.manager('LoadUnit', 's', [unit])[0]

    def prop(self, unit, name, iface=UNIT):
        r = self.bus.get_property(NAME, self.unit_path(unit), iface, name)
        if not r.ok:
            raise H.HarnessError('systemd %s.%s: %r' % (unit, name, r))
        return r.result

    def start_unit(self, unit, timeout=30):
        """StartUnit and wait for its job to end (JobRemoved); returns the job result."""
        return self._job('StartUnit', unit, timeout)

    def stop_unit(self, unit, timeout=30):
        return self._job('StopUnit', unit, timeout)

    def _job(self, method, unit, timeout):
        try:
            self.manager('Subscribe')
        except H.HarnessError:
            pass   # already subscribed
        with self.bus.collect(sender=NAME, path=PATH, interface=MANAGER, member='JobRemoved') as sc:
            job = self.manager(method, 'ss', [unit, 'replace'])[0]
            s = sc.wait_for(lambda s: s.args[1] == job, timeout=timeout, what='%s(%s) to finish' % (method, unit))
        return s.args[3]

    def transient_units(self, prefix='platform-launcher-'):
        """(name, active state) of the loaded units whose name starts with prefix."""
        units = self.manager('ListUnits')[0]
        return [(u[0], u[3]) for u in units if u[0].startswith(prefix)]


class UnitDaemon(H.Daemon):
    """platform-launcherd as a unit of the real manager (so it runs in a unit
    and can restart itself): started and stopped through systemd, not by pid."""

    def __init__(self, systemd, bus, workdir, procs, unit='platform-launcher-test.service', service_lines=(), **kw):
        super().__init__(bus, workdir, procs, **kw)
        self.systemd = systemd
        self.unit = unit
        self.service_lines = list(service_lines)

    def unit_text(self):
        env = dict(H.NO_EGRESS_ENV)
        env['DBUS_SYSTEM_BUS_ADDRESS'] = self.bus.address
        env.update(self.extra_env)
        envs = ' '.join('"%s=%s"' % kv for kv in env.items())
        return ('[Unit]\nDescription=platform-launcherd under test\n'
                '[Service]\nType=simple\nExecStart=%s\nEnvironment=%s\n'
                'StandardOutput=append:%s\nStandardError=append:%s\nTimeoutStopSec=20\n%s'
                % (' '.join(self.argv()), envs, self.log_path, self.log_path,
                   ''.join(line + '\n' for line in self.service_lines)))

    def start(self, timeout=H.DEFAULT_TIMEOUT, wait=True):
        if not os.path.exists(self.config_path):
            self.write_config({})
        self.systemd.add_unit(self.unit, self.unit_text())
        result = self.systemd.start_unit(self.unit)
        if result != 'done':
            raise H.HarnessError('%s: start job %s; log:\n%s' % (self.unit, result, self.log_text()))
        if wait:
            self.bus.wait_for_name(H.DAEMON_NAME, timeout)
        return self

    def running(self):
        return self.systemd.prop(self.unit, 'ActiveState') == 'active'

    def main_pid(self):
        return self.systemd.prop(self.unit, 'MainPID', iface=SERVICE)

    def stop(self, timeout=H.DEFAULT_TIMEOUT, check=True):
        if not self.running():
            return None
        self.systemd.stop_unit(self.unit, timeout=timeout + 10)
        rc = self.systemd.prop(self.unit, 'ExecMainStatus', iface=SERVICE)
        self.exit_status = rc
        if check and rc != 0:
            raise AssertionError('%s exited with %s; log:\n%s' % (self.unit, rc, self.log_text()[-4000:]))
        return rc


@pytest.fixture
def real_systemd(harness, bus):
    sd = RealSystemd(bus, harness.workdir, harness.procs).start()
    try:
        yield sd
    finally:
        problems = []
        for d in list(harness.daemons):
            if isinstance(d, UnitDaemon):
                harness.daemons.remove(d)
                try:
                    if d.running():
                        rc = d.stop(check=False)
                        if rc not in (0, None):
                            problems.append('%s exited with %s on stop' % (d.unit, rc))
                except H.HarnessError as e:
                    problems.append(str(e))
        left = sd.stop()
        if left:
            problems.append('cgroups left behind: %r' % left)
    if problems:
        pytest.fail('real systemd teardown: ' + '\n'.join(problems), pytrace=False)


# What the test machines (containers) cannot set up even for a root manager:
# these mounts over /home, /proc/sys and /proc/kmsg fail with 226/NAMESPACE.
# None of them changes what the daemon can do with a repository in /tmp.
NOT_HERE = ('ProtectHome', 'ProtectKernelTunables', 'ProtectKernelLogs')


def shipped_hardening(writable):
    """The [Service] sandbox of data/platform-launcher.service.in, as shipped,
    minus what places files (its directories, its environment, PrivateTmp=:
    a test's world lives in /tmp) and NOT_HERE, plus ReadWritePaths= for the
    test's state."""
    skip = ('Type', 'BusName', 'ExecStart', 'ExecReload', 'NotifyAccess', 'Restart', 'RestartSec', 'KillMode',
            'TimeoutStopSec', 'ConfigurationDirectory', 'ConfigurationDirectoryMode', 'StateDirectory',
            'StateDirectoryMode', 'RuntimeDirectory', 'Environment', 'PrivateTmp') + NOT_HERE
    lines, section = [], None
    with open(os.path.join(H.SOURCE_DIR, 'data', 'platform-launcher.service.in')) as f:
        for line in f:
            line = line.strip()
            if line.startswith('['):
                section = line
                continue
            if section != '[Service]' or not line or line.startswith('#') or line.split('=', 1)[0] in skip:
                continue
            lines.append(line)
    return lines + ['ReadWritePaths=%s' % w for w in writable]


def unit_daemon(harness, systemd, config, args=(), **kw):
    """A UnitDaemon, registered with the harness (its files in the test's dir)."""
    kw.setdefault('name', 'platform-launcherd')
    d = UnitDaemon(systemd, harness.bus, harness.workdir, harness.procs, config=config,
                   args=['--step-runner=systemd'] + list(args), **kw)
    harness.daemons.append(d)
    return d.start()
