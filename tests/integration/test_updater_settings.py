# SPDX-License-Identifier: Apache-2.0
"""The Updater* settings of dbus-api.md through Config.SetSettings: types,
validation naming the field, persistence under snake_case keys, and the
refusal of the units that host the VMs."""
import pytest

from launcher import INVALID_ARGS, file_state

UPDATER = 'org.platform.Launcher1.Updater'

GOOD = {
    'UpdaterRepository': ['s', '/srv/validator'],
    'UpdaterUser': ['s', 'daemon'],
    'UpdaterRemote': ['s', 'upstream'],
    'UpdaterBranch': ['s', 'stable'],
    'UpdaterIntervalUSec': ['t', 120000000],
    'UpdaterRoundLockFile': ['s', '/tmp/alphacore-validator-round.lock'],
    'UpdaterRoundLockMaxAgeUSec': ['t', 3600000000],
    'UpdaterValidationApiUrl': ['s', 'http://127.0.0.1:8000'],
    'UpdaterApiUnreachable': ['s', 'idle'],
    'UpdaterBuildCommands': ['aas', [['make', 'all'], ['/usr/bin/true']]],
    'UpdaterRestartUnits': ['as', ['validation-api.service', 'validator']],
    'UpdaterRestartCommands': ['aas', [['/usr/bin/env', 'pm2', 'restart', 'validator']]],
    'UpdaterHealthCommand': ['as', ['curl', '-fsS', 'http://127.0.0.1:8000/health']],
    'UpdaterHealthUrl': ['s', 'http://127.0.0.1:8000/health'],
    'UpdaterHealthTimeoutUSec': ['t', 60000000],
    'UpdaterCommandTimeoutUSec': ['t', 300000000],
    'UpdaterAllowedSignersFile': ['s', '/etc/platform-validator/allowed_signers'],
    'UpdaterAutoUpdate': ['b', True],
}

FILE_KEYS = {
    'UpdaterRepository': 'updater_repository', 'UpdaterUser': 'updater_user', 'UpdaterRemote': 'updater_remote',
    'UpdaterBranch': 'updater_branch', 'UpdaterIntervalUSec': 'updater_interval_usec',
    'UpdaterRoundLockFile': 'updater_round_lock_file',
    'UpdaterRoundLockMaxAgeUSec': 'updater_round_lock_max_age_usec',
    'UpdaterValidationApiUrl': 'updater_validation_api_url',
    'UpdaterApiUnreachable': 'updater_api_unreachable', 'UpdaterBuildCommands': 'updater_build_commands',
    'UpdaterRestartUnits': 'updater_restart_units', 'UpdaterRestartCommands': 'updater_restart_commands',
    'UpdaterHealthCommand': 'updater_health_command', 'UpdaterHealthUrl': 'updater_health_url',
    'UpdaterHealthTimeoutUSec': 'updater_health_timeout_usec',
    'UpdaterCommandTimeoutUSec': 'updater_command_timeout_usec',
    'UpdaterAllowedSignersFile': 'updater_allowed_signers_file', 'UpdaterAutoUpdate': 'updater_auto_update',
}


def test_all_settings_persist_in_snake_case(daemon):
    r = daemon.call('SetSettings', 'a{sv}', [GOOD])
    assert r.ok, r
    doc = daemon.read_config()
    for prop, key in FILE_KEYS.items():
        assert doc[key] == GOOD[prop][1], (prop, doc.get(key))
    # ... and come back after a restart (read from the file).
    daemon.restart()
    doc2 = daemon.read_config()
    assert doc2 == doc


def test_settings_are_updater_properties(daemon):
    r = daemon.call('SetSettings', 'a{sv}', [GOOD])
    assert r.ok, r
    for prop, (sig, value) in GOOD.items():
        got = daemon.get(prop[len('Updater'):], iface=UPDATER)
        assert got == value, (prop, got)


def test_defaults(daemon):
    d = lambda p: daemon.get(p, iface=UPDATER)  # noqa: E731
    assert d('Repository') == '' and d('State') == 'disabled' and d('User') == ''
    assert d('Remote') == 'origin' and d('Branch') == 'release'
    assert d('IntervalUSec') == 300000000 and d('RoundLockMaxAgeUSec') == 7200000000
    assert d('ApiUnreachable') == 'busy' and d('BuildCommands') == [] and d('RestartUnits') == []
    assert d('HealthTimeoutUSec') == 120000000 and d('CommandTimeoutUSec') == 600000000
    assert d('AutoUpdate') is False


BAD = [
    ('vmm', {'UpdaterRestartUnits': ['as', ['validator', 'dstack-vmm']]}, "'UpdaterRestartUnits'", 'dstack-vmm'),
    ('vmm-service', {'UpdaterRestartUnits': ['as', ['dstack-vmm.service']]}, "'UpdaterRestartUnits'",
     'dstack-vmm'),
    ('kms', {'UpdaterRestartUnits': ['as', ['dstack-kms.service']]}, "'UpdaterRestartUnits'", 'dstack-kms'),
    ('gateway', {'UpdaterRestartUnits': ['as', ['dstack-gateway']]}, "'UpdaterRestartUnits'", 'dstack-gateway'),
    # D10: instances of dstack's templates are dstack's units too
    ('vmm-template', {'UpdaterRestartUnits': ['as', ['validator', 'dstack-vmm@main.service']]},
     "'UpdaterRestartUnits'", 'dstack-vmm'),
    ('kms-template', {'UpdaterRestartUnits': ['as', ['dstack-kms@x']]}, "'UpdaterRestartUnits'", 'dstack-kms'),
    ('user-name', {'UpdaterUser': ['s', '-rf']}, "'UpdaterUser'", 'user name'),
    ('no-such-user', {'UpdaterUser': ['s', 'no-such-user-here']}, "'UpdaterUser'", 'no-such-user-here'),
    ('command-missing', {'UpdaterBuildCommands': ['aas', [['no-such-program-here']]]}, "'UpdaterBuildCommands'",
     'no-such-program-here'),
    ('unit-option', {'UpdaterRestartUnits': ['as', ['--force']]}, "'UpdaterRestartUnits'", 'unit names'),
    ('empty-build-argv', {'UpdaterBuildCommands': ['aas', [['make'], []]]}, "'UpdaterBuildCommands'", 'empty'),
    ('empty-program', {'UpdaterRestartCommands': ['aas', [['']]]}, "'UpdaterRestartCommands'", 'empty'),
    ('too-many', {'UpdaterBuildCommands': ['aas', [['true']] * 65]}, "'UpdaterBuildCommands'", 'too many'),
    ('long-arg', {'UpdaterHealthCommand': ['as', ['x' * 5000]]}, "'UpdaterHealthCommand'", 'too long'),
    ('unreachable', {'UpdaterApiUnreachable': ['s', 'maybe']}, "'UpdaterApiUnreachable'", 'busy'),
    ('lock-relative', {'UpdaterRoundLockFile': ['s', 'tmp/x.lock']}, "'UpdaterRoundLockFile'", 'absolute'),
    ('health-url', {'UpdaterHealthUrl': ['s', 'ftp://x']}, "'UpdaterHealthUrl'", 'http'),
    ('api-url', {'UpdaterValidationApiUrl': ['s', 'unix:/x']}, "'UpdaterValidationApiUrl'", 'http'),
    ('wrong-type-aas', {'UpdaterBuildCommands': ['as', ['make']]}, "'UpdaterBuildCommands' must be of type 'aas'",
     ''),
    ('wrong-type-b', {'UpdaterAutoUpdate': ['s', 'yes']}, "'UpdaterAutoUpdate' must be of type 'b'", ''),
    ('timeout-0', {'UpdaterCommandTimeoutUSec': ['t', 0]}, "'UpdaterCommandTimeoutUSec' is out of range", ''),
]


@pytest.mark.parametrize('name,settings,field,detail', BAD, ids=[b[0] for b in BAD])
def test_set_settings_rejects(daemon, name, settings, field, detail):
    before = file_state(daemon.config_path)
    r = daemon.call('SetSettings', 'a{sv}', [settings])
    assert not r.ok and r.error_name == INVALID_ARGS, r
    assert field in r.error_message and detail in r.error_message, r.error_message
    assert file_state(daemon.config_path) == before


def test_bad_file_names_the_key(daemon):
    daemon.stop()
    daemon.write_config({'env': {}, 'updater_restart_units': ['dstack-vmm']})
    daemon.start()
    err = daemon.get('ConfigError')
    assert 'updater_restart_units' in err and 'dstack-vmm' in err, err
    daemon.write_config({'env': {}, 'updater_build_commands': [['make'], 'x']})
    r = daemon.call('Reload')
    assert not r.ok and 'updater_build_commands[1]' in r.error_message, r
