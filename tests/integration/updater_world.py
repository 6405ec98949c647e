# SPDX-License-Identifier: Apache-2.0
"""A git deployment for the Updater tests: a bare "origin", a developer clone
that publishes releases, and the working clone the daemon keeps current.

Every release carries three scripts the daemon runs from its config:
  build.sh    appends "build <version>" to actions.log (exit 1 when the release is built to fail;
              waits while <dir>/block-build exists)
  health.sh   exit 0 when health.txt says ok (waits while <dir>/block-health exists)
and the restart command appends "restart <version>" to actions.log. Both are
committed executable, so "./build.sh" runs too. All real processes, real git;
systemd is the real manager (real_systemd.py) or, for fault injection only,
the stand-in (tests/sim/systemd_sim.py).

World(owner='daemon') gives the whole deployment (origin, clone, logs) to an
ordinary user, as on a host where the validator's deploy user owns it.
"""
import pwd
import json
import os
import subprocess
import tempfile
import threading
import time

import harness as H

UPDATER = 'org.platform.Launcher1.Updater'
# The test's own git (root, on deployments an ordinary user may own) trusts
# every repository; GIT_CONFIG_GLOBAL reaches the other side of a local push,
# "-c" would not. The daemon never reads this file.
_TEST_GITCONFIG = os.path.join(tempfile.gettempdir(), 'platform-it-gitconfig')
if not os.path.exists(_TEST_GITCONFIG):
    with open(_TEST_GITCONFIG + '.%d' % os.getpid(), 'w') as _f:
        _f.write('[safe]\n\tdirectory = *\n')
    os.replace(_TEST_GITCONFIG + '.%d' % os.getpid(), _TEST_GITCONFIG)
GIT_ENV = {
    'PATH': '/usr/sbin:/usr/bin:/sbin:/bin',
    'HOME': '/nonexistent',
    'GIT_CONFIG_NOSYSTEM': '1',
    'GIT_CONFIG_GLOBAL': _TEST_GITCONFIG,
    'GIT_AUTHOR_NAME': 'Dev', 'GIT_AUTHOR_EMAIL': 'dev@example.org',
    'GIT_COMMITTER_NAME': 'Dev', 'GIT_COMMITTER_EMAIL': 'dev@example.org',
    'LANG': 'C.UTF-8',
}


def git(cwd, *args, check=True):
    p = subprocess.run(['git', '-C', cwd] + list(args), env=GIT_ENV, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError('git %s: %s' % (' '.join(args), p.stderr))
    return p.stdout.strip()


class World:
    def __init__(self, harness, name='deploy', owner=None):
        self.h = harness
        self.dir = os.path.join(harness.workdir, name)
        os.makedirs(self.dir)
        self.origin = os.path.join(self.dir, 'origin.git')
        self.dev = os.path.join(self.dir, 'dev')
        self.work = os.path.join(self.dir, 'work')
        self.log = os.path.join(self.dir, 'actions.log')
        open(self.log, 'w').close()
        git(self.dir, 'init', '--quiet', '--bare', '--initial-branch=release', self.origin)
        git(self.dir, 'clone', '--quiet', self.origin, self.dev)
        git(self.dev, 'checkout', '--quiet', '-b', 'release')
        self.versions = {}
        self.build_extra = ''
        self.first = self.release('1')
        git(self.dir, 'clone', '--quiet', '--branch', 'release', self.origin, self.work)
        self.owner = owner
        if owner:
            self.chown(owner)

    def chown(self, user):
        """Everything of the deployment to user (its primary group too)."""
        pw = pwd.getpwnam(user)
        for root, dirs, files in os.walk(self.dir):
            for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                os.lchown(n, pw.pw_uid, pw.pw_gid)
        self.uid = pw.pw_uid

    def as_owner(self, *args):
        """git in the working clone as its owner (root would trip git's ownership check)."""
        argv = ['git', '-C', self.work] + list(args)
        if self.owner:
            argv = H.as_user_argv(self.owner, argv)
        p = subprocess.run(argv, env=GIT_ENV, capture_output=True, text=True)
        if p.returncode != 0:
            raise AssertionError('git %s: %s' % (' '.join(args), p.stderr))
        return p.stdout.strip()

    # ---- releases ----

    def release(self, version, health='ok', build_ok=True, sign_key=None):
        """Publish a release on origin/release; returns its commit id."""
        d = self.dir
        files = {
            'version.txt': version + '\n',
            'health.txt': health + '\n',
            'build.sh': ('#!/bin/sh\necho "$(cat version.txt)" > %s/build-started\n'
                         'while [ -f %s/block-build ]; do sleep 0.02; done\n'
                         '%s\n'
                         'echo "build $(cat version.txt)" >> %s\n%s' % (d, d, self.build_extra, self.log,
                                                                          '' if build_ok else 'exit 1\n')),
            'health.sh': ('#!/bin/sh\nwhile [ -f %s/block-health ]; do sleep 0.02; done\n'
                          'test "$(cat health.txt)" = ok\n' % d),
        }
        for name, text in files.items():
            with open(os.path.join(self.dev, name), 'w') as f:
                f.write(text)
            os.chmod(os.path.join(self.dev, name), 0o755)
        git(self.dev, 'add', '-A')
        args = ['commit', '--quiet', '-m', 'release %s' % version]
        if sign_key:
            args = ['-c', 'gpg.format=ssh', '-c', 'user.signingkey=%s' % sign_key] + args + ['-S']
        git(self.dev, *args)
        git(self.dev, 'push', '--quiet', 'origin', 'release')
        sha = git(self.dev, 'rev-parse', 'HEAD')
        if getattr(self, 'owner', None):
            self.chown(self.owner)
        self.versions[sha] = version
        return sha

    def head(self):
        return git(self.work, 'rev-parse', 'HEAD')

    def actions(self):
        with open(self.log) as f:
            return [line.strip() for line in f if line.strip()]

    def clear_actions(self):
        open(self.log, 'w').close()

    def block(self, what, on=True):
        path = os.path.join(self.dir, 'block-' + what)
        if on:
            open(path, 'w').close()
        elif os.path.exists(path):
            os.unlink(path)

    # ---- the daemon ----

    def config(self, **extra):
        c = {
            'env': {},
            'updater_repository': self.work,
            'updater_build_commands': [['sh', 'build.sh']],
            'updater_restart_commands': [['sh', '-c', 'echo "restart $(cat version.txt)" >> %s' % self.log]],
            'updater_health_command': ['sh', 'health.sh'],
            'updater_health_timeout_usec': 3000000,
            'updater_command_timeout_usec': 20000000,
        }
        c.update(extra)
        return c


def updater(d, method, signature=None, args=None, user=None, timeout=60):
    return d.call(method, signature, args, user=user, iface=UPDATER, timeout=timeout)


def prop(d, name):
    return d.get(name, iface=UPDATER)


def wait_prop(d, name, cond, timeout=20, what=None):
    """Poll a property until cond(value); bounded (the daemon's own writes are
    what we wait for, there is no event to subscribe to before it exists)."""
    deadline = time.monotonic() + timeout
    while True:
        v = prop(d, name)
        if cond(v):
            return v
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for %s (%s = %r)' % (what or name, name, v))
        time.sleep(0.02)


def wait_file(path, timeout=20):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for %s' % path)
        time.sleep(0.02)


def apply_async(d, options=None, timeout=60):
    """Apply on a thread; returns (thread, result list)."""
    out = []

    def run():
        out.append(updater(d, 'Apply', 'a{sv}', [options or {}], timeout=timeout))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def updater_signals(d):
    return d.bus.collect(sender=H.DAEMON_NAME, path=H.DAEMON_PATH)


def state_file(d):
    path = os.path.join(d.state_dir, 'updater.json')
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def tree_state(world):
    """What Check / dry-run must not change: HEAD, index, files."""
    files = {}
    for root, dirs, names in os.walk(world.work):
        if '.git' in dirs:
            dirs.remove('.git')
        for n in names:
            p = os.path.join(root, n)
            with open(p, 'rb') as f:
                files[os.path.relpath(p, world.work)] = f.read()
    return (world.head(), git(world.work, 'status', '--porcelain'), git(world.work, 'symbolic-ref', '-q', 'HEAD',
                                                                           check=False), files)


class RealUnits:
    """Units of the real manager (real_systemd.py) to restart, with the
    stand-in's test interface: restarts() in order, fail_unit() the next start
    of a unit, hang_unit() its next starts until released, reset().

    Each is Type=oneshot + RemainAfterExit: its start job ends when its script
    does, so a failing script is a job result "failed" and a waiting one a job
    that never ends, as RestartUnit sees them."""

    def __init__(self, systemd, world, names=('validator', 'validation-api')):
        self.sd, self.dir = systemd, os.path.join(world.dir, 'units')
        os.makedirs(self.dir)
        self.log = os.path.join(self.dir, 'restarts.log')
        open(self.log, 'w').close()
        for name in names:
            unit = name + '.service'
            open(self._path('fail', unit), 'w').write('0\n')
            script = ('echo %(u)s >> %(log)s; while [ -e %(hang)s ]; do sleep 0.02; done; '
                      'n=$(cat %(fail)s); if [ "$n" -gt 0 ]; then echo $((n-1)) > %(fail)s; exit 1; fi'
                      % {'u': unit, 'log': self.log, 'hang': self._path('hang', unit),
                         'fail': self._path('fail', unit)})
            systemd.write(unit, '[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/bin/sh -c \'%s\'\n'
                          % script)
        systemd.reload()

    def _path(self, what, unit):
        return os.path.join(self.dir, '%s-%s' % (what, unit))

    @staticmethod
    def _full(unit):
        return unit if '.' in unit else unit + '.service'

    def restarts(self):
        with open(self.log) as f:
            return f.read().split()

    def reset(self):
        open(self.log, 'w').close()

    def wait_restarted(self, unit, timeout=20):
        deadline = time.monotonic() + timeout
        while unit not in self.restarts():
            if time.monotonic() > deadline:
                raise AssertionError('%s was never started (restarts: %r)' % (unit, self.restarts()))
            time.sleep(0.02)

    def fail_unit(self, unit, result='failed'):
        assert result == 'failed', 'a real unit fails its job with "failed"'
        path = self._path('fail', self._full(unit))
        n = int(open(path).read())
        open(path, 'w').write('%d\n' % (n + 1))

    def hang_unit(self, unit, hang=True):
        path = self._path('hang', self._full(unit))
        if hang:
            open(path, 'w').close()
        elif os.path.exists(path):
            os.unlink(path)
