# SPDX-License-Identifier: Apache-2.0
"""platformctl updater status|check|apply|rollback|enable|disable, status with
the updater's problems first, and monitor showing the Updater's signals."""
import json
import os

import pytest

from ctl_helpers import ctl, fields, run_on_pty, Monitor
from updater_world import World, prop, wait_prop


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness)


def test_updater_commands(harness, bus, world):
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    p = ctl(bus, 'updater', 'status')
    assert p.returncode == 0, p.stderr
    f = fields(p.stdout)
    assert f['Updater'] == 'idle' and f['Current'] == world.first[:12], p.stdout
    p = ctl(bus, 'updater', 'status', '--json')
    doc = json.loads(p.stdout)
    assert doc['CurrentCommit'] == world.first and doc['State'] == 'idle'
    p = ctl(bus, 'updater', 'check')
    assert p.returncode == 0 and p.stdout.strip() == 'Update available: %s' % new, (p.stdout, p.stderr)
    p = ctl(bus, 'updater', 'check', '--json')
    assert json.loads(p.stdout) == {'Available': True, 'Commit': new}
    p = ctl(bus, 'updater', 'apply', '--dry-run')
    assert p.returncode == 0 and p.stdout.strip() == 'Would update %s -> %s' % (world.first, new), p.stdout
    assert world.head() == world.first
    rc, out, err = run_on_pty(bus, 'updater', 'apply', timeout=60)
    assert rc == 0, err
    assert out.strip() == 'Updated %s -> %s' % (world.first, new)
    for step in ('fetch', 'checkout', 'build', 'restart', 'health'):
        assert step + ' (' in err, err          # progress from Operation/Progress on the terminal
    p = ctl(bus, 'updater', 'apply', '--json')
    assert json.loads(p.stdout) == {'From': new, 'To': new}
    p = ctl(bus, 'updater', 'rollback')
    assert p.returncode == 0 and p.stdout.strip() == 'Rolled back %s -> %s' % (new, world.first), p.stdout
    assert ctl(bus, 'updater', 'enable').returncode == 0
    assert prop(d, 'AutoUpdate') is True
    assert ctl(bus, 'updater', 'disable').returncode == 0
    assert prop(d, 'AutoUpdate') is False


def test_usage_and_errors(harness, bus, world):
    lock = os.path.join(world.dir, 'round.lock')
    open(lock, 'w').close()
    world.release('2')
    harness.daemon(config=world.config(updater_round_lock_file=lock))
    for args in (('updater', 'check', '--force'), ('updater', 'rollback', 'a', 'b'), ('updater', 'frob')):
        p = ctl(bus, *args)
        assert p.returncode == 64, (args, p.stderr)
    p = ctl(bus, 'updater', 'apply')
    assert p.returncode == 75 and 'round-lock' in p.stderr, (p.returncode, p.stderr)
    p = ctl(bus, 'updater', 'rollback', 'HEAD')
    assert p.returncode == 65, (p.returncode, p.stderr)


def test_status_shows_updater_problems_first(harness, bus, world):
    lock = os.path.join(world.dir, 'round.lock')
    open(lock, 'w').close()
    world.release('2')
    bad = world.release('3', health='bad')
    d = harness.daemon(config=world.config(updater_round_lock_file=lock))
    assert ctl(bus, 'updater', 'apply').returncode == 75
    p = ctl(bus, 'status')
    lines = p.stdout.splitlines()
    first = [i for i, l in enumerate(lines) if l.startswith('Problem: update deferred by round-lock since ')]
    assert first, p.stdout
    assert first[0] < [i for i, l in enumerate(lines) if 'Updater:' in l][0]
    doc = json.loads(ctl(bus, 'status', '--json').stdout)
    assert doc['Updater']['State'] == 'deferred' and doc['Updater']['DeferReasons'][0][0] == 'round-lock'
    os.unlink(lock)
    assert ctl(bus, 'updater', 'apply').returncode == 1
    p = ctl(bus, 'status')
    assert 'Problem: commit %s is quarantined' % bad[:12] in p.stdout, p.stdout


def test_monitor_shows_updater_signals(harness, bus, world):
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    m = Monitor(harness, bus, '--json')
    assert ctl(bus, 'updater', 'apply').returncode == 0
    seen = []
    while not any(x['Member'] == 'UpdateApplied' for x in seen):
        seen.append(json.loads(m.line(20)))
    applied = [x for x in seen if x['Member'] == 'UpdateApplied'][0]
    assert applied['Object'] == 'updater'
    assert applied['Args'] == {'old_commit': world.first, 'new_commit': new}
    assert any(x['Member'] == 'PropertiesChanged' and x['Object'] == 'updater' for x in seen)
    m.stop()
