# SPDX-License-Identifier: Apache-2.0
"""The Ansible role (contrib/ansible) against this host (-c local), with Debian's
ansible-core: it installs the packages from the .deb files, then sets settings
and secrets (from an Ansible Vault file) through the installed platformctl on
the installed daemon, which runs on a private bus with the simulators. The
first run changes what it should, the second changes nothing, --check changes
nothing, and no secret appears in any output at -vvv. The steps run in file
order and share STATE; see conftest.py."""
import json
import os
import re
import secrets
import shutil
import subprocess

import pytest

import conftest as C
import harness as H
import vmenv

ROLE_DIR = os.path.join(C.HERE, '..', '..', 'contrib', 'ansible')
DEB_CACHE = '/var/cache/platform-launcher-ansible'
STATE = {}
HOTKEY = vmenv.SECRET + 'vault-hotkey-' + secrets.token_hex(8)
HOTKEY2 = vmenv.SECRET + 'vault-hotkey-new-' + secrets.token_hex(8)
RECAP = re.compile(r'^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    C.deb_dir()
    if not H.is_root():
        pytest.skip('installing packages needs root')
    if not shutil.which('ansible-playbook'):
        pytest.skip('ansible-playbook not installed (Debian: ansible-core)')
    present = [p for p in C.PACKAGES if p in C.known_packages()]
    if present:
        pytest.fail('%s already on this machine: the role test installs and purges them' % present)
    tmp = tmp_path_factory.mktemp('role')
    h = H.Harness(prefix='platform-role-')
    w = {'tmp': tmp, 'h': h}
    try:
        yield w
    finally:
        problems = h.cleanup()
        C.purge_all()
        shutil.rmtree(DEB_CACHE, ignore_errors=True)
        assert not problems, problems


def write_vault(tmp, name, data):
    path = tmp / name
    path.write_text(json.dumps(data))
    p = subprocess.run(['ansible-vault', 'encrypt', '--vault-password-file', str(tmp / 'vault-pass'), str(path)],
                       capture_output=True, text=True, env=ansible_env(tmp))
    assert p.returncode == 0, p
    assert 'HOTKEY' not in path.read_text() and '$ANSIBLE_VAULT' in path.read_text()
    return path


def ansible_env(tmp):
    e = dict(os.environ)
    cfg = tmp / 'ansible.cfg'   # none of the user's or the host's
    if not cfg.exists():
        cfg.write_text('[defaults]\n')
    e.update({'LC_ALL': 'C.UTF-8', 'ANSIBLE_ROLES_PATH': os.path.join(ROLE_DIR, 'roles'),
              'ANSIBLE_CONFIG': str(cfg), 'ANSIBLE_HOME': str(tmp / 'ansible-home'),
              'ANSIBLE_LOCAL_TEMP': str(tmp / 'ansible-tmp'), 'ANSIBLE_REMOTE_TEMP': str(tmp / 'ansible-tmp'),
              'ANSIBLE_NOCOLOR': '1', 'ANSIBLE_RETRY_FILES_ENABLED': '0',
              'ANSIBLE_PYTHON_INTERPRETER': '/usr/bin/python3', 'ANSIBLE_DEPRECATION_WARNINGS': '0'})
    # -c local: the modules inherit it, and platformctl finds the private bus.
    if STATE.get('bus_address'):
        e['DBUS_SYSTEM_BUS_ADDRESS'] = STATE['bus_address']
    return e


def playbook(w, *args):
    """ansible-playbook -vvv; returns (changed count, output). Every output is
    searched for the secrets."""
    tmp = w['tmp']
    argv = ['ansible-playbook', '-vvv', '-i', 'localhost,', '-c', 'local',
            '--vault-password-file', str(tmp / 'vault-pass'), str(tmp / 'site.yml')] + list(args)
    p = subprocess.run(argv, capture_output=True, text=True, env=ansible_env(tmp), timeout=600,
                       stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    STATE['runs'] = STATE.get('runs', 0) + 1
    (tmp / ('run-%d.log' % STATE['runs'])).write_text(' '.join(argv) + '\n' + out)
    for s in (HOTKEY, HOTKEY2):
        assert s not in out, 'a secret appears in the output of ansible-playbook %s' % ' '.join(args)
    assert p.returncode == 0, out[-6000:]
    m = RECAP.search(p.stdout)
    assert m, p.stdout[-3000:]
    ok, changed, unreachable, failed = map(int, m.groups())
    assert (unreachable, failed) == (0, 0), p.stdout[-3000:]
    return changed, p.stdout


def changed_tasks(out):
    """Names of the tasks that reported changed."""
    names, task = [], None
    for line in out.splitlines():
        m = re.match(r'^TASK \[(.*)\]', line)
        if m:
            task = m.group(1)
        elif line.startswith('changed: ') and task and task not in names:
            names.append(task)
    return names


def ctl(*args):
    return subprocess.run([C.PLATFORMCTL, '--no-ask-password'] + list(args), env=STATE['env'].bus.env(),
                          capture_output=True, text=True, timeout=60)


def settings():
    return json.loads(ctl('--json', 'config', 'show').stdout)['Config']


def test_syntax_and_lint():
    """ansible-lint (Debian's, offline) over the role and the example playbook."""
    if not shutil.which('ansible-lint'):
        pytest.skip('ansible-lint not installed')
    p = subprocess.run(['ansible-lint', '--offline', '--nocolor', '-p'], cwd=ROLE_DIR, capture_output=True,
                       text=True, timeout=300, env=dict(os.environ, LC_ALL='C.UTF-8', ANSIBLE_ROLES_PATH='roles'))
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run(['ansible-playbook', '--syntax-check', '-i', 'examples/inventory.ini', 'examples/site.yml'],
                       cwd=ROLE_DIR, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, LC_ALL='C.UTF-8', ANSIBLE_ROLES_PATH='roles'))
    assert p.returncode == 0, p.stdout + p.stderr


def test_first_run_installs_the_packages(world):
    tmp = world['tmp']
    (tmp / 'vault-pass').write_text(secrets.token_hex(16) + '\n')
    write_vault(tmp, 'secrets.yml', {'vault_hotkey_passphrase': HOTKEY})
    write_vault(tmp, 'secrets-new.yml', {'vault_hotkey_passphrase': HOTKEY2})
    debs = [d for d in C.debs() if '-dbgsym_' not in d]
    (tmp / 'site.yml').write_text(json.dumps([{
        'name': 'platform-launcher on this host',
        'hosts': 'localhost',
        'gather_facts': False,
        'vars_files': [str(tmp / 'secrets.yml')],
        'roles': [{'role': 'platform_launcher', 'vars': {
            'platform_launcher_debs': debs,
            'platform_launcher_settings': '{{ test_settings }}',
            'platform_launcher_env': {'HOTKEY_PASSPHRASE': '{{ vault_hotkey_passphrase }}',
                                      'VALIDATOR_BASE_URL': 'https://validator.example'},
            'platform_launcher_env_absent': ['OBSOLETE_KEY'],
            'platform_launcher_wait_vm_running': True,
            'platform_launcher_wait_vm_timeout': 60,
        }}],
    }]))
    # --check on a host without the package: it says what it would do, does nothing.
    before = C.snapshot()
    changed, out = playbook(world, '--check', '--diff', '-e', json.dumps({'test_settings': {'UpdaterBranch': 'x'}}))
    assert 'platform_launcher : Copy the .deb files' in changed_tasks(out), out[-3000:]
    assert not [p for p in C.PACKAGES if p in C.known_packages()]
    assert C.snapshot() == before, sorted(C.snapshot() ^ before)
    # The package first (the host has no launcher yet to configure).
    changed, out = playbook(world, '--tags', 'platform_launcher_install', '-e', json.dumps({'test_settings': {}}))
    assert 'platform_launcher : Install platform-launcher from the .deb files' in changed_tasks(out), out[-3000:]
    for pkg in ('platform-launcher', 'cockpit-platform-launcher'):
        assert C.installed(pkg), pkg
    assert not C.installed('platform-launcher-dbgsym')
    # No systemd as PID 1 here (the role starts the unit where it is): the
    # installed daemon on a bus configured as the host's, with the simulators.
    h = world['h']
    C.start_installed_world(h)
    env = vmenv.VmEnv(h, local_env={'OBSOLETE_KEY': 'old value'}, api_doc={'required_env': ['HOTKEY_PASSPHRASE']})
    env.start(deploy=False, daemon=False)
    env.daemon.binary = C.DAEMON
    env.start_daemon()
    env.wait_vm_object()
    STATE['env'] = env
    STATE['bus_address'] = h.bus.address
    env.wait_prop('State', 'blocked')   # HOTKEY_PASSPHRASE is missing
    STATE['settings'] = {
        'PollIntervalUSec': '1h',                 # differs (10 h)
        'StopTimeoutUSec': 1000000,               # equal (1 s), given in µs
        'ApiUrl': env.api.url + vmenv.DOC_PATH,   # equal
        'UpdaterBranch': 'main',                  # differs (release)
        'UpdaterAutoUpdate': False,               # equal
        'AdoptPolicy': 'redeploy',                # differs (keep)
        'UpdaterRestartUnits': ['validator.service'],   # differs ([])
        'UpdaterBuildCommands': [],               # equal
    }


def run_role(world, *args, new_secret=False, **settings):
    s = dict(STATE['settings'], **settings)
    extra = ['-e', json.dumps({'test_settings': s})]
    if new_secret:
        extra += ['-e', '@' + str(world['tmp'] / 'secrets-new.yml')]
    return playbook(world, *extra, *args)


def test_first_configuration_changes_settings_and_secrets(world):
    env = STATE['env']
    mark = env.w.mark()
    changed, out = run_role(world)
    assert changed_tasks(out) == ["platform_launcher : Set the launcher's settings",
                                  "platform_launcher : Set the VM's env values (secrets)"], out[-4000:]
    assert changed == 2
    s = settings()
    assert s['PollIntervalUSec'] == 3600 * 10**6 and s['StopTimeoutUSec'] == 10**6
    assert s['AdoptPolicy'] == 'redeploy' and s['UpdaterRestartUnits'] == ['validator.service']
    assert s['UpdaterBranch'] == 'main' and s['UpdaterAutoUpdate'] is False
    assert sorted(s['EnvKeys']) == ['HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL']
    assert ctl('config', 'get-env', 'HOTKEY_PASSPHRASE').stdout == HOTKEY + '\n'
    # The secret unblocked the VM; the role waited for it to run.
    assert 'Wait for the VM to run' in out
    assert env.bus.get_property(H.DAEMON_NAME, vmenv.VM_PATH, vmenv.VM_IFACE, 'State').result == 'running'
    env.w.wait_signal('VmUpdated', since=mark)
    STATE['config_file'] = open(env.daemon.config_path, 'rb').read()
    env.daemon.assert_not_logged(HOTKEY)


def test_second_run_changes_nothing(world):
    env = STATE['env']
    writes = len([c for c in env.vmm.calls() if c['method'] in vmenv.WRITES])
    changed, out = run_role(world)
    assert changed == 0, changed_tasks(out)
    assert open(env.daemon.config_path, 'rb').read() == STATE['config_file']
    assert len([c for c in env.vmm.calls() if c['method'] in vmenv.WRITES]) == writes


def test_check_mode_changes_nothing(world):
    env = STATE['env']
    writes = len([c for c in env.vmm.calls() if c['method'] in vmenv.WRITES])
    changed, out = run_role(world, '--check', '--diff', new_secret=True, PollIntervalUSec='2h')
    # It says what it would change (settings with a diff; the secret by task only)...
    assert changed_tasks(out) == ["platform_launcher : Set the launcher's settings",
                                  "platform_launcher : Set the VM's env values (secrets)"], out[-4000:]
    assert '-PollIntervalUSec = 3600000000' in out and '+PollIntervalUSec = 7200000000' in out, out[-4000:]
    # ... and changes nothing.
    assert settings()['PollIntervalUSec'] == 3600 * 10**6
    assert ctl('config', 'get-env', 'HOTKEY_PASSPHRASE').stdout == HOTKEY + '\n'
    assert open(env.daemon.config_path, 'rb').read() == STATE['config_file']
    assert len([c for c in env.vmm.calls() if c['method'] in vmenv.WRITES]) == writes
    # Same values in check mode: nothing to report either.
    changed, out = run_role(world, '--check', '--diff')
    assert changed == 0, changed_tasks(out)


def test_a_new_secret_from_the_vault_replaces_the_vm(world):
    env = STATE['env']
    mark = env.w.mark()
    changed, out = run_role(world, new_secret=True)
    assert changed_tasks(out) == ["platform_launcher : Set the VM's env values (secrets)"], out[-4000:]
    assert ctl('config', 'get-env', 'HOTKEY_PASSPHRASE').stdout == HOTKEY2 + '\n'
    env.w.wait_signal('VmUpdated', since=mark)
    assert env.bus.get_property(H.DAEMON_NAME, vmenv.VM_PATH, vmenv.VM_IFACE, 'State').result == 'running'
    env.daemon.assert_not_logged(HOTKEY, HOTKEY2)
