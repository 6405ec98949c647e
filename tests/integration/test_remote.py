# SPDX-License-Identifier: Apache-2.0
"""platformctl -H over real SSH, by systemd's own mechanism.

sd-bus (systemd 252) turns -H [USER@]HOST[:PORT] into the address
    unixexec:path=ssh,argv1=-xT,argv2=-p,argv3=PORT,argv4=--,argv5=HOST,argv6=systemd-stdio-bridge
and runs it with execvp. The test starts a real sshd (Debian's openssh-server)
on 127.0.0.1 with its own host key and authorized_keys, and nothing of the
host's ssh configuration is used or changed:
- client side: "ssh" is found on PATH, so a two-line wrapper first on PATH adds
  "-F <the test's ssh_config>" (identity, known_hosts, batch mode) and execs the
  real /usr/bin/ssh with sd-bus's arguments unchanged;
- server side: the remote host's "system bus" is the test's private bus, so the
  test sshd's ForceCommand runs the real systemd-stdio-bridge with
  --bus-path pointing at it (what the remote command would reach on a host).
"""
import os
import shutil
import socket
import subprocess
import time

import pytest

import harness as H
from conftest import require_root
from launcher import RUST_CONFIG

PLATFORMCTL = os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platformctl')
SSHD = '/usr/sbin/sshd'
BRIDGE = shutil.which('systemd-stdio-bridge') or '/usr/bin/systemd-stdio-bridge'


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class Sshd:
    def __init__(self, harness, bus):
        require_root('sshd logging in as root')
        for tool in (SSHD, '/usr/bin/ssh', '/usr/bin/ssh-keygen', BRIDGE):
            if not os.path.exists(tool):
                pytest.skip('%s is not installed (openssh-server, openssh-client, systemd)' % tool)
        d = self.dir = os.path.join(harness.workdir, 'ssh')
        os.makedirs(d)
        os.chmod(d, 0o700)
        for name in ('host_key', 'client_key'):
            subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', os.path.join(d, name)],
                           check=True)
        with open(os.path.join(d, 'client_key.pub')) as f, open(os.path.join(d, 'authorized_keys'), 'w') as a:
            a.write(f.read())
        self.port = free_port()
        with open(os.path.join(d, 'host_key.pub')) as f:
            host_pub = ' '.join(f.read().split()[:2])
        with open(os.path.join(d, 'known_hosts'), 'w') as f:
            f.write('[127.0.0.1]:%d %s\n' % (self.port, host_pub))
        with open(os.path.join(d, 'sshd_config'), 'w') as f:
            f.write('\n'.join([
                'Port %d' % self.port, 'ListenAddress 127.0.0.1', 'HostKey %s/host_key' % d,
                'PidFile none', 'AuthorizedKeysFile %s/authorized_keys' % d,
                'PermitRootLogin prohibit-password', 'PasswordAuthentication no',
                'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no', 'LogLevel VERBOSE',
                'ForceCommand %s --bus-path=unix:path=%s' % (BRIDGE, bus.socket), '']))
        with open(os.path.join(d, 'ssh_config'), 'w') as f:
            f.write('\n'.join([
                'Host *', '  IdentityFile %s/client_key' % d, '  IdentitiesOnly yes',
                '  UserKnownHostsFile %s/known_hosts' % d, '  GlobalKnownHostsFile /dev/null',
                '  StrictHostKeyChecking yes', '  BatchMode yes', '  ConnectTimeout 10', '  LogLevel ERROR', '']))
        bindir = os.path.join(d, 'bin')
        os.makedirs(bindir)
        wrapper = os.path.join(bindir, 'ssh')
        with open(wrapper, 'w') as f:
            f.write('#!/bin/sh\nexec /usr/bin/ssh -F %s/ssh_config "$@"\n' % d)
        os.chmod(wrapper, 0o755)
        self.path = bindir + ':' + os.environ.get('PATH', '/usr/bin:/bin')
        # Privilege separation needs this directory (the packaged unit creates it).
        os.makedirs('/run/sshd', mode=0o755, exist_ok=True)
        self.log = os.path.join(d, 'sshd.log')
        self.proc = harness.spawn('sshd', [SSHD, '-D', '-e', '-f', os.path.join(d, 'sshd_config')],
                                  stdout=subprocess.DEVNULL, stderr=open(self.log, 'wb'))
        self.wait_listening()

    def wait_listening(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError('sshd exited: %s' % self.log_text())
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=1):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError('sshd is not listening: %s' % self.log_text())
                time.sleep(0.05)  # polling a port until a bounded deadline

    def log_text(self):
        with open(self.log, errors='replace') as f:
            return f.read()

    def ctl(self, *args, host=None, stdin=None):
        """platformctl -H on the test's PATH; no DBUS_SYSTEM_BUS_ADDRESS: only ssh leads to the bus."""
        env = {'PATH': self.path, 'LANG': 'C.UTF-8'}
        return subprocess.run([PLATFORMCTL, '-H', host or 'root@127.0.0.1:%d' % self.port] + list(args),
                              env=env, input=stdin, capture_output=True, text=True, timeout=60)


def test_status_and_a_change_over_ssh(daemon, bus, harness):
    sshd = Sshd(harness, bus)
    p = sshd.ctl('status')
    assert p.returncode == 0, (p.stderr, sshd.log_text())
    assert 'Env keys: HOTKEY_PASSPHRASE VALIDATOR_BASE_URL' in p.stdout, p.stdout
    assert 'Accepted publickey for root from 127.0.0.1' in sshd.log_text()
    # A write goes through too (root on the remote side: polkit is not asked).
    p = sshd.ctl('config', 'set-env', 'REMOTE_KEY', '-', stdin='remote-value\n')
    assert p.returncode == 0, p.stderr
    assert 'REMOTE_KEY' in daemon.get('EnvKeys')
    p = sshd.ctl('--json', 'config', 'get-env', 'REMOTE_KEY')
    assert p.returncode == 0 and p.stdout == 'remote-value\n', p


def test_unreachable_host_exits_69(bus, harness):
    sshd = Sshd(harness, bus)
    closed = free_port()
    p = sshd.ctl('status', host='root@127.0.0.1:%d' % closed)
    assert p.returncode == 69, p
    # ssh's own words (as with systemctl -H), then ours on one line.
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith('Cannot reach the system bus of root@127.0.0.1:%d over SSH: ' % closed), p.stderr
    assert 'Connection refused' in p.stderr and len(lines) == 2, p.stderr


def test_remote_without_the_launcher_names_the_unit(bus, harness):
    sshd = Sshd(harness, bus)
    p = sshd.ctl('status')
    assert p.returncode == 69, p
    assert p.stderr == ('platform-launcher.service is not running on root@127.0.0.1:%d '
                        '(systemctl -H root@127.0.0.1:%d start platform-launcher)\n' % (sshd.port, sshd.port)), p.stderr
