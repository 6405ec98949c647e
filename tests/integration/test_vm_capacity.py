# SPDX-License-Identifier: Apache-2.0
"""Capacity before every create and start (dbus-api.md "Capacity before every
create"): every VM the VMM lists as started counts, managed or not; over, the
VM is blocked with the figures, the old one kept, and looked at again at every
poll and on Start; a new VM needs a CID of GetMeta's max_cvm_number."""
import copy

from test_vm_many import Many, vm_path  # noqa: F401
from vmenv import vm_env, BLOCKED, VM_NAME  # noqa: F401

# The simulated VMs take 16 vCPU and 16 GiB each.
ROOM_FOR_TWO = {'capacity_vcpu': 40, 'capacity_memory_mib': 1 << 20}


def creates(env, seq, name):
    return [c for c in env.calls_since(seq, ('CreateVm',)) if c['body']['name'] == name]


def test_a_create_that_does_not_fit_is_blocked_with_the_figures_until_it_fits(vm_env):
    env = vm_env(extra_config=ROOM_FOR_TWO)
    m = Many(env)
    assert m.add('b').ok
    m.running('b')
    seq = env.last_seq()
    assert m.add('c').ok
    m.wait('c', 'State', 'blocked')
    assert m.get('c', 'StateReason') == 'capacity: needs 16 vCPU, 8 of 40 free (2 VMs started)'
    assert creates(env, seq, 'c') == []
    r = m.call('c', 'Plan')
    assert r.ok and r.result[0] == 'blocked', r
    r = m.call('c', 'Update', 'a{sv}', [{}])
    assert not r.ok and r.error_name == BLOCKED and 'capacity' in r.error_message, r
    # The others are untouched.
    assert m.get('b', 'State') == 'running' and env.get('State') == 'running'

    # More room (a settings change is looked at at once): c is created.
    assert env.config_call('SetSettings', 'a{sv}', [{'CapacityVcpu': ['u', 48]}]).ok
    m.running('c')
    assert len(creates(env, seq, 'c')) == 1
    assert env.config_get('CapacityVcpu') == 48


def test_vms_the_launcher_does_not_manage_count_too(vm_env):
    env = vm_env(extra_config=ROOM_FOR_TWO)
    m = Many(env)
    # A challenge CVM of the validator's, created at the VMM by someone else.
    body = copy.deepcopy(env.calls_since(0, ('CreateVm',))[0]['body'])
    body['name'] = 'challenge-1'
    body.pop('encrypted_env', None)
    env.vmm.call('CreateVm', body)
    seq = env.last_seq()
    assert m.add('b').ok
    m.wait('b', 'State', 'blocked')
    assert m.get('b', 'StateReason') == 'capacity: needs 16 vCPU, 8 of 40 free (2 VMs started)'
    assert creates(env, seq, 'b') == []
    # The challenge ends: the next look creates b.
    [challenge] = [v for v in env.vmm.vms() if v['name'] == 'challenge-1']
    env.vmm.call('StopVm', {'id': challenge['id']})
    assert m.call('b', 'Update', 'a{sv}', [{}]).ok
    m.running('b')


def test_start_is_checked_too(vm_env):
    env = vm_env(extra_config=ROOM_FOR_TWO)
    m = Many(env)
    assert m.add('b').ok
    m.running('b')
    assert m.call('b', 'Stop').ok
    assert m.add('c').ok            # b is stopped: room for c
    m.running('c')
    seq = env.last_seq()
    r = m.call('b', 'Start')
    assert not r.ok and r.error_name == BLOCKED, r
    assert r.error_message == 'capacity: needs 16 vCPU, 8 of 40 free (2 VMs started)', r
    m.wait('b', 'State', 'blocked')
    assert [mt for _, mt in env.writes_since(seq)] == []
    assert [v['status'] for v in m.at_vmm('b')] == ['stopped']


def test_memory_and_the_cid_pool(vm_env):
    env = vm_env(extra_config={'capacity_vcpu': 1000, 'capacity_memory_mib': 40000},
                 vmm_opts={'max_cvm': 3})
    m = Many(env)
    assert m.add('b').ok
    m.running('b')
    assert m.add('c').ok
    m.wait('c', 'State', 'blocked')
    assert m.get('c', 'StateReason') == 'capacity: needs 16384 MiB memory, 7232 of 40000 free (2 VMs started)'
    assert env.config_call('SetSettings', 'a{sv}', [{'CapacityMemoryMiB': ['u', 1 << 20]}]).ok
    m.running('c')
    # The CID pool (3) is full now: a fourth VM is not created.
    assert m.add('d').ok
    m.wait('d', 'State', 'blocked')
    assert m.get('d', 'StateReason') == \
        'capacity: the VMM lists 3 VMs and its CID pool holds 3 (max_cvm_number): no CID for another'
    assert m.at_vmm('d') == []
