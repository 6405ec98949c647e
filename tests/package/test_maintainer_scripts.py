# SPDX-License-Identifier: Apache-2.0
"""The maintainer scripts of the built platform-launcher .deb on a host that
runs systemd. This machine does not (test_lifecycle.py installs there), so
each script runs in a private mount namespace with /run/systemd/system present
and systemctl, deb-systemd-invoke and deb-systemd-helper replaced by stubs that
record their arguments: what debhelper generated and what our scripts add."""
import glob
import os
import subprocess

import pytest

import conftest as C

STUB = '''#!/bin/sh
echo "$(basename "$0") $*" >> "$STUB_LOG"
case "$(basename "$0") $*" in
    "systemctl --quiet is-active validator-launcher.service") [ -n "$RUST_LAUNCHER_ACTIVE" ] ;;
    *) exit 0 ;;
esac
'''


@pytest.fixture(scope='module')
def scripts(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('a mount namespace needs root')
    deb = [d for d in C.debs() if os.path.basename(d).startswith('platform-launcher_')]
    assert len(deb) == 1, C.debs()
    d = tmp_path_factory.mktemp('maintscripts')
    subprocess.run(['dpkg-deb', '-e', deb[0], str(d / 'control')], check=True)
    stubs = d / 'bin'
    stubs.mkdir()
    for name in ('systemctl', 'deb-systemd-invoke', 'deb-systemd-helper'):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    return d


def run(d, script, *args, rust_active=False, systemd=True):
    """Run a maintainer script; returns (exit status, stdout, [stub calls])."""
    log = d / 'calls.log'
    log.write_text('')
    env = {'PATH': '%s:/usr/sbin:/usr/bin:/sbin:/bin' % (d / 'bin'), 'STUB_LOG': str(log), 'LC_ALL': 'C.UTF-8'}
    if rust_active:
        env['RUST_LAUNCHER_ACTIVE'] = '1'
    setup = 'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && ' if systemd else \
        'mount -t tmpfs tmpfs /run && '
    # Only /run is replaced (and only in the namespace). purge would delete
    # /var/lib/platform-launcher: the scripts run for configure/upgrade/remove only.
    p = subprocess.run(['unshare', '--mount', '--propagation', 'private', '--', 'sh', '-c',
                        setup + 'exec "$@"', 'sh', str(d / 'control' / script)] + list(args),
                       env=env, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr, [line for line in log.read_text().splitlines() if line]


def test_first_install_enables_and_starts_the_unit(scripts):
    rc, out, calls = run(scripts, 'postinst', 'configure', '')
    assert rc == 0, out
    assert 'deb-systemd-helper enable platform-launcher.service' in calls, calls
    assert 'deb-systemd-invoke start platform-launcher.service' in calls, calls


def test_first_install_beside_a_running_rust_launcher_does_not_start(scripts):
    """Starting ours would stop validator-launcher.service, whose ExecStopPost
    kills dstack-vmm and the VM: enabled, not started, and the operator is told."""
    rc, out, calls = run(scripts, 'postinst', 'configure', '', rust_active=True)
    assert rc == 0, out
    assert 'deb-systemd-helper enable platform-launcher.service' in calls, calls
    assert not [c for c in calls if c.startswith('deb-systemd-invoke start')], calls
    assert 'not started, because validator-launcher.service is running' in out, out


def test_upgrade_restarts_a_running_unit(scripts):
    rc, out, calls = run(scripts, 'postinst', 'configure', '0.0.9-1')
    assert rc == 0, out
    assert 'deb-systemd-invoke try-restart platform-launcher.service' in calls, calls
    assert not [c for c in calls if c.startswith('deb-systemd-invoke start')], calls


def test_remove_stops_the_unit_and_upgrade_does_not(scripts):
    rc, out, calls = run(scripts, 'prerm', 'remove')
    assert rc == 0 and 'deb-systemd-invoke stop platform-launcher.service' in calls, (out, calls)
    rc, out, calls = run(scripts, 'prerm', 'upgrade', '0.2.0-1')
    assert rc == 0 and not [c for c in calls if 'stop' in c], (out, calls)


def test_without_systemd_nothing_is_started(scripts):
    rc, out, calls = run(scripts, 'postinst', 'configure', '', systemd=False)
    assert rc == 0, out
    assert not [c for c in calls if c.startswith(('systemctl', 'deb-systemd-invoke'))], calls
