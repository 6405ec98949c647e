# SPDX-License-Identifier: Apache-2.0
"""Updater.Apply with real git, real child processes, the real daemon, and a
real systemd manager on the private bus (real_systemd.py) whose units are
restarted: order, failures, rollback, quarantine. The stand-in
(tests/sim/systemd_sim.py) only injects what a real manager will not do on
demand: a job that never ends."""
import os

import pytest

import harness as H
from real_systemd import real_systemd  # noqa: F401 (the fixture)
from updater_world import World, RealUnits, updater, prop, wait_prop, state_file, updater_signals

FAILED = 'org.platform.Launcher1.Error.Failed'


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness)


@pytest.fixture
def systemd(world, real_systemd):
    return RealUnits(real_systemd, world)


@pytest.fixture
def systemd_sim(harness, bus):
    return harness.systemd()


def test_apply_updates_in_order_and_signals_after_properties(harness, world, systemd):
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_restart_units=['validation-api', 'validator.service']))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert prop(d, 'LastGoodCommit') == world.first
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{}])
        assert r.ok, r
        assert r.result == (world.first, new)
        sc.wait_for(lambda s: s.member == 'UpdateApplied')
    assert world.head() == new
    # build, then the units in order, then the restart commands, then health
    assert world.actions() == ['build 2', 'restart 2']
    assert systemd.restarts() == ['validation-api.service', 'validator.service']
    assert prop(d, 'LastGoodCommit') == new and prop(d, 'PreviousCommit') == world.first
    assert prop(d, 'CurrentCommit') == new and prop(d, 'State') == 'idle' and prop(d, 'LastError') == ''
    assert prop(d, 'LastUpdateTimestamp') > 0
    # PropertiesChanged (LastGoodCommit) went out before UpdateApplied
    names = [(s.member, s.args) for s in sc.signals]
    applied = [i for i, (m, a) in enumerate(names) if m == 'UpdateApplied'][0]
    assert names[applied][1] == (world.first, new)
    good = [i for i, (m, a) in enumerate(names)
            if m == 'PropertiesChanged' and a[0] == 'org.platform.Launcher1.Updater' and 'LastGoodCommit' in a[1]]
    assert good and good[0] < applied, names
    # Operation went through the steps
    ops = [a[1]['Operation'] for m, a in names if m == 'PropertiesChanged' and 'Operation' in a[1]]
    for step in ('fetch', 'gates', 'checkout', 'build', 'restart', 'health'):
        assert step in ops, ops
    # up to date: from = to, nothing run
    world.clear_actions()
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result == (new, new), r
    assert world.actions() == []


def test_failing_unit_job_rolls_back(harness, world, systemd):
    new = world.release('2')
    systemd.fail_unit('validator.service', 'failed')
    d = harness.daemon(config=world.config(updater_restart_units=['validation-api', 'validator']))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{}])
        assert not r.ok and r.error_name == FAILED, r
        assert 'restart of validator.service ended with job result "failed"' in r.error_message, r.error_message
        assert 'rolled back' in r.error_message
        s = sc.wait_for(lambda s: s.member == 'UpdateFailed')
        assert s.args[0] == new and s.args[2] is True
    assert world.head() == world.first
    assert prop(d, 'QuarantinedCommit') == new
    # the second unit was never reached forward; the rollback restarted both
    assert systemd.restarts() == ['validation-api.service', 'validator.service',
                                  'validation-api.service', 'validator.service']
    assert world.actions() == ['build 2', 'build 1', 'restart 1']


def test_failed_rollback_leaves_failed_and_converges_later(harness, world, systemd):
    """Never "up to date but stopped": a rollback that fails too leaves State=failed,
    and the next tick converges on the last good commit."""
    new = world.release('2')
    systemd.fail_unit('validator', 'failed')
    systemd.fail_unit('validator', 'failed')
    d = harness.daemon(config=world.config(updater_restart_units=['validator'], updater_interval_usec=1000000))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{}])
        assert not r.ok and 'the rollback to' in r.error_message and 'failed too' in r.error_message, r
        s = sc.wait_for(lambda s: s.member == 'UpdateFailed')
        assert s.args[0] == new and s.args[2] is False
    assert prop(d, 'State') == 'failed'
    assert state_file(d)['transaction']['phase'] == 'reverse'
    # the next tick (1 s) retries the rollback, which now succeeds
    wait_prop(d, 'State', lambda v: v == 'idle', timeout=20)
    assert world.head() == world.first and prop(d, 'QuarantinedCommit') == new
    assert 'transaction' not in state_file(d)
    assert world.actions()[-2:] == ['build 1', 'restart 1']


def test_unit_job_that_never_ends_times_out(harness, world, systemd_sim):
    world.release('2')
    systemd_sim.hang_unit('validator.service')
    d = harness.daemon(config=world.config(updater_restart_units=['validator'],
                                           updater_command_timeout_usec=500000))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED, r
    assert 'did not finish within' in r.error_message, r.error_message


def test_command_timeout_kills_the_whole_group(harness, world):
    pidfile = os.path.join(world.dir, 'grandchild.pid')
    world.release('2')
    script = ('if [ "$(cat version.txt)" = 2 ]; then sleep 300 & echo $! > %s; wait; fi; echo "restart $(cat version.txt)" >> %s'
              % (pidfile, world.log))
    d = harness.daemon(config=world.config(updater_restart_commands=[['sh', '-c', script]],
                                           updater_command_timeout_usec=500000))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED, r
    assert 'timed out' in r.error_message and 'rolled back' in r.error_message, r.error_message
    with open(pidfile) as f:
        pid = int(f.read())
    assert not H._pid_alive(pid), 'the grandchild survived the timeout'
    assert 'timed out after 0.5 s' in r.error_message, r.error_message
    assert world.head() == world.first
    assert world.actions() == ['build 2', 'build 1', 'restart 1']


def test_health_failure_rolls_back_and_quarantines(harness, world):
    bad = world.release('2', health='bad')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{}])
        assert not r.ok and r.error_name == FAILED, r
        assert 'rolled back' in r.error_message
        s = sc.wait_for(lambda s: s.member == 'UpdateFailed')
        assert s.args[0] == bad and s.args[2] is True
        assert 'health' in s.args[1]
    assert world.head() == world.first
    # built and restarted the bad one, then the good one again, verified
    assert world.actions() == ['build 2', 'restart 2', 'build 1', 'restart 1']
    assert prop(d, 'QuarantinedCommit') == bad
    assert prop(d, 'LastGoodCommit') == world.first
    assert prop(d, 'State') == 'idle'
    assert bad in prop(d, 'LastError')
    # retried every 0.5 s for 3 s with the same reason: said once, not at every attempt
    assert d.log_text().count('Health check: health command exited with status 1') == 1, d.log_text()
    # Apply without force refuses it; the quarantine survives a restart
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED and 'quarantined' in r.error_message, r
    d.restart()
    assert prop(d, 'QuarantinedCommit') == bad
    assert state_file(d)['quarantined_commit'] == bad
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and 'quarantined' in r.error_message, r
    assert world.head() == world.first
    # a new release moves the branch: the quarantine is lifted and it applies
    fixed = world.release('3')
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result == (world.first, fixed), r
    assert prop(d, 'QuarantinedCommit') == ''
    assert world.head() == fixed


def test_force_applies_a_quarantined_target(harness, world):
    bad = world.release('2', health='bad')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert not updater(d, 'Apply', 'a{sv}', [{}]).ok
    assert prop(d, 'QuarantinedCommit') == bad
    world.clear_actions()
    r = updater(d, 'Apply', 'a{sv}', [{'force': ['b', True]}])
    assert not r.ok and 'rolled back' in r.error_message, r   # tried again (still unhealthy)
    assert world.actions()[:1] == ['build 2']


def test_build_failing_after_checkout_rolls_back_and_restarts(harness, world, systemd):
    """alphacore's dead state: the build fails after the checkout. Here the
    previous commit is checked out, rebuilt, its services restarted and verified."""
    broken = world.release('2', build_ok=False)
    d = harness.daemon(config=world.config(updater_restart_units=['validator']))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED, r
    assert 'build' in r.error_message and 'rolled back' in r.error_message
    assert world.head() == world.first
    assert world.actions() == ['build 2', 'build 1', 'restart 1']
    assert systemd.restarts() == ['validator.service']   # restarted by the rollback
    assert prop(d, 'QuarantinedCommit') == broken and prop(d, 'State') == 'idle'


def test_operator_rollback(harness, world):
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert updater(d, 'Apply', 'a{sv}', [{}]).ok
    world.clear_actions()
    with updater_signals(d) as sc:
        r = updater(d, 'Rollback', 's', [''])
        assert r.ok and r.result == (new, world.first), r
        sc.wait_for(lambda s: s.member == 'UpdateApplied' and s.args == (new, world.first))
    assert world.head() == world.first
    assert world.actions() == ['build 1', 'restart 1']
    assert prop(d, 'QuarantinedCommit') == new          # not re-applied automatically
    assert prop(d, 'PreviousCommit') == ''
    r = updater(d, 'Rollback', 's', [''])
    assert not r.ok and r.error_name == 'org.platform.Launcher1.Error.NotFound', r
    # an explicit commit, abbreviated
    r = updater(d, 'Rollback', 's', [new[:10]])
    assert r.ok and r.result == (world.first, new), r
    assert prop(d, 'QuarantinedCommit') == world.first
    for bad in ('HEAD', '--help', 'zz12'):
        r = updater(d, 'Rollback', 's', [bad])
        assert not r.ok and r.error_name == 'org.freedesktop.DBus.Error.InvalidArgs', r
    r = updater(d, 'Rollback', 's', ['abcdef12'])   # no such commit
    assert not r.ok and r.error_name == 'org.freedesktop.DBus.Error.InvalidArgs', r
    assert world.head() == new


def test_unknown_option_and_wrong_type(harness, world):
    d = harness.daemon(config=world.config())
    for opts in ({'bogus': ['b', True]}, {'force': ['s', 'yes']}):
        r = updater(d, 'Apply', 'a{sv}', [opts])
        assert not r.ok and r.error_name == 'org.freedesktop.DBus.Error.InvalidArgs', r


def test_health_url(harness, world):
    """UpdaterHealthUrl: 2xx = healthy (the API simulator's /validate/active
    answers 200); a URL where nothing listens = unhealthy until the deadline."""
    import sys
    sys.path.insert(0, os.path.join(H.SOURCE_DIR, 'tests', 'sim'))
    import simlib
    simdir = os.path.join(harness.workdir, 'api-sim')
    os.makedirs(simdir)
    api = simlib.start_api(simdir)
    harness.procs.procs.append(('api-sim', api.proc))
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_health_command=[],
                                           updater_health_url=api.url + '/validate/active'))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result == (world.first, new), r
    world.release('3')
    r = d.call('SetSettings', 'a{sv}', [{'UpdaterHealthUrl': ['s', 'http://127.0.0.1:9/health'],
                                         'UpdaterHealthTimeoutUSec': ['t', 1000000]}])
    assert r.ok, r
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and 'nhealthy for 1.0 s' in r.error_message and '127.0.0.1:9' in r.error_message, r
    # the same dead URL fails the rollback's verification too: State=failed, retried later
    assert 'failed too' in r.error_message and prop(d, 'State') == 'failed', r
    assert world.head() == new
