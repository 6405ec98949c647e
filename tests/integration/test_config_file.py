# SPDX-License-Identifier: Apache-2.0
"""config.json: Rust launcher compatibility, atomic 0600 writes, bad files never overwritten."""
import json
import os
import signal
import stat

import pytest

import harness as H
from launcher import RUST_CONFIG, SECRET, INVALID_CONFIG, file_state, assert_no_secret_logged, properties_changed


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


def test_rust_config_read_as_is(daemon):
    assert daemon.get('GuestVmmUrl') == 'http://10.0.2.2:16850/'
    assert daemon.get('EnvKeys') == ['HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL']
    assert daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE']).result == (SECRET + 'hotkey words here',)
    assert daemon.get('ConfigError') == ''
    assert daemon.get('ConfigPath') == daemon.config_path


def test_round_trip_keeps_unknown_keys_and_rust_keys(daemon):
    assert daemon.call('SetEnv', 'ss', ['NEW_KEY', SECRET + 'v']).ok
    assert daemon.call('SetSettings', 'a{sv}', [{'StopTimeoutUSec': ['t', 90000000]}]).ok
    doc = daemon.read_config()
    original = json.loads(RUST_CONFIG)
    assert doc['operator_note'] == original['operator_note']
    assert doc['dstack_vmm_url'] == original['dstack_vmm_url']
    assert doc['env'] == dict(original['env'], NEW_KEY=SECRET + 'v')
    assert doc['stop_timeout_usec'] == 90000000
    # Defaults that were never set are not pinned into the file.
    assert 'poll_interval_usec' not in doc and 'api_url' not in doc
    # The original keys keep their order; new ones follow.
    assert list(doc)[:3] == ['dstack_vmm_url', 'env', 'operator_note']
    assert_no_secret_logged(daemon)


def test_unknown_numbers_are_written_back_as_json(daemon):
    """json-glib writes the double 3e+74 as "3e+74.0" (not JSON): the file the daemon
    wrote after a change would not be read again (found by fuzz-config-file)."""
    daemon.write_config('{"operator_numbers": [3e+74, 1.5e-7, -2E10, 0.25, 12], "env": {}}')
    assert daemon.call('Reload').ok
    assert daemon.call('SetEnv', 'ss', ['K', SECRET + 'k']).ok
    doc = json.loads(open(daemon.config_path).read())  # strict JSON
    assert doc['operator_numbers'] == [3e+74, 1.5e-7, -2e10, 0.25, 12]
    daemon.restart()
    assert daemon.get('ConfigError') == ''
    assert daemon.call('GetEnv', 's', ['K']).result == (SECRET + 'k',)
    # beyond double's range json-glib reads inf and would write "inf.0": refused, named
    daemon.write_config('{"operator_numbers": {"big": 2999e99999}, "env": {}}')
    assert not daemon.call('Reload').ok
    assert 'a number is out of range, in operator_numbers.big' in daemon.get('ConfigError')


def test_written_atomically_with_mode_0600(daemon):
    os.chmod(daemon.config_path, 0o644)
    assert daemon.call('SetEnv', 'ss', ['K', SECRET + 'k']).ok
    assert stat.S_IMODE(os.stat(daemon.config_path).st_mode) == 0o600
    leftovers = [f for f in os.listdir(os.path.dirname(daemon.config_path)) if f.startswith('config.json.')]
    assert leftovers == []


def test_state_survives_restart(daemon):
    assert daemon.call('SetEnv', 'ss', ['PERSIST', SECRET + 'p']).ok
    assert daemon.call('SetSettings', 'a{sv}', [{'UpdateStrategy': ['s', 'in-place']}]).ok
    daemon.restart()
    assert daemon.call('GetEnv', 's', ['PERSIST']).result == (SECRET + 'p',)
    assert daemon.get('UpdateStrategy') == 'in-place'


def test_missing_file_means_defaults_and_is_created_on_write(bus, polkit, harness, daemon_binary, tmp_path):
    nested = str(tmp_path / 'etc' / 'platform-validator' / 'config.json')
    d = harness.daemon(args=['--config=' + nested])  # the last --config wins
    assert d.get('ConfigPath') == nested and not os.path.exists(nested)
    assert d.get('ApiUrl') == 'https://api.platform.network/config/compose/validator_vm'
    assert d.get('VmmUrl') == 'http://localhost:10300'
    assert d.get('GuestVmmUrl') == 'http://10.0.2.2:10300/'
    assert d.get('PollIntervalUSec') == 5000000 and d.get('StopTimeoutUSec') == 120000000
    assert d.get('UpdateStrategy') == 'recreate' and d.get('EnvKeys') == []
    assert d.call('SetEnv', 'ss', ['A', SECRET + 'a']).ok
    assert json.load(open(nested))['env'] == {'A': SECRET + 'a'}


CORRUPT = [
    ('truncated', '{"env": {"A": "x"'),
    ('not-object', '[1, 2]'),
    ('env-not-object', '{"env": ["A"]}'),
    ('env-value-number', '{"env": {"A": 1}}'),
    ('bad-env-key', '{"env": {"BAD-KEY": "x"}}'),
    ('bad-url', '{"dstack_vmm_url": "ftp://x"}'),
    ('bad-strategy', '{"update_strategy": "sometimes"}'),
    ('usec-out-of-range', '{"poll_interval_usec": 5}'),
    ('usec-wrong-type', '{"stop_timeout_usec": "60s"}'),
    ('nul-byte', '{"env": {}}\x00'),
]


@pytest.mark.parametrize('name,text', CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_file_at_start_is_reported_and_never_overwritten(bus, polkit, harness, daemon_binary, name, text):
    d = harness.daemon(config=text)
    before = file_state(d.config_path)
    err = d.get('ConfigError')
    assert err.startswith(d.config_path + ': '), err
    # The daemon works from defaults meanwhile.
    assert d.get('VmmUrl') == 'http://localhost:10300'
    r = d.call('SetEnv', 'ss', ['A', SECRET + 'a'])
    assert not r.ok and r.error_name == INVALID_CONFIG, r
    r = d.call('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', 9000000]}])
    assert not r.ok and r.error_name == INVALID_CONFIG, r
    assert file_state(d.config_path) == before
    assert_no_secret_logged(d)


def test_corrupt_error_names_the_field(bus, polkit, harness, daemon_binary):
    d = harness.daemon(config='{"env": {"GOOD": "S3CRET-g", "N": 5}}')
    assert 'env.N: must be a string' in d.get('ConfigError')
    assert_no_secret_logged(d)


def test_reload_bad_file_keeps_last_good_then_recovers(daemon, bus):
    good = file_state(daemon.config_path)
    daemon.write_config('{"env": {"HOTKEY_PASSPHRASE": ')
    with properties_changed(bus) as sc:
        r = daemon.call('Reload')
        assert not r.ok and r.error_name == INVALID_CONFIG, r
        sc.wait_for(lambda s: 'ConfigError' in s.args[2] or 'ConfigError' in s.args[1])
    # Last good copy still in force.
    assert daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE']).result == (SECRET + 'hotkey words here',)
    assert daemon.get('ConfigError') != ''
    assert not daemon.call('SetEnv', 'ss', ['X', SECRET + 'x']).ok
    assert open(daemon.config_path).read() == '{"env": {"HOTKEY_PASSPHRASE": '
    # The operator fixes the file; a reload puts it in force.
    with open(daemon.config_path, 'wb') as f:
        f.write(good[0])
    with open(daemon.config_path, 'r+') as f:
        doc = json.load(f)
    doc['env']['FIXED'] = SECRET + 'fixed'
    daemon.write_config(doc)
    assert daemon.call('Reload').ok
    assert daemon.get('ConfigError') == ''
    assert 'FIXED' in daemon.get('EnvKeys')
    assert daemon.call('SetEnv', 'ss', ['X', SECRET + 'x']).ok
    assert_no_secret_logged(daemon)


def test_sighup_reloads(daemon, bus):
    doc = daemon.read_config()
    doc['env']['FROM_HUP'] = SECRET + 'hup'
    daemon.write_config(doc)
    with properties_changed(bus) as sc:
        daemon.send_signal(signal.SIGHUP)
        sc.wait_for(lambda s: 'FROM_HUP' in s.args[1].get('EnvKeys', []))
    assert_no_secret_logged(daemon)


def test_vmm_url_environment_overrides(bus, polkit, harness, daemon_binary):
    d = harness.daemon(config={'vmm_url': 'http://127.0.0.1:1'}, env={'VMM_URL': 'unix:/run/dstack/vmm.sock'})
    assert d.get('VmmUrl') == 'unix:/run/dstack/vmm.sock'


def test_sigterm_exits_cleanly(daemon):
    assert daemon.stop() == 0
