# SPDX-License-Identifier: Apache-2.0
"""A replacement whose new VM could not run beside the old one (a host port
mapped by both: same protocol and port, addresses equal or unspecified) stops
and removes the old VM first, as a recreate does, whatever triggered it
(issue 18, item 1). dstack HEAD refuses the CreateVm ("host port mapping
conflicts with VM <old>", vmm/src/main_service.rs validate_port_mapping_conflicts,
every VM counted, stopped ones too); up to v0.5.11 the new QEMU cannot bind
its hostfwd and the VM ends `exited` (v0.5.5 app/qemu.rs)."""
import pytest

import harness as H
from vmenv import vm_env, VM_IFACE, VM_NAME, OP_TIMEOUT  # noqa: F401
from simlib import wait_until  # noqa: E402  (vmenv puts tests/sim on the path)

NEW_NAME = 'validator_b'
NEW_PATH = H.DAEMON_PATH + '/vm/validator_5fb'
PORT_8080 = [{'protocol': 'tcp', 'host_port': 8080, 'vm_port': 80, 'host_address': None}]
# The two ways dstack answers a second VM on the same host port.
VERSIONS = {'head': '0.6.0', 'v0.5.5': '0.5.5'}


def update_new(env, timeout=30):
    return env.bus.call(H.DAEMON_NAME, NEW_PATH, VM_IFACE, 'Update', 'a{sv}', [{}], timeout=timeout)


def update_renamed(env):
    """Update on the object under the old name: the check sees the rename and deploys it."""
    r = env.update(timeout=30)
    assert r.ok, r


def plan_new(env):
    r = env.bus.call(H.DAEMON_NAME, NEW_PATH, VM_IFACE, 'Plan')
    assert r.ok, r
    return r.result[0], [tuple(c) for c in r.result[1]]


def renamed(env, ports):
    """Renames the VM in the API document and waits for the daemon's new object."""
    env.api.patch_doc(vm_parameters={'name': NEW_NAME, 'ports': ports})
    return env


@pytest.mark.parametrize('version', VERSIONS)
def test_rename_with_a_host_port_stops_the_old_vm_first(vm_env, version):
    env = vm_env(stop_timeout_sec=30, vmm_opts={'version': VERSIONS[version]},
                 api_doc={'vm_parameters': {'ports': PORT_8080}})
    old = env.the_vm()
    assert old['configuration']['ports'][0]['host_port'] == 8080
    renamed(env, PORT_8080)
    seq = env.last_seq()
    update_renamed(env)
    writes = env.writes_since(seq)
    methods = [m for _, m in writes]
    assert methods == ['ShutdownVm', 'RemoveVm', 'CreateVm'], methods
    assert [c['body']['id'] for c in env.calls_since(seq, ('ShutdownVm', 'RemoveVm'))] == [old['id']] * 2, \
        env.daemon.log_text()[-3000:]
    # the CreateVm was not refused, and the new QEMU got its port
    [create] = env.calls_since(seq, ('CreateVm',))
    assert create['status'] == 200, create
    vms = env.vmm.vms()
    assert [(v['name'], v['status']) for v in vms] == [(NEW_NAME, 'running')], vms
    assert vms[0]['boot_count'] == 1 and vms[0]['auto_restart_count'] == 0
    r = env.bus.get_property(H.DAEMON_NAME, NEW_PATH, VM_IFACE, 'State')
    assert r.ok and r.result == 'running', r
    # nothing left to do: no write on the next check
    seq = env.last_seq()
    assert update_new(env).ok
    assert env.writes_since(seq) == [], env.daemon.log_text()[-3000:]


def test_plan_says_the_old_vm_goes_first(vm_env):
    env = vm_env(stop_timeout_sec=30, vmm_opts={'version': '0.6.0'},
                 api_doc={'vm_parameters': {'ports': PORT_8080}})
    old = env.the_vm()
    renamed(env, PORT_8080)
    env.vmm.fault('ShutdownVm', 'hold', seconds=30)
    seq = env.last_seq()
    up = env.update_async()
    env.wait_calls('ShutdownVm', state='blocked', since=seq)
    action, changes = plan_new(env)
    assert action == 'recreate', (action, changes)
    assert ('vm', VM_NAME, NEW_NAME) in changes, changes
    r = env.bus.get_property(H.DAEMON_NAME, NEW_PATH, VM_IFACE, 'StateReason')
    assert r.ok and 'stopping the old VM' in r.result, r
    env.vmm.release('ShutdownVm')
    assert up.wait(OP_TIMEOUT).ok
    assert old['id'] not in [v['id'] for v in env.vmm.vms()]


def test_rename_without_a_shared_port_starts_the_new_vm_first(vm_env):
    """No port in common: the old VM keeps serving until the new one runs."""
    env = vm_env(stop_timeout_sec=30, vmm_opts={'version': '0.6.0'},
                 api_doc={'vm_parameters': {'ports': PORT_8080}})
    old = env.the_vm()
    renamed(env, [dict(PORT_8080[0], host_port=8081)])
    seq = env.last_seq()
    update_renamed(env)
    wait_until(lambda: [v['name'] for v in env.vmm.vms()] == [NEW_NAME], 20, 'only the renamed VM left')
    methods = [m for _, m in env.writes_since(seq)]
    assert methods == ['CreateVm', 'ShutdownVm', 'RemoveVm'], methods
    [create] = env.calls_since(seq, ('CreateVm',))
    [shutdown] = env.calls_since(seq, ('ShutdownVm',))
    assert shutdown['body']['id'] == old['id'] and shutdown['mono'] > create['done_mono']


def test_adopt_redeploy_with_a_host_port_stops_the_old_vm_first(vm_env):
    """A VM with the name that the launcher did not deploy (the Rust
    launcher's), with the same host port: AdoptPolicy=redeploy replaces it,
    old first."""
    env = vm_env(deploy=False, daemon=False, vmm_opts={'version': '0.6.0'},
                 api_doc={'vm_parameters': {'ports': PORT_8080}}, extra_config={'adopt_policy': 'redeploy'})
    theirs = env.vmm.call('CreateVm', {'name': VM_NAME, 'image': 'dstack-0.5.2', 'compose_file': env.expected_compose(),
                                       'vcpu': 1, 'memory': 1024, 'disk_size': 10,
                                       'ports': [dict(PORT_8080[0], host_address='')]})['id']
    seq = env.last_seq()
    env.start_daemon()
    env.wait_vm_object()
    env.wait_deployed()
    methods = [m for _, m in env.writes_since(seq)]
    assert methods == ['ShutdownVm', 'RemoveVm', 'CreateVm'], methods
    [create] = env.calls_since(seq, ('CreateVm',))
    assert create['status'] == 200
    vm = env.assert_converged()
    assert vm['id'] != theirs
