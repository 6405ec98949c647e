# SPDX-License-Identifier: Apache-2.0
"""Migration from the Rust launcher (issue 10): on first start against the VM
the Rust launcher created (a VM with the managed name that the state store has
no record of deploying), the launcher never replaces it silently. Its env
cannot be read, so the plan is "adopt": automatic checks keep it as it is
(and start it if it exited); `platformctl vm update`, or AdoptPolicy=redeploy,
redeploys it once with the local env, after which it is an ordinary VM."""
import json

import pytest

from vmenv import vm_env, VM_NAME, SECRET, sha256, DEFAULT_LOCAL_ENV  # noqa: F401
from ctl_helpers import ctl, fields
import simlib  # noqa: E402  (on sys.path through vmenv)

ADOPT_REASON = ("adopt: the env of the running VM cannot be read; it will be redeployed once with the local env "
                "(run 'platformctl vm update' or set AdoptPolicy=redeploy)")

# The env the Rust launcher sent (an older passphrase than the local one).
RUST_VM_ENV = {'HOTKEY_PASSPHRASE': SECRET + 'rust era words', 'VALIDATOR_BASE_URL': 'https://validator.example',
               'DSTACK_VMM_URL': 'http://10.0.2.2:10300/'}


def rust_config_text(env, extra=''):
    """/etc/platform-validator/config.json as the Rust launcher writes it
    (serde_json pretty: "dstack_vmm_url" and "env" only), with the two URL
    keys a test needs to point the daemon at the simulators (on a host the
    defaults are right), the poll interval, and room for the simulated VMs."""
    local = ',\n'.join('    %s: %s' % (json.dumps(k), json.dumps(v)) for k, v in env.local_env.items())
    return ('{\n'
            '  "dstack_vmm_url": %s,\n'
            '  "env": {\n%s\n  },\n'
            '  "api_url": %s,\n'
            '  "vmm_url": %s,\n'
            '  "poll_interval_usec": %d,\n'
            '  "capacity_vcpu": %d,\n'
            '  "capacity_memory_mib": %d%s\n'
            '}\n') % (json.dumps(env.guest_vmm_url), local, json.dumps(env.config()['api_url']),
                      json.dumps(env.vmm.url), env.poll_usec, env.config()['capacity_vcpu'],
                      env.config()['capacity_memory_mib'], extra)


def rust_vm(env, compose=None, status='running'):
    """CreateVm as the Rust launcher did: the managed name, the compose of its
    time, its own encrypted env. Returns the VM's id."""
    compose = compose or env.expected_compose()
    cfg = {'name': VM_NAME, 'image': 'dstack-0.5.2', 'compose_file': compose, 'vcpu': 16, 'memory': 16384,
           'disk_size': 200, 'ports': [{'protocol': 'tcp', 'host_port': 0, 'vm_port': 0, 'host_address': ''}]}
    pk = env.vmm.call('GetAppEnvEncryptPubKey', {'app_id': sha256(compose)[:40]})['public_key']
    cfg['encrypted_env'] = simlib.encrypt_env(pk, RUST_VM_ENV)
    vm_id = env.vmm.call('CreateVm', cfg)['id']
    env.vmm.wait_status(vm_id, 'running')
    if status != 'running':
        env.vmm.set_vm(vm_id, status=status)
        env.vmm.wait_status(vm_id, status)
    return vm_id


def rust_host(vm_env, extra='', status='running', poll_sec=1):
    # No auto-restart at the VMM: a start seen is the launcher's.
    env = vm_env(daemon=False, poll_sec=poll_sec, vmm_opts={'no_auto_restart': True})
    vm_id = rust_vm(env, status=status)
    env.daemon.write_config(rust_config_text(env, extra))
    return env, vm_id


def polls(env, n, seq):
    """Wait for n more checks (Status calls) since seq."""
    env.wait_calls('Status', count=n, since=seq, timeout=n * 2.5 + 10)


def assert_adopted(env, vm_id):
    env.wait_prop('StateReason', ADOPT_REASON)
    p = env.props()
    assert p['State'] == 'running' and p['Id'] == vm_id, p
    action, changes = env.plan()
    assert action == 'adopt', (action, changes)
    assert ['reason', '', ADOPT_REASON] in [list(c) for c in changes], changes
    assert any(c[0] == 'env' and c[1] == 'unknown' for c in changes), changes
    assert SECRET not in repr(changes)
    assert env.the_vm()['id'] == vm_id and env.the_vm()['env'] == RUST_VM_ENV


def test_rust_vm_is_adopted_kept_then_redeployed_on_update(vm_env):
    env, vm_id = rust_host(vm_env)
    seq = env.last_seq()
    env.start_daemon()
    env.wait_vm_object()
    polls(env, 4, seq)
    assert env.writes_since(seq) == []
    assert_adopted(env, vm_id)
    assert env.get('UpdateCount') == 0

    # status: shown, and not an error (the VM runs; exit 0 as systemctl is-active).
    st = ctl(env.bus, 'status')
    assert st.returncode == 0, (st.returncode, st.stdout, st.stderr)
    assert ADOPT_REASON in st.stdout, st.stdout
    assert 'Problem' not in st.stdout, st.stdout
    pl = ctl(env.bus, 'vm', 'plan')
    assert pl.returncode == 0, (pl.stdout, pl.stderr)
    assert fields(pl.stdout)['Action'] == 'adopt' and fields(pl.stdout)['Reason'] == ADOPT_REASON, pl.stdout
    assert 'env' in pl.stdout and 'unknown' in pl.stdout
    pj = json.loads(ctl(env.bus, '--json', 'vm', 'plan').stdout)
    assert pj['Action'] == 'adopt', pj

    # The decision survives a daemon restart (it is made from the same data).
    env.restart_daemon()
    env.wait_vm_object()
    seq = env.last_seq()
    polls(env, 3, seq)
    assert env.writes_since(seq) == []
    assert_adopted(env, vm_id)

    # vm update: redeployed once, with the local env.
    seq = env.last_seq()
    up = ctl(env.bus, 'vm', 'update', timeout=60)
    assert up.returncode == 0, (up.returncode, up.stdout, up.stderr)
    writes = [m for _, m in env.writes_since(seq)]
    assert writes.count('CreateVm') == 1 and 'RemoveVm' in writes, writes
    vm = env.assert_converged()
    assert vm['id'] != vm_id and env.vmm.status_of(vm_id) is None
    assert vm['env']['HOTKEY_PASSPHRASE'] == DEFAULT_LOCAL_ENV['HOTKEY_PASSPHRASE']
    assert env.get('StateReason') == '' and env.get('UpdateCount') == 1
    assert env.plan() == ('none', [])

    # Then an ordinary VM: no more writes.
    seq = env.last_seq()
    polls(env, 3, seq)
    assert env.writes_since(seq) == []
    env.daemon.assert_not_logged(SECRET)


def test_adopt_policy_redeploy_replaces_once_at_start(vm_env):
    env, vm_id = rust_host(vm_env, extra=',\n  "adopt_policy": "redeploy"')
    seq = env.last_seq()
    env.start_daemon()
    env.wait_vm_object()
    assert env.config_get('AdoptPolicy') == 'redeploy'
    env.wait_deployed()
    vm = env.assert_converged()
    assert vm['id'] != vm_id and env.vmm.status_of(vm_id) is None
    seq2 = env.last_seq()
    polls(env, 3, seq2)
    assert [m for _, m in env.writes_since(seq)].count('CreateVm') == 1
    assert env.writes_since(seq2) == []
    # And a restart does not redeploy again: the VM is ours now.
    env.restart_daemon()
    env.wait_vm_object()
    seq3 = env.last_seq()
    polls(env, 2, seq3)
    assert env.writes_since(seq3) == [] and env.plan() == ('none', [])


def test_adopt_policy_setting(vm_env):
    """AdoptPolicy: "keep" by default, set through SetSettings (written to
    adopt_policy), anything else refused naming the field."""
    env, vm_id = rust_host(vm_env)
    env.start_daemon()
    env.wait_vm_object()
    assert env.config_get('AdoptPolicy') == 'keep'
    r = env.config_call('SetSettings', 'a{sv}', [{'AdoptPolicy': ['s', 'sometimes']}])
    assert not r.ok and 'AdoptPolicy' in r.error_message, r
    assert env.config_get('AdoptPolicy') == 'keep'
    r = env.config_call('SetSettings', 'a{sv}', [{'AdoptPolicy': ['s', 'redeploy']}], user='nobody')
    assert not r.ok
    seq = env.last_seq()
    p = ctl(env.bus, 'config', 'set', 'AdoptPolicy', 'redeploy')
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert env.daemon.read_config()['adopt_policy'] == 'redeploy'
    assert env.daemon.read_config()['dstack_vmm_url'] == env.guest_vmm_url
    # The next check redeploys it.
    env.wait_prop('Id', lambda v: v not in ('', vm_id), timeout=30)
    env.wait_prop('StateReason', '')
    vm = env.assert_converged()
    assert [m for _, m in env.writes_since(seq)].count('CreateVm') == 1 and vm['id'] != vm_id


def test_adopted_vm_that_exits_is_started_as_it_is(vm_env):
    """A VM the launcher cannot compare in full is still kept up: when it
    exits it is started again (StartVm), never replaced."""
    env, vm_id = rust_host(vm_env, status='exited')
    seq = env.last_seq()
    env.start_daemon()
    env.wait_vm_object()
    env.vmm.wait_status(vm_id, 'running', timeout=30)
    env.wait_prop('StateReason', ADOPT_REASON)
    writes = [m for _, m in env.writes_since(seq)]
    assert writes == ['StartVm'], writes
    assert env.the_vm()['id'] == vm_id and env.get('RestartCount') == 1
    action, _ = env.plan()
    assert action == 'adopt'


def test_adopted_vm_is_started_while_the_spec_is_blocked(vm_env):
    """Missing env blocks any new deployment, but the Rust launcher's VM is
    still kept up: when it exits it is started as it is; nothing else."""
    env = vm_env(daemon=False, poll_sec=1, vmm_opts={'no_auto_restart': True},
                 api_doc={'required_env': ['NEEDED_KEY']})
    vm_id = rust_vm(env, status='exited')
    env.daemon.write_config(rust_config_text(env))
    seq = env.last_seq()
    env.start_daemon()
    env.wait_vm_object()
    env.vmm.wait_status(vm_id, 'running', timeout=30)
    env.wait_prop('State', 'blocked')
    assert 'NEEDED_KEY' in env.get('StateReason')
    assert [m for _, m in env.writes_since(seq)] == ['StartVm']
    assert env.the_vm()['id'] == vm_id
