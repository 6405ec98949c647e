# SPDX-License-Identifier: Apache-2.0
"""Busy (dbus-api.md, "Busy"), through the bus with the real daemon: the
launcher's own work never makes an operator's Start, Stop, Restart or Update
fail. A check that is only reading (the spec from the Platform API, Status
from the VMM) gives way at once, even while the VMM or the API hangs; a
deploy the launcher started by itself is never cut halfway, the operator's
call runs right after it and the VM is never lost. Error.Busy remains for two
operator calls that conflict, and its message names the running operation and
who asked for it."""
import signal

from vmenv import vm_env, BUSY, DOC_PATH, VM_NAME  # noqa: F401

ROOT = 'uid 0 (python3)'  # this process, as the bus and /proc report it


def call_state(sim, seq):
    return [c for c in sim.calls() if c['seq'] == seq][0]['state']


def hold_next_check(env, sim, method):
    """The next check the launcher makes by itself hangs at `sim` on `method`
    (a SIGHUP starts one): returns the held call's seq."""
    calls = sim.calls()
    since = calls[-1]['seq'] if calls else 0
    sim.fault(method, 'hold', seconds=60)
    env.daemon.send_signal(signal.SIGHUP)
    sim.wait_calls(method, state='blocked', since_seq=since, timeout=20)
    [held] = [c for c in sim.calls(method) if c['seq'] > since and c['state'] == 'blocked']
    return held['seq']


OPERATIONS = [
    ('Stop', None, None, 'stopped'),
    ('Start', None, None, 'running'),
    ('Restart', None, None, 'running'),
    ('Update', 'a{sv}', [{'force': ['b', True]}], 'running'),
    ('Update', 'a{sv}', [{}], 'running'),
]


def test_operator_calls_do_not_wait_for_a_hanging_vmm_check(vm_env):
    env = vm_env()
    for method, sig, args, state in OPERATIONS:
        held = hold_next_check(env, env.vmm, 'Status')
        r = env.vm_call(method, sig, args)
        assert r.ok, (method, r)
        # Answered while the check's Status still hangs: it did not wait for it.
        assert call_state(env.vmm, held) == 'blocked', method
        assert env.get('State') == state, method
        assert env.vmm.release('Status') == 1
    env.assert_converged()


def test_operator_calls_do_not_wait_for_a_hanging_api_fetch(vm_env):
    env = vm_env()
    for method, sig, args, state in OPERATIONS:
        held = hold_next_check(env, env.api, DOC_PATH)
        r = env.vm_call(method, sig, args)
        assert r.ok, (method, r)
        assert call_state(env.api, held) == 'blocked', method
        assert env.get('State') == state, method
        assert env.api.release(DOC_PATH) == 1
    env.assert_converged()


def test_stop_during_a_background_deploy_runs_after_it(vm_env):
    """A deploy the launcher runs by itself (here: the env changed) is not
    cut: Stop waits for it, then stops the new VM. A second operator call
    meanwhile is Busy and names the Stop and who asked for it."""
    env = vm_env()
    old = env.the_vm()
    seq = env.last_seq()
    env.vmm.fault('CreateVm', 'hold', seconds=60)
    env.set_env('HOTKEY_PASSPHRASE', 'S3CRET-busy new words')
    env.wait_calls('CreateVm', state='blocked', since=seq)
    mark = env.w.mark()

    stop = env.vm_call_async('Stop', timeout=60)
    r = env.vm_call('Restart', timeout=10)
    assert not r.ok and r.error_name == BUSY, r
    assert 'Cannot restart VM %s' % VM_NAME in r.error_message, r
    assert 'the stop asked by %s' % ROOT in r.error_message, r
    assert not stop.poll()            # waiting for the deploy, not refused

    assert env.vmm.release('CreateVm') == 1
    new_hash, = [a[1] for a in [env.w.wait_signal('VmUpdated', since=mark)]]
    r = stop.wait(timeout=30)
    assert r.ok, r
    env.wait_prop('State', 'stopped')
    vm = env.the_vm()                  # one VM with the name: the new one, stopped
    assert vm['id'] != old['id'] and vm['status'] == 'stopped', vm
    assert vm['boot_compose_hash'] == new_hash
    assert vm['env']['HOTKEY_PASSPHRASE'] == 'S3CRET-busy new words'
    assert env.get('Id') == vm['id']
    # The stop came after the deploy at the VMM.
    writes = [m for _, m in env.writes_since(seq)]
    assert writes.index('CreateVm') < len(writes) - 1 and writes[-1] in ('ShutdownVm', 'StopVm'), writes
    assert env.vm_call('Start').ok
    env.wait_prop('State', 'running')


def test_conflicting_operator_calls_name_the_running_one(vm_env):
    env = vm_env()
    env.vmm.fault('ShutdownVm', 'hold', seconds=60)
    seq = env.last_seq()
    restart = env.vm_call_async('Restart', timeout=60)
    env.wait_calls('ShutdownVm', state='blocked', since=seq)
    for method, sig, args in [('Stop', None, None), ('Start', None, None),
                              ('Update', 'a{sv}', [{}]), ('Update', 'a{sv}', [{'force': ['b', True]}])]:
        r = env.vm_call(method, sig, args, timeout=10)
        assert not r.ok and r.error_name == BUSY, (method, r)
        assert 'the restart asked by %s' % ROOT in r.error_message, (method, r)
        assert r.error_message.startswith('Cannot %s VM %s: ' % (method.lower(), VM_NAME)), r
    assert env.vmm.release('ShutdownVm') == 1
    assert restart.wait().ok
    env.wait_prop('State', 'running')
