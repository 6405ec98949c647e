# SPDX-License-Identifier: Apache-2.0
"""PropertiesChanged really arrives for every property that changes, and only then."""
import pytest

from launcher import SECRET, properties_changed


SETTINGS = [
    ('ApiUrl', 's', 'http://127.0.0.1:8080/config/compose/validator_vm'),
    ('VmmUrl', 's', 'unix:/run/dstack/vmm.sock'),
    ('GuestVmmUrl', 's', 'http://10.0.2.2:16850/'),
    ('PollIntervalUSec', 't', 30000000),
    ('StopTimeoutUSec', 't', 90000000),
    ('UpdateStrategy', 's', 'in-place'),
]


def changed(sig):
    return dict(sig.args[1]), list(sig.args[2])


@pytest.mark.parametrize('prop,sig,value', SETTINGS, ids=[s[0] for s in SETTINGS])
def test_setting_change_is_signalled(daemon, bus, prop, sig, value):
    with properties_changed(bus) as sc:
        assert daemon.call('SetSettings', 'a{sv}', [{prop: [sig, value]}]).ok
        sc.wait_for(lambda s: s.args[0] == 'org.platform.Launcher1.Config' and
                    (changed(s)[0].get(prop) == value or prop in changed(s)[1]))
    assert daemon.get(prop) == value


def test_several_settings_one_signal(daemon, bus):
    with properties_changed(bus) as sc:
        assert daemon.call('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', 10000000],
                                                       'UpdateStrategy': ['s', 'in-place']}]).ok
        sc.wait_for(lambda s: {'PollIntervalUSec', 'UpdateStrategy'} <= set(changed(s)[0]) | set(changed(s)[1]))


def test_env_keys_signalled_on_set_and_remove(daemon, bus):
    with properties_changed(bus) as sc:
        assert daemon.call('SetEnv', 'ss', ['ALPHA', SECRET + 'a']).ok
        sc.wait_for(lambda s: 'ALPHA' in changed(s)[0].get('EnvKeys', []))
        for s in sc.signals:  # values never travel in signals
            assert SECRET not in repr(s.args)
    with properties_changed(bus) as sc:
        assert daemon.call('RemoveEnv', 's', ['ALPHA']).ok
        sc.wait_for(lambda s: 'EnvKeys' in changed(s)[0] and 'ALPHA' not in changed(s)[0]['EnvKeys'])


def test_no_signal_when_nothing_changes(daemon, bus):
    assert daemon.call('SetEnv', 'ss', ['SAME', SECRET + 's']).ok
    assert daemon.call('SetSettings', 'a{sv}', [{'UpdateStrategy': ['s', 'in-place']}]).ok
    with properties_changed(bus) as sc:
        assert daemon.call('SetEnv', 'ss', ['SAME', SECRET + 's']).ok
        assert daemon.call('SetSettings', 'a{sv}', [{'UpdateStrategy': ['s', 'in-place']}]).ok
        # A change afterwards proves the collector was live: it must be the only signal.
        assert daemon.call('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', 6000000]}]).ok
        sc.wait_for(lambda s: 'PollIntervalUSec' in changed(s)[0])
        assert len(sc.signals) == 1, sc.signals


def test_changing_a_secret_value_signals_nothing_public(daemon, bus):
    """A new value for an existing key changes no property (values are never exported)."""
    assert daemon.call('SetEnv', 'ss', ['KEY', SECRET + 'one']).ok
    with properties_changed(bus) as sc:
        assert daemon.call('SetEnv', 'ss', ['KEY', SECRET + 'two']).ok
        assert daemon.call('SetSettings', 'a{sv}', [{'StopTimeoutUSec': ['t', 61000000]}]).ok
        sc.wait_for(lambda s: 'StopTimeoutUSec' in changed(s)[0])
        assert len(sc.signals) == 1, sc.signals
    assert daemon.call('GetEnv', 's', ['KEY']).result == (SECRET + 'two',)


def test_log_control(daemon, bus):
    path, iface = '/org/freedesktop/LogControl1', 'org.freedesktop.LogControl1'
    assert daemon.get('LogLevel', iface=iface, path=path) == 'info'
    assert daemon.get('SyslogIdentifier', iface=iface, path=path) == 'platform-launcherd'
    r = daemon.call('Set', 'ssv', [iface, 'LogLevel', ['s', 'debug']], iface='org.freedesktop.DBus.Properties',
                    path=path)
    assert r.ok, r
    assert daemon.get('LogLevel', iface=iface, path=path) == 'debug'
    r = daemon.call('Set', 'ssv', [iface, 'LogLevel', ['s', 'loud']], iface='org.freedesktop.DBus.Properties',
                    path=path)
    assert r.error_name == 'org.freedesktop.DBus.Error.InvalidArgs', r
    r = daemon.call('Set', 'ssv', [iface, 'LogTarget', ['s', 'console']], iface='org.freedesktop.DBus.Properties',
                    path=path)
    assert r.ok, r
    # Only root may change it.
    r = daemon.call('Set', 'ssv', [iface, 'LogLevel', ['s', 'err']], iface='org.freedesktop.DBus.Properties',
                    path=path, user='nobody')
    assert not r.ok and r.error_name == 'org.freedesktop.DBus.Error.AccessDenied', r
    assert daemon.get('LogLevel', iface=iface, path=path) == 'debug'
