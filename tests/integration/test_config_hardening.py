# SPDX-License-Identifier: Apache-2.0
"""Hostile or broken config and state files (issue 9, defects 2, 3, 6, 8, 9).

Every parser that sees secrets reports a position and a field, never the text
it choked on; the file the daemon writes it can read back; a deep, missing,
foreign or group-writable file never costs the settings in force."""
import json
import os
import signal
import stat
import time

import pytest

import harness as H
from ctl_helpers import ctl
from launcher import (CONFIGURE, INVALID_CONFIG, LIMITS_EXCEEDED, RUST_CONFIG, SECRET, file_state,
                      assert_no_secret_logged, properties_changed)

# json-glib quotes ~37 characters of the token it stopped at: make them a marker.
MARKER = SECRET + 'LEAKMARK-0123456789abcdefghijklmnopqrstuvwxyz'
PLAIN_MARKER = 'hunter2LEAKMARK_identifier_shaped'  # looks like a key: must still never be shown
SYNTAX_ERRORS = [
    # a string constant where a comma belongs: json-glib quotes the string
    ('missing-comma', '{"env": {"A": "%s" "B": "x"}}' % MARKER),
    # a bare word: json-glib quotes the identifier
    ('bare-word', '{"env": {"A": %s}}' % MARKER.replace('-', '_')),
    # truncated in the middle of the secret
    ('truncated', '{"env": {"A": "%s' % MARKER),
]
IDS = [s[0] for s in SYNTAX_ERRORS]


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


def marker_parts():
    # Any 12-character piece of the marker would be a leak (json-glib cuts it at 37).
    return [MARKER[i:i + 12] for i in range(0, len(MARKER) - 12, 6)]


def assert_no_marker(text, where):
    for p in marker_parts() + [MARKER.replace('-', '_')[7:19]]:
        assert p not in text, 'secret text leaked into %s: %r' % (where, text[:300])


def wait_config_error(daemon, pred, timeout=10):
    """Poll ConfigError (a bounded wait on a condition) until pred holds."""
    deadline = time.monotonic() + timeout
    while True:
        err = daemon.get('ConfigError')
        if pred(err):
            return err
        assert time.monotonic() < deadline, 'ConfigError stayed %r' % err
        time.sleep(0.02)


@pytest.mark.parametrize('name,text', SYNTAX_ERRORS, ids=IDS)
def test_syntax_error_next_to_secret_never_quotes_it(daemon, bus, name, text):
    daemon.write_config(text)
    with properties_changed(bus) as sc:
        r = daemon.call('Reload')
        assert not r.ok and r.error_name == INVALID_CONFIG, r
        sc.wait_for(lambda s: 'ConfigError' in s.args[1] or 'ConfigError' in s.args[2])
        err = daemon.get('ConfigError')
        assert err.startswith(daemon.config_path + ': '), err
        assert 'not valid JSON' in err and ('line 1' in err or name == 'truncated'), err
        assert_no_marker(err, 'ConfigError')
        assert_no_marker(r.error_message, 'the Reload error')
        # A SIGHUP takes the same path and must not leak either.
        daemon.send_signal(signal.SIGHUP)
        daemon.write_config(RUST_CONFIG)
        assert daemon.call('Reload').ok
        sc.wait_for(lambda s: s.args[1].get('ConfigError') == '')
        for s in sc.signals:
            assert_no_marker(repr(s.args), 'PropertiesChanged')
    assert_no_marker(daemon.log_text(), 'the daemon log')
    assert_no_secret_logged(daemon)


@pytest.mark.parametrize('name,text', SYNTAX_ERRORS, ids=IDS)
def test_syntax_error_at_start_never_quotes_secret(bus, polkit, harness, daemon_binary, name, text):
    d = harness.daemon(config=text)
    err = d.get('ConfigError')
    assert 'not valid JSON' in err, err
    assert_no_marker(err, 'ConfigError')
    assert_no_marker(d.log_text(), 'the daemon log')


SYNTAX_POSITIONS = [
    # (file, what ConfigError must say)
    ('{\n  "env": {\n    "A": "%s" "B": "x"\n  }\n}\n' % MARKER, ['line 3, column', 'missing comma', 'in env.A']),
    ('{"stop_timeout_usec": 5,\n "env": {"HOTKEY": %s}}' % MARKER.replace('-', '_'),
     ['line 2, column', 'in env.HOTKEY']),
    # a secret pasted where a key belongs is never shown as a member name
    ('{"env": {"%s": "v", "B" "x"}}' % MARKER, ['line 1, column', 'missing colon', 'in env)']),
    ('{"env": {"%s": 1 "B": 2}}' % MARKER, ['line 1, column', 'missing comma', 'in env.?)']),
    ('{"a": [1, 2,, 3]}', ['line 1, column', 'in a[])']),
    # a value where its key was forgotten sits in key position: not a name to show
    ('{"env": {"A": "x", "%s"}}' % PLAIN_MARKER, ['line 1, column', 'in env)']),
]


@pytest.mark.parametrize('text,expect', SYNTAX_POSITIONS, ids=[str(i) for i in range(len(SYNTAX_POSITIONS))])
def test_syntax_error_gives_line_column_and_field(daemon, text, expect):
    daemon.write_config(text)
    assert not daemon.call('Reload').ok
    err = daemon.get('ConfigError')
    for e in expect:
        assert e in err, err
    assert_no_marker(err, 'ConfigError')
    assert PLAIN_MARKER not in err, err


def test_lone_surrogate_is_refused_before_it_can_be_written_back(daemon):
    """json-glib decodes "\\ud8ee" to bytes that are not UTF-8: kept in an unknown key
    and written back on the next change, they made a file nothing reads again."""
    daemon.write_config('{"x-note": {"A": "\\ud8ee00"}, "api_url": "http://127.0.0.1:9/x"}')
    assert not daemon.call('Reload').ok
    assert 'lone UTF-16 surrogate' in daemon.get('ConfigError')
    daemon.write_config('{"x-note": "\\ud83d\\ude00 a pair is fine"}')
    assert daemon.call('Reload').ok
    assert daemon.get('ConfigError') == ''


CONTROL_VALUE = ''.join(chr(1 + i % 31) for i in range(128 * 1024))  # \u00XX: 6 bytes each


def test_file_too_large_to_read_back_is_refused(daemon):
    """Seven 128 KiB values of control characters would make a 5.5 MB file over the 4 MiB read limit."""
    accepted, refused = [], None
    for i in range(7):
        before = file_state(daemon.config_path)
        r = daemon.call('SetEnv', 'ss', ['CTRL_%d' % i, CONTROL_VALUE], timeout=30)
        if r.ok:
            accepted.append('CTRL_%d' % i)
            continue
        assert r.error_name == LIMITS_EXCEEDED, r
        assert 'bytes' in r.error_message and CONTROL_VALUE[:8] not in r.error_message, r
        assert file_state(daemon.config_path) == before
        refused = i
    assert refused is not None and 3 <= len(accepted) < 7, accepted
    assert os.path.getsize(daemon.config_path) <= 4 * 1024 * 1024
    with open(daemon.config_path) as f:
        assert set(accepted) <= set(json.load(f)["env"])  # strict JSON: other tools read it too
    assert daemon.get('ConfigError') == ''
    # Nothing wedged: small writes still work, and a restart keeps everything.
    assert daemon.call('SetEnv', 'ss', ['SMALL', SECRET + 'small']).ok
    daemon.restart()
    assert daemon.get('ConfigError') == ''
    keys = daemon.get('EnvKeys')
    assert set(accepted) | {'SMALL', 'HOTKEY_PASSPHRASE'} <= set(keys), keys
    assert daemon.call('GetEnv', 's', [accepted[0]], timeout=30).result == (CONTROL_VALUE,)
    assert daemon.call('GetEnv', 's', ['SMALL']).result == (SECRET + 'small',)


DEEP = '[' * 3000000


def test_deep_nesting_on_sighup_keeps_daemon_up(daemon):
    daemon.write_config(DEEP)
    daemon.send_signal(signal.SIGHUP)
    err = wait_config_error(daemon, lambda e: e != '')
    assert 'nested deeper than' in err, err
    assert daemon.running()
    assert daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE']).result == (SECRET + 'hotkey words here',)


def test_deep_nesting_at_start(bus, polkit, harness, daemon_binary):
    d = harness.daemon(config='{"x": ' + DEEP)
    assert 'nested deeper than' in d.get('ConfigError')


def test_deep_nesting_in_state_file_at_start(bus, polkit, harness, daemon_binary):
    d = harness.daemon(config={'env': {}}, start=False)
    with open(os.path.join(d.state_dir, 'vm.json'), 'w') as f:
        f.write('{"name": ' + '[' * 60000)  # the state limit is 64 KiB
    d.start()
    assert d.running()
    assert os.path.exists(os.path.join(d.state_dir, 'vm.json.corrupt'))
    assert 'nested deeper than' in d.log_text()


def test_missing_file_on_sighup_keeps_last_good_copy(daemon, bus):
    keys = daemon.get('EnvKeys')
    os.unlink(daemon.config_path)
    with properties_changed(bus) as sc:
        daemon.send_signal(signal.SIGHUP)
        sc.wait_for(lambda s: s.args[1].get('ConfigError', '') != '')
    err = daemon.get('ConfigError')
    assert err.startswith(daemon.config_path + ': ') and 'missing' in err, err
    assert daemon.get('EnvKeys') == keys
    assert daemon.get('GuestVmmUrl') == 'http://10.0.2.2:16850/'
    assert daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE']).result == (SECRET + 'hotkey words here',)
    r = daemon.call('Reload')
    assert not r.ok and r.error_name == INVALID_CONFIG and 'missing' in r.error_message, r
    # The next change writes the copy in force back, and the error clears.
    with properties_changed(bus) as sc:
        assert daemon.call('SetEnv', 'ss', ['AFTER', SECRET + 'after']).ok
        sc.wait_for(lambda s: s.args[1].get('ConfigError', None) == '')
    doc = daemon.read_config()
    assert set(doc['env']) == set(keys) | {'AFTER'}
    assert doc['dstack_vmm_url'] == 'http://10.0.2.2:16850/'
    assert stat.S_IMODE(os.stat(daemon.config_path).st_mode) == 0o600
    assert_no_secret_logged(daemon)


def test_missing_file_at_start_is_defaults_without_error(bus, polkit, harness, daemon_binary, tmp_path):
    d = harness.daemon(args=['--config=' + str(tmp_path / 'none.json')])
    assert d.get('ConfigError') == ''
    d.send_signal(signal.SIGHUP)
    assert d.call('Reload').ok and d.get('ConfigError') == ''


@pytest.mark.parametrize('how', ['owner', 'group-writable', 'other-writable'])
def test_foreign_or_writable_file_is_refused(daemon, bus, how):
    if how == 'owner':
        os.chown(daemon.config_path, 65534, 65534)
    else:
        os.chmod(daemon.config_path, 0o620 if how == 'group-writable' else 0o602)
    before = file_state(daemon.config_path)
    doc = json.loads(RUST_CONFIG)
    r = daemon.call('Reload')
    assert not r.ok and r.error_name == INVALID_CONFIG, r
    err = daemon.get('ConfigError')
    if how == 'owner':
        assert 'owned by uid 65534' in err, err
    else:
        assert 'writable by group or others' in err, err
    # Settings in force are kept, the file is left alone, writes are refused.
    assert daemon.get('GuestVmmUrl') == doc['dstack_vmm_url']
    r = daemon.call('SetEnv', 'ss', ['X', SECRET + 'x'])
    assert not r.ok and r.error_name == INVALID_CONFIG, r
    assert file_state(daemon.config_path) == before
    # The operator fixes it; a reload puts it in force.
    os.chown(daemon.config_path, 0, 0)
    os.chmod(daemon.config_path, 0o600)
    assert daemon.call('Reload').ok and daemon.get('ConfigError') == ''


def test_foreign_file_at_start_is_not_loaded(bus, polkit, harness, daemon_binary):
    d = harness.daemon(config={'env': {'A': SECRET + 'a'}, 'vmm_url': 'http://127.0.0.1:9/'}, start=False)
    os.chown(d.config_path, 65534, 65534)
    d.start()
    assert 'owned by uid 65534' in d.get('ConfigError')
    assert d.get('EnvKeys') == [] and d.get('VmmUrl') == 'http://localhost:10300'


@pytest.mark.parametrize('mode', [0o644, 0o640, 0o604])
def test_readable_mode_is_fixed_on_load(daemon, mode):
    os.chmod(daemon.config_path, mode)
    assert daemon.call('Reload').ok
    assert stat.S_IMODE(os.stat(daemon.config_path).st_mode) == 0o600
    assert daemon.get('ConfigError') == ''
    assert 'made it 0600' in daemon.log_text()


# ---- issue 15 D5: an empty file is a broken file, not "no settings" ----

EMPTY_FILES = [('empty', ''), ('spaces', '   \n\t\r\n  \n')]


@pytest.mark.parametrize('name,text', EMPTY_FILES, ids=[e[0] for e in EMPTY_FILES])
def test_empty_file_on_sighup_keeps_settings_and_secrets(daemon, bus, name, text):
    keys = daemon.get('EnvKeys')
    assert keys, 'the test needs env values in force'
    daemon.write_config(text)
    before = file_state(daemon.config_path)
    with properties_changed(bus) as sc:
        daemon.send_signal(signal.SIGHUP)
        sc.wait_for(lambda s: s.args[1].get('ConfigError', '') != '')
    err = daemon.get('ConfigError')
    assert err.startswith(daemon.config_path + ': ') and 'empty' in err, err
    # Everything in force stays: settings and secrets.
    assert daemon.get('EnvKeys') == keys
    assert daemon.get('GuestVmmUrl') == 'http://10.0.2.2:16850/'
    assert daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE']).result == (SECRET + 'hotkey words here',)
    assert 'empty' in daemon.log_text()
    # Reload says so; a write is refused and the file is left alone, as for a syntax error.
    r = daemon.call('Reload')
    assert not r.ok and r.error_name == INVALID_CONFIG and 'empty' in r.error_message, r
    r = daemon.call('SetEnv', 'ss', ['AFTER', SECRET + 'after'])
    assert not r.ok and r.error_name == INVALID_CONFIG, r
    assert file_state(daemon.config_path) == before
    # The operator puts the file back; a reload clears the error.
    daemon.write_config(RUST_CONFIG)
    assert daemon.call('Reload').ok and daemon.get('ConfigError') == ''
    assert_no_secret_logged(daemon)


# A second "env" member (or a second document) used to replace the first
# silently: every secret gone at the next SIGHUP.
AMBIGUOUS_FILES = [
    ('duplicate-env', lambda doc: doc.rstrip()[:-1] + ', "env": {}}', "the member 'env' twice"),
    ('second-document', lambda doc: doc + '\n{"env": {}}\n', 'has more after its end'),
]


@pytest.mark.parametrize('name,make,want', AMBIGUOUS_FILES, ids=[a[0] for a in AMBIGUOUS_FILES])
def test_ambiguous_file_on_sighup_keeps_secrets(daemon, bus, name, make, want):
    keys = daemon.get('EnvKeys')
    assert keys, 'the test needs env values in force'
    text = make(json.dumps(json.loads(RUST_CONFIG)))
    daemon.write_config(text)
    with properties_changed(bus) as sc:
        daemon.send_signal(signal.SIGHUP)
        sc.wait_for(lambda s: s.args[1].get('ConfigError', '') != '')
    err = daemon.get('ConfigError')
    assert err.startswith(daemon.config_path + ': ') and want in err, err
    assert daemon.get('EnvKeys') == keys
    assert daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE']).result == (SECRET + 'hotkey words here',)
    assert_no_secret_logged(daemon)


@pytest.mark.parametrize('name,text', EMPTY_FILES, ids=[e[0] for e in EMPTY_FILES])
def test_empty_file_at_start_is_reported_like_a_syntax_error(bus, polkit, harness, daemon_binary, name, text):
    d = harness.daemon(config=text)
    err = d.get('ConfigError')
    assert err.startswith(d.config_path + ': ') and 'empty' in err, err
    assert d.get('EnvKeys') == []
    r = d.call('SetEnv', 'ss', ['A', SECRET + 'a'])
    assert not r.ok and r.error_name == INVALID_CONFIG, r
    with open(d.config_path, newline='') as f:
        assert f.read() == text


# ---- issue 16 item 8: a misspelled key is reported, the file still applies ----

def test_misspelled_key_is_reported_and_the_file_applies(daemon, bus):
    doc = json.loads(RUST_CONFIG)
    doc['pol_interval_usec'] = 7000000          # one letter short
    doc['stop_timeout_usec'] = 9000000          # spelled right: applied
    doc['Update_Strategy'] = 'in-place'         # case and an underscore
    doc['vmm_url_'] = 'http://127.0.0.1:9/'
    doc['poll_interval'] = 5                    # the unit suffix forgotten
    daemon.write_config(json.dumps(doc, indent=2))
    with properties_changed(bus) as sc:
        assert daemon.call('Reload').ok
        sc.wait_for(lambda s: s.args[1].get('ConfigError', '') != '')
    err = daemon.get('ConfigError')
    assert err.startswith(daemon.config_path + ': '), err
    for typo, right in [('pol_interval_usec', 'poll_interval_usec'), ('Update_Strategy', 'update_strategy'),
                        ('vmm_url_', 'vmm_url'), ('poll_interval', 'poll_interval_usec')]:
        want = "unknown key '%s', did you mean '%s'?" % (typo, right)
        assert want in err, (want, err)
        assert want in daemon.log_text()
    # Someone else's key, far from any of ours, is not a misspelling.
    assert 'operator_note' not in err
    # The file is in force (the right key applied, the misspelled ones not) ...
    assert daemon.get('StopTimeoutUSec') == 9000000
    assert daemon.get('PollIntervalUSec') == 5000000
    assert daemon.get('UpdateStrategy') == 'recreate'
    # ... and writable: every key, known or not, is kept; the report stays while they do.
    assert daemon.call('SetEnv', 'ss', ['AFTER', SECRET + 'after']).ok
    written = daemon.read_config()
    for k in ('pol_interval_usec', 'Update_Strategy', 'vmm_url_', 'poll_interval', 'operator_note'):
        assert written[k] == doc[k], k
    assert daemon.get('ConfigError') == err
    # Fixed: the report goes.
    for k in ('pol_interval_usec', 'Update_Strategy', 'vmm_url_', 'poll_interval'):
        del written[k]
    written['poll_interval_usec'] = 7000000
    daemon.write_config(json.dumps(written))
    with properties_changed(bus) as sc:
        assert daemon.call('Reload').ok
        sc.wait_for(lambda s: s.args[1].get('ConfigError', None) == '')
    assert daemon.get('PollIntervalUSec') == 7000000
    assert_no_secret_logged(daemon)


def test_misspelled_key_at_start_is_reported(bus, polkit, harness, daemon_binary):
    d = harness.daemon(config={'env': {'A': SECRET + 'a'}, 'pol_interval': 5, 'dstack_vmm_url': 'http://10.0.2.2:1/'})
    err = d.get('ConfigError')
    assert "unknown key 'pol_interval', did you mean 'poll_interval_usec'?" in err, err
    assert d.get('EnvKeys') == ['A'] and d.get('GuestVmmUrl') == 'http://10.0.2.2:1/'
    # platformctl tells a file in force with a misspelled key from one not in force.
    for args in (['status'], ['config', 'show']):
        p = ctl(bus, *args)
        assert 'not in force' not in p.stdout, p.stdout
        note = [line.strip() for line in p.stdout.splitlines() if line.strip().startswith('Note:')]
        assert note and note[0].startswith('Note: config file in force, with ') and 'pol_interval' in note[0], p.stdout


def test_rust_launcher_and_foreign_keys_are_not_reported(bus, polkit, harness, daemon_binary):
    # The Rust launcher's file (dstack_vmm_url, env) and keys of nobody we know.
    doc = json.loads(RUST_CONFIG)
    doc.update({'vms': {}, 'comment': 'x', 'version': 2, 'url': 'x', 'metrics': 'x', 'updater': {}})
    d = harness.daemon(config=doc)
    assert d.get('ConfigError') == ''
    assert 'unknown key' not in d.log_text()
