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
