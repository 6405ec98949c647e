# SPDX-License-Identifier: Apache-2.0
"""Updater.Check and dry-run change nothing; polkit guards every privileged
method; the signed-commit policy with keys made by ssh-keygen."""
import os
import subprocess

import pytest

from launcher import denied, file_state
from updater_world import World, git, updater, prop, wait_prop, state_file, tree_state, updater_signals

FAILED = 'org.platform.Launcher1.Error.Failed'


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness)


def test_check_changes_nothing(harness, world):
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    before = tree_state(world)
    r = updater(d, 'Check')
    assert r.ok and r.result == (True, new), r
    assert tree_state(world) == before
    assert world.actions() == []
    assert prop(d, 'TargetCommit') == new and prop(d, 'CurrentCommit') == world.first
    assert prop(d, 'LastCheckTimestamp') > 0 and prop(d, 'State') == 'idle'
    # the fetch did happen (the remote-tracking ref moved), nothing else
    assert git(world.work, 'rev-parse', 'refs/remotes/origin/release') == new
    r = updater(d, 'Check')
    assert r.ok and r.result == (True, new), r


def test_check_up_to_date(harness, world):
    d = harness.daemon(config=world.config())
    r = updater(d, 'Check')
    assert r.ok and r.result == (False, world.first), r


def test_dry_run_changes_nothing_but_the_fetch(harness, world):
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    before = tree_state(world)
    state_before = state_file(d)
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{'dry-run': ['b', True]}])
        assert r.ok and r.result == (world.first, new), r
        sc.pump()
        assert not [s for s in sc.signals if s.member.startswith('Update')]
    assert tree_state(world) == before
    assert world.actions() == []
    assert 'transaction' not in state_file(d)
    assert state_file(d).get('last_good_commit') == state_before.get('last_good_commit')
    assert prop(d, 'LastGoodCommit') == world.first and prop(d, 'PreviousCommit') == ''
    assert git(world.work, 'rev-parse', 'refs/remotes/origin/release') == new


def test_disabled(harness, bus, polkit, daemon_binary):
    d = harness.daemon(config={'env': {}})
    assert prop(d, 'State') == 'disabled'
    for method, sig, args in (('Check', None, None), ('Apply', 'a{sv}', [{}])):
        r = updater(d, method, sig, args)
        assert not r.ok and r.error_name == FAILED and 'disabled' in r.error_message, r


def test_nobody_is_denied_everything_and_nothing_changes(harness, world):
    world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    before = tree_state(world)
    cfg_before = file_state(d.config_path)
    calls = [('Check', None, None), ('Apply', 'a{sv}', [{}]), ('Apply', 'a{sv}', [{'dry-run': ['b', True]}]),
             ('Rollback', 's', ['']), ('SetAutoUpdate', 'b', [True])]
    for method, sig, args in calls:
        r = updater(d, method, sig, args, user='nobody')
        assert denied(r), (method, r)
    assert tree_state(world) == before
    assert file_state(d.config_path) == cfg_before
    assert prop(d, 'TargetCommit') == '' and prop(d, 'AutoUpdate') is False
    assert git(world.work, 'rev-parse', 'refs/remotes/origin/release') == world.first
    # property reads are open
    r = d.bus.get_property('org.platform.Launcher1', '/org/platform/Launcher1', 'org.platform.Launcher1.Updater',
                           'State', user='nobody')
    assert r.ok and r.result == 'idle', r


def test_polkit_gets_the_repository(harness, world, polkit):
    """A rule that allows check-updates for this repository only."""
    world.release('2')
    d = harness.daemon(config=world.config())
    polkit.add_rule('50-updater.rules', '''
polkit.addRule(function(action, subject) {
    if (action.id == "org.platform.launcher1.check-updates" &&
        action.lookup("repository") == "%s") {
        return polkit.Result.YES;
    }
});''' % world.work)
    r = updater(d, 'Check', user='nobody')
    assert r.ok and r.result[0] is True, r
    r = updater(d, 'Apply', 'a{sv}', [{}], user='nobody')
    assert denied(r), r


def keypair(world, name):
    path = os.path.join(world.dir, name)
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', name, '-f', path], check=True)
    with open(path + '.pub') as f:
        return path, f.read().strip()


def test_signatures(harness, world):
    good_key, good_pub = keypair(world, 'release-key')
    bad_key, _ = keypair(world, 'other-key')
    signers = os.path.join(world.dir, 'allowed_signers')
    with open(signers, 'w') as f:
        f.write('dev@example.org namespaces="git" %s\n' % good_pub)
    unsigned = world.release('2')
    d = harness.daemon(config=world.config(updater_allowed_signers_file=signers))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{}])
        assert not r.ok and r.error_name == FAILED and 'signature' in r.error_message, r
        s = sc.wait_for(lambda s: s.member == 'UpdateFailed')
        assert s.args[0] == unsigned and s.args[2] is False
    assert world.head() == world.first and world.actions() == []
    assert prop(d, 'QuarantinedCommit') == unsigned
    wrong = world.release('3', sign_key=bad_key)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and 'signature' in r.error_message, r
    assert world.head() == world.first and prop(d, 'QuarantinedCommit') == wrong
    signed = world.release('4', sign_key=good_key)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result == (world.first, signed), r
    assert world.head() == signed
