# SPDX-License-Identifier: Apache-2.0
"""Bad input over the bus: a clear error naming the field, and nothing stored is lost."""
import pytest

from launcher import (RUST_CONFIG, SECRET, INVALID_ARGS, LIMITS_EXCEEDED, NOT_FOUND, file_state,
                      assert_no_secret_logged)


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


BAD_ENV = [
    ('empty-key', ['', 'v'], INVALID_ARGS, "Invalid env key ''"),
    ('digit-first', ['1ABC', 'v'], INVALID_ARGS, "Invalid env key '1ABC'"),
    ('dash', ['A-B', 'v'], INVALID_ARGS, "Invalid env key 'A-B'"),
    ('space', ['A B', 'v'], INVALID_ARGS, "Invalid env key 'A B'"),
    ('non-ascii', ['CLÉ', 'v'], INVALID_ARGS, 'Invalid env key'),
    ('key-256', ['K' * 256, 'v'], INVALID_ARGS, 'at most 255 bytes'),
    ('value-128k+1', ['BIG', 'x' * (128 * 1024 + 1)], LIMITS_EXCEEDED, "Value of 'BIG' exceeds 131072 bytes"),
]


@pytest.mark.parametrize('name,args,error,message', BAD_ENV, ids=[b[0] for b in BAD_ENV])
def test_set_env_rejects(daemon, name, args, error, message):
    before = file_state(daemon.config_path)
    r = daemon.call('SetEnv', 'ss', args)
    assert not r.ok and r.error_name == error, r
    assert message in r.error_message, r.error_message
    assert file_state(daemon.config_path) == before


def test_value_of_exactly_128k_is_accepted(daemon):
    assert daemon.call('SetEnv', 'ss', ['BIG', 'x' * (128 * 1024)]).ok


def test_total_env_limit(daemon):
    # 8 values of 128 KiB exceed 1 MiB together with their keys.
    for i in range(7):
        assert daemon.call('SetEnv', 'ss', ['BIG%d' % i, 'x' * (128 * 1024)]).ok
    before = file_state(daemon.config_path)
    r = daemon.call('SetEnv', 'ss', ['BIG7', 'x' * (128 * 1024)])
    assert not r.ok and r.error_name == LIMITS_EXCEEDED, r
    assert "BIG7" in r.error_message and '1048576' in r.error_message
    assert file_state(daemon.config_path) == before


def test_entry_count_limit(bus, polkit, harness, daemon_binary):
    d = harness.daemon(config={'env': {'K%d' % i: 'v' for i in range(1024)}})
    r = d.call('SetEnv', 'ss', ['ONE_MORE', 'v'])
    assert not r.ok and r.error_name == LIMITS_EXCEEDED and '1024' in r.error_message, r


def test_secret_never_in_error_message(daemon):
    secret = SECRET + 'x' * (128 * 1024)
    r = daemon.call('SetEnv', 'ss', ['BIG', secret])
    assert not r.ok and SECRET not in r.error_message
    # A secret pasted as the key is shown only as a short prefix.
    r = daemon.call('SetEnv', 'ss', ['-' + secret[:300], 'v'])
    assert not r.ok and len(r.error_message) < 250, r.error_message
    assert_no_secret_logged(daemon)


def test_remove_and_get_missing_key(daemon):
    for method in ('RemoveEnv', 'GetEnv'):
        r = daemon.call(method, 's', ['NOT_THERE'])
        assert not r.ok and r.error_name == NOT_FOUND and 'NOT_THERE' in r.error_message, r
        r = daemon.call(method, 's', ['bad key'])
        assert not r.ok and r.error_name == INVALID_ARGS, r


BAD_SETTINGS = [
    ('unknown-key', {'Bogus': ['s', 'x']}, "Unknown setting 'Bogus'"),
    ('wrong-type-string-for-t', {'PollIntervalUSec': ['s', '5s']}, "'PollIntervalUSec' must be of type 't', got 's'"),
    ('wrong-type-u-for-t', {'StopTimeoutUSec': ['u', 5]}, "'StopTimeoutUSec' must be of type 't', got 'u'"),
    ('wrong-type-t-for-s', {'ApiUrl': ['t', 5]}, "'ApiUrl' must be of type 's'"),
    ('ftp-url', {'ApiUrl': ['s', 'ftp://api']}, "'ApiUrl'"),
    ('credentials-in-url', {'VmmUrl': ['s', 'http://u:p@host/']}, "'VmmUrl'"),
    ('relative-unix', {'VmmUrl': ['s', 'unix:vmm.sock']}, "'VmmUrl'"),
    ('unix-guest-url', {'GuestVmmUrl': ['s', 'unix:/x']}, "'GuestVmmUrl'"),
    ('empty-url', {'VmmUrl': ['s', '']}, "'VmmUrl'"),  # ApiUrl "" stops managing the API's VM (test_vm_many)
    ('interval-too-small', {'PollIntervalUSec': ['t', 999]}, "'PollIntervalUSec' is out of range"),
    ('timeout-too-large', {'StopTimeoutUSec': ['t', 3600 * 1000000 + 1]}, "'StopTimeoutUSec' is out of range"),
    ('strategy', {'UpdateStrategy': ['s', 'yolo']}, "'UpdateStrategy'"),
    ('repo-relative', {'UpdaterRepository': ['s', 'srv/validator']}, "'UpdaterRepository'"),
    ('branch-option', {'UpdaterBranch': ['s', '--upload-pack=x']}, "'UpdaterBranch'"),
    ('remote-dotdot', {'UpdaterRemote': ['s', 'a..b']}, "'UpdaterRemote'"),
]


@pytest.mark.parametrize('name,settings,message', BAD_SETTINGS, ids=[b[0] for b in BAD_SETTINGS])
def test_set_settings_rejects(daemon, name, settings, message):
    before = file_state(daemon.config_path)
    r = daemon.call('SetSettings', 'a{sv}', [settings])
    assert not r.ok and r.error_name == INVALID_ARGS, r
    assert message in r.error_message, r.error_message
    assert file_state(daemon.config_path) == before


def test_set_settings_is_all_or_nothing(daemon):
    before = file_state(daemon.config_path)
    r = daemon.call('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', 9000000], 'UpdateStrategy': ['s', 'bad']}])
    assert not r.ok and r.error_name == INVALID_ARGS, r
    assert daemon.get('PollIntervalUSec') == 5000000
    assert file_state(daemon.config_path) == before


def test_updater_settings_persist(daemon):
    r = daemon.call('SetSettings', 'a{sv}', [{'UpdaterRepository': ['s', '/srv/validator'],
                                               'UpdaterBranch': ['s', 'release'],
                                               'UpdaterIntervalUSec': ['t', 600000000]}])
    assert r.ok, r
    doc = daemon.read_config()
    assert doc['updater_repository'] == '/srv/validator' and doc['updater_interval_usec'] == 600000000


def test_wrong_method_signature(daemon):
    r = daemon.call('SetEnv', 's', ['ONLY_KEY'])
    assert not r.ok and r.error_name == INVALID_ARGS, r


# Issue 9 defect 11: URLs are parsed with curl_url; the unix form is strict.
BAD_URLS = [
    ('ipv6-unclosed', 'ApiUrl', 'http://[::1'),
    ('port-99999', 'ApiUrl', 'http://127.0.0.1:99999/'),
    ('port-0', 'VmmUrl', 'http://127.0.0.1:0'),
    ('host-dash', 'ApiUrl', 'http://-/'),
    ('unix-dotdot', 'VmmUrl', 'unix:/tmp/../etc/passwd'),
    ('unix-dot', 'VmmUrl', 'unix:/run/./vmm.sock'),
    ('unix-108-bytes', 'VmmUrl', 'unix:/' + 's' * 107),
    ('fragment', 'ApiUrl', 'https://api.example/x#y'),
]


@pytest.mark.parametrize('name,key,url', BAD_URLS, ids=[b[0] for b in BAD_URLS])
def test_set_settings_rejects_bad_url(daemon, name, key, url):
    before = file_state(daemon.config_path)
    old = daemon.get(key)
    r = daemon.call('SetSettings', 'a{sv}', [{key: ['s', url]}])
    assert not r.ok and r.error_name == INVALID_ARGS, r
    assert "'%s'" % key in r.error_message, r.error_message
    assert daemon.get(key) == old
    assert file_state(daemon.config_path) == before


def test_set_settings_accepts_good_urls(daemon):
    for key, url in (('ApiUrl', 'http://[::1]:8080/api'), ('VmmUrl', 'unix:/' + 's' * 106),
                     ('ApiUrl', 'https://api.platform.network')):
        r = daemon.call('SetSettings', 'a{sv}', [{key: ['s', url]}])
        assert r.ok, (url, r)
        assert daemon.get(key) == url
