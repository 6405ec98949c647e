# SPDX-License-Identifier: Apache-2.0
"""UpdateStrategy=in-place end to end: UpdateVm (or UpgradeApp on VMMs older
than 0.5.6) on the existing VM with the env encrypted to its original app id,
compose hash read back, graceful stop, StartVm; same VM id and app id
(updater.md step 6, dstack.md §2)."""
import pytest

from vmenv import vm_env, SECRET, sha256  # noqa: F401

NEW_COMPOSE = 'services:\n  app:\n    image: "nginx:1.27"\n'


def assert_in_place(env, seq, vm, method):
    calls = env.calls_since(seq)
    ok_updates = [c for c in calls if c['method'] == method and c['status'] == 200]
    assert len(ok_updates) == 1, [(c['method'], c['status']) for c in calls]
    upd = ok_updates[0]
    writes = [c for c in calls if c['method'] in ('CreateVm', 'RemoveVm', 'StartVm', 'ShutdownVm', 'StopVm')]
    methods = [c['method'] for c in writes]
    assert 'CreateVm' not in methods and 'RemoveVm' not in methods, methods
    assert methods.count('StartVm') == 1 and methods[-1] == 'StartVm', methods
    assert methods[0] == 'ShutdownVm', methods
    assert upd['seq'] < writes[0]['seq'], 'stopped before the update was written: %r' % methods
    # Read back between the update and the stop (GetInfo or Status).
    assert [c for c in calls if c['method'] in ('GetInfo', 'Status') and upd['seq'] < c['seq'] < writes[0]['seq']], \
        'compose hash not read back after %s' % method
    for c in writes + [upd]:
        assert c['body']['id'] == vm['id'], c
    return upd


@pytest.mark.parametrize('version,method', [('0.5.7', 'UpdateVm'), ('0.5.5', 'UpgradeApp')])
def test_in_place_compose_update(vm_env, version, method):
    env = vm_env(strategy='in-place', vmm_opts={'version': version})
    vm = env.the_vm()
    app_id = vm['app_id']
    old_hash = env.get('ComposeHash')
    assert app_id == old_hash[:40]
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    new_hash = env.expected_hash()
    seq, mark = env.last_seq(), env.w.mark()
    r = env.update()
    assert r.ok, r
    upd = assert_in_place(env, seq, vm, method)
    assert sha256(upd['body']['compose_file']) == new_hash
    # The env is encrypted to the app id the VM keeps running with.
    assert env.sent_env(upd, app_id=app_id) == env.expected_env()
    after = env.assert_converged(new_hash)
    assert (after['id'], after['app_id']) == (vm['id'], app_id)
    assert env.get('AppId') == app_id
    assert env.w.vm_signals(mark, 'VmUpdated') == [(old_hash, new_hash, vm['id'])]
    seq = env.last_seq()
    assert env.update().ok
    assert env.writes_since(seq) == []


def test_in_place_env_update(vm_env):
    env = vm_env(strategy='in-place')
    vm = env.the_vm()
    h = env.get('ComposeHash')
    seq, mark = env.last_seq(), env.w.mark()
    env.set_env('HOTKEY_PASSPHRASE', SECRET + 'rotated words')
    env.w.wait_signal('VmUpdated', since=mark)
    upd = assert_in_place(env, seq, vm, 'UpdateVm')
    assert env.sent_env(upd, app_id=vm['app_id']) == env.expected_env()
    after = env.assert_converged(h)
    assert after['env']['HOTKEY_PASSPHRASE'] == SECRET + 'rotated words'
    assert after['id'] == vm['id']


def test_in_place_plan(vm_env):
    """Plan says update-in-place once the new spec is known (the apply is made
    to fail while preparing so the spec is fetched but nothing applied)."""
    env = vm_env(strategy='in-place')
    env.vmm.fault('GetAppEnvEncryptPubKey', 'error', times=0)
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    assert not env.update().ok
    action, changes = env.plan()
    assert action == 'update-in-place', (action, changes)
    assert changes
