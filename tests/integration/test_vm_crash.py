# SPDX-License-Identifier: Apache-2.0
"""VM reconciler after a crash: SIGKILL of the daemon in the middle of each
destructive step, and duplicate VMs left by an earlier crash, converge to
exactly one VM with the desired compose and env (updater.md steps 3 and 6,
"record the intent before each destructive step"; dstack.md §6.9)."""
import pytest

from vmenv import vm_env, VM_NAME, SECRET, sha256  # noqa: F401
import simlib  # noqa: E402  (on sys.path through vmenv)

NEW_COMPOSE = 'services:\n  app:\n    image: "nginx:1.27"\n'


def converge(env, compose_hash):
    """After a restart: wait for the daemon to report the target running, then
    one more Update (it replies when a full check is done) and check the VMM."""
    env.wait_prop('ComposeHash', compose_hash, timeout=30)
    env.wait_prop('State', 'running', timeout=30)
    r = env.update()
    assert r.ok, r
    return env.assert_converged(compose_hash)


@pytest.mark.parametrize('phase', ['ShutdownVm', 'StopVm', 'RemoveVm', 'CreateVm'])
def test_sigkill_during_recreate(vm_env, phase):
    env = vm_env()
    old = env.the_vm()
    if phase == 'StopVm':
        env.vmm.set_vm(old['id'], shutdown_seconds=-1)   # StopVm will be needed
    env.vmm.fault(phase, 'hold', seconds=60)
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    new_hash = env.expected_hash()
    seq = env.last_seq()
    call = env.update_async()
    env.wait_calls(phase, state='blocked', since=seq, timeout=20)
    env.kill_daemon()
    call.wait()                                   # the caller gets an error: the daemon died
    assert env.vmm.release(phase) == 1
    env.wait_calls(phase, state='done', since=seq)   # the step completed without the daemon
    env.vmm.clear_faults()
    env.start_daemon()
    vm = converge(env, new_hash)
    assert old['id'] not in [v['id'] for v in env.vmm.vms()], 'the old VM was left behind'
    assert vm['env']['HOTKEY_PASSPHRASE'].startswith(SECRET)


def _direct_create(env, compose, name=VM_NAME, env_values=None):
    """CreateVm straight at the VMM, as an earlier launcher run might have."""
    cfg = {'name': name, 'image': 'dstack-0.5.2', 'compose_file': compose, 'vcpu': 16, 'memory': 16384,
           'disk_size': 200, 'ports': [{'protocol': 'tcp', 'host_port': 0, 'vm_port': 0, 'host_address': ''}]}
    if env_values:
        pk = env.vmm.call('GetAppEnvEncryptPubKey', {'app_id': sha256(compose)[:40]})['public_key']
        cfg['encrypted_env'] = simlib.encrypt_env(pk, env_values)
    return env.vmm.call('CreateVm', cfg)['id']


def test_duplicates_of_the_deployed_vm_are_removed(vm_env):
    """A second VM with the managed name appears (same compose and env as the
    deployed one, e.g. a CreateVm whose reply was lost): the next check
    removes the extra one and creates nothing. VMs with other names, even
    containing the managed name, are never touched."""
    env = vm_env()
    h = env.get('ComposeHash')
    dup = _direct_create(env, env.the_vm()['configuration']['compose_file'], env_values=env.expected_env())
    other = _direct_create(env, simlib.app_compose(), name=VM_NAME + '2')
    other2 = _direct_create(env, simlib.app_compose(), name='old-' + VM_NAME)
    assert len(env.named_vms()) == 2
    seq = env.last_seq()
    r = env.update()
    assert r.ok, r
    env.assert_converged(h)
    assert env.calls_since(seq, ('CreateVm',)) == []
    for vid in (other, other2):
        assert env.vmm.vm(vid)['status'] == 'running'
        assert not [c for c in env.calls_since(seq) if (c['body'] or {}).get('id') == vid], vid
    seq = env.last_seq()
    assert env.update().ok
    assert env.writes_since(seq) == []


def test_duplicates_found_at_first_start_are_cleaned(vm_env):
    """Before the daemon ever ran, two VMs with the managed name and an old
    compose exist: with AdoptPolicy=redeploy (VMs it did not deploy are
    replaced at first start; the default keeps them, test_migration.py),
    after start-up there is exactly one VM, the desired one."""
    env = vm_env(daemon=False, extra_config={'adopt_policy': 'redeploy'})
    old_compose = simlib.app_compose(docker_compose='services:\n  old:\n    image: "busybox"\n')
    a = _direct_create(env, old_compose)
    b = _direct_create(env, old_compose)
    other = _direct_create(env, old_compose, name=VM_NAME + '2')
    env.start_daemon()
    env.wait_vm_object()
    vm = converge(env, env.expected_hash())
    assert vm['id'] not in (a, b)
    ids = [v['id'] for v in env.vmm.vms()]
    assert a not in ids and b not in ids
    assert env.vmm.vm(other)['status'] == 'running'
