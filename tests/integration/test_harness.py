# SPDX-License-Identifier: Apache-2.0
"""Self-tests of the integration harness, with systemd-hostnamed and polkitd as
the services under test (they exist on every CI machine; the daemon may not)."""
import os
import time
import xml.etree.ElementTree as ET

import pytest

import harness as H
from conftest import require_root

DBUS = ('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus')


def project_action_ids():
    root = ET.parse(os.path.join(H.SOURCE_DIR, 'polkit', 'org.platform.launcher1.policy')).getroot()
    return [a.get('id') for a in root.findall('action')]


def request_name(bus, name, user=None):
    return bus.call(*DBUS, 'RequestName', 'su', [name, 4], user=user)


def test_bus_has_real_system_and_project_policy(bus):
    require_root('owning org.platform.Launcher1')
    assert bus.address.startswith('unix:path=' + bus.socket)
    # The project's policy lets root own the name...
    r = request_name(bus, H.DAEMON_NAME)
    assert r.ok and r.result == (1,), r
    # ...and nobody else (error name via the Gio client and via gdbus).
    r = request_name(bus, H.DAEMON_NAME, user='nobody')
    assert r.error_name == 'org.freedesktop.DBus.Error.AccessDenied', r
    r = H.gdbus_call(bus, *DBUS[:2], 'org.freedesktop.DBus.RequestName', H.DAEMON_NAME, '4', user='nobody')
    assert r.error_name == 'org.freedesktop.DBus.Error.AccessDenied', r
    # The system default (deny own="*") holds for root too.
    r = request_name(bus, 'org.example.NotAllowed')
    assert r.error_name == 'org.freedesktop.DBus.Error.AccessDenied', r
    # Root may monitor, nobody may not.
    r = bus.call(*DBUS[:2], 'org.freedesktop.DBus.Monitoring', 'BecomeMonitor', 'asu', [[], 0], user='nobody')
    assert r.error_name == 'org.freedesktop.DBus.Error.AccessDenied', r


def test_bus_socket_reachable_by_unprivileged_users(bus):
    for user in ('nobody', 'daemon'):
        r = bus.call(*DBUS, 'GetConnectionUnixUser', 's', ['org.freedesktop.DBus'], user=user)
        assert r.ok, (user, r)


def test_polkit_registers_project_actions(polkit, bus):
    r = bus.call(H.POLKIT_NAME, H.POLKIT_PATH, H.POLKIT_IFACE, 'EnumerateActions', 's', [''])
    assert r.ok, r
    ids = {a[0] for a in r.result[0]}
    assert set(project_action_ids()) <= ids
    assert 'org.freedesktop.hostname1.set-static-hostname' in ids  # distro files staged too


def test_polkit_denies_nobody_until_a_rule_grants(polkit, harness):
    nobody = harness.subject_process('nobody')
    actions = project_action_ids()
    assert actions
    for a in actions:
        assert polkit.check_authorization(a, nobody.pid)[:2] == (False, True), a
    # Root is authorized without rules.
    assert polkit.check_authorization(actions[0], os.getpid())[0] is True

    before = sorted(os.listdir('/etc/polkit-1/rules.d'))
    granted = 'org.platform.launcher1.configure'
    polkit.allow(granted, user='nobody')           # waits for Authority.Changed
    assert polkit.check_authorization(granted, nobody.pid)[:2] == (True, False)
    for a in actions:
        if a != granted:
            assert polkit.check_authorization(a, nobody.pid)[0] is False, a
    # The host's rules directory did not change (staged + bind-mounted).
    assert sorted(os.listdir('/etc/polkit-1/rules.d')) == before

    polkit.remove_rule('50-harness-nobody-' + granted)
    assert polkit.check_authorization(granted, nobody.pid)[:2] == (False, True)

    # A rule can also decide on details (what the daemon passes: VM name, env key).
    polkit.add_rule('60-details', '''
polkit.addRule(function(action, subject) {
    if (action.id == "org.platform.launcher1.read-secrets" &&
        action.lookup("key") == "PUBLIC_KEY" && subject.user == "nobody")
        return polkit.Result.YES;
});
''')
    pid = nobody.pid
    assert polkit.check_authorization('org.platform.launcher1.read-secrets', pid, {'key': 'PUBLIC_KEY'})[0]
    assert not polkit.check_authorization('org.platform.launcher1.read-secrets', pid, {'key': 'SECRET'})[0]


def test_nobody_gets_polkit_error_name_from_gated_call(polkit, hostnamed, bus):
    """A real polkit-gated method, end to end: bus -> hostnamed -> polkitd -> rules."""
    hn = hostnamed
    r = bus.get_property(hn.NAME, hn.PATH, hn.IFACE, 'Hostname', user='nobody')
    assert r.ok and r.result, r
    r = bus.call(hn.NAME, hn.PATH, hn.IFACE, 'SetPrettyHostname', 'sb', ['harness-test', False], user='nobody')
    assert r.error_name == 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired', r
    r = H.gdbus_call(bus, hn.NAME, hn.PATH, hn.IFACE + '.SetPrettyHostname', 'harness-test', 'false', user='nobody')
    assert r.error_name == 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired', r

    # systemd 252 checks set-static-hostname for SetPrettyHostname.
    polkit.allow('org.freedesktop.hostname1.set-static-hostname', user='nobody')
    r = bus.call(hn.NAME, hn.PATH, hn.IFACE, 'SetPrettyHostname', 'sb', ['harness-test', False], user='nobody')
    # Authorized now; the write fails because hostnamed sees /etc read-only.
    assert r.error_name == 'org.freedesktop.hostname1.ReadOnlyFilesystem', r
    # Another unprivileged user is still refused.
    r = bus.call(hn.NAME, hn.PATH, hn.IFACE, 'SetPrettyHostname', 'sb', ['harness-test', False], user='daemon')
    assert r.error_name == 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired', r


def test_two_worlds_do_not_interfere(polkit, harness):
    """Parallel tests each have their own bus and polkitd: a rule in one world
    changes nothing in the other."""
    other = H.Harness()
    try:
        other.start_bus()
        other_pk = other.start_polkit('real')
        nobody = harness.subject_process('nobody')
        action = 'org.platform.launcher1.manage-vm'
        polkit.allow(action, user='nobody')
        assert polkit.check_authorization(action, nobody.pid)[0] is True
        assert other_pk.check_authorization(action, nobody.pid)[0] is False
        assert other.bus.address != harness.bus.address
        assert other.bus.name_owner(H.POLKIT_NAME) and harness.bus.name_owner(H.POLKIT_NAME)
    finally:
        assert other.cleanup() == []


def test_without_polkit_the_authority_is_absent(bus):
    """start_polkit(None): nothing owns org.freedesktop.PolicyKit1 and there is no
    activation, so a daemon asking polkit gets ServiceUnknown (must fail closed)."""
    r = bus.call(H.POLKIT_NAME, H.POLKIT_PATH, H.POLKIT_IFACE, 'EnumerateActions', 's', [''])
    assert r.error_name == 'org.freedesktop.DBus.Error.ServiceUnknown', r


def test_mock_polkit_allow_delay_hang(mock_polkit, bus, harness):
    check = (H.POLKIT_NAME, H.POLKIT_PATH, H.POLKIT_IFACE, 'CheckAuthorization', '(sa{sv})sa{ss}us')
    subject = ['system-bus-name', {'name': ['s', ':1.0']}]

    def ask(action):
        r = bus.call(*check, [subject, action, {}, 0, ''], user='nobody')
        assert r.ok, r
        return r.result[0][0]
    assert ask('org.platform.launcher1.configure') is False
    mock_polkit.allow('org.platform.launcher1.configure')
    assert ask('org.platform.launcher1.configure') is True

    # A hanging authorization: the call stays pending until released.
    mock_polkit.hang(True)
    conn = bus.connect()
    from gi.repository import GLib
    ctx = GLib.MainContext.new()
    ctx.push_thread_default()
    done = []
    try:
        conn.call(H.POLKIT_NAME, H.POLKIT_PATH, H.POLKIT_IFACE, 'CheckAuthorization',
                  H.to_variant('((sa{sv})sa{ss}us)', [subject, 'org.platform.launcher1.configure', {}, 0, '']),
                  None, 0, 10000, None, lambda c, res: done.append(c.call_finish(res).unpack()))
    finally:
        ctx.pop_thread_default()
    H._wait_loop(ctx, lambda: mock_polkit.has_hanging_calls(), 5, 'the call to hang')
    assert not done
    mock_polkit.release()
    H._wait_loop(ctx, lambda: bool(done), 5, 'the released reply')
    assert done[0][0][0] is True
    conn.close_sync(None)


def test_signal_collector_sees_properties_changed(mock_polkit, bus):
    """Subscribe, act, wait on a condition: PropertiesChanged from a dbusmock object."""
    with bus.collect(sender=H.POLKIT_NAME, path=H.POLKIT_PATH,
                     interface='org.freedesktop.DBus.Properties', member='PropertiesChanged') as sc:
        r = bus.call(H.POLKIT_NAME, H.POLKIT_PATH, 'org.freedesktop.DBus.Properties', 'Set', 'ssv',
                     [H.POLKIT_IFACE, 'BackendName', ['s', 'harness']])
        assert r.ok, r
        s = sc.wait_for(lambda s: s.args[1].get('BackendName') == 'harness', timeout=5)
        assert s.args[0] == H.POLKIT_IFACE
    r = bus.get_property(H.POLKIT_NAME, H.POLKIT_PATH, H.POLKIT_IFACE, 'BackendName', user='nobody')
    assert r.ok and r.result == 'harness', r


def test_wait_times_out_and_dead_process_is_reported(bus, harness):
    t = time.monotonic()
    with pytest.raises(TimeoutError):
        bus.wait_for_name('org.example.Never', timeout=0.3)
    assert time.monotonic() - t < 2
    d = harness.daemon(binary='/bin/false', start=False, config={})
    t = time.monotonic()
    with pytest.raises(H.HarnessError, match='exited with 1'):
        d.start(timeout=10)
    assert time.monotonic() - t < 2   # not the 10 s timeout


def test_cleanup_leaves_no_processes_or_files():
    require_root('the full stack')
    h = H.Harness()
    try:
        bus = h.start_bus()
        h.start_polkit('real')
        h.hostnamed()
        h.subject_process('nobody')
        pids = h.procs.pids()
        assert len(pids) >= 4 and all(H._pid_alive(p) for p in pids)
        workdir = h.workdir
    finally:
        problems = h.cleanup(keep=False)
    assert problems == []
    assert not any(H._pid_alive(p) for p in pids)
    assert not os.path.exists(workdir)
    # The polkit bind mounts lived only in polkitd's namespace.
    mounts = open('/proc/self/mountinfo').read()
    assert ' /usr/share/polkit-1/actions ' not in mounts and ' /etc/polkit-1/rules.d ' not in mounts
    assert not os.path.exists(bus.socket)


def test_daemon_starts_answers_and_stops_cleanly(daemon, bus):
    """Runs only once platform-launcherd is built; otherwise skipped with a reason."""
    r = daemon.get('ApiUrl', user='nobody')
    assert r.ok and isinstance(r.result, str), r
    assert daemon.get('ApiUrl') == r.result
    assert daemon.stop() == 0
    bus.wait_for_name(H.DAEMON_NAME, gone=True)
    # kill -9 and start again on the same state and config.
    daemon.start()
    assert daemon.kill() == -9
    assert bus.name_owner(H.DAEMON_NAME) is None
    daemon.start()
    assert daemon.get('ApiUrl') == r.result
