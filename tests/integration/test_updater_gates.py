# SPDX-License-Identifier: Apache-2.0
"""The Updater's gates (round lockfile, Validation API, VM operation), the dirty
tree, and Busy — each closed gate defers with State=deferred, DeferReasons,
UpdateDeferred and Error.Deferred, and changes nothing."""
import fcntl
import json
import os
import subprocess
import sys
import time

import pytest

import harness as H
from updater_world import World, git, updater, prop, wait_prop, wait_file, apply_async, updater_signals, tree_state

sys.path.insert(0, os.path.join(H.SOURCE_DIR, 'tests', 'sim'))
import simlib  # noqa: E402

DEFERRED = 'org.platform.Launcher1.Error.Deferred'
BUSY = 'org.platform.Launcher1.Error.Busy'
DIRTY = 'org.platform.Launcher1.Error.DirtyTree'


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness)


def start_api(harness):
    d = os.path.join(harness.workdir, 'api-sim')
    os.makedirs(d, exist_ok=True)
    sim = simlib.start_api(d)
    harness.procs.procs.append(('api-sim', sim.proc))
    return sim


def set_mode(api, mode, jobs=1):
    st, _, body = api.request('POST', '/_sim/active-mode', json.dumps({'mode': mode, 'jobs': jobs}).encode())
    assert st == 200, body


def assert_deferred(d, world, gate, before):
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{}])
        assert not r.ok and r.error_name == DEFERRED, r
        assert gate in r.error_message, r.error_message
        s = sc.wait_for(lambda s: s.member == 'UpdateDeferred')
        assert gate in s.args[0]
        target = s.args[1]
    assert prop(d, 'State') == 'deferred'
    reasons = prop(d, 'DeferReasons')
    assert [g for g, _, _ in reasons] == [gate], reasons
    assert reasons[0][2].endswith('Z') and 'T' in reasons[0][2]
    assert prop(d, 'TargetCommit') == target
    assert tree_state(world) == before
    assert world.actions() == []


def test_fresh_lockfile_defers_until_it_goes(harness, world):
    lock = os.path.join(world.dir, 'round.lock')
    with open(lock, 'w') as f:
        json.dump({'pid': os.getpid(), 'round': 7}, f)
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_round_lock_file=lock))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    before = tree_state(world)
    # a dry run says so, and changes nothing (no State, no DeferReasons, no signal)
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{'dry-run': ['b', True]}])
        assert not r.ok and r.error_name == DEFERRED and 'would be deferred' in r.error_message, r
        sc.pump()
        assert not [s for s in sc.signals if s.member == 'UpdateDeferred']
    assert prop(d, 'State') == 'idle' and prop(d, 'DeferReasons') == []
    assert_deferred(d, world, 'round-lock', before)
    since = prop(d, 'DeferReasons')[0][2]
    # still closed: same since
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == DEFERRED
    assert prop(d, 'DeferReasons')[0][2] == since
    # a lockfile without a pid is fresh too
    with open(lock, 'w') as f:
        f.write('{}')
    assert not updater(d, 'Apply', 'a{sv}', [{}]).ok
    os.unlink(lock)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result == (world.first, new), r
    assert prop(d, 'DeferReasons') == [] and prop(d, 'State') == 'idle'


def test_stale_lockfile_by_age_does_not_defer(harness, world):
    lock = os.path.join(world.dir, 'round.lock')
    with open(lock, 'w') as f:
        json.dump({'pid': os.getpid()}, f)
    old = time.time() - 3 * 3600
    os.utime(lock, (old, old))
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_round_lock_file=lock))
    assert updater(d, 'Apply', 'a{sv}', [{'dry-run': ['b', True]}]).ok
    assert updater(d, 'Apply', 'a{sv}', [{'dry-run': ['b', True]}]).ok
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result[1] == new, r
    assert d.log_text().count('stale') == 1, d.log_text()   # logged once


def test_stale_lockfile_by_dead_pid_does_not_defer(harness, world):
    p = subprocess.Popen(['true'])
    p.wait()
    lock = os.path.join(world.dir, 'round.lock')
    with open(lock, 'w') as f:
        json.dump({'pid': p.pid}, f)
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_round_lock_file=lock))
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result[1] == new, r
    assert 'not running' in d.log_text()


@pytest.mark.parametrize('policy', ['busy', 'idle'])
@pytest.mark.parametrize('mode', ['idle', 'busy', 'unreachable', 'malformed'])
def test_validation_api(harness, world, mode, policy):
    api = start_api(harness)
    set_mode(api, mode, jobs=2)
    world.release('2')
    d = harness.daemon(config=world.config(updater_validation_api_url=api.url, updater_api_unreachable=policy))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    before = tree_state(world)
    defers = mode == 'busy' or (mode in ('unreachable', 'malformed') and policy == 'busy')
    if defers:
        assert_deferred(d, world, 'validation-api', before)
        detail = prop(d, 'DeferReasons')[0][1]
        if mode == 'busy':
            assert '2 active jobs' in detail, detail
        else:
            assert 'policy: busy' in detail, detail
        set_mode(api, 'idle')
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok, r
    assert world.head() != world.first
    assert any(rq['path'].startswith('/validate/active') for rq in api.control('requests')['requests'])


def test_force_skips_the_gates(harness, world):
    lock = os.path.join(world.dir, 'round.lock')
    open(lock, 'w').close()
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_round_lock_file=lock))
    r = updater(d, 'Apply', 'a{sv}', [{'force': ['b', True]}])
    assert r.ok and r.result[1] == new, r


def test_vm_operation_defers(harness, bus, polkit, daemon_binary):
    import vmenv
    world = World(harness)
    env = vmenv.VmEnv(harness, vmm_opts={'shutdown_seconds': -1}, stop_timeout_sec=4,
                      extra_config=world.config())
    env.start()
    world.release('2')
    d = env.daemon
    stop = env.vm_call_async('Stop')
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    env_state = lambda: d.get('State', iface=vmenv.VM_IFACE, path=vmenv.VM_PATH)  # noqa: E731
    deadline = time.monotonic() + 10
    while env_state() != 'stopping':
        assert time.monotonic() < deadline, env_state()
        time.sleep(0.02)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == DEFERRED and 'vm-operation' in r.error_message, r
    assert world.head() == world.first
    stop.wait(30)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok, r


def test_dirty_tree_names_tracked_and_untracked_files(harness, world):
    world.release('2')
    d = harness.daemon(config=world.config())
    with open(os.path.join(world.work, 'version.txt'), 'a') as f:
        f.write('local edit\n')
    os.makedirs(os.path.join(world.work, 'notes'))
    with open(os.path.join(world.work, 'notes', 'todo.txt'), 'w') as f:
        f.write('x')
    before = tree_state(world)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == DIRTY, r
    assert 'version.txt' in r.error_message and 'notes/todo.txt (untracked)' in r.error_message, r.error_message
    assert tree_state(world) == before
    r = updater(d, 'Apply', 'a{sv}', [{'dry-run': ['b', True]}])
    assert not r.ok and r.error_name == DIRTY, r


def test_second_apply_is_busy(harness, world):
    world.release('2')
    d = harness.daemon(config=world.config())
    world.block('build')
    t, out = apply_async(d)
    wait_prop(d, 'Operation', lambda v: v == 'build')
    for method, sig, args in (('Apply', 'a{sv}', [{}]), ('Check', None, None), ('Rollback', 's', ['']) ):
        r = updater(d, method, sig, args)
        assert not r.ok and r.error_name == BUSY, (method, r)
    world.block('build', False)
    t.join(30)
    assert out and out[0].ok, out


def test_external_flock_holder_is_busy(harness, world):
    world.release('2')
    d = harness.daemon(config=world.config())
    path = os.path.join(world.work, '.git', 'platform-launcher-update.lock')
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        for method, sig, args in (('Apply', 'a{sv}', [{}]), ('Check', None, None)):
            r = updater(d, method, sig, args)
            assert not r.ok and r.error_name == BUSY, (method, r)
            assert 'platform-launcher-update.lock' in r.error_message
        assert world.head() == world.first
    assert updater(d, 'Apply', 'a{sv}', [{}]).ok


def test_not_a_fast_forward_defers_unless_forced_or_named(harness, world):
    """D11: a release branch force-pushed back to an older (still valid) commit
    is a downgrade: deferred "not a fast-forward", unless Apply is forced or
    Rollback names the commit."""
    second = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert updater(d, 'Apply', 'a{sv}', [{}]).result == (world.first, second)
    git(world.dev, 'reset', '--quiet', '--hard', world.first)
    git(world.dev, 'push', '--quiet', '--force', 'origin', 'release')
    world.clear_actions()
    before = tree_state(world)
    r = updater(d, 'Apply', 'a{sv}', [{'dry-run': ['b', True]}])
    assert not r.ok and r.error_name == DEFERRED and 'not a fast-forward' in r.error_message, r
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{}])
        assert not r.ok and r.error_name == DEFERRED, r
        assert 'not a fast-forward' in r.error_message and second[:12] in r.error_message, r.error_message
        s = sc.wait_for(lambda s: s.member == 'UpdateDeferred')
        assert 'not a fast-forward' in s.args[0] and s.args[1] == world.first
    assert prop(d, 'State') == 'deferred'
    assert [g for g, _, _ in prop(d, 'DeferReasons')] == ['fast-forward']
    assert tree_state(world) == before and world.actions() == []
    # a branch that diverged (a new commit on the older base) is no fast-forward either
    other = world.release('2b')
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == DEFERRED and 'not a fast-forward' in r.error_message, r
    # forced: Apply takes the diverged head
    r = updater(d, 'Apply', 'a{sv}', [{'force': ['b', True]}])
    assert r.ok and r.result == (second, other), r
    assert world.head() == other and prop(d, 'State') == 'idle' and prop(d, 'DeferReasons') == []
    # the operator names an older commit: Rollback takes it
    r = updater(d, 'Rollback', 's', [world.first])
    assert r.ok and r.result == (other, world.first), r
    assert world.head() == world.first


def test_automatic_update_defers_a_downgrade(harness, world):
    second = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert updater(d, 'Apply', 'a{sv}', [{}]).ok
    git(world.dev, 'reset', '--quiet', '--hard', world.first)
    git(world.dev, 'push', '--quiet', '--force', 'origin', 'release')
    with updater_signals(d) as sc:
        assert updater(d, 'SetAutoUpdate', 'b', [True]).ok
        s = sc.wait_for(lambda s: s.member == 'UpdateDeferred', timeout=30)
        assert 'not a fast-forward' in s.args[0]
    assert world.head() == second and prop(d, 'CurrentCommit') == second
