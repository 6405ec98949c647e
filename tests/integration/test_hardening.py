# SPDX-License-Identifier: Apache-2.0
"""Process and unit hardening (issue 9, defect 12 and the unit's exposure score)."""
import os
import re
import shutil
import subprocess

import pytest

import harness as H

UNIT = os.path.join(H.BUILD_DIR, 'data', 'platform-launcher.service')
EXPOSURE_TARGET = 1.5
# Without capabilities, as in the unit (CapabilityBoundingSet=): then only
# dumpability decides whether another root process without CAP_SYS_PTRACE may
# read the daemon's memory (/proc/PID/mem, environ) — what a core dump would hold.
NO_CAPS = ['setpriv', '--bounding-set=-all', '--inh-caps=-all']


def start_capless(harness, args=()):
    d = harness.daemon(config={'env': {'A': 'S3CRET-a'}}, start=False, args=list(args))
    argv = d.argv
    d.argv = lambda: NO_CAPS + argv()
    return d.start()


def peer_can_read_memory(pid):
    r = subprocess.run(NO_CAPS + ['cat', '/proc/%d/environ' % pid], stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=10)
    if r.returncode != 0:
        assert b'Permission denied' in r.stderr, r.stderr
    return r.returncode == 0


def test_daemon_is_not_dumpable(bus, harness, daemon_binary):
    if not H.is_root():
        H.need_root('a capability-less root peer')
    d = start_capless(harness)
    assert d.running()
    assert not peer_can_read_memory(d.proc.pid), 'the daemon is dumpable (PR_SET_DUMPABLE not 0)'
    assert d.get('EnvKeys') == ['A']


@pytest.mark.parametrize('how', ['option', 'environment'])
def test_allow_core_dumps_keeps_it_dumpable(bus, harness, daemon_binary, how):
    if not H.is_root():
        H.need_root('a capability-less root peer')
    if how == 'option':
        d = start_capless(harness, ['--allow-core-dumps'])
    else:
        d = harness.daemon(config={'env': {}}, start=False, env={'PLATFORM_LAUNCHER_ALLOW_CORE_DUMPS': '1'})
        argv = d.argv
        d.argv = lambda: NO_CAPS + argv()
        d.start()
    assert peer_can_read_memory(d.proc.pid)
    assert 'Core dumps allowed' in d.log_text()


def unit_lines():
    with open(UNIT) as f:
        return [ln.strip() for ln in f if ln.strip() and not ln.startswith('#')]


def test_unit_forbids_core_dumps():
    assert 'LimitCORE=0' in unit_lines()


def test_unit_cannot_touch_dstack_units():
    # Stopping or restarting the launcher must never reach dstack-vmm, KMS or the gateway.
    for ln in unit_lines():
        key = ln.split('=', 1)[0]
        if key in ('Requires', 'Requisite', 'BindsTo', 'PartOf', 'Conflicts', 'PropagatesStopTo',
                   'PropagatesReloadTo', 'StopPropagatedFrom', 'JoinsNamespaceOf', 'ExecStop', 'ExecStopPost'):
            assert 'dstack' not in ln, ln
    lines = unit_lines()
    assert 'KillMode=mixed' in lines and 'CapabilityBoundingSet=' in lines
    assert 'ProtectProc=invisible' in lines  # it cannot even see the VMM's processes


def test_unit_exposure_score():
    tool = shutil.which('systemd-analyze')
    if not tool:
        pytest.skip('systemd-analyze is not installed')
    helptext = subprocess.run([tool, 'security', '--help'], capture_output=True, text=True).stdout
    if '--offline' not in helptext:
        pytest.skip('systemd-analyze has no --offline (systemd < 250)')
    r = subprocess.run([tool, 'security', '--offline=yes', '--no-pager', UNIT], capture_output=True, text=True,
                       timeout=60)
    m = re.search(r'Overall exposure level for \S+: (\d+\.\d+)', r.stdout)
    assert m, r.stdout + r.stderr
    score = float(m.group(1))
    remaining = [ln for ln in r.stdout.splitlines() if ln.startswith('✗')]
    print('\nsystemd-analyze security exposure: %.1f (target <= %.1f)' % (score, EXPOSURE_TARGET))
    for ln in remaining:
        print('  ' + re.sub(r'\s{2,}', '  ', ln))
    assert score <= EXPOSURE_TARGET, '\n'.join(remaining)
