# SPDX-License-Identifier: Apache-2.0
"""Vm operations: automatic restart of an exited VM, operator Stop respected
across polls and daemon restarts, Start/Restart, Busy while an operation runs,
GetLogs (dbus-api.md "org.platform.Launcher1.Vm", updater.md step 4)."""
import time

from vmenv import vm_env, BUSY  # noqa: F401

INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'


def test_exited_vm_is_started_again_and_counted(vm_env):
    env = vm_env(poll_sec=1)
    vm = env.the_vm()
    seq, mark = env.last_seq(), env.w.mark()
    env.vmm.set_vm(vm['id'], status='exited')        # the guest crashed
    env.wait_calls('StartVm', since=seq, timeout=15)  # first restart: within the 5 s backoff + a poll
    env.wait_prop('RestartCount', 1)
    env.wait_prop('State', 'running')
    after = env.assert_converged()
    assert after['id'] == vm['id'] and after['boot_count'] == vm['boot_count'] + 1
    writes = [m for _, m in env.writes_since(seq)]
    assert writes == ['StartVm'], writes
    [start] = env.calls_since(seq, ('StartVm',))
    assert start['body']['id'] == vm['id']
    assert env.w.vm_signals(mark, 'VmUpdated') == []


def test_operator_stop_is_respected_until_start(vm_env):
    env = vm_env(poll_sec=1)
    vm = env.the_vm()
    r = env.vm_call('Stop')
    assert r.ok, r
    assert env.the_vm()['status'] == 'stopped'
    env.wait_prop('State', 'stopped')
    env.wait_prop('VmmStatus', 'stopped')
    seq, mark = env.last_seq(), env.w.mark()
    env.wait_calls('Status', count=3, since=seq, timeout=15)     # three polls later...
    assert env.writes_since(seq) == []                            # ...nobody started it
    assert env.the_vm()['status'] == 'stopped'
    assert env.get('State') == 'stopped'
    assert env.w.vm_signals(mark, 'VmUpdated') == []
    r = env.vm_call('Start')
    assert r.ok, r
    assert [m for _, m in env.writes_since(seq)] == ['StartVm']
    env.wait_prop('State', 'running')
    after = env.assert_converged()
    assert after['id'] == vm['id']
    # Restart: down and up again, same VM.
    seq = env.last_seq()
    r = env.vm_call('Restart')
    assert r.ok, r
    writes = [m for _, m in env.writes_since(seq)]
    assert writes[-1] == 'StartVm' and set(writes[:-1]) <= {'ShutdownVm', 'StopVm'} and writes[:-1], writes
    env.wait_prop('State', 'running')
    after2 = env.assert_converged()
    assert after2['id'] == vm['id'] and after2['boot_count'] == after['boot_count'] + 1


def test_operator_stop_survives_daemon_restart(vm_env):
    """The stop is an intent kept in the state store, not a memory."""
    env = vm_env()
    assert env.vm_call('Stop').ok
    env.wait_prop('State', 'stopped')
    seq = env.last_seq()
    env.restart_daemon()
    env.wait_prop('State', 'stopped')
    env.update()                   # a full check; it may answer Blocked (stopped by the operator)
    assert env.writes_since(seq) == []
    assert env.the_vm()['status'] == 'stopped'
    assert env.get('State') == 'stopped'
    assert env.vm_call('Start').ok
    env.wait_prop('State', 'running')
    env.assert_converged()


def test_concurrent_operations_are_busy(vm_env):
    """While a Stop waits on the VMM, every other operation fails at once with
    Busy; the Stop then completes."""
    env = vm_env()
    env.vmm.fault('ShutdownVm', 'hold', seconds=60)
    seq = env.last_seq()
    stop = env.vm_call_async('Stop')
    env.wait_calls('ShutdownVm', state='blocked', since=seq)
    for method, sig, args in [('Start', None, None), ('Restart', None, None), ('Stop', None, None),
                              ('Update', 'a{sv}', [{'force': ['b', True]}])]:
        t0 = time.monotonic()
        r = env.vm_call(method, sig, args, timeout=10)
        took = time.monotonic() - t0
        assert not r.ok and r.error_name == BUSY, (method, r)
        assert took < 2.0, '%s took %.1f s to say Busy' % (method, took)
    # Reads and Plan are not operations.
    assert env.get('Name')
    assert env.vm_call('Plan').ok
    assert not stop.poll()
    assert env.vmm.release('ShutdownVm') == 1
    r = stop.wait()
    assert r.ok, r
    writes = [m for _, m in env.writes_since(seq)]
    assert set(writes) <= {'ShutdownVm', 'StopVm'}, writes
    env.wait_prop('State', 'stopped')
    assert env.the_vm()['status'] == 'stopped'


def test_get_logs(vm_env):
    env = vm_env()
    r = env.vm_call('GetLogs', 'su', ['serial', 50])
    assert r.ok, r
    assert 'boot done' in r.result[0] and env.the_vm()['app_id'] in r.result[0], r.result[0]
    for channel, lines in [('bogus', 10), ('serial', 0), ('serial', 10001)]:
        r = env.vm_call('GetLogs', 'su', [channel, lines])
        assert not r.ok and r.error_name == INVALID_ARGS, (channel, lines, r)


def test_unknown_update_option_is_invalid(vm_env):
    env = vm_env()
    seq = env.last_seq()
    r = env.vm_call('Update', 'a{sv}', [{'bogus': ['b', True]}])
    assert not r.ok and r.error_name == INVALID_ARGS, r
    r = env.vm_call('Update', 'a{sv}', [{'force': ['s', 'yes']}])
    assert not r.ok and r.error_name == INVALID_ARGS, r
    assert env.writes_since(seq) == []


def test_forced_update_replaces_an_equal_vm(vm_env):
    env = vm_env()
    old = env.the_vm()
    h = env.get('ComposeHash')
    seq, mark = env.last_seq(), env.w.mark()
    r = env.update(force=True)
    assert r.ok, r
    vm = env.assert_converged(h)
    assert vm['id'] != old['id']
    assert env.w.vm_signals(mark, 'VmUpdated') == [(h, h, vm['id'])]
    methods = [m for _, m in env.writes_since(seq)]
    assert methods.count('CreateVm') == 1 and methods.count('RemoveVm') == 1, methods
