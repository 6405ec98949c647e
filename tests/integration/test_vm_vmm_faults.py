# SPDX-License-Identifier: Apache-2.0
"""VM reconciler against a failing VMM: a fault while preparing leaves the old
VM running and emits UpdateFailed; a fault while applying converges on the
next Update; a slow guest shutdown is cut by StopVm at StopTimeoutUSec, not
before (updater.md steps 5-6, dstack.md §6.3-§6.4)."""
import pytest

from vmenv import vm_env, SECRET  # noqa: F401

NEW_COMPOSE = 'services:\n  app:\n    image: "nginx:1.27"\n'

PREPARE_FAULTS = [
    ('GetAppEnvEncryptPubKey', 'error'),
    ('GetAppEnvEncryptPubKey', 'malformed'),
    ('GetAppEnvEncryptPubKey', 'drop'),
    ('GetComposeHash', 'error'),
    ('GetComposeHash', 'http500'),
]


@pytest.mark.parametrize('method,kind', PREPARE_FAULTS, ids=['%s-%s' % f for f in PREPARE_FAULTS])
def test_prepare_fault_keeps_old_vm(vm_env, method, kind):
    env = vm_env()
    old = env.the_vm()
    old_hash = env.get('ComposeHash')
    env.vmm.fault(method, kind, times=0, message='sim: injected %s failure' % method)
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    new_hash = env.expected_hash()
    seq, mark = env.last_seq(), env.w.mark()
    r = env.update()
    assert not r.ok, r
    assert env.calls_since(seq, (method,)), '%s was never called while preparing' % method
    target, reason = env.w.wait_signal('UpdateFailed', since=mark)
    assert target == new_hash and reason != '' and SECRET not in reason
    assert env.writes_since(seq) == [], 'the old VM was disturbed: %r' % env.writes_since(seq)
    vm = env.the_vm()
    assert (vm['id'], vm['status'], vm['boot_count']) == (old['id'], 'running', old['boot_count'])
    assert env.get('ComposeHash') == old_hash
    assert env.get('TargetComposeHash') == new_hash
    assert env.get('Id') == old['id']
    assert env.get('LastError') != ''
    assert env.w.vm_signals(mark, 'VmUpdated') == []
    # The VMM recovers: the next Update converges.
    env.vmm.clear_faults()
    mark = env.w.mark()
    r = env.update()
    assert r.ok, r
    vm = env.assert_converged(new_hash)
    assert env.w.vm_signals(mark, 'VmUpdated') == [(old_hash, new_hash, vm['id'])]


APPLY_FAULTS = [
    ('ShutdownVm', 'error', {}),
    ('StopVm', 'error', {}),
    ('RemoveVm', 'error', {}),
    ('CreateVm', 'error', {}),
    ('CreateVm', 'drop', {'after': True}),      # created, but the reply was lost
    ('RemoveVm', 'http500', {}),
]


@pytest.mark.parametrize('method,kind,extra', APPLY_FAULTS,
                         ids=['%s-%s%s' % (m, k, '-after' if e else '') for m, k, e in APPLY_FAULTS])
def test_apply_fault_converges_on_next_update(vm_env, method, kind, extra):
    env = vm_env()
    old = env.the_vm()
    old_hash = env.get('ComposeHash')
    if method == 'StopVm':
        # A guest that never finishes its shutdown: StopVm is needed.
        env.vmm.set_vm(old['id'], shutdown_seconds=-1)
    env.vmm.fault(method, kind, times=1, message='sim: injected %s failure' % method, **extra)
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    new_hash = env.expected_hash()
    seq, mark = env.last_seq(), env.w.mark()
    r1 = env.update()
    assert env.calls_since(seq, (method,)), '%s was never called' % method
    if not r1.ok:
        assert env.get('LastError') != ''
        for _, reason in env.w.vm_signals(mark, 'UpdateFailed'):
            assert SECRET not in reason
        r2 = env.update()
        assert r2.ok, (r1, r2)
    try:
        vm = env.assert_converged(new_hash)
    except AssertionError as e:
        # Say whether it converges later on its own (a recheck) or never.
        try:
            env.wait_prop('ComposeHash', new_hash, timeout=15)
            env.wait_prop('State', 'running', timeout=15)
            env.assert_converged(new_hash)
            later = 'it converged later on its own'
        except AssertionError as e2:
            later = 'not converged 15 s later either: %s' % str(e2)[:300]
        raise AssertionError('not converged after the Update that followed the failure (%s): %s' % (
            later, str(e)[:600])) from None
    assert old['id'] not in [v['id'] for v in env.vmm.vms()], 'the old VM is still there'
    # One VmUpdated for the one replacement (after a failure in the middle the
    # record of the old VM may already be gone: old hash "" is acceptable).
    updated = env.w.vm_signals(mark, 'VmUpdated')
    assert len(updated) == 1 and updated[0][1:] == (new_hash, vm['id']) and updated[0][0] in (old_hash, ''), \
        updated
    # Settled: one more Update writes nothing.
    seq = env.last_seq()
    assert env.update().ok
    assert env.writes_since(seq) == []


@pytest.mark.parametrize('op', ['stop', 'recreate'])
def test_slow_shutdown_stopped_at_the_deadline(vm_env, op):
    """ShutdownVm, then StopVm when StopTimeoutUSec (1 s) has passed and the
    guest is still stopping: not before, and not much later."""
    timeout = 1.0
    env = vm_env(stop_timeout_sec=timeout, vmm_opts={'shutdown_seconds': 5})
    old = env.the_vm()
    seq = env.last_seq()
    if op == 'stop':
        r = env.vm_call('Stop')
    else:
        env.api.patch_doc(compose_content=NEW_COMPOSE)
        r = env.update()
    assert r.ok, r
    shut = env.calls_since(seq, ('ShutdownVm',))
    stop = env.calls_since(seq, ('StopVm',))
    assert len(shut) == 1 and len(stop) == 1, env.writes_since(seq)
    assert shut[0]['body']['id'] == old['id'] and stop[0]['body']['id'] == old['id']
    gap = stop[0]['mono'] - shut[0]['mono']
    # Both times are the simulator's receipt times (CLOCK_MONOTONIC); 20 ms
    # allow for the ShutdownVm request's own transit.
    assert gap >= timeout - 0.02, 'StopVm %.3f s after ShutdownVm, before the %.1f s timeout' % (gap, timeout)
    assert gap < timeout + 2.0, 'StopVm %.3f s after ShutdownVm: far past the %.1f s timeout' % (gap, timeout)
    if op == 'stop':
        env.wait_prop('State', 'stopped')
        assert env.the_vm()['status'] == 'stopped'
    else:
        env.assert_converged()


@pytest.mark.parametrize('kind', ['error', 'http500'])
def test_vmm_error_text_reaches_the_bus_without_control_characters(vm_env, kind):
    """A VMM's error text goes to LastError, UpdateFailed and the operator's
    terminal: an escape sequence in it (ESC, or U+009B CSI) arrives as '?'."""
    env = vm_env()
    env.vmm.fault('GetComposeHash', kind, times=0, message='boom \x1b[2J\x1b]0;owned\x07 \u009b2J end')
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    mark = env.w.mark()
    r = env.update()
    assert not r.ok, r
    _, reason = env.w.wait_signal('UpdateFailed', since=mark)
    for text in (reason, env.get('LastError'), r.error_message):
        assert 'boom' in text and 'end' in text, text
        assert not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f for c in text), repr(text)
