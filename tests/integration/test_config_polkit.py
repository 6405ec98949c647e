# SPDX-License-Identifier: Apache-2.0
"""Authorization of every privileged Config method, through real polkitd."""
import json
import subprocess

import pytest
from gi.repository import GLib

import harness as H
from launcher import (PRIVILEGED, RUST_CONFIG, SECRET, CONFIGURE, READ_SECRETS, ACCESS_DENIED,
                      denied, file_state, assert_no_secret_logged)


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


@pytest.mark.parametrize('method,sig,args,action', PRIVILEGED, ids=[p[0] for p in PRIVILEGED])
def test_nobody_denied_and_nothing_changes(daemon, method, sig, args, action):
    before = file_state(daemon.config_path)
    keys = daemon.get('EnvKeys')
    r = daemon.call(method, sig, args, user='nobody')
    assert denied(r), r
    assert 'S3CRET' not in (r.error_message or '')
    assert file_state(daemon.config_path) == before
    assert daemon.get('EnvKeys') == keys
    assert daemon.get('PollIntervalUSec') == 5000000
    assert_no_secret_logged(daemon)


@pytest.mark.parametrize('method,sig,args,action', PRIVILEGED, ids=[p[0] for p in PRIVILEGED])
def test_nobody_allowed_by_rule(daemon, polkit, method, sig, args, action):
    polkit.allow(action, user='nobody')
    r = daemon.call(method, sig, args, user='nobody')
    assert r.ok, r
    if method == 'GetEnv':
        assert r.result == (SECRET + 'hotkey words here',)
    assert_no_secret_logged(daemon)


@pytest.mark.parametrize('method,sig,args,action', PRIVILEGED, ids=[p[0] for p in PRIVILEGED])
def test_root_allowed(daemon, method, sig, args, action):
    r = daemon.call(method, sig, args)
    assert r.ok, r


def test_rule_for_other_action_does_not_grant(daemon, polkit):
    polkit.allow(CONFIGURE, user='nobody')
    r = daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE'], user='nobody')
    assert denied(r), r


def test_env_key_detail_reaches_polkit(daemon, polkit):
    """A rule can grant one key only: the daemon passes env_key to polkit."""
    polkit.add_rule('50-one-key.rules', """
polkit.addRule(function(action, subject) {
    if (action.id == "%s" && action.lookup("env_key") == "VALIDATOR_BASE_URL")
        return polkit.Result.YES;
});""" % READ_SECRETS)
    ok = daemon.call('GetEnv', 's', ['VALIDATOR_BASE_URL'], user='nobody')
    assert ok.ok and ok.result == ('https://validator.example',), ok
    assert denied(daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE'], user='nobody'))


def test_auth_admin_is_a_challenge_not_allowed(daemon, polkit):
    """An auth_admin result must never be taken as yes, interactive or not."""
    polkit.add_rule('50-challenge.rules', """
polkit.addRule(function(action, subject) {
    if (action.id == "%s") return polkit.Result.AUTH_ADMIN;
});""" % CONFIGURE)
    before = file_state(daemon.config_path)
    r = daemon.call('SetEnv', 'ss', ['X', SECRET + 'x'], user='nobody')
    assert denied(r), r
    assert file_state(daemon.config_path) == before


def test_polkit_absent_is_denied(bus, harness, daemon_binary):
    d = harness.daemon(config=RUST_CONFIG)
    before = file_state(d.config_path)
    for method, sig, args, _ in PRIVILEGED:
        r = d.call(method, sig, args, user='nobody')
        assert not r.ok and r.error_name == ACCESS_DENIED, (method, r)
    assert file_state(d.config_path) == before
    # Root needs no polkit.
    assert d.call('SetEnv', 'ss', ['ROOT_KEY', SECRET + 'root']).ok
    assert 'ROOT_KEY' in d.get('EnvKeys')
    assert_no_secret_logged(d)


def test_unprivileged_reads_are_open(daemon):
    for prop in ('ApiUrl', 'VmmUrl', 'GuestVmmUrl', 'PollIntervalUSec', 'StopTimeoutUSec', 'UpdateStrategy',
                 'EnvKeys', 'RequiredEnv', 'MissingEnv', 'ConfigPath', 'ConfigError'):
        r = daemon.get(prop, user='nobody')
        assert r.ok, (prop, r)
    assert daemon.get('EnvKeys', user='nobody').result == ['HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL']


def test_pending_authorization_does_not_block_reads(bus, harness, daemon_binary):
    """While polkit sits on a CheckAuthorization, the daemon keeps serving."""
    mock = harness.start_polkit('mock')
    d = harness.daemon(config=RUST_CONFIG)
    mock.allow(CONFIGURE)  # the mock fixes its answer when the call arrives
    mock.hang(True)
    req = {'dest': H.DAEMON_NAME, 'path': H.DAEMON_PATH, 'interface': H.CONFIG_IFACE, 'method': 'SetEnv',
           'signature': 'ss', 'args': ['HANG_KEY', SECRET + 'hang'], 'timeout': 20}
    p = harness.spawn('slow-client', [H.PYTHON, H.CLIENT_PY, json.dumps(req)], user='nobody',
                      stdout=subprocess.PIPE)
    H._wait_loop(GLib.MainContext.default(), mock.has_hanging_calls, 10, 'polkit call to hang',
                 check=lambda: None)
    for _ in range(20):
        assert d.get('ApiUrl').startswith('https://')
    assert 'HANG_KEY' not in d.get('EnvKeys')
    mock.release()
    out, _ = p.communicate(timeout=10)
    assert json.loads(out)['ok'], out
    assert 'HANG_KEY' in d.get('EnvKeys')
    assert_no_secret_logged(d)
