# SPDX-License-Identifier: Apache-2.0
"""platformctl config set and config show for every setting (issue 16, 3 and
8): list settings (as, aas) from a JSON array or repeated --arg with errors in
the user's words, booleans as yes/no, and config show listing every setting
the launcher takes, driven by the settings table."""
import json
import os
import re
import subprocess

import pytest

import harness as H
from launcher import RUST_CONFIG

PLATFORMCTL = os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platformctl')
UPDATER = 'org.platform.Launcher1.Updater'


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


def ctl(bus, *args):
    return subprocess.run([PLATFORMCTL] + list(args), env=bus.env(), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=30)


def settings_table():
    """The settings as src/shared/config-file.c declares them: (property, type macro)."""
    with open(os.path.join(H.SOURCE_DIR, 'src', 'shared', 'config-file.c')) as f:
        text = f.read()
    table = text[text.index('static const SettingInfo settings[] = {'):]
    table = table[:table.index('};')]
    return re.findall(r'\b(STR|USEC|U32|BOOL|STRV|ARGVV)\("(\w+)"', table)


def updater_prop(daemon, name):
    return daemon.get(name, iface=UPDATER)


# --- 3. list settings from the command line ------------------------------------

def test_list_settings_from_json(daemon, bus):
    p = ctl(bus, 'config', 'set', 'UpdaterRestartUnits', '["validator.service","worker@1.service"]')
    assert p.returncode == 0, p
    assert updater_prop(daemon, 'RestartUnits') == ['validator.service', 'worker@1.service']
    # (each program must be found: no repository here for a "./build.sh")
    p = ctl(bus, 'config', 'set', 'UpdaterBuildCommands', '[["make"],["sh","build.sh","--release"]]')
    assert p.returncode == 0, p
    assert updater_prop(daemon, 'BuildCommands') == [['make'], ['sh', 'build.sh', '--release']]
    assert daemon.read_config()['updater_build_commands'] == [['make'], ['sh', 'build.sh', '--release']]
    p = ctl(bus, 'config', 'set', 'UpdaterHealthCommand', '["curl","-fsS","http://127.0.0.1:8080/health"]')
    assert p.returncode == 0, p
    assert updater_prop(daemon, 'HealthCommand') == ['curl', '-fsS', 'http://127.0.0.1:8080/health']
    # An empty array clears a list.
    assert ctl(bus, 'config', 'set', 'UpdaterRestartUnits', '[]').returncode == 0
    assert updater_prop(daemon, 'RestartUnits') == []


def test_list_settings_from_repeated_arg(daemon, bus):
    p = ctl(bus, 'config', 'set', 'UpdaterRestartUnits', '--arg', 'a.service', '--arg', 'b.service')
    assert p.returncode == 0, p
    assert updater_prop(daemon, 'RestartUnits') == ['a.service', 'b.service']
    # For a list of commands, the --arg values are one command's argv (a value may start with '-').
    p = ctl(bus, 'config', 'set', 'UpdaterRestartCommands', '--arg', 'env', '--arg', 'pm2', '--arg', 'restart',
            '--arg', '--update-env')
    assert p.returncode == 0, p
    assert updater_prop(daemon, 'RestartCommands') == [['env', 'pm2', 'restart', '--update-env']]
    p = ctl(bus, 'config', 'set', '--arg=sh', 'UpdaterHealthCommand', '--arg=health.sh')
    assert p.returncode == 0, p
    assert updater_prop(daemon, 'HealthCommand') == ['sh', 'health.sh']


LIST_ERRORS = [
    (('UpdaterRestartUnits', 'validator.service'),
     'Invalid value for UpdaterRestartUnits: it is not JSON; give a JSON array of strings (e.g. '
     '\'["validator.service","worker.service"]\'), or one --arg per element.'),
    (('UpdaterRestartUnits', '{"a": 1}'),
     'Invalid value for UpdaterRestartUnits: it is not an array; give a JSON array of strings'),
    (('UpdaterRestartUnits', '["a.service", 2]'),
     'Invalid value for UpdaterRestartUnits: element 2 is not a string; give a JSON array of strings'),
    (('UpdaterBuildCommands', '["make"]'),
     'Invalid value for UpdaterBuildCommands: command 1 is not an array; give a JSON array of commands, each an '
     'array of strings (e.g. \'[["make"],["./build.sh","--release"]]\'), or one command as --arg PROGRAM '
     '[--arg ARG ...].'),
    (('UpdaterBuildCommands', '[["make"], ["sh", 1]]'),
     'Invalid value for UpdaterBuildCommands: command 2, element 2 is not a string;'),
    (('UpdaterBuildCommands', '[["make"'),
     'Invalid value for UpdaterBuildCommands: it is not JSON;'),
    (('UpdaterRepository', '--arg', '/srv/x'),
     '--arg is for list settings (UpdaterRepository is not one); give its value instead.'),
    (('UpdaterRestartUnits', '[]', '--arg', 'a.service'),
     'Usage: platformctl config set SETTING VALUE | config set SETTING --arg A [--arg B ...]'),
    (('UpdaterAutoUpdate', 'sometimes'), "Invalid value 'sometimes' for UpdaterAutoUpdate: use yes or no."),
]


@pytest.mark.parametrize('args,message', LIST_ERRORS, ids=[' '.join(e[0]) for e in LIST_ERRORS])
def test_list_setting_errors_in_the_users_words(daemon, bus, args, message):
    before = updater_prop(daemon, 'RestartUnits'), updater_prop(daemon, 'BuildCommands')
    p = ctl(bus, 'config', 'set', *args)
    assert p.returncode == 64, p
    assert p.stderr.startswith(message) and len(p.stderr.splitlines()) == 1, p.stderr
    assert (updater_prop(daemon, 'RestartUnits'), updater_prop(daemon, 'BuildCommands')) == before


def test_the_launchers_own_checks_are_shown(daemon, bus):
    p = ctl(bus, 'config', 'set', 'UpdaterRestartUnits', '["dstack-vmm.service"]')
    assert p.returncode == 65, p
    assert p.stderr.startswith('Failed to change the setting: ') and 'dstack-vmm' in p.stderr, p.stderr


def test_arg_only_for_config_set(daemon, bus):
    p = ctl(bus, 'config', 'show', '--arg', 'x')
    assert p.returncode == 64 and p.stderr == "--arg applies to 'config set' only.\n", p


def test_boolean_setting(daemon, bus):
    assert ctl(bus, 'config', 'set', 'UpdaterAutoUpdate', 'yes').returncode == 0
    assert updater_prop(daemon, 'AutoUpdate') is True
    assert ctl(bus, 'config', 'set', 'UpdaterAutoUpdate', 'off').returncode == 0
    assert updater_prop(daemon, 'AutoUpdate') is False


# --- 8. config show lists every setting -----------------------------------------

def test_config_show_lists_every_setting(daemon, bus):
    assert ctl(bus, 'config', 'set', 'UpdaterBuildCommands', '[["make"]]').returncode == 0
    assert ctl(bus, 'config', 'set', 'UpdaterIntervalUSec', '10min').returncode == 0
    p = ctl(bus, 'config', 'show')
    assert p.returncode == 0, p
    shown = {}
    for line in p.stdout.splitlines():
        k, _, v = line.partition(': ')
        shown[k.strip()] = v
    names = [name for _, name in settings_table()]
    assert {'AdoptPolicy', 'MetricsPath', 'UpdaterBuildCommands', 'UpdaterAllowedSignersFile',
            'UpdaterHealthCommand', 'UpdaterAutoUpdate'} <= set(names)
    missing = [n for n in names if n not in shown]
    assert missing == [], (missing, p.stdout)
    # In the words config set takes.
    assert shown['UpdaterBuildCommands'] == '[["make"]]'
    assert shown['UpdaterIntervalUSec'] == '10min'
    assert shown['GuestVmmUrl'] == 'http://10.0.2.2:16850/'
    assert shown['AdoptPolicy'] == 'keep'
    assert shown['UpdaterAutoUpdate'] == 'no'
    assert shown['MetricsPath'] == '(none)'
    assert shown['Env keys'] == 'HOTKEY_PASSPHRASE VALIDATOR_BASE_URL'
    # Every shown value is accepted back by config set.
    for name in ('UpdaterBuildCommands', 'UpdaterIntervalUSec', 'AdoptPolicy', 'UpdaterAutoUpdate'):
        assert ctl(bus, 'config', 'set', name, shown[name]).returncode == 0, name
    # The same as JSON, values typed as on the bus.
    doc = json.loads(ctl(bus, '--json', 'config', 'show').stdout)['Config']
    assert [n for n in names if n not in doc] == []
    assert doc['UpdaterBuildCommands'] == [['make']] and doc['UpdaterIntervalUSec'] == 600000000
    assert doc['EnvKeys'] == ['HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL']


def test_completion_offers_every_setting():
    """bash and zsh offer what config set takes: the settings table."""
    names = sorted(name for _, name in settings_table())
    with open(os.path.join(H.SOURCE_DIR, 'completion', 'platformctl.bash')) as f:
        bash = f.read()
    listed = bash[bash.index("__platformctl_settings='") + 24:]
    assert sorted(listed[:listed.index("'")].split()) == names
    with open(os.path.join(H.SOURCE_DIR, 'completion', '_platformctl')) as f:
        zsh = f.read()
    listed = zsh[zsh.index('_values setting ') + 16:]
    listed = listed[:listed.index('\n                        elif')].replace('\\\n', ' ')
    assert sorted(listed.split()) == names
