# SPDX-License-Identifier: Apache-2.0
"""`meson install` puts every file where a distribution expects it."""
import os
import subprocess
import xml.etree.ElementTree as ET

import harness as H

EXPECTED = [
    'usr/libexec/platform-launcherd',
    'usr/bin/platformctl',
    'usr/share/dbus-1/system.d/org.platform.Launcher1.conf',
    'usr/share/dbus-1/system-services/org.platform.Launcher1.service',
    'usr/share/dbus-1/interfaces/org.platform.Launcher1.Config.xml',
    'usr/share/polkit-1/actions/org.platform.launcher1.policy',
    'usr/lib/systemd/system/platform-launcher.service',
]


def test_install_layout(tmp_path):
    build = tmp_path / 'build'
    subprocess.run(['meson', 'setup', str(build), H.SOURCE_DIR, '--prefix=/usr',
                    '-Dsystemdsystemunitdir=/usr/lib/systemd/system'], check=True, capture_output=True)
    subprocess.run(['meson', 'compile', '-C', str(build)], check=True, capture_output=True)
    dest = tmp_path / 'dest'
    subprocess.run(['meson', 'install', '-C', str(build), '--no-rebuild', '--destdir', str(dest)], check=True,
                   capture_output=True)
    for rel in EXPECTED:
        assert (dest / rel).exists(), rel
    unit = (dest / 'usr/lib/systemd/system/platform-launcher.service').read_text()
    assert 'ExecStart=/usr/libexec/platform-launcherd\n' in unit
    assert 'BusName=org.platform.Launcher1\n' in unit and 'Type=dbus\n' in unit
    activation = (dest / 'usr/share/dbus-1/system-services/org.platform.Launcher1.service').read_text()
    assert 'Exec=/bin/false' in activation and 'SystemdService=platform-launcher.service' in activation


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
