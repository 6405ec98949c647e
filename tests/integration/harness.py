# SPDX-License-Identifier: Apache-2.0
"""Real-component integration harness for platform-launcherd.

Everything here runs real programs: dbus-daemon with a copy of the system bus
policy plus the project's own dbus/ policy, the real polkitd with staged
.policy/.rules files (or python-dbusmock's polkitd template when a test needs
delays or hangs), the real daemon binary, and clients running as root or as
`nobody`. See tests/integration/README.md and /work/shared/design/testing.md.

Run with /usr/bin/python3 only (stdlib + gi + dbus). Every process started is
tracked by pid in a ProcessTracker and killed on teardown, even on failure.
Waits are on conditions (fd readable, a name appearing, a signal) with bounded
timeouts, never on fixed sleeps.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import gi
gi.require_version('Gio', '2.0')
gi.require_version('GLib', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get('PLATFORM_SOURCE_DIR') or os.path.abspath(os.path.join(HERE, '..', '..'))
BUILD_DIR = os.environ.get('PLATFORM_BUILD_DIR') or os.path.join(SOURCE_DIR, 'build')
PYTHON = '/usr/bin/python3'
CLIENT_PY = os.path.join(HERE, 'client.py')

DAEMON_NAME = 'org.platform.Launcher1'
DAEMON_PATH = '/org/platform/Launcher1'
CONFIG_IFACE = 'org.platform.Launcher1.Config'

POLKIT_NAME = 'org.freedesktop.PolicyKit1'
POLKIT_PATH = '/org/freedesktop/PolicyKit1/Authority'
POLKIT_IFACE = 'org.freedesktop.PolicyKit1.Authority'
POLKITD = '/usr/lib/polkit-1/polkitd'
HOSTNAMED = '/lib/systemd/systemd-hostnamed'

DEFAULT_TIMEOUT = 10.0

# Tests never reach beyond this machine: a daemon left on its default ApiUrl
# (https://api.platform.network/...) must not even resolve that name. libcurl
# honours these variables, so every request that is not to loopback goes to a
# proxy address where nothing listens, and fails at once.
NO_EGRESS_ENV = {
    'http_proxy': 'http://127.0.0.1:9',
    'https_proxy': 'http://127.0.0.1:9',
    'HTTPS_PROXY': 'http://127.0.0.1:9',
    'no_proxy': '127.0.0.1,localhost,::1',
    'NO_PROXY': '127.0.0.1,localhost,::1',
}
# setpriv, not runuser (runuser costs ~2 s through PAM).
USERS = {
    'nobody': ['--reuid=nobody', '--regid=nogroup', '--clear-groups'],
    'daemon': ['--reuid=daemon', '--regid=daemon', '--clear-groups'],
    'polkitd': ['--reuid=polkitd', '--regid=polkitd', '--clear-groups'],
}


class HarnessError(Exception):
    pass


def daemon_binary():
    return os.path.join(BUILD_DIR, 'src', 'daemon', 'platform-launcherd')


def is_root():
    return os.geteuid() == 0


def need_root(what):
    """Raise pytest's skip when running under pytest (as non-root), else HarnessError."""
    msg = '%s needs root; run the suite as root (CI does)' % what
    if 'pytest' in sys.modules:
        import pytest
        raise pytest.skip.Exception(msg)
    raise HarnessError(msg)


def as_user_argv(user, argv):
    """argv run as `user` (nobody, daemon, polkitd) through setpriv; None = as is."""
    if user is None or user == 'root':
        return list(argv)
    if not is_root():
        need_root('running a client as %s' % user)
    if user not in USERS:
        raise HarnessError('unknown user %r (use one with a passwd entry: %s)' % (user, ', '.join(USERS)))
    return ['setpriv'] + USERS[user] + ['--'] + list(argv)


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is not alive for our purposes.
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

class ProcessTracker:
    """Starts processes and remembers them by pid; cleanup() ends them all."""

    def __init__(self):
        self.procs = []   # (name, Popen)

    def spawn(self, name, argv, **kw):
        kw.setdefault('stdin', subprocess.DEVNULL)
        kw.setdefault('close_fds', True)
        p = subprocess.Popen(argv, **kw)
        self.procs.append((name, p))
        return p

    def pids(self):
        return [p.pid for _, p in self.procs]

    def stop(self, p, sig=signal.SIGTERM, timeout=5.0):
        """Send sig, wait up to timeout, then SIGKILL. Returns the exit status."""
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        return p.returncode

    def cleanup(self):
        """Stop everything still running, newest first. Returns [(name, pid, rc)]."""
        out = []
        for name, p in reversed(self.procs):
            running = p.poll() is None
            rc = self.stop(p, timeout=3.0)
            out.append((name, p.pid, rc, running))
        return out

    def leftovers(self):
        return [(name, p.pid) for name, p in self.procs if _pid_alive(p.pid)]


# ---------------------------------------------------------------------------
# Bus helpers (in-process Gio)
# ---------------------------------------------------------------------------

def _wait_loop(ctx, cond, timeout, what, check=None):
    """Iterate ctx until cond() is true; bounded. check() may raise to abort."""
    deadline = time.monotonic() + timeout
    while not cond():
        if check is not None:
            check()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError('timed out after %.1fs waiting for %s' % (timeout, what))
        # Wake up at the latest at the deadline, or every 100 ms when a check()
        # must look at something that is not a bus event (a child exiting).
        ms = int(min(left, 0.1 if check else left) * 1000) + 1
        fired = []
        src = GLib.timeout_source_new(ms)
        src.set_callback(lambda *a: fired.append(1) or False)
        src.attach(ctx)
        try:
            while not fired and not cond():
                ctx.iteration(True)
        finally:
            src.destroy()


class SignalCollector:
    """Collects bus signals on a dedicated main context.

    Subscribe first, then act, then wait_for(cond) with a bounded timeout:

        with bus.collect(sender=DAEMON_NAME, path=DAEMON_PATH,
                         interface='org.freedesktop.DBus.Properties',
                         member='PropertiesChanged') as sc:
            ...act...
            sc.wait_for(lambda s: s.member == 'PropertiesChanged'
                        and 'ApiUrl' in s.args[1])
    """

    class Signal:
        def __init__(self, sender, path, interface, member, args):
            self.sender, self.path, self.interface, self.member, self.args = sender, path, interface, member, args

        def __repr__(self):
            return 'Signal(%s %s %s.%s %r)' % (self.sender, self.path, self.interface, self.member, self.args)

    def __init__(self, conn, sender=None, path=None, interface=None, member=None, arg0=None):
        self.conn = conn
        self.ctx = GLib.MainContext.new()
        self.signals = []
        self.ctx.push_thread_default()
        try:
            self.sub = conn.signal_subscribe(sender, interface, member, path, arg0,
                                             Gio.DBusSignalFlags.NONE, self._on_signal, None)
        finally:
            self.ctx.pop_thread_default()
        # Make sure the AddMatch reached the bus before the caller acts.
        conn.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                       'GetId', None, None, Gio.DBusCallFlags.NONE, 5000, None)

    def _on_signal(self, conn, sender, path, interface, member, params, _data):
        self.signals.append(self.Signal(sender, path, interface, member, params.unpack()))

    def pump(self):
        while self.ctx.iteration(False):
            pass
        return self.signals

    def wait_for(self, cond=None, timeout=DEFAULT_TIMEOUT, what='a signal'):
        """Wait until cond(signal) is true for a collected signal; returns it."""
        cond = cond or (lambda s: True)
        found = []

        def done():
            if not found:
                for s in self.signals:
                    if cond(s):
                        found.append(s)
                        break
            return bool(found)
        _wait_loop(self.ctx, done, timeout, what + ' (got: %r)' % (self.signals,))
        return found[0]

    def wait_count(self, n, timeout=DEFAULT_TIMEOUT):
        _wait_loop(self.ctx, lambda: len(self.signals) >= n, timeout, '%d signals' % n)
        return self.signals[:n]

    def close(self):
        if self.sub is not None:
            self.conn.signal_unsubscribe(self.sub)
            self.sub = None
            self.pump()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CallResult:
    """Outcome of a method call: ok, result (unpacked tuple), error_name, error_message."""

    def __init__(self, ok, result=None, error_name=None, error_message=None):
        self.ok, self.result, self.error_name, self.error_message = ok, result, error_name, error_message

    @classmethod
    def from_json(cls, d):
        r = d.get('result')
        return cls(d['ok'], tuple(r) if isinstance(r, list) else r, d.get('error_name'), d.get('error_message'))

    def __repr__(self):
        if self.ok:
            return 'CallResult(ok, %r)' % (self.result,)
        return 'CallResult(error %s: %s)' % (self.error_name, self.error_message)


def split_signature(sig):
    """'sa{sv}(ii)' -> ['s', 'a{sv}', '(ii)'] (complete types)."""
    out, i = [], 0
    while i < len(sig):
        j = _type_end(sig, i)
        out.append(sig[i:j])
        i = j
    return out


def _type_end(sig, i):
    c = sig[i]
    if c in 'am':
        return _type_end(sig, i + 1)
    if c in '({':
        close = ')' if c == '(' else '}'
        i += 1
        while sig[i] != close:
            i = _type_end(sig, i)
        return i + 1
    return i + 1


def to_variant(signature, value):
    """JSON-ish python value -> GLib.Variant of `signature`.

    A 'v' is given as [signature, value], e.g. SetSettings(a{sv}):
        to_variant('(a{sv})', [{'ApiUrl': ['s', 'http://x']}])
    """
    return GLib.Variant(signature, _conv(signature, value))


def _conv(s, v):
    """Python value for GLib.Variant(s, ...): 'v' slots become GLib.Variant."""
    c = s[0]
    if c == 'v':
        sig, inner = v
        return GLib.Variant(sig, _conv(sig, inner))
    if c == '(':
        return tuple(_conv(t, x) for t, x in zip(split_signature(s[1:-1]), v))
    if s.startswith('a{'):
        kt, vt = split_signature(s[2:-1])
        kconv = int if kt in 'ynqiuxt' else (lambda k: k)
        return {kconv(k): _conv(vt, x) for k, x in v.items()}
    if s == 'ay':
        return v.encode() if isinstance(v, str) else bytes(v)
    if c == 'a':
        return [_conv(s[1:], x) for x in v]
    if c == 'm':
        return None if v is None else _conv(s[1:], v)
    return v


def _jsonable(x):
    if isinstance(x, (bytes, bytearray)):
        return list(x)
    if isinstance(x, tuple):
        return [_jsonable(i) for i in x]
    if isinstance(x, list):
        return [_jsonable(i) for i in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    return x


def error_result(e):
    """GLib.Error -> CallResult with the D-Bus error name (remote or mapped local)."""
    if Gio.DBusError.is_remote_error(e):
        name = Gio.DBusError.get_remote_error(e)
        msg = e.message
        prefix = 'GDBus.Error:%s: ' % name
        if msg.startswith(prefix):
            msg = msg[len(prefix):]
        return CallResult(False, None, name, msg)
    return CallResult(False, None, Gio.DBusError.encode_gerror(e), e.message)


def gio_call(conn, dest, path, iface, method, signature=None, args=None, timeout=DEFAULT_TIMEOUT,
             flags=Gio.DBusCallFlags.NONE):
    """Synchronous call; returns CallResult (never raises for D-Bus errors)."""
    params = to_variant('(%s)' % signature, list(args or [])) if signature else None
    try:
        reply = conn.call_sync(dest, path, iface, method, params, None, flags, int(timeout * 1000), None)
    except GLib.Error as e:
        return error_result(e)
    return CallResult(True, tuple(_jsonable(reply.unpack())) if reply is not None else ())


# ---------------------------------------------------------------------------
# Private system bus
# ---------------------------------------------------------------------------

BUS_CONFIG = '''<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<!-- Private system bus for a platform-launcher integration test.
     A copy of /usr/share/dbus-1/system.conf without user switch, fork, pid file,
     activation and syslog; plus the project's own policy from the source tree. -->
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path={socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Containers1"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Debug.Stats"/>
  </policy>
  <!-- Distribution policies: polkit's, hostnamed's. -->
  <includedir>/usr/share/dbus-1/system.d</includedir>
  <!-- The project's policy from the source tree, so the real policy is tested. -->
  <include>{project_policy}</include>
</busconfig>
'''


class PrivateBus:
    """A dbus-daemon of type system on unix:path=<workdir>/bus."""

    def __init__(self, workdir, procs, project_policy=None):
        self.workdir = workdir
        self.procs = procs
        self.project_policy = project_policy or os.path.join(SOURCE_DIR, 'dbus', 'org.platform.Launcher1.conf')
        self.socket = os.path.join(workdir, 'bus')
        self.config_path = os.path.join(workdir, 'bus.conf')
        self.address = None
        self.proc = None
        self._conn = None

    def start(self, timeout=DEFAULT_TIMEOUT):
        if not os.path.exists(self.project_policy):
            raise HarnessError('project bus policy missing: %s' % self.project_policy)
        with open(self.config_path, 'w') as f:
            f.write(BUS_CONFIG.format(socket=self.socket, project_policy=self.project_policy))
        r, w = os.pipe()
        try:
            self.proc = self.procs.spawn('dbus-daemon', [
                'dbus-daemon', '--config-file=' + self.config_path,
                '--address=unix:path=' + self.socket,
                '--nofork', '--nopidfile', '--print-address=%d' % w],
                pass_fds=(w,), stdout=subprocess.DEVNULL,
                stderr=open(os.path.join(self.workdir, 'dbus-daemon.log'), 'wb'))
            os.close(w)
            w = -1
            buf = b''
            deadline = time.monotonic() + timeout
            import select
            while not buf.endswith(b'\n'):
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([r], [], [], left)[0]:
                    raise TimeoutError('dbus-daemon did not print its address')
                chunk = os.read(r, 4096)
                if not chunk:
                    raise HarnessError('dbus-daemon exited (rc=%s): %s' % (
                        self.proc.wait(), self.log_text()))
                buf += chunk
        finally:
            os.close(r)
            if w >= 0:
                os.close(w)
        self.address = buf.decode().strip()
        os.chmod(self.socket, 0o777)  # it is already; be explicit for nobody/polkitd
        return self

    def log_text(self):
        try:
            with open(os.path.join(self.workdir, 'dbus-daemon.log'), errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def env(self, base=None):
        e = dict(os.environ if base is None else base)
        e['DBUS_SYSTEM_BUS_ADDRESS'] = self.address
        # Keep session-bus lookups away from whatever bus the caller has.
        e.pop('DBUS_SESSION_BUS_ADDRESS', None)
        return e

    def connect(self):
        """A new Gio connection to this bus (as the current user)."""
        return Gio.DBusConnection.new_for_address_sync(
            self.address,
            Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
            None, None)

    @property
    def conn(self):
        if self._conn is None:
            self._conn = self.connect()
        return self._conn

    def collect(self, **match):
        """SignalCollector on this bus; keywords sender, path, interface, member, arg0."""
        return SignalCollector(self.conn, **match)

    def name_owner(self, name):
        r = gio_call(self.conn, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                     'GetNameOwner', 's', [name])
        return r.result[0] if r.ok else None

    def wait_for_name(self, name, timeout=DEFAULT_TIMEOUT, proc=None, gone=False):
        """Wait (on NameOwnerChanged) until `name` has an owner (or none if gone).

        If proc is given and exits meanwhile, raise at once with its status."""
        with self.collect(sender='org.freedesktop.DBus', interface='org.freedesktop.DBus',
                          member='NameOwnerChanged', arg0=name) as sc:
            def ready():
                if sc.signals:
                    return bool(sc.signals[-1].args[2]) != gone
                return state[0]
            state = [(self.name_owner(name) is not None) != gone]

            def check():
                if proc is not None and proc.poll() is not None:
                    raise HarnessError('process %d exited with %s before %s %s' % (
                        proc.pid, proc.returncode, name, 'went away' if gone else 'appeared'))
            _wait_loop(sc.ctx, ready, timeout, 'name %s %s' % (name, 'to go' if gone else 'to appear'),
                       check=check if proc is not None else None)

    def call(self, dest, path, iface, method, signature=None, args=None, user=None, timeout=DEFAULT_TIMEOUT):
        """Method call as root (in process) or as `user` (client.py subprocess)."""
        if user in (None, 'root'):
            return gio_call(self.conn, dest, path, iface, method, signature, args, timeout)
        return client_call(self, dest, path, iface, method, signature, args, user=user, timeout=timeout)

    def get_property(self, dest, path, iface, prop, user=None, timeout=DEFAULT_TIMEOUT):
        r = self.call(dest, path, 'org.freedesktop.DBus.Properties', 'Get', 'ss', [iface, prop],
                      user=user, timeout=timeout)
        if r.ok:
            r.result = r.result[0]
        return r

    def get_all(self, dest, path, iface, user=None):
        r = self.call(dest, path, 'org.freedesktop.DBus.Properties', 'GetAll', 's', [iface], user=user)
        if r.ok:
            r.result = r.result[0]
        return r

    def close(self):
        if self._conn is not None:
            try:
                self._conn.close_sync(None)
            except GLib.Error:
                pass
            self._conn = None


def client_call(bus, dest, path, iface, method, signature=None, args=None, user='nobody',
                timeout=DEFAULT_TIMEOUT, flags=0):
    """Run tests/integration/client.py (Gio) as `user`; returns CallResult."""
    req = {'dest': dest, 'path': path, 'interface': iface, 'method': method,
           'signature': signature, 'args': list(args or []), 'timeout': timeout, 'flags': flags}
    argv = as_user_argv(user, [PYTHON, CLIENT_PY, json.dumps(req)])
    env = bus.env()
    env['PYTHONDONTWRITEBYTECODE'] = '1'
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout + 20)
    out = p.stdout.decode(errors='replace').strip().splitlines()
    if p.returncode != 0 or not out:
        raise HarnessError('client as %s failed rc=%s: %s' % (user, p.returncode, p.stderr.decode(errors='replace')))
    return CallResult.from_json(json.loads(out[-1]))


def run_tool(bus, argv, user=None, timeout=30, check=False):
    """Run a CLI (busctl, gdbus, platformctl) against the bus as root or `user`."""
    p = subprocess.run(as_user_argv(user, argv), env=bus.env(), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise HarnessError('%s failed rc=%d: %s' % (argv, p.returncode, p.stderr))
    return p


def gdbus_call(bus, dest, path, method, *args, user=None, timeout=DEFAULT_TIMEOUT):
    """`gdbus call --system` (method = 'iface.Member', args in GVariant text).

    Returns CallResult with result = gdbus's printed text, and on error the
    error name parsed from 'GDBus.Error:<name>: <message>'."""
    p = run_tool(bus, ['gdbus', 'call', '--system', '--dest', dest, '--object-path', path,
                       '--method', method, '--timeout', str(int(timeout))] + [str(a) for a in args],
                 user=user, timeout=timeout + 10)
    if p.returncode == 0:
        return CallResult(True, p.stdout.strip())
    err = p.stderr.strip()
    i = err.find('GDBus.Error:')
    if i >= 0:
        rest = err[i + len('GDBus.Error:'):]
        name, _, msg = rest.partition(': ')
        return CallResult(False, None, name.strip(), msg.strip())
    return CallResult(False, None, None, err)


# ---------------------------------------------------------------------------
# polkit
# ---------------------------------------------------------------------------

def _copytree_modes(src_files, dst):
    os.makedirs(dst, exist_ok=True)
    os.chmod(dst, 0o755)
    for f in src_files:
        d = os.path.join(dst, os.path.basename(f))
        shutil.copyfile(f, d)
        os.chmod(d, 0o644)


class Polkit:
    """Real polkitd in a private mount namespace with staged policy and rules.

    The staged directories are bind-mounted over polkitd's compiled-in ones:
      <workdir>/polkit/actions   -> /usr/share/polkit-1/actions
                                    (distro .policy files + project polkit/*.policy)
      <workdir>/polkit/etc-rules -> /etc/polkit-1/rules.d          (add_rule() writes here)
      <workdir>/polkit/usr-rules -> /usr/share/polkit-1/rules.d    (empty unless distro_rules)
    """

    def __init__(self, bus, workdir, procs, extra_policies=None, distro_rules=False):
        self.bus, self.procs = bus, procs
        self.dir = os.path.join(workdir, 'polkit')
        self.actions = os.path.join(self.dir, 'actions')
        self.etc_rules = os.path.join(self.dir, 'etc-rules')
        self.usr_rules = os.path.join(self.dir, 'usr-rules')
        self.extra_policies = extra_policies
        self.distro_rules = distro_rules
        self.proc = None
        self.log_path = os.path.join(workdir, 'polkitd.log')

    def start(self, timeout=DEFAULT_TIMEOUT):
        if not is_root():
            need_root('real polkitd (mount namespace, user switch)')
        import glob
        os.makedirs(self.dir, exist_ok=True)
        os.chmod(self.dir, 0o755)
        policies = sorted(glob.glob('/usr/share/polkit-1/actions/*.policy'))
        project = sorted(glob.glob(os.path.join(SOURCE_DIR, 'polkit', '*.policy')))
        if self.extra_policies is None:
            policies += project
        else:
            policies += list(self.extra_policies)
        _copytree_modes(policies, self.actions)
        _copytree_modes([], self.etc_rules)
        _copytree_modes(sorted(glob.glob('/usr/share/polkit-1/rules.d/*.rules')) if self.distro_rules else [],
                        self.usr_rules)
        script = ('set -e; '
                  'mount --bind "$1" /usr/share/polkit-1/actions; '
                  'mount --bind "$2" /etc/polkit-1/rules.d; '
                  'mount --bind "$3" /usr/share/polkit-1/rules.d; '
                  'exec %s --no-debug' % POLKITD)
        self.proc = self.procs.spawn('polkitd', [
            'unshare', '--mount', '--propagation', 'private', '--',
            'sh', '-c', script, 'sh', self.actions, self.etc_rules, self.usr_rules],
            env=self.bus.env(), stdout=subprocess.DEVNULL, stderr=open(self.log_path, 'wb'))
        try:
            self.bus.wait_for_name(POLKIT_NAME, timeout, proc=self.proc)
        except HarnessError as e:
            raise HarnessError('%s; polkitd log:\n%s' % (e, self.log_text()))
        return self

    def log_text(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def _changed(self):
        return self.bus.collect(sender=POLKIT_NAME, path=POLKIT_PATH, interface=POLKIT_IFACE, member='Changed')

    def _apply(self, fn, timeout):
        with self._changed() as sc:
            fn()
            sc.wait_for(timeout=timeout, what='polkit Authority.Changed')

    def add_rule(self, name, javascript, timeout=DEFAULT_TIMEOUT):
        """Write <etc-rules>/<name>.rules and wait for Authority.Changed."""
        if not name.endswith('.rules'):
            name += '.rules'
        path = os.path.join(self.etc_rules, name)

        def write():
            tmp = path + '.tmp'
            with open(tmp, 'w') as f:
                f.write(javascript)
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
        self._apply(write, timeout)
        return path

    def remove_rule(self, name, timeout=DEFAULT_TIMEOUT):
        if not name.endswith('.rules'):
            name += '.rules'
        self._apply(lambda: os.unlink(os.path.join(self.etc_rules, name)), timeout)

    def allow(self, action_id, user='nobody', name=None, result='YES'):
        """Rule: `user` gets `result` (YES, NO, AUTH_ADMIN, ...) for action_id."""
        js = ('polkit.addRule(function(action, subject) {\n'
              '    if (action.id == %s && subject.user == %s)\n'
              '        return polkit.Result.%s;\n'
              '});\n') % (json.dumps(action_id), json.dumps(user), result)
        return self.add_rule(name or '50-harness-%s-%s' % (user, action_id), js)

    def check_authorization(self, action_id, pid, details=None, flags=0):
        """Authority.CheckAuthorization for a unix-process subject (pid, its start
        time and uid read from /proc). Returns (is_authorized, is_challenge, details)."""
        start_time = int(open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()[19])
        uid = os.stat('/proc/%d' % pid).st_uid
        subject = ['unix-process', {'pid': ['u', pid], 'start-time': ['t', start_time], 'uid': ['i', uid]}]
        r = self.bus.call(POLKIT_NAME, POLKIT_PATH, POLKIT_IFACE, 'CheckAuthorization',
                          '(sa{sv})sa{ss}us', [subject, action_id, details or {}, flags, ''])
        if not r.ok:
            raise HarnessError('CheckAuthorization(%s) failed: %r' % (action_id, r))
        return tuple(r.result[0])


class MockPolkit:
    """python-dbusmock's polkitd template, run as user polkitd.

    Ignores who asks; use allow()/allow_unknown()/set_delay()/hang()/release()."""

    MOCK_IFACE = 'org.freedesktop.DBus.Mock'

    def __init__(self, bus, workdir, procs):
        self.bus, self.procs = bus, procs
        self.log_path = os.path.join(workdir, 'polkitd-mock.log')
        self.proc = None

    def start(self, timeout=DEFAULT_TIMEOUT):
        # Only user polkitd may own org.freedesktop.PolicyKit1 (bus policy).
        argv = as_user_argv('polkitd', [PYTHON, '-m', 'dbusmock', '--system', '--template', 'polkitd'])
        env = self.bus.env()
        env['PYTHONDONTWRITEBYTECODE'] = '1'
        self.proc = self.procs.spawn('polkitd-mock', argv, env=env, cwd='/',
                                     stdout=subprocess.DEVNULL, stderr=open(self.log_path, 'wb'))
        self.bus.wait_for_name(POLKIT_NAME, timeout, proc=self.proc)
        return self

    def _mock(self, method, signature=None, args=None):
        r = self.bus.call(POLKIT_NAME, POLKIT_PATH, self.MOCK_IFACE, method, signature, args)
        if not r.ok:
            raise HarnessError('mock polkit %s: %r' % (method, r))
        return r.result

    def allow(self, *action_ids):
        self._mock('SetAllowed', 'as', [list(action_ids)])

    def allow_unknown(self, yes=True):
        self._mock('AllowUnknown', 'b', [yes])

    def set_delay(self, seconds):
        self._mock('SetDelay', 'd', [float(seconds)])

    def hang(self, yes=True, actions=None):
        if actions is not None:
            self._mock('SimulateHangActions', 'as', [list(actions)])
        else:
            self._mock('SimulateHang', 'b', [yes])

    def release(self):
        self._mock('ReleaseHangingCalls')

    def has_hanging_calls(self):
        return bool(self._mock('HaveHangingCalls')[0])


# ---------------------------------------------------------------------------
# Services under test
# ---------------------------------------------------------------------------

class Daemon:
    """platform-launcherd with config/state/runtime dirs in the test's workdir."""

    def __init__(self, bus, workdir, procs, config=None, binary=None, args=None, env=None,
                 name='platform-launcherd'):
        self.bus, self.procs = bus, procs
        self.binary = binary or daemon_binary()
        self.dir = os.path.join(workdir, name)
        self.config_path = os.path.join(self.dir, 'config.json')
        self.state_dir = os.path.join(self.dir, 'state')
        self.runtime_dir = os.path.join(self.dir, 'runtime')
        self.log_path = os.path.join(self.dir, 'stderr.log')
        self.extra_args = list(args or [])
        self.extra_env = dict(env or {})
        self.name = name
        self.proc = None
        self.exit_status = None
        os.makedirs(self.dir, exist_ok=True)
        for d in (self.state_dir, self.runtime_dir):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o700)
        if config is not None:
            self.write_config(config)

    def write_config(self, config):
        """Write config.json (dict -> JSON, str as is), mode 0600, atomically."""
        text = config if isinstance(config, str) else json.dumps(config, indent=2)
        tmp = self.config_path + '.tmp'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
        os.rename(tmp, self.config_path)

    def read_config(self):
        with open(self.config_path) as f:
            return json.load(f)

    def argv(self):
        return [self.binary, '--config=' + self.config_path, '--state-dir=' + self.state_dir,
                '--runtime-dir=' + self.runtime_dir] + self.extra_args

    def start(self, timeout=DEFAULT_TIMEOUT, wait=True):
        if not os.path.exists(self.binary):
            raise HarnessError('daemon binary missing: %s' % self.binary)
        if not os.path.exists(self.config_path):
            self.write_config({})
        env = self.bus.env()
        env.update(NO_EGRESS_ENV)
        env.update(self.extra_env)
        self.exit_status = None
        self.proc = self.procs.spawn(self.name, self.argv(), env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, 'ab'))
        if wait:
            try:
                self.bus.wait_for_name(DAEMON_NAME, timeout, proc=self.proc)
            except HarnessError as e:
                raise HarnessError('%s; daemon stderr:\n%s' % (e, self.log_text()))
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=DEFAULT_TIMEOUT, check=True):
        """SIGTERM, wait; with check, assert exit status 0. Returns the status."""
        if self.proc is None:
            return None
        rc = self.procs.stop(self.proc, signal.SIGTERM, timeout)
        self.exit_status = rc
        if check and rc != 0:
            raise AssertionError('%s exited with %s on SIGTERM; stderr:\n%s' % (self.name, rc, self.log_text()[-4000:]))
        return rc

    def kill(self):
        """SIGKILL (crash simulation); waits for the name to leave the bus."""
        if self.proc is None:
            return None
        rc = self.procs.stop(self.proc, signal.SIGKILL)
        self.exit_status = rc
        self.bus.wait_for_name(DAEMON_NAME, gone=True)
        return rc

    def restart(self, **kw):
        self.stop()
        self.bus.wait_for_name(DAEMON_NAME, gone=True)
        return self.start(**kw)

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def log_text(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def assert_not_logged(self, *secrets):
        """Fail if any secret appears in the daemon's stderr."""
        text = self.log_text()
        for s in secrets:
            assert s not in text, 'secret %r leaked into daemon stderr' % (s[:4] + '...')

    # Convenience for the Config interface
    def call(self, method, signature=None, args=None, user=None, iface=CONFIG_IFACE, path=DAEMON_PATH, **kw):
        return self.bus.call(DAEMON_NAME, path, iface, method, signature, args, user=user, **kw)

    def get(self, prop, iface=CONFIG_IFACE, path=DAEMON_PATH, user=None):
        r = self.bus.get_property(DAEMON_NAME, path, iface, prop, user=user)
        if user is None and not r.ok:
            raise HarnessError('Get %s.%s: %r' % (iface, prop, r))
        return r.result if user is None else r


class Hostnamed:
    """/lib/systemd/systemd-hostnamed on the private bus, as a reference service.

    Runs in a private mount namespace with / remounted read-only, so even an
    authorized Set* call cannot change the host (it fails with EROFS)."""

    NAME = 'org.freedesktop.hostname1'
    PATH = '/org/freedesktop/hostname1'
    IFACE = 'org.freedesktop.hostname1'

    def __init__(self, bus, workdir, procs, read_only=True):
        self.bus, self.procs = bus, procs
        self.log_path = os.path.join(workdir, 'hostnamed.log')
        self.read_only = read_only
        self.proc = None

    def start(self, timeout=DEFAULT_TIMEOUT):
        argv = [HOSTNAMED]
        if self.read_only:
            if not is_root():
                need_root('hostnamed with a read-only /etc (mount namespace)')
            argv = ['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c',
                    'set -e; mount --bind /etc /etc; mount -o remount,bind,ro /etc; exec "$0"', HOSTNAMED]
        self.proc = self.procs.spawn('hostnamed', argv, env=self.bus.env(), stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, 'ab'))
        self.bus.wait_for_name(self.NAME, timeout, proc=self.proc)
        return self

    def ensure_running(self):
        """hostnamed exits after ~30 s idle; start it again if it did."""
        if self.proc is None or self.proc.poll() is not None or self.bus.name_owner(self.NAME) is None:
            if self.proc is not None:
                if self.proc.poll() is None:   # exiting: wait for it
                    self.proc.wait(DEFAULT_TIMEOUT)
                self.bus.wait_for_name(self.NAME, gone=True)
            self.start()
        return self

    def stop(self):
        if self.proc is not None:
            return self.procs.stop(self.proc)


class SystemdSim:
    """tests/sim/systemd_sim.py: a stand-in org.freedesktop.systemd1 Manager
    (RestartUnit, Subscribe, JobNew/JobRemoved) with test controls."""

    NAME = 'org.freedesktop.systemd1'
    PATH = '/org/freedesktop/systemd1'
    CONTROL = 'org.platform.Test.SystemdSim'

    def __init__(self, bus, workdir, procs, job_seconds=0.02):
        self.bus, self.procs = bus, procs
        self.log_path = os.path.join(workdir, 'systemd-sim.log')
        self.job_seconds = job_seconds
        self.proc = None

    def start(self, timeout=DEFAULT_TIMEOUT):
        argv = [PYTHON, os.path.join(SOURCE_DIR, 'tests', 'sim', 'systemd_sim.py'),
                '--job-seconds', str(self.job_seconds)]
        self.proc = self.procs.spawn('systemd-sim', argv, env=self.bus.env(), stdout=subprocess.DEVNULL,
                                     stderr=open(self.log_path, 'ab'))
        self.bus.wait_for_name(self.NAME, timeout, proc=self.proc)
        return self

    def _call(self, method, sig=None, args=None):
        r = self.bus.call(self.NAME, self.PATH, self.CONTROL, method, sig, args)
        if not r.ok:
            raise HarnessError('systemd sim %s: %r' % (method, r))
        return r.result

    def restarts(self):
        return list(self._call('Restarts')[0])

    def reset(self):
        self._call('Reset')

    def fail_unit(self, unit, result='failed'):
        self._call('FailUnit', 'ss', [unit, result])

    def hang_unit(self, unit, hang=True):
        self._call('HangUnit', 'sb', [unit, hang])

    def stop(self):
        if self.proc is not None:
            return self.procs.stop(self.proc)


# ---------------------------------------------------------------------------
# One test's world
# ---------------------------------------------------------------------------

class Harness:
    """Per-test temp dir + tracked processes + bus/polkit/daemon factories.

        h = Harness(); try: bus = h.start_bus(); ... finally: h.cleanup()
    """

    def __init__(self, prefix='platform-it-'):
        # mkdtemp makes 0700: open it so nobody and polkitd reach the socket.
        self.workdir = tempfile.mkdtemp(prefix=prefix)
        os.chmod(self.workdir, 0o755)
        self.procs = ProcessTracker()
        self.bus = None
        self.polkit = None
        self.daemons = []

    def start_bus(self, **kw):
        self.bus = PrivateBus(self.workdir, self.procs, **kw).start()
        return self.bus

    def start_polkit(self, mode='real', **kw):
        """mode: 'real' (polkitd), 'mock' (dbusmock template) or None (no polkit)."""
        if mode is None:
            return None
        cls = Polkit if mode == 'real' else MockPolkit
        self.polkit = cls(self.bus, self.workdir, self.procs, **kw).start()
        return self.polkit

    def daemon(self, config=None, start=True, **kw):
        kw.setdefault('name', 'platform-launcherd' if not self.daemons else 'platform-launcherd-%d' % len(self.daemons))
        d = Daemon(self.bus, self.workdir, self.procs, config=config, **kw)
        self.daemons.append(d)
        if start:
            d.start()
        return d

    def hostnamed(self, **kw):
        return Hostnamed(self.bus, self.workdir, self.procs, **kw).start()

    def systemd(self, **kw):
        """The systemd Manager stand-in on the private bus (root: bus policy)."""
        return SystemdSim(self.bus, self.workdir, self.procs, **kw).start()

    def spawn(self, name, argv, user=None, **kw):
        """Start a helper (simulator, client) on the bus, tracked for cleanup."""
        kw.setdefault('env', self.bus.env() if self.bus else None)
        return self.procs.spawn(name, as_user_argv(user, argv), **kw)

    def subject_process(self, user='nobody'):
        """A process running as `user` (for polkit unix-process subjects).

        Returns once it really runs as that user (it tells us through a pipe
        after setpriv switched), so its pid is safe to hand to polkit."""
        p = self.spawn('subject-' + user, ['sh', '-c', 'echo ready; exec sleep 3600'], user=user,
                       stdout=subprocess.PIPE)
        line = p.stdout.readline()
        p.stdout.close()
        if line.strip() != b'ready':
            raise HarnessError('subject process as %s did not start (rc=%s)' % (user, p.poll()))
        return p

    def cleanup(self, keep=None):
        """Stop daemons with SIGTERM (collecting exit statuses), then everything else.

        Returns a list of problems (daemon exit != 0) for the caller to assert on."""
        problems = []
        try:
            for d in self.daemons:
                if d.running():
                    rc = d.stop(check=False)
                    if rc != 0:
                        problems.append('%s exited with %s on SIGTERM at teardown; stderr tail:\n%s' % (
                            d.name, rc, d.log_text()[-3000:]))
            if self.bus is not None:
                self.bus.close()
        finally:
            self.procs.cleanup()
            left = self.procs.leftovers()
            if left:
                problems.append('processes left behind: %r' % (left,))
            if keep is None:
                keep = os.environ.get('PLATFORM_TEST_KEEP') == '1'
            if keep or problems:
                sys.stderr.write('harness: keeping %s\n' % self.workdir)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return problems
