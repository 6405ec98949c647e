# SPDX-License-Identifier: Apache-2.0
"""Crash safety and automatic updates: SIGKILL of the daemon at each step of a
transaction, then a start, converges at a verified good commit with the
services restarted (never alphacore's "up to date but stopped"); AutoUpdate
survives restarts and runs its first check within 10 s."""
import json
import os
import time

import pytest

from real_systemd import real_systemd  # noqa: F401 (the fixture)
from updater_world import (World, RealUnits, git, updater, prop, wait_prop, wait_file, apply_async, state_file,
                           updater_signals)


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness)


@pytest.fixture
def systemd(world, real_systemd):
    return RealUnits(real_systemd, world)


def started(world):
    return os.path.join(world.dir, 'build-started')


@pytest.mark.parametrize('step', ['build', 'restart', 'health'])
def test_sigkill_during_update_then_start_converges(harness, world, systemd, step):
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_restart_units=['validator']))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    if step == 'build':
        world.block('build')
    elif step == 'restart':
        systemd.hang_unit('validator')
    else:
        world.block('health')
    t, out = apply_async(d)
    wait_prop(d, 'Operation', lambda v: v == step)
    if step == 'restart':   # the unit's start job really runs (and hangs) before the kill
        systemd.wait_restarted('validator.service')
    assert state_file(d)['transaction']['to'] == new
    d.kill()
    t.join(10)
    world.block('build', False)
    world.block('health', False)
    systemd.hang_unit('validator', False)
    world.clear_actions()
    systemd.reset()
    with updater_signals(d) as sc:
        d.start()
        sc.wait_for(lambda s: s.member == 'UpdateApplied', timeout=30)
    assert world.head() == new
    assert prop(d, 'LastGoodCommit') == new and prop(d, 'State') == 'idle'
    assert prop(d, 'PreviousCommit') == world.first
    assert 'transaction' not in state_file(d)
    if step == 'health':
        # the restarts were done before the crash: only the health check is left
        assert 'build 2' not in world.actions()
    else:
        # redone from the checkout: built, units and commands restarted
        assert 'build 2' in world.actions() and world.actions()[-1] == 'restart 2'
        assert systemd.restarts() == ['validator.service']


def test_sigkill_during_rollback_then_start_converges(harness, world):
    bad = world.release('2', health='bad')
    d = harness.daemon(config=world.config(updater_health_timeout_usec=1000000))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    t, out = apply_async(d)
    wait_prop(d, 'Operation', lambda v: v == 'health')
    os.unlink(started(world))
    world.block('build')
    wait_prop(d, 'Operation', lambda v: v == 'rollback')
    wait_file(started(world))
    assert state_file(d)['transaction']['phase'] == 'reverse'
    d.kill()
    t.join(10)
    world.block('build', False)
    world.clear_actions()
    with updater_signals(d) as sc:
        d.start()
        s = sc.wait_for(lambda s: s.member == 'UpdateFailed', timeout=30)
        assert s.args[0] == bad and s.args[2] is True
    assert world.head() == world.first
    assert prop(d, 'QuarantinedCommit') == bad and prop(d, 'LastGoodCommit') == world.first
    assert prop(d, 'State') == 'idle'
    assert world.actions()[-1] == 'restart 1'
    assert 'transaction' not in state_file(d)


def test_sigkill_during_checkout_record_then_start_converges(harness, world):
    """A record left at phase "checkout" (the crash came right after it was
    written): the start finishes the update."""
    new = world.release('2')
    git(world.work, 'fetch', '--quiet', 'origin')   # the record is written after the fetch
    d = harness.daemon(config=world.config(), start=False)
    os.makedirs(d.state_dir, exist_ok=True)
    with open(os.path.join(d.state_dir, 'updater.json'), 'w') as f:
        json.dump({'last_good_commit': world.first, 'transaction': {
            'kind': 'apply', 'from': world.first, 'to': new, 'phase': 'checkout'}}, f)
    with updater_signals(d) as sc:
        d.start()
        sc.wait_for(lambda s: s.member == 'UpdateApplied', timeout=30)
    assert world.head() == new and world.actions() == ['build 2', 'restart 2']


def test_auto_update_after_restart(harness, world):
    d = harness.daemon(config=world.config(updater_auto_update=True, updater_interval_usec=3600 * 1000000))
    wait_prop(d, 'LastCheckTimestamp', lambda v: v > 0, timeout=15)
    assert prop(d, 'State') == 'idle' and world.head() == world.first
    nxt = prop(d, 'NextCheckTimestamp')
    now = time.time() * 1e6
    assert 0.85 * 3600e6 < nxt - now < 1.15 * 3600e6, (nxt - now)
    d.stop()
    new = world.release('2')
    t0 = time.monotonic()
    with updater_signals(d) as sc:
        d.start()
        s = sc.wait_for(lambda s: s.member == 'UpdateApplied', timeout=15)
    assert time.monotonic() - t0 < 10
    assert s.args == (world.first, new)
    assert world.head() == new


def test_set_auto_update_persists_and_checks_soon(harness, world):
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_interval_usec=3600 * 1000000))
    assert prop(d, 'NextCheckTimestamp') == 0
    t0 = time.monotonic()
    with updater_signals(d) as sc:
        r = updater(d, 'SetAutoUpdate', 'b', [True])
        assert r.ok, r
        assert prop(d, 'AutoUpdate') is True and prop(d, 'NextCheckTimestamp') > 0
        sc.wait_for(lambda s: s.member == 'PropertiesChanged' and 'AutoUpdate' in s.args[1])
        sc.wait_for(lambda s: s.member == 'UpdateApplied', timeout=15)
    assert time.monotonic() - t0 < 10
    assert d.read_config()['updater_auto_update'] is True
    assert world.head() == new
    assert updater(d, 'SetAutoUpdate', 'b', [False]).ok
    assert d.read_config().get('updater_auto_update', False) is False
    assert prop(d, 'NextCheckTimestamp') == 0


def test_auto_update_defers_then_applies_and_skips_quarantine(harness, world):
    lock = os.path.join(world.dir, 'round.lock')
    open(lock, 'w').close()
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_auto_update=True, updater_interval_usec=1000000,
                                           updater_round_lock_file=lock), start=False)
    with updater_signals(d) as sc:
        d.start()
        s = sc.wait_for(lambda s: s.member == 'UpdateDeferred', timeout=15)
        assert 'round-lock' in s.args[0] and s.args[1] == new
        assert prop(d, 'State') == 'deferred'
        os.unlink(lock)
        sc.wait_for(lambda s: s.member == 'UpdateApplied', timeout=15)
    assert world.head() == new
    # a bad release is rolled back once, then left alone by the automatic checks
    bad = world.release('3', health='bad')
    with updater_signals(d) as sc:
        sc.wait_for(lambda s: s.member == 'UpdateFailed', timeout=30)
        last = prop(d, 'LastCheckTimestamp')
        wait_prop(d, 'LastCheckTimestamp', lambda v: v > last, timeout=15)
        sc.pump()
        assert len([s for s in sc.signals if s.member == 'UpdateFailed']) == 1
    assert prop(d, 'QuarantinedCommit') == bad and world.head() == new


def test_sigterm_during_update_answers_the_caller_and_the_start_finishes(harness, world):
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    world.block('build')
    t, out = apply_async(d)
    wait_prop(d, 'Operation', lambda v: v == 'build')
    d.send_signal(15)
    t.join(20)
    assert out and not out[0].ok and 'stopping' in out[0].error_message, out
    assert d.proc.wait(10) == 0
    world.block('build', False)
    with updater_signals(d) as sc:
        d.start()
        sc.wait_for(lambda s: s.member == 'UpdateApplied', timeout=30)
    assert world.head() == new and prop(d, 'State') == 'idle'
