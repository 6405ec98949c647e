# SPDX-License-Identifier: Apache-2.0
"""A git deployment for the Updater tests: a bare "origin", a developer clone
that publishes releases, and the working clone the daemon keeps current.

Every release carries three scripts the daemon runs from its config:
  build.sh    appends "build <version>" to actions.log (exit 1 when the release is built to fail;
              waits while <dir>/block-build exists)
  health.sh   exit 0 when health.txt says ok (waits while <dir>/block-health exists)
and the restart command appends "restart <version>" to actions.log. All real
processes, real git; nothing is simulated but systemd (tests/sim/systemd_sim.py).
"""
import json
import os
import subprocess
import threading
import time

import harness as H

UPDATER = 'org.platform.Launcher1.Updater'
GIT_ENV = {
    'PATH': '/usr/sbin:/usr/bin:/sbin:/bin',
    'HOME': '/nonexistent',
    'GIT_CONFIG_NOSYSTEM': '1',
    'GIT_CONFIG_GLOBAL': '/dev/null',
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
    def __init__(self, harness, name='deploy'):
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
        self.first = self.release('1')
        git(self.dir, 'clone', '--quiet', '--branch', 'release', self.origin, self.work)

    # ---- releases ----

    def release(self, version, health='ok', build_ok=True, sign_key=None):
        """Publish a release on origin/release; returns its commit id."""
        d = self.dir
        files = {
            'version.txt': version + '\n',
            'health.txt': health + '\n',
            'build.sh': ('echo "$(cat version.txt)" > %s/build-started\n'
                         'while [ -f %s/block-build ]; do sleep 0.02; done\n'
                         'echo "build $(cat version.txt)" >> %s\n%s' % (d, d, self.log,
                                                                          '' if build_ok else 'exit 1\n')),
            'health.sh': ('while [ -f %s/block-health ]; do sleep 0.02; done\n'
                          'test "$(cat health.txt)" = ok\n' % d),
        }
        for name, text in files.items():
            with open(os.path.join(self.dev, name), 'w') as f:
                f.write(text)
        git(self.dev, 'add', '-A')
        args = ['commit', '--quiet', '-m', 'release %s' % version]
        if sign_key:
            args = ['-c', 'gpg.format=ssh', '-c', 'user.signingkey=%s' % sign_key] + args + ['-S']
        git(self.dev, *args)
        git(self.dev, 'push', '--quiet', 'origin', 'release')
        sha = git(self.dev, 'rev-parse', 'HEAD')
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
