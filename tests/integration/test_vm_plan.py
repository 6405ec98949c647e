# SPDX-License-Identifier: Apache-2.0
"""Vm.Plan: what Update would do (create, none, recreate, blocked) with the
changes as (field, current, target), from the last fetched spec and
observation, with no side effect at all: no VMM or API request, no property
change, no signal (dbus-api.md, reconciler.h)."""
import re

from vmenv import vm_env, SECRET  # noqa: F401

NEW_COMPOSE = 'services:\n  app:\n    image: "nginx:1.27"\n'


def plan_without_side_effects(env, user=None):
    seq = env.last_seq()
    api_n = len(env.api.requests())
    before = env.props()
    mark = env.w.mark()
    action, changes = env.plan(user=user)
    assert env.calls_since(seq) == [], 'Plan talked to the VMM: %r' % [c['method'] for c in env.calls_since(seq)]
    assert len(env.api.requests()) == api_n, 'Plan fetched from the API'
    assert env.props() == before
    assert env.w.since(mark, path=None) == [], 'Plan emitted signals'
    assert SECRET not in repr(changes)
    for c in changes:
        assert len(c) == 3 and all(isinstance(x, str) for x in c), c
    return action, changes


def test_plan_create_then_none(vm_env):
    env = vm_env(daemon=False)
    env.vmm.fault('CreateVm', 'error', times=0, message='sim: no capacity')
    env.start_daemon()
    env.wait_vm_object()
    env.wait_calls('CreateVm', state='done')
    env.wait_prop('LastError', lambda v: v != '')
    action, changes = plan_without_side_effects(env)
    assert action == 'create', (action, changes)
    assert env.named_vms() == []
    env.vmm.clear_faults()
    assert env.update().ok
    env.assert_converged()
    assert plan_without_side_effects(env) == ('none', [])
    assert plan_without_side_effects(env, user='nobody') == ('none', [])   # open to everyone


def test_plan_recreate_shows_the_changes(vm_env):
    env = vm_env()
    old_hash = env.get('ComposeHash')
    env.vmm.fault('GetAppEnvEncryptPubKey', 'error', times=0)   # the spec is fetched, not applied
    env.api.patch_doc(compose_content=NEW_COMPOSE, vm_parameters={'vcpu': 8})
    new_hash = env.expected_hash()
    assert not env.update().ok
    action, changes = plan_without_side_effects(env)
    assert action == 'recreate', (action, changes)
    assert any(old_hash[:12] in cur and new_hash[:12] in tgt for _, cur, tgt in changes), changes
    assert any(re.search(r'\b16\b', cur) and re.search(r'\b8\b', tgt) for _, cur, tgt in changes), changes
    env.vmm.clear_faults()
    assert env.update().ok
    env.assert_converged(new_hash)
    assert plan_without_side_effects(env) == ('none', [])


def test_plan_env_change_by_key_name_only(vm_env):
    env = vm_env()
    env.vmm.fault('GetAppEnvEncryptPubKey', 'error', times=0)
    mark = env.w.mark()
    env.set_env('HOTKEY_PASSPHRASE', SECRET + 'next words')
    env.w.wait_signal('UpdateFailed', since=mark)
    action, changes = plan_without_side_effects(env)
    assert action == 'recreate', (action, changes)
    assert any('HOTKEY_PASSPHRASE' in ' '.join(c) for c in changes), changes


def test_plan_blocked(vm_env):
    env = vm_env()
    env.api.patch_doc(required_env=['NEEDED_KEY'])
    assert not env.update().ok
    action, changes = plan_without_side_effects(env)
    assert action == 'blocked', (action, changes)


def test_plan_start_for_exited_vm(vm_env):
    env = vm_env()
    vm = env.the_vm()
    env.vmm.fault('StartVm', 'error', times=0)       # observed, but cannot be started
    env.vmm.set_vm(vm['id'], status='exited')
    env.update()
    env.wait_prop('VmmStatus', 'exited')
    action, changes = plan_without_side_effects(env)
    assert action == 'start', (action, changes)


def _did(writes):
    """The action a list of VMM writes carried out."""
    if not writes:
        return 'none'
    if 'CreateVm' in writes:
        return 'recreate' if 'RemoveVm' in writes else 'create'
    if 'UpdateVm' in writes or 'UpgradeApp' in writes:
        return 'update-in-place'
    return 'start' if set(writes) == {'StartVm'} else repr(writes)


def _foreign_vm(env):
    """A VM with the managed name that the daemon did not deploy (as the Rust
    launcher left it): the desired compose, an env of its own."""
    import simlib
    from vmenv import VM_NAME, sha256
    compose = env.expected_compose()
    pk = env.vmm.call('GetAppEnvEncryptPubKey', {'app_id': sha256(compose)[:40]})['public_key']
    cfg = {'name': VM_NAME, 'image': 'dstack-0.5.2', 'compose_file': compose, 'vcpu': 16, 'memory': 16384,
           'disk_size': 200, 'ports': [{'protocol': 'tcp', 'host_port': 0, 'vm_port': 0, 'host_address': ''}],
           'encrypted_env': simlib.encrypt_env(pk, {'HOTKEY_PASSPHRASE': SECRET + 'other'})}
    vm_id = env.vmm.call('CreateVm', cfg)['id']
    env.vmm.wait_status(vm_id, 'running')
    return vm_id


def _check_plan_then_update(env, want, polling=False):
    # With a 1 s poll a check may run during Plan: then only its answer is compared.
    action, _ = env.plan() if polling else plan_without_side_effects(env)
    assert action == want, (action, want)
    seq = env.last_seq()
    r = env.update()
    assert r.ok, r
    did = _did([m for _, m in env.writes_since(seq)])
    assert did == ('recreate' if want == 'adopt' else want), (want, did)
    env.assert_converged()


def test_plan_is_what_the_next_update_does(vm_env):
    """Plan() and the next Update decide the same action from the same data,
    for create, recreate and none ("the plan said 'blocked / No changes'
    right before a replacement", issue 10)."""
    # create: the first CreateVm failed; the plan says create, Update creates.
    env = vm_env(daemon=False)
    env.vmm.fault('CreateVm', 'error', times=1, message='sim: no capacity')
    env.start_daemon()
    env.wait_vm_object()
    env.wait_prop('LastError', lambda v: v != '')
    _check_plan_then_update(env, 'create')
    _check_plan_then_update(env, 'none')
    # recreate: a new compose fetched but not applied (pubkey fault).
    env.vmm.fault('GetAppEnvEncryptPubKey', 'error', times=1)
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    assert not env.update().ok
    _check_plan_then_update(env, 'recreate')
    _check_plan_then_update(env, 'none')


def test_plan_adopt_is_what_checks_and_update_do(vm_env):
    """adopt: a VM the daemon did not deploy. The automatic checks agree
    with the plan (no write at all); the next Update does what the plan
    lists (a recreate with the local env), and then the plan is none."""
    env = vm_env(daemon=False, poll_sec=1, vmm_opts={'no_auto_restart': True})
    _foreign_vm(env)
    seq = env.last_seq()
    env.start_daemon()
    env.wait_vm_object()
    env.wait_prop('StateReason', lambda v: v.startswith('adopt: '))
    assert env.plan()[0] == 'adopt'
    env.wait_calls('Status', count=3, since=seq, timeout=20)
    assert env.writes_since(seq) == []
    _check_plan_then_update(env, 'adopt', polling=True)
    _check_plan_then_update(env, 'none', polling=True)
