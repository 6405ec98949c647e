# SPDX-License-Identifier: Apache-2.0
"""VM reconciler: every kind of change is detected and applied exactly once
(recreate strategy), local env changes reach the guest, and missing required
env blocks without touching the running VM (updater.md steps 2-7)."""
import pytest

from vmenv import vm_env, BLOCKED, SECRET, sha256  # noqa: F401


def assert_one_recreate(env, seq, old_id):
    """Since seq: prepare (key) first, then ShutdownVm -> [StopVm] -> RemoveVm
    of the old VM -> CreateVm, each exactly once; nothing else written."""
    calls = env.calls_since(seq)
    writes = [c for c in calls if c['method'] in ('CreateVm', 'StartVm', 'ShutdownVm', 'StopVm', 'RemoveVm',
                                                   'UpdateVm', 'UpgradeApp')]
    methods = [c['method'] for c in writes]
    assert methods.count('ShutdownVm') == 1, methods
    assert methods.count('RemoveVm') == 1, methods
    assert methods.count('CreateVm') == 1, methods
    assert methods.count('StopVm') <= 1, methods
    assert not set(methods) & {'StartVm', 'UpdateVm', 'UpgradeApp'}, methods
    seqs = {c['method']: c['seq'] for c in writes}
    assert seqs['ShutdownVm'] < seqs['RemoveVm'] < seqs['CreateVm'], methods
    if 'StopVm' in seqs:
        assert seqs['ShutdownVm'] < seqs['StopVm'] < seqs['RemoveVm'], methods
    for c in writes:
        if c['method'] != 'CreateVm':
            assert c['body'].get('id') == old_id, (c['method'], c['body'])
    # Prepared before disturbing anything (updater.md step 5, dstack.md §6.4).
    keys = [c['seq'] for c in calls if c['method'] == 'GetAppEnvEncryptPubKey']
    assert keys and min(keys) < seqs['ShutdownVm'], 'no key fetched before ShutdownVm: %r' % (
        [c['method'] for c in calls],)
    return [c for c in writes if c['method'] == 'CreateVm'][0]


def assert_settled(env):
    """A second Update right after finds nothing to do (no flapping, §6.1)."""
    seq = env.last_seq()
    mark = env.w.mark()
    r = env.update()
    assert r.ok, r
    assert env.writes_since(seq) == [], 'a second Update wrote again: %r' % env.writes_since(seq)
    assert env.w.vm_signals(mark, 'VmUpdated') == []


def test_compose_change_recreates_once(vm_env):
    env = vm_env()
    old = env.the_vm()
    old_hash = env.get('ComposeHash')
    count = env.get('UpdateCount')
    env.api.patch_doc(compose_content='services:\n  app:\n    image: "nginx:1.27"\n')
    new_hash = env.expected_hash()
    assert new_hash != old_hash
    seq, mark = env.last_seq(), env.w.mark()
    r = env.update()
    assert r.ok, r
    create = assert_one_recreate(env, seq, old['id'])
    assert sha256(create['body']['compose_file']) == new_hash
    vm = env.assert_converged(new_hash)
    assert vm['id'] != old['id'] and vm['app_id'] == new_hash[:40]
    assert old['id'] not in [v['id'] for v in env.vmm.vms()]
    assert env.w.vm_signals(mark, 'VmUpdated') == [(old_hash, new_hash, vm['id'])]
    assert env.w.vm_signals(mark, 'UpdateFailed') == []
    assert env.get('UpdateCount') == count + 1
    assert env.get('AppId') == new_hash[:40]
    assert_settled(env)


# (id, vm_parameters patch, check of the CreateVm body, (property, value) or None)
CHANGES = [
    ('image', {'image': 'dstack-0.5.5'}, lambda b: b['image'] == 'dstack-0.5.5', ('Image', 'dstack-0.5.5')),
    ('vcpu', {'vcpu': 8}, lambda b: b['vcpu'] == 8, ('Vcpu', 8)),
    ('memory', {'memory': 8192}, lambda b: b['memory'] == 8192, ('MemoryMiB', 8192)),
    ('disk', {'disk_size': 120}, lambda b: b['disk_size'] == 120, ('DiskGiB', 120)),
    ('ports', {'ports': [{'protocol': 'tcp', 'host_port': 8080, 'vm_port': 80, 'host_address': None},
                         {'protocol': 'udp', 'host_port': 9000, 'vm_port': 9001, 'host_address': '127.0.0.1'}]},
     lambda b: [(p['protocol'], p['host_port'], p['vm_port'], p.get('host_address') or '') for p in b['ports']]
     == [('tcp', 8080, 80, ''), ('udp', 9000, 9001, '127.0.0.1')], None),
]


@pytest.mark.parametrize('name,params,check,prop', CHANGES, ids=[c[0] for c in CHANGES])
def test_vm_parameter_change_is_applied(vm_env, name, params, check, prop):
    """Image, resources and ports are tracked apart from the compose hash
    (dstack.md §6.1): a change of any of them alone replaces the VM."""
    env = vm_env()
    old = env.the_vm()
    h = env.get('ComposeHash')
    env.api.patch_doc(vm_parameters=params)
    assert env.expected_hash() == h          # the compose did not change
    seq, mark = env.last_seq(), env.w.mark()
    r = env.update()
    assert r.ok, r
    create = assert_one_recreate(env, seq, old['id'])
    assert check(create['body']), create['body']
    conf = env.the_vm()['configuration']
    if name == 'ports':     # the VMM reports "" resolved to its address (dstack.md §2)
        conf = dict(conf, ports=[dict(p, host_address='') if p['host_address'] == '127.0.0.1' and i == 0 else p
                                 for i, p in enumerate(conf['ports'])])
    assert check(conf), conf
    vm = env.assert_converged(h)
    assert env.w.vm_signals(mark, 'VmUpdated') == [(h, h, vm['id'])]
    if prop:
        assert env.get(prop[0]) == prop[1]
    assert_settled(env)


def set_guest_vmm_url(env, url='http://10.0.2.2:17000/'):
    r = env.config_call('SetSettings', 'a{sv}', [{'GuestVmmUrl': ['s', url]}])
    assert r.ok, r
    env.guest_vmm_url = url


ENV_CHANGES = [
    # (id, initial local env, action(env))
    ('secret-changed', {'HOTKEY_PASSPHRASE': SECRET + 'old words', 'VALIDATOR_BASE_URL': 'https://v.example'},
     lambda e: e.set_env('HOTKEY_PASSPHRASE', SECRET + 'new words')),
    ('key-added', {'HOTKEY_PASSPHRASE': SECRET + 'hk'},
     lambda e: e.set_env('VALIDATOR_BASE_URL', 'https://added.example')),
    ('key-removed', {'HOTKEY_PASSPHRASE': SECRET + 'hk', 'VALIDATOR_BASE_URL': 'https://v.example'},
     lambda e: e.remove_env('VALIDATOR_BASE_URL')),
    ('guest-vmm-url', {'HOTKEY_PASSPHRASE': SECRET + 'hk'},
     set_guest_vmm_url),
]


@pytest.mark.parametrize('name,local,action', ENV_CHANGES, ids=[c[0] for c in ENV_CHANGES])
def test_local_env_change_reaches_the_vm(vm_env, name, local, action):
    """SetEnv/RemoveEnv/SetSettings re-evaluate at once (long poll interval, no
    Update call): the VM is replaced once and the guest sees the new env
    (dstack.md §6.7)."""
    env = vm_env(local_env=local)
    old = env.the_vm()
    h = env.get('ComposeHash')
    seq, mark = env.last_seq(), env.w.mark()
    action(env)
    want = env.expected_env()
    assert want != old['env']
    args = env.w.wait_signal('VmUpdated', since=mark)
    create = assert_one_recreate(env, seq, old['id'])
    assert env.sent_env(create) == want
    vm = env.assert_converged(h, env=want)
    assert args == (h, h, vm['id'])
    assert env.w.vm_signals(mark, 'VmUpdated') == [args]
    assert_settled(env)


def test_unrelated_local_key_changes_nothing(vm_env):
    """A key the compose does not allow is not sent, so setting it replaces nothing."""
    env = vm_env()
    vm = env.the_vm()
    seq, mark = env.last_seq(), env.w.mark()
    env.set_env('NOT_ALLOWED_KEY', SECRET + 'ignored')
    r = env.update()
    assert r.ok, r
    assert env.writes_since(seq) == []
    assert env.w.vm_signals(mark, 'VmUpdated') == []
    assert env.the_vm()['id'] == vm['id']


def test_missing_required_env_blocks_then_set_env_deploys(vm_env):
    """Required keys without a value: State=blocked, MissingEnv, the running VM
    untouched. Setting the last missing key deploys without waiting for a poll."""
    env = vm_env()
    old = env.the_vm()
    old_hash = env.get('ComposeHash')
    env.api.patch_doc(required_env=['NEEDED_A', 'NEEDED_B'])
    new_hash = env.expected_hash()
    assert new_hash != old_hash               # allowed_envs grew
    seq, mark = env.last_seq(), env.w.mark()
    r = env.update()
    assert not r.ok and r.error_name == BLOCKED, r
    assert env.get('State') == 'blocked'
    assert 'NEEDED_A' in env.get('StateReason') and 'NEEDED_B' in env.get('StateReason'), env.get('StateReason')
    assert env.config_get('RequiredEnv') == ['NEEDED_A', 'NEEDED_B']
    assert env.config_get('MissingEnv') == ['NEEDED_A', 'NEEDED_B']
    assert env.get('ComposeHash') == old_hash
    assert env.get('TargetComposeHash') == new_hash
    assert env.writes_since(seq) == []
    vm = env.the_vm()
    assert (vm['id'], vm['status'], vm['boot_count']) == (old['id'], 'running', old['boot_count'])
    assert env.w.vm_signals(mark, 'VmUpdated') == []

    env.set_env('NEEDED_A', SECRET + 'a')     # one still missing: still blocked
    env.wait_prop('MissingEnv', ['NEEDED_B'], iface='org.platform.Launcher1.Config')
    assert env.get('State') == 'blocked'
    assert 'NEEDED_B' in env.get('StateReason')
    assert env.writes_since(seq) == []

    env.set_env('NEEDED_B', SECRET + 'b')     # the last one: deploys at once
    args = env.w.wait_signal('VmUpdated', since=mark)
    vm = env.the_vm()
    assert args == (old_hash, new_hash, vm['id'])
    assert env.config_get('MissingEnv') == []
    env.wait_prop('State', 'running')
    vm = env.assert_converged(new_hash)
    assert vm['env']['NEEDED_A'] == SECRET + 'a' and vm['env']['NEEDED_B'] == SECRET + 'b'
    assert_one_recreate(env, seq, old['id'])
