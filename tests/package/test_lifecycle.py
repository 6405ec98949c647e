# SPDX-License-Identifier: Apache-2.0
"""The packages' life on a host: install, the installed files at work, upgrade
(reinstall), remove, purge. The steps run in file order and share STATE; each
is a test so CI shows which one broke. See conftest.py."""
import json
import os
import re
import shutil
import subprocess

import pytest

import conftest as C
import harness as H
import vmenv

STATE = {}
SECRET = vmenv.SECRET + 'pkg hotkey words'


@pytest.fixture(scope='module', autouse=True)
def lifecycle():
    C.deb_dir()
    if not H.is_root():
        pytest.skip('installing packages needs root')
    yield
    # Whatever failed on the way: leave the machine as it was.
    C.purge_all()
    for path in STATE.get('created', []):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)


def need(key):
    if key not in STATE:
        pytest.fail('an earlier step failed (%s missing)' % key, pytrace=False)
    return STATE[key]


def test_install_adds_the_packages_and_nothing_else():
    present = [p for p in C.PACKAGES if p in C.known_packages()]
    assert not present, ('%s already on this machine: this test installs and purges them (apt-get purge %s)'
                         % (present, ' '.join(present)))
    STATE['before'] = C.snapshot()
    before = C.known_packages()
    p = C.apt('install', *C.debs())
    after = C.known_packages()
    new = sorted(set(after) - set(before))
    assert new == sorted(C.PACKAGES), 'apt-get install added %s (a dependency missing from tests/packages.txt?)' % new
    for pkg in C.PACKAGES:
        assert C.installed(pkg), pkg
    assert 'error' not in p.stderr.lower(), p.stderr
    # The bus policy reaches a running system bus through dbus's file trigger
    # on /usr/share/dbus-1/system.d (it sends ReloadConfig when the bus runs).
    assert re.search(r'^Processing triggers for dbus ', p.stdout, re.M), p.stdout
    STATE['files'] = {pkg: C.dpkg_files(pkg) for pkg in C.PACKAGES}


def test_files_are_where_the_bus_polkit_systemd_and_man_read_them():
    files = need('files')
    main = set(files['platform-launcher'])
    for path in (C.DAEMON, C.PLATFORMCTL, '/usr/bin/platform',
                 '/usr/share/dbus-1/system.d/org.platform.Launcher1.conf',
                 '/usr/share/dbus-1/system-services/org.platform.Launcher1.service',
                 '/usr/share/dbus-1/interfaces/org.platform.Launcher1.Config.xml',
                 '/usr/share/polkit-1/actions/org.platform.launcher1.policy',
                 '/usr/share/bash-completion/completions/platformctl',
                 '/usr/share/doc/platform-launcher/config.json.example'):
        assert path in main, path
        assert os.path.exists(path), path
    units = [f for f in main if f.endswith('/systemd/system/platform-launcher.service')]
    assert len(units) == 1, units
    unit = open(units[0]).read()
    assert 'ExecStart=%s\n' % C.DAEMON in unit, unit
    # The operator's file is never shipped (not even as a conffile).
    assert not [f for f in main if f.startswith('/etc/')], sorted(f for f in main if f.startswith('/etc/'))
    conffiles = subprocess.run(['dpkg-query', '-W', '-f=${Conffiles}', 'platform-launcher'], capture_output=True,
                               text=True, check=True).stdout.strip()
    assert conffiles == '', conffiles
    # dh_installsystemd enabled the unit (symlinks made by deb-systemd-helper,
    # which works without systemd running), alias included.
    wants = '/etc/systemd/system/multi-user.target.wants/platform-launcher.service'
    assert os.path.realpath(wants) == os.path.realpath(units[0]), wants
    assert os.path.islink('/etc/systemd/system/dbus-org.platform.Launcher1.service')
    # man finds both names; the sample config is valid JSON.
    for page in ('platformctl', 'platform', 'platform-launcherd', 'org.platform.Launcher1'):
        p = subprocess.run(['man', '-w', page], capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout.startswith('/usr/share/man/'), (page, p.stderr)
    json.load(open('/usr/share/doc/platform-launcher/config.json.example'))
    version = subprocess.run([C.PLATFORMCTL, '--version'], capture_output=True, text=True)
    upstream = subprocess.run(['dpkg-query', '-W', '-f=${Version}', 'platform-launcher'], capture_output=True,
                              text=True).stdout.rsplit('-', 1)[0]
    assert upstream in version.stdout, (version.stdout, upstream)


def test_installed_daemon_runs_on_a_bus_with_the_installed_policy(harness):
    """The daemon from /usr/libexec owns its name on a bus configured as the
    host's (system.conf reading /usr/share/dbus-1/system.d), polkitd reads the
    installed actions, and the installed platformctl works against it."""
    need('files')
    C.start_installed_world(harness)
    env = vmenv.VmEnv(harness, local_env={'VALIDATOR_BASE_URL': 'https://validator.example'},
                      api_doc={'required_env': ['HOTKEY_PASSPHRASE']})
    env.start(deploy=False, daemon=False)
    env.daemon.binary = C.DAEMON
    env.start_daemon()
    env.wait_vm_object()

    def ctl(*args, user=None, stdin=None):
        return subprocess.run(H.as_user_argv(user, [C.PLATFORMCTL, '--no-ask-password'] + list(args)),
                              env=harness.bus.env(), input=stdin, capture_output=True, text=True, timeout=60)

    # Blocked until the secret is there; set from stdin, the VM is created.
    env.wait_prop('State', 'blocked')
    p = ctl('status')
    assert p.returncode == 78 and 'HOTKEY_PASSPHRASE' in p.stdout, p
    p = ctl('config', 'set-env', 'HOTKEY_PASSPHRASE', stdin=SECRET + '\n')
    assert p.returncode == 0, p
    p = ctl('config', 'get-env', 'HOTKEY_PASSPHRASE')
    assert p.returncode == 0 and p.stdout == SECRET + '\n', p.returncode
    p = ctl('status')
    assert p.returncode == 0 and re.search(r'State: running', p.stdout), p
    # The Rust launcher's name for it, through the installed link.
    p = subprocess.run(['/usr/bin/platform', 'config', 'show'], env=harness.bus.env(), capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0 and p.stdout == ctl('config', 'show').stdout and env.api.url in p.stdout, p
    # polkit decides from the installed policy: nobody is refused, and once a
    # rule grants the installed action (unknown actions are never granted), allowed.
    p = ctl('config', 'set', 'PollIntervalUSec', '30s', user='nobody')
    assert p.returncode == 77, p
    harness.polkit.allow('org.platform.launcher1.configure', user='nobody')
    p = ctl('config', 'set', 'PollIntervalUSec', '30s', user='nobody')
    assert p.returncode == 0, p
    env.daemon.assert_not_logged(SECRET)
    assert os.path.exists(os.path.join(harness.polkit.actions, 'org.platform.launcher1.policy'))


def test_cockpit_finds_the_page():
    files = need('files')
    assert '/usr/share/cockpit/platform-launcher/manifest.json' in files['cockpit-platform-launcher']
    p = subprocess.run(['cockpit-bridge', '--packages'], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p
    # "NAME [LABEL] PATH" per package, as cockpit-ws would serve them.
    found = {w[0]: w[-1] for w in map(str.split, p.stdout.splitlines()) if len(w) >= 2 and w[-1].startswith('/')}
    assert found.get('platform-launcher') == '/usr/share/cockpit/platform-launcher', p.stdout
    json.load(open('/usr/share/cockpit/platform-launcher/manifest.json'))
    html = open('/usr/share/cockpit/platform-launcher/index.html').read()
    for ref in re.findall(r'(?:src|href)="([^"]+)"', html):
        if '://' in ref or ref.startswith('../') or ref.startswith('/'):
            continue   # cockpit's own base1 files, served by cockpit-ws
        assert os.path.exists(os.path.join('/usr/share/cockpit/platform-launcher', ref)), ref


def write_operator_files():
    """The operator's config (with a secret) and the launcher's state and
    history, as a host that ran the launcher has them."""
    created = STATE.setdefault('created', [])
    for d in ('/etc/platform-validator', C.STATE_DIR):
        if not os.path.exists(d):
            os.makedirs(d, mode=0o700)
            created.append(d)
    files = {C.OPERATOR_CONFIG: json.dumps({'env': {'HOTKEY_PASSPHRASE': SECRET}}),
             os.path.join(C.STATE_DIR, 'history.json'): '[]',
             os.path.join(C.STATE_DIR, 'vm.json'): '{}'}
    for path, text in files.items():
        if not os.path.exists(path):
            created.append(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            f.write(text)
    STATE['operator'] = files


def assert_operator_files_kept():
    for path, text in need('operator').items():
        assert open(path).read() == text, path


def test_upgrade_keeps_the_config_and_the_state():
    need('files')
    write_operator_files()
    C.apt('install', '--reinstall', *C.debs())
    assert C.installed('platform-launcher')
    assert_operator_files_kept()


def test_remove_keeps_the_config_and_the_state():
    need('operator')
    C.apt('remove', *C.PACKAGES)
    assert not os.path.exists(C.DAEMON)
    assert not os.path.exists('/usr/share/cockpit/platform-launcher/manifest.json')
    assert_operator_files_kept()


def test_purge_leaves_nothing_but_the_operators_config():
    files, before = need('files'), need('before')
    need('operator')
    # remove took those without maintainer scripts all the way; dpkg still
    # knows platform-launcher (its postrm has work left for purge).
    p = C.apt('purge', *[pkg for pkg in C.PACKAGES if pkg in C.known_packages()])
    # Said without debconf, naming the file that holds the secrets.
    assert C.OPERATOR_CONFIG + ' is left in place' in p.stdout + p.stderr, p.stdout
    assert not os.path.exists(C.STATE_DIR)
    assert open(C.OPERATOR_CONFIG).read() == STATE['operator'][C.OPERATOR_CONFIG]
    for pkg in C.PACKAGES:
        assert pkg not in C.known_packages(), pkg
    # No file dpkg -L listed is left (directories: the file lists below).
    left = [f for pkg in C.PACKAGES for f in files[pkg] if os.path.lexists(f) and not os.path.isdir(f)]
    assert not left, left
    after = C.snapshot()
    operator = {'/etc/platform-validator', C.OPERATOR_CONFIG}
    assert sorted(after - before - operator) == [], 'left behind by purge'
    assert sorted(before - after) == [], 'removed by install and purge, not theirs'
