# SPDX-License-Identifier: Apache-2.0
"""debian/ agrees with meson.build, without building a package (a meson test):
every file `meson install` installs goes to exactly one binary package (or
dh_missing fails the package build), and the Debian version is meson's
project version plus a Debian revision."""
import fnmatch
import glob
import json
import os
import subprocess

import pytest

import conftest as C

SOURCE = os.path.abspath(os.path.join(C.HERE, '..', '..'))
DEBIAN = os.path.join(SOURCE, 'debian')


@pytest.fixture(scope='module')
def meson_info(tmp_path_factory):
    """`meson setup --prefix=/usr` as debhelper runs it, introspected (nothing is built)."""
    build = tmp_path_factory.mktemp('debian-source') / 'build'
    p = subprocess.run(['meson', 'setup', str(build), SOURCE, '--prefix=/usr', '--sysconfdir=/etc',
                        '--localstatedir=/var', '-Dman=enabled'], capture_output=True, text=True)
    if p.returncode != 0 and 'scdoc' in p.stdout + p.stderr:
        pytest.skip('scdoc is missing (Build-Depends of debian/control)')
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

    def intro(what):
        return json.loads(subprocess.run(['meson', 'introspect', what, str(build)], capture_output=True,
                                         text=True, check=True).stdout)
    return {'installed': intro('--installed'), 'project': intro('--projectinfo')}


def install_entries():
    out = {}
    for path in glob.glob(os.path.join(DEBIAN, '*.install')):
        pkg = os.path.basename(path)[:-len('.install')]
        with open(path) as f:
            out[pkg] = [line.split()[0] for line in f if line.strip() and not line.lstrip().startswith('#')]
    return out


def covered_by(path, entry):
    """dh_install's meaning: the entry names the file, or a directory above it; globs allowed."""
    path, entry = path.lstrip('/'), entry.rstrip('/')
    return (path == entry or path.startswith(entry + '/') or fnmatch.fnmatch(path, entry)
            or fnmatch.fnmatch(path, entry + '/*'))


def test_every_installed_file_goes_to_exactly_one_package(meson_info):
    entries = install_entries()
    assert set(entries) == {'platform-launcher', 'cockpit-platform-launcher'}, entries
    problems = []
    for path in sorted(meson_info['installed'].values()):
        owners = [pkg for pkg, es in entries.items() if any(covered_by(path, e) for e in es)]
        if len(owners) != 1:
            problems.append('%s -> %s' % (path, owners or 'no package (add its directory to a debian/*.install)'))
    assert not problems, '\n'.join(problems)
    cockpit = [p for p in meson_info['installed'].values() if p.startswith('/usr/share/cockpit/')]
    assert cockpit and all(covered_by(p, 'usr/share/cockpit') for p in cockpit)
    assert entries['cockpit-platform-launcher'] == ['usr/share/cockpit']


def test_debian_version_is_meson_version_plus_a_revision(meson_info):
    version = subprocess.run(['dpkg-parsechangelog', '-l', os.path.join(DEBIAN, 'changelog'), '-S', 'Version'],
                             capture_output=True, text=True, check=True).stdout.strip()
    upstream, _, revision = version.rpartition('-')
    assert upstream == meson_info['project']['version'], (version, meson_info['project']['version'])
    assert revision.isdigit() or revision.replace('.', '').replace('~', '').isalnum(), version
    with open(os.path.join(DEBIAN, 'source', 'format')) as f:
        assert f.read().strip() == '3.0 (quilt)'   # a Debian revision needs a non-native format


def test_control_and_rules():
    control = open(os.path.join(DEBIAN, 'control')).read()
    assert 'debhelper-compat (= 13)' in control
    paras = {p.split('\n', 1)[0].split(': ', 1)[1]: p for p in control.split('\n\n') if p.startswith('Package: ')}
    assert set(paras) == {'platform-launcher', 'cockpit-platform-launcher'}
    assert 'Architecture: all' in paras['cockpit-platform-launcher']
    assert 'cockpit-bridge' in paras['cockpit-platform-launcher'].split('Depends:', 1)[1].split('\n')[0]
    rules = open(os.path.join(DEBIAN, 'rules')).read()
    assert 'dh $@ --buildsystem=meson' in rules


@pytest.mark.parametrize('script', ['platform-launcher.postinst', 'platform-launcher.prerm',
                                    'platform-launcher.postrm'])
def test_maintainer_script_syntax(script):
    path = os.path.join(DEBIAN, script)
    text = open(path).read()
    assert text.startswith('#!/bin/sh\n') and '\nset -e\n' in text and text.count('#DEBHELPER#') == 1
    p = subprocess.run(['sh', '-n', path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
