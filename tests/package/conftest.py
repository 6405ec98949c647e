# SPDX-License-Identifier: Apache-2.0
"""Tests of the Debian packages as installed, and of the Ansible role.

These install and purge the packages on the machine they run on, so they are
not part of `meson test`: .ci/run runs them after the test suites (README
"Install from the package"), with

    PLATFORM_DEB_DIR=<dir with the .deb files of tests/package/build-debs.sh>
    /usr/bin/python3 -m pytest tests/package/test_lifecycle.py tests/package/test_role.py

Without PLATFORM_DEB_DIR they skip. They reuse the integration suite's harness
(tests/integration/harness.py): the real dbus-daemon, here reading the
distribution's system.conf and so the bus policy the package installed, the
real polkitd reading the installed actions, the simulators of tests/sim, and
the daemon and platformctl from their installed paths.

PLATFORM_TESTLOG=FILE appends one line per test in meson's testlog.json form,
so .ci/run counts them in its final line.
"""
import glob
import json
import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
sys.path.insert(0, os.path.join(HERE, '..', 'sim'))
import harness as H  # noqa: E402

PACKAGES = ('platform-launcher', 'cockpit-platform-launcher', 'platform-launcher-dbgsym')
DAEMON = '/usr/libexec/platform-launcherd'
PLATFORMCTL = '/usr/bin/platformctl'
OPERATOR_CONFIG = '/etc/platform-validator/config.json'
STATE_DIR = '/var/lib/platform-launcher'
APT_ENV = dict(os.environ, DEBIAN_FRONTEND='noninteractive', LC_ALL='C.UTF-8')

# What a package or its maintainer scripts may touch, for the file lists taken
# before installing and after purging. apt's and dpkg's own records are left out.
SNAPSHOT_ROOTS = ('/usr', '/lib', '/etc', '/var/lib', '/opt', '/srv', '/run/platform-launcher')
SNAPSHOT_SKIP = ('/var/lib/dpkg', '/var/lib/apt', '/var/lib/ucf')


def deb_dir():
    d = os.environ.get('PLATFORM_DEB_DIR')
    if not d:
        pytest.skip('PLATFORM_DEB_DIR is not set (the .deb files of tests/package/build-debs.sh; .ci/run sets it)')
    debs = sorted(glob.glob(os.path.join(d, '*.deb')))
    if not debs:
        pytest.fail('no .deb in PLATFORM_DEB_DIR=%s' % d)
    return os.path.abspath(d)


def debs():
    return sorted(glob.glob(os.path.join(deb_dir(), '*.deb')))


def installed(pkg):
    p = subprocess.run(['dpkg-query', '-W', '-f=${db:Status-Abbrev}', pkg], capture_output=True, text=True)
    return p.returncode == 0 and p.stdout.startswith('ii')


def known_packages():
    """Every package dpkg knows (any state but not-installed), name -> status."""
    p = subprocess.run(['dpkg-query', '-W', '-f=${Package}\t${db:Status-Abbrev}\n'], capture_output=True,
                       text=True, check=True)
    out = {}
    for line in p.stdout.splitlines():
        name, _, st = line.partition('\t')
        if not st.startswith('un'):
            out[name] = st.strip()
    return out


def apt(*args, check=True):
    p = subprocess.run(['apt-get', '-y', '-q', '-o', 'Dpkg::Use-Pty=0'] + list(args), capture_output=True,
                       text=True, env=APT_ENV, timeout=600)
    if check:
        assert p.returncode == 0, 'apt-get %s: exit %d\n%s\n%s' % (' '.join(args), p.returncode, p.stdout[-4000:],
                                                                  p.stderr[-4000:])
    return p


def dpkg_files(pkg):
    p = subprocess.run(['dpkg', '-L', pkg], capture_output=True, text=True, check=True)
    return [line for line in p.stdout.splitlines() if line.startswith('/')]


def purge_all():
    present = [p for p in PACKAGES if p in known_packages()]
    if present:
        apt('purge', *present)


def snapshot():
    """Every path under SNAPSHOT_ROOTS (names only; __pycache__ left out: Python
    run as root writes there)."""
    out = set()
    for root in SNAPSHOT_ROOTS:
        if not os.path.lexists(root):
            continue
        out.add(root)
        for d, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if x != '__pycache__' and os.path.join(d, x) not in SNAPSHOT_SKIP]
            for x in dirs + files:
                out.add(os.path.join(d, x))
    return out


# ---------------------------------------------------------------------------
# A private system bus configured as the host's: /usr/share/dbus-1/system.conf
# ---------------------------------------------------------------------------

def host_bus_config():
    """/usr/share/dbus-1/system.conf as Debian ships it, reading the host's
    /usr/share/dbus-1/system.d (where the package put its policy), with only
    what a test cannot do removed: user switch, fork, pid file, syslog,
    activation helper, the host's /etc overrides."""
    with open('/usr/share/dbus-1/system.conf') as f:
        text = f.read()
    text = re.sub(r'<!--.*?-->', '', text, flags=re.S)
    for tag in (r'<user>[^<]*</user>', r'<fork/>', r'<pidfile>[^<]*</pidfile>', r'<syslog/>',
                r'<servicehelper>[^<]*</servicehelper>', r'<standard_system_servicedirs/>',
                r'<include [^>]*>[^<]*</include>', r'<includedir>/etc/[^<]*</includedir>'):
        text = re.sub(tag, '', text)
    text = re.sub(r'<listen>[^<]*</listen>', '<listen>unix:path={socket}</listen>', text)
    text, n = re.subn(r'<includedir>system.d</includedir>', '<includedir>/usr/share/dbus-1/system.d</includedir>',
                      text)
    assert n == 1, 'system.conf has no <includedir>system.d</includedir>'
    return text.replace('{', '{{').replace('}', '}}').replace('{{socket}}', '{socket}')


class HostBus(H.PrivateBus):
    def start(self, timeout=H.DEFAULT_TIMEOUT):
        saved, H.BUS_CONFIG = H.BUS_CONFIG, host_bus_config()
        try:
            return super().start(timeout)
        finally:
            H.BUS_CONFIG = saved


def start_installed_world(h):
    """Bus (host config), polkitd (the host's actions only), on harness h."""
    h.bus = HostBus(h.workdir, h.procs, project_policy='/usr/share/dbus-1/system.d/org.platform.Launcher1.conf').start()
    h.start_polkit('real', extra_policies=[])
    return h


@pytest.fixture
def harness():
    if not H.is_root():
        pytest.skip('installing packages needs root')
    h = H.Harness(prefix='platform-pkg-')
    try:
        yield h
    finally:
        problems = h.cleanup()
    if problems:
        pytest.fail('teardown: ' + '\n'.join(problems), pytrace=False)


# ---------------------------------------------------------------------------
# One meson-testlog line per test (PLATFORM_TESTLOG)
# ---------------------------------------------------------------------------

_outcomes = {}


def pytest_runtest_logreport(report):
    o = _outcomes.setdefault(report.nodeid, 'OK')
    if report.failed:
        _outcomes[report.nodeid] = 'FAIL'
    elif report.skipped and o != 'FAIL':
        _outcomes[report.nodeid] = 'SKIP'


def pytest_runtest_logfinish(nodeid, location):
    path = os.environ.get('PLATFORM_TESTLOG')
    if not path:
        return
    name = 'package / ' + nodeid.split('/')[-1]
    with open(path, 'a') as f:
        f.write(json.dumps({'name': name, 'result': _outcomes.get(nodeid, 'FAIL')}) + '\n')
