# SPDX-License-Identifier: Apache-2.0
"""`meson install` puts every file where a distribution expects it."""
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest

import harness as H
from conftest import require_root

MAN_PAGES = ['platformctl.1', 'platform.1', 'platform-launcherd.8', 'platform-launcher.conf.5', 'org.platform.Launcher1.5']

EXPECTED = [
    'usr/libexec/platform-launcherd',
    'usr/bin/platformctl',
    'usr/bin/platform',
    'usr/share/dbus-1/system.d/org.platform.Launcher1.conf',
    'usr/share/dbus-1/system-services/org.platform.Launcher1.service',
    'usr/share/polkit-1/actions/org.platform.launcher1.policy',
    'usr/share/doc/platform-launcher/50-platform-launcher.rules.example',
    'usr/share/doc/platform-launcher/config.json.example',
    'usr/lib/systemd/system/platform-launcher.service',
    'usr/share/bash-completion/completions/platformctl',
    'usr/share/bash-completion/completions/platform',
    'usr/share/man/man1/platformctl.1',
    'usr/share/man/man1/platform.1',
    'usr/share/man/man8/platform-launcherd.8',
    'usr/share/man/man5/org.platform.Launcher1.5',
    'usr/share/man/man5/platform-launcher.conf.5',
    'usr/share/cockpit/platform-launcher/manifest.json',
    'usr/share/cockpit/platform-launcher/platform-launcher.js',
]


def meson_install(dest, build, *setup_args):
    def run(argv):
        p = subprocess.run(argv, capture_output=True, text=True)
        assert p.returncode == 0, '%s\n%s%s' % (' '.join(argv), p.stdout[-3000:], p.stderr[-3000:])
        return p.stdout
    out = run(['meson', 'setup', str(build), H.SOURCE_DIR] + list(setup_args))
    # Only what is installed (not the tests, benchmarks and fuzzers): the suite runs this twice.
    run(['meson', 'compile', '-C', str(build), 'platform-launcherd', 'platformctl']
        + ([page for page in MAN_PAGES] if shutil.which('scdoc') else [])
        + (['cockpit-page'] if 'Cockpit page: built' in out else []))  # else data/cockpit/dist
    run(['meson', 'install', '-C', str(build), '--no-rebuild', '--destdir', str(dest)])
    return out


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """One packaging build, as a distribution runs it (README, "Packaging")."""
    tmp = tmp_path_factory.mktemp('install')
    dest = tmp / 'dest'
    meson_install(dest, tmp / 'build', '--prefix=/usr', '-Dsystemdsystemunitdir=/usr/lib/systemd/system',
                  '-Dbuildtype=release')
    return dest


def test_install_layout(installed):
    dest = installed
    for rel in EXPECTED:
        assert (dest / rel).exists(), rel
    for xml in os.listdir(os.path.join(H.SOURCE_DIR, 'dbus')):
        if xml.endswith('.xml'):
            assert (dest / 'usr/share/dbus-1/interfaces' / xml).exists(), xml
    assert os.readlink(dest / 'usr/bin/platform') == 'platformctl'
    # zsh: where Debian's zsh reads vendor completions (its fpath), else site-functions.
    zsh = [p for p in ('usr/share/zsh/vendor-completions/_platformctl', 'usr/share/zsh/site-functions/_platformctl')
           if (dest / p).exists()]
    assert zsh, 'zsh completion not installed'
    unit = (dest / 'usr/lib/systemd/system/platform-launcher.service').read_text()
    assert 'ExecStart=/usr/libexec/platform-launcherd\n' in unit
    assert 'BusName=org.platform.Launcher1\n' in unit and 'Type=dbus\n' in unit
    activation = (dest / 'usr/share/dbus-1/system-services/org.platform.Launcher1.service').read_text()
    assert 'Exec=/bin/false' in activation and 'SystemdService=platform-launcher.service' in activation


def test_default_prefix_puts_bus_and_polkit_files_where_they_are_read(tmp_path):
    """With the default prefix (/usr/local) the bus and polkit files still go
    where dbus-daemon and polkitd look: the directories come from pkg-config."""
    for pc in ('dbus-1', 'polkit-gobject-1'):
        if subprocess.run(['pkg-config', '--exists', pc]).returncode != 0:
            pytest.skip('%s.pc not installed (libdbus-1-dev, libpolkit-gobject-1-dev)' % pc)
    dest = tmp_path / 'dest'
    meson_install(dest, tmp_path / 'build')
    assert (dest / 'usr/share/dbus-1/system.d/org.platform.Launcher1.conf').exists()
    assert (dest / 'usr/share/dbus-1/system-services/org.platform.Launcher1.service').exists()
    assert (dest / 'usr/share/polkit-1/actions/org.platform.launcher1.policy').exists()
    assert (dest / 'usr/local/bin/platformctl').exists()


def system_conf_over(dest, with_project_dirs=True):
    """/usr/share/dbus-1/system.conf as the distribution ships it, with only
    what a test cannot do removed (user switch, fork, pid file, syslog, the
    setuid activation helper, the host's /etc) and its relative
    <includedir>system.d</includedir> and the service dirs pointed into the
    installed tree: the same includes the real bus reads."""
    with open('/usr/share/dbus-1/system.conf') as f:
        text = f.read()
    text = re.sub(r'<!--.*?-->', '', text, flags=re.S)
    for tag in (r'<user>[^<]*</user>', r'<fork/>', r'<pidfile>[^<]*</pidfile>', r'<syslog/>',
                r'<servicehelper>[^<]*</servicehelper>', r'<standard_system_servicedirs/>',
                r'<include [^>]*>[^<]*</include>', r'<includedir>/etc/[^<]*</includedir>'):
        text, n = re.subn(tag, '', text)
        assert n or 'include' in tag, tag
    text = re.sub(r'<listen>[^<]*</listen>', '<listen>unix:path={socket}</listen>', text)
    share = os.path.join(str(dest), 'usr/share/dbus-1')
    if with_project_dirs:
        text, n = re.subn(r'<includedir>system.d</includedir>',
                          '<includedir>%s/system.d</includedir>\n'
                          '<servicedir>%s/system-services</servicedir>' % (share, share), text)
        assert n == 1
    else:
        text = text.replace('<includedir>system.d</includedir>', '')
    # Keep harness.BUS_CONFIG's format() placeholders as the only braces.
    return text.replace('{', '{{').replace('}', '}}').replace('{{socket}}', '{socket}')


class InstalledBus(H.PrivateBus):
    def __init__(self, workdir, procs, config):
        super().__init__(workdir, procs)
        self.config = config

    def start(self, timeout=H.DEFAULT_TIMEOUT):
        saved, H.BUS_CONFIG = H.BUS_CONFIG, self.config
        try:
            return super().start(timeout)
        finally:
            H.BUS_CONFIG = saved


def test_installed_daemon_owns_its_name_on_the_real_bus_configuration(installed, harness):
    require_root('a system bus with a root-owned name')
    dest = installed
    harness.bus = InstalledBus(harness.workdir, harness.procs, system_conf_over(dest)).start()
    names = harness.bus.call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                             'ListActivatableNames')
    assert H.DAEMON_NAME in names.result[0], names
    d = harness.daemon(config={'env': {}}, binary=str(dest / 'usr/libexec/platform-launcherd'))
    assert harness.bus.name_owner(H.DAEMON_NAME)
    p = H.run_tool(harness.bus, [str(dest / 'usr/bin/platformctl'), 'config', 'show'])
    assert p.returncode == 0 and ' VmmUrl: ' in p.stdout, p
    d.stop()


def test_without_the_installed_policy_the_daemon_cannot_own_its_name(installed, harness):
    """The check above is not vacuous: the stock system.conf alone refuses the name."""
    require_root('a system bus with a root-owned name')
    dest = installed
    harness.bus = InstalledBus(harness.workdir, harness.procs, system_conf_over(dest, False)).start()
    d = harness.daemon(config={'env': {}}, binary=str(dest / 'usr/libexec/platform-launcherd'), start=False)
    d.start(wait=False)
    assert d.proc.wait(timeout=H.DEFAULT_TIMEOUT) != 0
    assert 'not allowed to own' in d.log_text() or 'Cannot own' in d.log_text(), d.log_text()
    d.proc = None


def test_policy_has_all_six_actions():
    root = ET.parse(os.path.join(H.SOURCE_DIR, 'polkit', 'org.platform.launcher1.policy')).getroot()
    ids = {a.get('id'): a for a in root.findall('action')}
    expected = {
        'configure': ('auth_admin', 'auth_admin', 'auth_admin_keep'),
        'read-secrets': ('auth_admin', 'auth_admin', 'auth_admin'),
        'manage-vm': ('auth_admin', 'auth_admin', 'auth_admin_keep'),
        'read-logs': ('auth_admin', 'auth_admin', 'auth_admin_keep'),
        'check-updates': ('auth_admin', 'auth_admin', 'yes'),
        'apply-updates': ('auth_admin', 'auth_admin', 'auth_admin_keep'),
    }
    assert set(ids) == {'org.platform.launcher1.' + k for k in expected}
    for k, defaults in expected.items():
        d = ids['org.platform.launcher1.' + k].find('defaults')
        assert (d.find('allow_any').text, d.find('allow_inactive').text, d.find('allow_active').text) == defaults, k


def test_systemd_verifies_the_unit(tmp_path):
    unit = os.path.join(H.SOURCE_DIR, 'data', 'platform-launcher.service.in')
    text = open(unit).read().replace('@libexecdir@', '/bin')
    text = text.replace('ExecStart=/bin/platform-launcherd', 'ExecStart=/bin/true')
    path = tmp_path / 'platform-launcher.service'
    path.write_text(text)
    p = subprocess.run(['systemd-analyze', 'verify', str(path)], capture_output=True, text=True)
    problems = [line for line in p.stderr.splitlines() if 'platform-launcher.service' in line]
    assert not problems, p.stderr



@pytest.mark.parametrize('page', MAN_PAGES)
def test_man_page_renders_without_warnings(page):
    path = os.path.join(H.BUILD_DIR, 'man', page)
    assert os.path.exists(path), 'not built (scdoc missing?): ' + path
    env = dict(os.environ, LC_ALL='C.UTF-8', MANWIDTH='80')
    p = subprocess.run(['groff', '-man', '-Tutf8', '-ww', '-z', path], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stderr == '', p.stderr
    p = subprocess.run(['man', '--warnings', '-E', 'UTF-8', '-l', path], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stderr == '', p.stderr
    assert 'NAME' in p.stdout and 'SEE ALSO' in p.stdout


def test_bus_api_man_page_names_every_member_and_action():
    """org.platform.Launcher1(5) keeps up with the interface XML and the policy."""
    text = open(os.path.join(H.SOURCE_DIR, 'man', 'org.platform.Launcher1.5.scd')).read()
    for xml in ('org.platform.Launcher1.Config.xml', 'org.platform.Launcher1.Vm.xml',
                'org.platform.Launcher1.Updater.xml'):
        root = ET.parse(os.path.join(H.SOURCE_DIR, 'dbus', xml)).getroot()
        for kind in ('property', 'method', 'signal'):
            for el in root.iter(kind):
                assert '*%s*' % el.get('name') in text, (xml, kind, el.get('name'))
    policy = ET.parse(os.path.join(H.SOURCE_DIR, 'polkit', 'org.platform.launcher1.policy')).getroot()
    for a in policy.findall('action'):
        assert a.get('id') in text, a.get('id')


def test_platformctl_man_page_names_every_command():
    text = open(os.path.join(H.SOURCE_DIR, 'man', 'platformctl.1.scd')).read()
    help_text = subprocess.run([os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platformctl'), '--help'],
                               capture_output=True, text=True).stdout
    for m in re.finditer(r'^  (vm|config) ([a-z-]+)', help_text, re.M):
        assert '*%s %s*' % (m.group(1), m.group(2)) in text, m.group(0)


def unit_text():
    return open(os.path.join(H.SOURCE_DIR, 'data', 'platform-launcher.service.in')).read().replace(
        '@libexecdir@', '/usr/libexec')


def unit_values(key):
    return [line.split('=', 1)[1] for line in unit_text().splitlines() if line.startswith(key + '=')]


def test_unit_orders_after_dstack_and_excludes_the_rust_launcher():
    assert 'dstack-vmm.service' in ' '.join(unit_values('After')).split()
    assert 'dstack-vmm.service' in ' '.join(unit_values('Wants')).split()
    conflicts = ' '.join(unit_values('Conflicts')).split()
    # The Rust launcher's names (validator-launcher: ansible/templates/validator-launcher.service.j2,
    # ansible/install-updater.sh).
    for name in ('validator-launcher.service', 'validator-launcher-updater.timer',
                 'validator-launcher-updater.service'):
        assert name in conflicts, name


def test_unit_stop_timeout_covers_a_graceful_vm_stop():
    """TimeoutStopSec leaves a VM operation in flight its graceful stop
    (StopTimeoutUSec, 120 s by default) plus a margin."""
    (value,) = unit_values('TimeoutStopSec')
    assert value.endswith('s') and int(value[:-1]) >= 120 + 15, value


def test_unit_exposure_stays_low(tmp_path):
    path = tmp_path / 'platform-launcher.service'
    path.write_text(unit_text())
    p = subprocess.run(['systemd-analyze', 'security', '--offline=yes', str(path)], capture_output=True, text=True,
                       cwd=str(tmp_path))
    m = re.search(r'Overall exposure level for platform-launcher.service: ([0-9.]+)', p.stdout)
    assert m, p.stdout[-2000:] + p.stderr
    assert float(m.group(1)) <= 2.0, m.group(0)
