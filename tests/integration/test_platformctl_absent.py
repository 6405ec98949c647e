# SPDX-License-Identifier: Apache-2.0
"""When the launcher is not running (issue 16, 7): every client says so in one
line naming the unit and the command that starts it, exit 69, whether the bus
knows no such name or tries to activate it through the project's activation
file (dbus/org.platform.Launcher1.service) and fails."""
import os
import shutil
import subprocess

import pytest

import harness as H

PLATFORMCTL = os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platformctl')
PLATFORM = os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platform')
ACTIVATION_FILE = os.path.join(H.SOURCE_DIR, 'dbus', 'org.platform.Launcher1.service')
NOT_RUNNING = 'platform-launcher.service is not running (systemctl start platform-launcher)\n'

CLIENTS = [
    (PLATFORMCTL, 'status'),
    (PLATFORMCTL, 'config', 'show'),
    (PLATFORMCTL, 'vm', 'restart'),
    (PLATFORMCTL, 'updater', 'status'),
    (PLATFORMCTL, 'config', 'set-env', 'KEY', 'value'),
    (PLATFORM, 'config', 'show'),
    (PLATFORM, 'config', 'set-passphrase', 'twelve words'),
]


def run(bus, argv):
    return subprocess.run(list(argv), env=bus.env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=60)


class ActivatingBus(H.PrivateBus):
    """The test bus, plus a service directory holding the project's activation
    file, as /usr/share/dbus-1/system-services holds it on an installed host.
    Without systemd activation (--systemd-activation, which a host's dbus.service
    passes), dbus-daemon runs the file's Exec= itself."""

    def __init__(self, workdir, procs):
        super().__init__(workdir, procs)
        self.services = os.path.join(workdir, 'system-services')
        os.makedirs(self.services)
        shutil.copy(ACTIVATION_FILE, self.services)

    def start(self, timeout=H.DEFAULT_TIMEOUT):
        saved = H.BUS_CONFIG
        H.BUS_CONFIG = saved.replace('</busconfig>', '  <servicedir>%s</servicedir>\n</busconfig>' % self.services)
        try:
            return super().start(timeout)
        finally:
            H.BUS_CONFIG = saved


@pytest.mark.parametrize('argv', CLIENTS, ids=[' '.join([os.path.basename(a[0])] + list(a[1:])) for a in CLIENTS])
def test_no_owner(bus, argv):
    p = run(bus, argv)
    assert (p.returncode, p.stderr) == (69, NOT_RUNNING), p


@pytest.fixture
def activating_bus(harness):
    harness.bus = ActivatingBus(harness.workdir, harness.procs).start()
    return harness.bus


@pytest.mark.parametrize('argv', CLIENTS, ids=[' '.join([os.path.basename(a[0])] + list(a[1:])) for a in CLIENTS])
def test_failed_activation(activating_bus, argv):
    """The bus knows the name and runs Exec=/bin/false: it answers
    "Process org.platform.Launcher1 exited with status 1", which says nothing
    to an operator."""
    p = run(activating_bus, argv)
    assert (p.returncode, p.stderr) == (69, NOT_RUNNING), p


def test_the_bus_really_tries_to_activate(activating_bus):
    names = activating_bus.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                                'ListActivatableNames')
    assert H.DAEMON_NAME in names.result[0], names
    p = subprocess.run(['gdbus', 'call', '--system', '--dest', H.DAEMON_NAME, '--object-path', H.DAEMON_PATH,
                        '--method', 'org.freedesktop.DBus.Peer.Ping'], env=activating_bus.env(),
                       capture_output=True, text=True, timeout=60)
    assert 'org.freedesktop.DBus.Error.Spawn.ChildExited' in p.stderr, p.stderr


def test_activation_hands_over_to_systemd_and_never_runs_a_second_copy():
    """dbus-daemon's rules (bus/activation.c, bus_activation_activate_service):
    with --systemd-activation (a systemd host's system bus) an entry with
    SystemdService= is started by asking systemd for that unit, which runs at
    most once; without it, Exec= is run, and /bin/false starts nothing, so no
    copy of the daemon ever runs outside its unit. User= is required for
    system-bus activation (activation-helper.c)."""
    with open(ACTIVATION_FILE) as f:
        lines = [line.strip() for line in f if line.strip() and not line.startswith('#')]
    assert lines[0] == '[D-BUS Service]'
    entries = dict(line.split('=', 1) for line in lines[1:])
    assert entries == {'Name': H.DAEMON_NAME, 'Exec': '/bin/false', 'User': 'root',
                       'SystemdService': 'platform-launcher.service'}
    unit = open(os.path.join(H.SOURCE_DIR, 'data', 'platform-launcher.service.in')).read()
    assert 'BusName=%s\n' % H.DAEMON_NAME in unit and 'Type=dbus\n' in unit

