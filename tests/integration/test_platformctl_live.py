# SPDX-License-Identifier: Apache-2.0
"""platformctl's Vm commands against the real daemon, the VMM and the Platform
API simulators: what an operator does on a validator host.

The daemon polls the API once a day here, so the test drives every change.
"""
import json
import os
import re
import sys
import time

import pytest

import harness as H

SOURCE_DIR = os.environ.get('PLATFORM_SOURCE_DIR',
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'sim'))
import simlib  # noqa: E402
from simlib import api, api_process, vmm, vmm_process  # noqa: E402,F401 (fixtures)

from ctl_helpers import PLATFORMCTL, Monitor, error_after_steps, fields, one_line_error, run_on_pty, screen_lines  # noqa: E402,E501

OP_TIMEOUT = 120


def ctl(bus, *args, timeout=OP_TIMEOUT):
    return H.run_tool(bus, [PLATFORMCTL] + list(args), timeout=timeout)


def vm_props(bus):
    p = ctl(bus, '--json', 'vm', 'status', timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def wait_vm(bus, pred, what, timeout=60):
    last = [None]

    def check():
        p = ctl(bus, '--json', 'vm', 'status', timeout=30)
        if p.returncode != 0:
            return False
        last[0] = json.loads(p.stdout)
        return pred(last[0])
    try:
        simlib.wait_until(check, timeout, what, interval=0.1)
    except Exception as e:
        raise AssertionError('%s; last vm status: %r' % (e, last[0]))
    return last[0]


@pytest.fixture
def launcher(bus, polkit, harness, daemon_binary, vmm, api):
    """The daemon on the simulators, polling rarely so the test drives it."""
    config = {
        'env': {'HOTKEY_PASSPHRASE': 'S3CRET-hotkey', 'VALIDATOR_BASE_URL': 'https://validator.example'},
        'api_url': api.url + '/config/compose/validator_vm',
        'vmm_url': vmm.url,
        'poll_interval_usec': 24 * 3600 * 1000000,
        'stop_timeout_usec': 5 * 1000000,
        'capacity_vcpu': 100000, 'capacity_memory_mib': 1 << 30,  # the simulated VMs outgrow this machine
    }
    d = harness.daemon(config=config)
    wait_vm(bus, lambda v: v['Name'] == 'validator_vm', 'the Vm object')
    return d


@pytest.fixture
def running(launcher, bus, vmm):
    p = ctl(bus, 'vm', 'update')
    assert p.returncode == 0, p.stderr
    v = wait_vm(bus, lambda v: v['State'] == 'running', 'a running VM')
    assert vmm.status_of(v['Id']) == 'running'
    return v


def test_update_creates_the_vm(running, bus, vmm):
    assert running['ComposeHash'] == vmm.vm(running['Id'])['boot_compose_hash']
    f = fields(ctl(bus, 'vm', 'status').stdout)
    assert f['State'].startswith('running')
    assert f['Id'] == running['Id']
    assert f['Last check'].endswith('ago'), f
    s = ctl(bus, 'status').stdout
    assert s.splitlines()[0].strip() == 'VM: validator_vm', s
    assert 'S3CRET' not in s


def test_plan_after_update_is_none(running, bus):
    p = ctl(bus, 'vm', 'plan')
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == 'Action: none'
    assert json.loads(ctl(bus, '--json', 'vm', 'plan').stdout) == {'Action': 'none', 'Changes': []}


def test_stop_and_start(running, bus, vmm):
    p = ctl(bus, 'vm', 'stop')
    assert p.returncode == 0, p.stderr
    v = vm_props(bus)
    assert v['State'] == 'stopped', v
    assert vmm.status_of(v['Id']) in ('stopped', 'exited')
    p = ctl(bus, 'vm', 'start')
    assert p.returncode == 0, p.stderr
    v = vm_props(bus)
    assert v['State'] == 'running', v
    assert vmm.status_of(v['Id']) == 'running'


def test_restart_shows_progress_on_a_terminal(running, bus, vmm):
    boots = vmm.vm(running['Id'])['boot_count']
    rc, out, err = run_on_pty(bus, 'vm', 'restart', timeout=OP_TIMEOUT)
    assert rc == 0, err
    lines = err.splitlines()
    assert lines and lines[-1].startswith('restart validator_vm: running'), err
    assert any(line.startswith(('restart validator_vm: stopping', 'restart validator_vm: starting'))
               for line in lines), err
    assert vmm.vm(vm_props(bus)['Id'])['boot_count'] > boots


def test_update_applies_a_new_spec_and_monitor_sees_it(running, bus, api, harness):
    m = Monitor(harness, bus, '--json')
    api.patch_doc(compose_content='services:\n  validator:\n    image: example/validator:2\n')
    p = ctl(bus, 'vm', 'update')
    assert p.returncode == 0, p.stderr
    v = vm_props(bus)
    assert v['ComposeHash'] != running['ComposeHash']
    assert v['ComposeHash'] == v['TargetComposeHash']
    assert v['State'] == 'running'
    deadline = time.monotonic() + 30
    while True:
        doc = json.loads(m.line(max(0.1, deadline - time.monotonic())))
        if doc['Member'] == 'VmUpdated':
            break
    assert doc['Vm'] == 'validator_vm'
    assert doc['Args']['old_compose_hash'] == running['ComposeHash']
    assert doc['Args']['new_compose_hash'] == v['ComposeHash']
    assert doc['Args']['vm_id'] == v['Id']
    assert m.stop() == 0


def test_update_no_block(running, bus, api):
    api.patch_doc(compose_content='services:\n  validator:\n    image: example/validator:3\n')
    t0 = time.monotonic()
    p = ctl(bus, '--no-block', 'vm', 'update')
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 5
    wait_vm(bus, lambda v: v['State'] == 'running' and v['ComposeHash'] != running['ComposeHash'],
            'the new compose hash deployed')


def test_logs(running, bus):
    p = ctl(bus, 'vm', 'logs', '-n', '50')
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip(), 'no log lines'
    p = ctl(bus, 'vm', 'logs', '--channel', 'stderr', '-n', '5')
    assert p.returncode == 0, p.stderr


def test_blocked_by_missing_env(launcher, bus, api):
    api.patch_doc(required_env=['HOTKEY_PASSPHRASE', 'NOT_SET_HERE'])
    p = ctl(bus, 'vm', 'update')
    error_after_steps(p, 78, 'Failed to update validator_vm: ')
    v = wait_vm(bus, lambda v: v['State'] == 'blocked', 'State=blocked')
    assert 'NOT_SET_HERE' in v['StateReason']
    lines = ctl(bus, 'status').stdout.splitlines()
    assert lines[0].strip().startswith('Problem: VM validator_vm blocked: '), lines
    assert 'NOT_SET_HERE' in lines[0]


def test_busy_while_another_operation_runs(running, bus, vmm):
    vmm.fault('ShutdownVm', 'hold', seconds=30)
    p = ctl(bus, '--no-block', 'vm', 'stop')
    assert p.returncode == 0, p.stderr
    vmm.wait_calls('ShutdownVm', state='blocked', timeout=30)
    one_line_error(ctl(bus, 'vm', 'restart'), 75, 'Failed to restart validator_vm: ')
    vmm.release('ShutdownVm')
    wait_vm(bus, lambda v: v['State'] == 'stopped', 'the stop to finish')


def test_blocked_error_names_the_missing_key(launcher, bus, api):
    api.patch_doc(required_env=['NOT_SET_HERE'])
    error_after_steps(ctl(bus, 'vm', 'update'), 78, 'NOT_SET_HERE')


def test_set_env_prints_the_plan_and_follows_the_replacement(running, bus, vmm):
    """A change of a secret replaces the VM: the operator is told before, and
    sees it through, never only from the log."""
    p = ctl(bus, 'config', 'set-env', 'VALIDATOR_BASE_URL', 'https://validator-2.example')
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith('Env value set. This replaces VM validator_vm (recreate): it is down from its '
                               'graceful stop (up to 5s) until the new VM has booted.\n'), p.stdout
    # Followed to the end: one line per step, then the new VM.
    assert 'recreate validator_vm: compose hash ' in p.stderr and ', VM id ' in p.stderr, p.stderr
    v = vm_props(bus)
    assert v['State'] == 'running' and v['Id'] != running['Id'], v
    assert p.stderr.rstrip('\n').endswith(v['Id']), p.stderr


def test_set_vmm_url_no_block_returns_at_once(running, bus):
    t0 = time.monotonic()
    p = ctl(bus, '--no-block', 'config', 'set-vmm-url', 'http://10.0.2.2:9999/')
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 < 5
    assert 'This replaces VM validator_vm (recreate)' in p.stdout or 'is updating VM validator_vm now' in p.stdout, \
        p.stdout
    assert 'Follow it with platformctl monitor' in p.stdout, p.stdout
    wait_vm(bus, lambda v: v['State'] == 'running' and v['Id'] != running['Id'], 'the replacement to finish')


def test_set_env_of_an_unused_key_says_nothing_changes(running, bus):
    p = ctl(bus, 'config', 'set-env', 'NOT_IN_THE_COMPOSE', 'x')
    assert p.returncode == 0, p.stderr
    assert p.stdout == 'Env value set. VM validator_vm is not changed (plan: none).\n', p.stdout
    assert vm_props(bus)['Id'] == running['Id']


def test_progress_lines_name_the_operation_and_show_each_step_once(running, bus, api):
    """Issue 16: each line says which operation it is about, and a step (what
    the operator reads) is printed once, not again when only the launcher's own
    step id or counter moves."""
    api.patch_doc(compose_content='services:\n  validator:\n    image: example/validator:4\n')
    p = ctl(bus, 'vm', 'update')
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert lines and all(line.startswith('update validator_vm: ') for line in lines), lines
    assert len(lines) == len(set(lines)), lines
    assert lines[-2] == 'update validator_vm: running', lines
    rc, _, err = run_on_pty(bus, 'vm', 'restart', timeout=OP_TIMEOUT)
    assert rc == 0, err
    shown = screen_lines(err)
    assert all(line.startswith('restart validator_vm: ') for line in shown), shown
    steps = [re.sub(r' \[\d+%\]$', '', line) for line in shown]
    assert len(steps) == len(set(steps)), shown
