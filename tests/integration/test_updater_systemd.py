# SPDX-License-Identifier: Apache-2.0
"""The Updater against a REAL systemd manager (real_systemd.py): its commands
as transient units (--step-runner=systemd) running as the repository's owner,
with the properties issue 15 asks for; the launcher's own unit restarted last
(the daemon itself runs in a unit of that manager); the timeout enforced by
systemd (RuntimeMaxUSec) killing the whole cgroup; and the unit the VMM runs
in, found from its cgroup, refused as a restart unit. RestartUnit order and
failures on real units: test_updater_apply.py."""
import os

import pytest

import harness as H
from real_systemd import real_systemd, unit_daemon, shipped_hardening, SERVICE  # noqa: F401 (the fixture)
from test_updater_user import plant_uid_probes, check_ran_as_owner
from updater_world import World, RealUnits, updater, prop, wait_prop, wait_file, apply_async, state_file

FAILED = 'org.platform.Launcher1.Error.Failed'
INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'
SYSTEMD_RUNNER = ['--step-runner=systemd']


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness, owner='daemon')


def test_commands_are_transient_units_of_the_owner(harness, world, real_systemd):
    sd = real_systemd
    plant_uid_probes(world)
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_command_timeout_usec=30000000), args=SYSTEMD_RUNNER)
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    world.block('build')
    t, out = apply_async(d)
    wait_file(os.path.join(world.dir, 'build-started'))
    units = [u for u, state in sd.transient_units('platform-launcher-build-')]
    assert len(units) == 1, sd.transient_units()
    unit = units[0]
    assert sd.prop(unit, 'User', iface=SERVICE) == 'daemon'
    assert sd.prop(unit, 'WorkingDirectory', iface=SERVICE) == world.work
    assert sd.prop(unit, 'NoNewPrivileges', iface=SERVICE) is True
    assert sd.prop(unit, 'KillMode', iface=SERVICE) == 'control-group'
    assert sd.prop(unit, 'RuntimeMaxUSec', iface=SERVICE) == 30000000
    assert sd.prop(unit, 'UMask', iface=SERVICE) == 0o022
    assert sd.prop(unit, 'CollectMode') == 'inactive-or-failed'
    fields = [bytes(x) for x in sd.prop(unit, 'LogExtraFields', iface=SERVICE)]
    assert b'PLATFORM_LAUNCHER_STEP=build' in fields, fields
    world.block('build', False)
    t.join(60)
    assert out and out[0].ok and out[0].result == (world.first, new), out
    check_ran_as_owner(world)
    # every step's unit was collected once its result was read
    assert sd.transient_units() == []


def test_timeout_is_systemds_and_kills_the_whole_unit(harness, world, real_systemd):
    pidfile = os.path.join(world.dir, 'grandchild.pid')
    world.release('2')
    script = ('if [ "$(cat version.txt)" = 2 ]; then setsid sleep 300 & echo $! > %s; wait; fi; '
              'echo "restart $(cat version.txt)" >> %s' % (pidfile, world.log))
    d = harness.daemon(config=world.config(updater_restart_commands=[['sh', '-c', script]],
                                           updater_command_timeout_usec=1000000), args=SYSTEMD_RUNNER)
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED, r
    assert 'timed out after 1.0 s' in r.error_message and 'rolled back' in r.error_message, r.error_message
    with open(pidfile) as f:
        pid = int(f.read())
    assert not H._pid_alive(pid), 'a setsid grandchild survived the unit'
    assert world.head() == world.first
    assert world.actions() == ['build 2', 'build 1', 'restart 1']


def test_own_unit_restarted_last_for_real(harness, world, real_systemd):
    """The daemon runs in a unit of the real manager; its own unit in
    UpdaterRestartUnits is restarted after everything else, and the new
    process finishes the transaction (health check, commit)."""
    sd = real_systemd
    units = RealUnits(sd, world)
    new = world.release('2')
    cfg = world.config(updater_restart_units=['platform-launcher-test', 'validator'])
    with harness.bus.collect(sender=H.DAEMON_NAME, path=H.DAEMON_PATH, member='UpdateApplied') as sc:
        d = unit_daemon(harness, sd, cfg)
        wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
        first_pid = d.main_pid()
        t, out = apply_async(d)
        s = sc.wait_for(lambda s: True, timeout=60, what='UpdateApplied from the restarted launcher')
    assert s.args == (world.first, new)
    t.join(30)
    assert d.main_pid() != first_pid and d.running()
    assert prop(d, 'LastGoodCommit') == new and prop(d, 'State') == 'idle'
    assert 'transaction' not in state_file(d)
    # the units and the commands first, the launcher itself last
    assert units.restarts() == ['validator.service']
    assert world.actions() == ['build 2', 'restart 2']
    log = d.log_text()
    assert log.index("Restarting the launcher's own unit") > log.index('Unit validator.service restarted')
    assert 'Finishing the apply' in log


def test_the_vmms_unit_is_refused(harness, world, real_systemd):
    """D10: whatever the VMM's unit is called, the one it runs in (from its
    cgroup) is not a restart unit: a unix socket (SO_PEERCRED) and a loopback
    port (/proc/net/tcp)."""
    sd = real_systemd
    sock = os.path.join(world.dir, 'vmm.sock')
    port_file = os.path.join(world.dir, 'vmm.port')
    script = os.path.join(world.dir, 'vmm.py')
    with open(script, 'w') as f:
        f.write('import socket, os, time\n'
                's = socket.socket(socket.AF_UNIX); s.bind(%r); s.listen(5)\n'
                't = socket.socket(); t.bind(("127.0.0.1", 0)); t.listen(5)\n'
                'open(%r + ".tmp", "w").write(str(t.getsockname()[1])); os.rename(%r + ".tmp", %r)\n'
                'time.sleep(3600)\n' % (sock, port_file, port_file, port_file))
    sd.add_unit('my-vmm.service', '[Service]\nExecStart=/usr/bin/python3 %s\n' % script)
    assert sd.start_unit('my-vmm.service') == 'done'
    wait_file(port_file)
    with open(port_file) as f:
        port = int(f.read())
    d = harness.daemon(config=world.config(), args=SYSTEMD_RUNNER)
    for url in ('unix:' + sock, 'http://127.0.0.1:%d' % port, 'http://localhost:%d/' % port):
        r = d.call('SetSettings', 'a{sv}', [{'VmmUrl': ['s', url], 'UpdaterRestartUnits': ['as', ['my-vmm']]}])
        assert not r.ok and r.error_name == INVALID_ARGS, (url, r)
        assert 'my-vmm is the unit the VMM at %s runs in' % url in r.error_message, r.error_message
    # another unit is fine, and so is a VMM elsewhere
    r = d.call('SetSettings', 'a{sv}', [{'VmmUrl': ['s', 'unix:' + sock], 'UpdaterRestartUnits': ['as', ['validator']]}])
    assert r.ok, r
    r = d.call('SetSettings', 'a{sv}', [{'VmmUrl': ['s', 'http://192.0.2.1:10300'],
                                         'UpdaterRestartUnits': ['as', ['my-vmm']]}])
    assert r.ok, r


def test_hardened_daemon_updates_as_the_owner(harness, world, real_systemd):
    """The daemon in its shipped sandbox (PrivateUsers=, ProtectSystem=strict, no
    capabilities, MemoryDenyWriteExecute=, the system call filter; no drop-in):
    it cannot see who owns the repository (PrivateUsers= shows uid 1 as
    nobody), asks systemd (the owner probe), and every command still runs as the
    owner, in units of its own."""
    plant_uid_probes(world)
    new = world.release('2')
    lines = shipped_hardening([os.path.join(harness.workdir, 'platform-launcherd')])
    assert 'PrivateUsers=yes' in lines and 'ProtectSystem=strict' in lines and 'MemoryDenyWriteExecute=yes' in lines
    # (an ASan build: LeakSanitizer needs ptrace, which the system call filter
    # refuses; every other test checks for leaks)
    d = unit_daemon(harness, real_systemd, world.config(), service_lines=lines,
                    env={'PLATFORM_LAUNCHER_LOG_LEVEL': 'debug', 'ASAN_OPTIONS': 'detect_leaks=0'})
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result == (world.first, new), r
    check_ran_as_owner(world)
    # PrivateUsers= hid the owner: systemd's view was asked for
    assert 'owner probe: started' in d.log_text(), d.log_text()[-3000:]
    assert d.get('ConfigError') == ''
    # root is refused even though the owner cannot be named from in here
    r = d.call('SetSettings', 'a{sv}', [{'UpdaterUser': ['s', 'root']}])
    assert not r.ok and r.error_name == INVALID_ARGS and 'a user other than root' in r.error_message, r


def test_hardened_daemon_refuses_root_in_a_shared_repository(harness, bus, polkit, daemon_binary, real_systemd):
    """In the shipped sandbox too (PrivateUsers= shows root as root, and modes
    as they are): root's repository whose .git a group may write
    (git init --shared=group) runs nothing, as root or otherwise."""
    from test_updater_user import _share_with_group
    world = World(harness)                                   # root's
    os.chmod(harness.workdir, 0o755)
    _share_with_group(os.path.join(world.work, '.git'))
    lines = shipped_hardening([os.path.join(harness.workdir, 'platform-launcherd')])
    assert 'PrivateUsers=yes' in lines
    d = unit_daemon(harness, real_systemd, world.config(), service_lines=lines,
                    env={'ASAN_OPTIONS': 'detect_leaks=0'})
    wait_prop(d, 'State', lambda v: v == 'failed')
    err = d.get('ConfigError')
    assert os.path.join(world.work, '.git') + ' is writable by group' in err, err
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED, r
    assert prop(d, 'CurrentCommit') == ''
