# SPDX-License-Identifier: Apache-2.0
"""The Updater's transactions in the audit history, through the bus:
Updater.GetHistory and Updater.HistoryAdded after an applied update, a failed
update rolled back (health), an operator Rollback, a failed Rollback, an
automatic update (trigger "auto-update"); no entry for a no-op Apply or a
deferral; the bound (200) kept across the Vm's and the Updater's entries;
persisted across a restart; no secret in any entry; open to `nobody`;
`platformctl updater history` (dbus/org.platform.Launcher1.Updater.xml,
GetHistory)."""
import json
import os

import pytest

from real_systemd import real_systemd  # noqa: F401 (the fixture)
from updater_world import World, RealUnits, updater, prop, wait_prop, updater_signals
from ctl_helpers import ctl

FIELDS = ('timestamp', 'kind', 'action', 'trigger', 'from', 'to', 'result', 'reason', 'duration')
ROOT_TRIGGER = 'uid 0 (python3)'  # this process, as the bus and /proc report it
SECRET = 'S3CRET-updater-history-marker'
DEFERRED = 'org.platform.Launcher1.Error.Deferred'


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness)


def history(d, limit=0, user=None):
    r = updater(d, 'GetHistory', 'u', [limit], user=user)
    assert r.ok, r
    return [dict(zip(FIELDS, e)) for e in r.result[0]]


def history_file(d):
    with open(os.path.join(d.state_dir, 'history.json')) as f:
        return json.load(f)


def test_apply_failure_rollback_recorded(harness, world):
    new = world.release('2')
    d = harness.daemon(config=world.config(env={'HOTKEY_PASSPHRASE': SECRET}))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert history(d) == []

    # An applied update: who asked, from and to, how long.
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{}])
        assert r.ok, r
        sig = sc.wait_for(lambda s: s.member == 'HistoryAdded')
        members = [s.member for s in sc.signals]
    [e] = history(d)
    assert dict(zip(FIELDS, sig.args)) == e
    assert sig.interface == 'org.platform.Launcher1.Updater' and sig.path == '/org/platform/Launcher1'
    assert (e['kind'], e['action'], e['trigger'], e['from'], e['to'], e['result'], e['reason']) == \
        ('updater', 'apply', ROOT_TRIGGER, world.first, new, 'ok', '')
    assert 0 < e['duration'] < 60 * 10**6, e
    assert e['timestamp'] >= prop(d, 'LastUpdateTimestamp') > 0
    assert members.index('UpdateApplied') < members.index('HistoryAdded'), members

    # Already current: no entry. Nor a dry run.
    assert updater(d, 'Apply', 'a{sv}', [{}]).result == (new, new)
    assert updater(d, 'Apply', 'a{sv}', [{'dry-run': ['b', True]}]).ok
    assert len(history(d)) == 1

    # A failed update (health), rolled back.
    bad = world.release('3', health='bad')
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and 'rolled back' in r.error_message, r
    e = history(d, 1)[0]
    assert (e['action'], e['trigger'], e['from'], e['to'], e['result']) == \
        ('apply', ROOT_TRIGGER, new, bad, 'failed'), e
    assert 'health' in e['reason'] and e['reason'].endswith('; rolled back'), e
    assert e['duration'] > 0

    # The operator's Rollback.
    r = updater(d, 'Rollback', 's', [''])
    assert r.ok and r.result == (new, world.first), r
    e = history(d, 1)[0]
    assert (e['action'], e['trigger'], e['from'], e['to'], e['result'], e['reason']) == \
        ('rollback', ROOT_TRIGGER, new, world.first, 'ok', ''), e

    # A Rollback that fails (to a commit whose health check fails) and is undone.
    r = updater(d, 'Rollback', 's', [bad])
    assert not r.ok, r
    assert world.head() == world.first
    e = history(d, 1)[0]
    assert (e['action'], e['from'], e['to'], e['result']) == ('rollback', world.first, bad, 'failed'), e
    assert e['reason'].endswith('; rolled back'), e

    h = history(d)
    assert [(x['action'], x['result']) for x in h] == [('rollback', 'failed'), ('rollback', 'ok'),
                                                       ('apply', 'failed'), ('apply', 'ok')]
    # Open to everyone, like the properties; the limit counts from the newest.
    assert history(d, user='nobody') == h
    assert history(d, 2) == h[:2]
    # Vm entries are not mixed in, and the file holds the same.
    stored = history_file(d)['entries']
    assert [(s['kind'], s['subject'], s['action']) for s in stored] == \
        [('updater', world.work, x['action']) for x in reversed(h)]
    # No secret anywhere.
    text = json.dumps(h) + json.dumps(stored)
    assert SECRET not in text and SECRET not in d.log_text()


def test_deferral_is_not_an_entry(harness, world):
    lock = os.path.join(world.dir, 'round.lock')
    with open(lock, 'w') as f:
        json.dump({'pid': os.getpid(), 'round': 7}, f)
    world.release('2')
    d = harness.daemon(config=world.config(updater_round_lock_file=lock))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == DEFERRED, r
    assert history(d) == []
    os.unlink(lock)
    assert updater(d, 'Apply', 'a{sv}', [{}]).ok
    assert [e['action'] for e in history(d)] == ['apply']


def test_automatic_update_recorded(harness, world):
    new = world.release('2')
    d = harness.daemon(config=world.config(updater_auto_update=True, updater_interval_usec=3600 * 1000000),
                       start=False)
    with updater_signals(d) as sc:
        d.start()
        sig = sc.wait_for(lambda s: s.member == 'HistoryAdded', timeout=30)
    [e] = history(d)
    assert dict(zip(FIELDS, sig.args)) == e
    assert (e['action'], e['trigger'], e['from'], e['to'], e['result']) == \
        ('apply', 'auto-update', world.first, new, 'ok'), e
    assert world.head() == new


def test_bound_across_kinds_and_persisted(harness, world):
    new = world.release('2')
    d = harness.daemon(config=world.config(), start=False)
    # 205 Vm entries written by an earlier run: the oldest 5 go on load.
    old = [{'timestamp_usec': 1000 + i, 'kind': 'vm', 'subject': 'validator', 'action': 'restart',
            'trigger': 'uid 0 (platformctl)', 'from': 'h%d' % i, 'to': 'h%d' % i, 'result': 'ok', 'reason': '',
            'duration_usec': i} for i in range(205)]
    with open(os.path.join(d.state_dir, 'history.json'), 'w') as f:
        json.dump({'version': 1, 'entries': old}, f)
    d.start()
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert history(d) == []
    assert updater(d, 'Apply', 'a{sv}', [{}]).ok
    h = history(d)
    assert [(e['action'], e['to']) for e in h] == [('apply', new)]
    stored = history_file(d)['entries']
    assert len(stored) == 200
    assert stored[-1]['kind'] == 'updater' and stored[0]['from'] == 'h6'   # h0..h5: 205 + 1 - 200

    d.restart()
    wait_prop(d, 'CurrentCommit', lambda v: v == new)
    assert history(d) == h
    assert len(history_file(d)['entries']) == 200


def test_platformctl_updater_history(harness, world):
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    p = ctl(harness.bus, 'updater', 'history')
    assert p.returncode == 0 and p.stdout == 'No history yet.\n', (p.stdout, p.stderr)
    assert updater(d, 'Apply', 'a{sv}', [{}]).ok
    assert updater(d, 'Rollback', 's', ['']).ok
    p = ctl(harness.bus, 'updater', 'history')
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ['TIME', 'ACTION', 'RESULT', 'FROM', 'TO', 'TOOK', 'TRIGGER'], lines
    assert lines[1].split()[2:6] == ['rollback', 'ok', new[:12], '→'] and lines[1].endswith(ROOT_TRIGGER), lines
    assert lines[2].split()[2:5] == ['apply', 'ok', world.first[:12]], lines
    assert len(lines) == 3
    p = ctl(harness.bus, 'updater', 'history', '-n', '1', '--json')
    assert p.returncode == 0, p.stderr
    [e] = json.loads(p.stdout)
    assert e == dict(zip(('Timestamp', 'Kind', 'Action', 'Trigger', 'From', 'To', 'Result', 'Reason',
                          'DurationUSec'), history(d, 1)[0].values()))
    assert (e['Kind'], e['Action'], e['From'], e['To']) == ('updater', 'rollback', new, world.first)
    p = ctl(harness.bus, 'updater', 'history', 'extra')
    assert p.returncode == 64 and 'history [-n N]' in p.stderr, p.stderr
    p = ctl(harness.bus, 'updater', 'status', '-n', '3')
    assert p.returncode == 64 and "'updater history'" in p.stderr, p.stderr


def test_failed_rollback_retried_is_recorded_once(harness, world, real_systemd):
    """A rollback that fails is retried at every interval: each failure that
    repeats the last one is not recorded again; the retry that succeeds is."""
    systemd = RealUnits(real_systemd, world)
    new = world.release('2')
    for _ in range(4):   # forward, rollback, and two retries fail; the third retry succeeds
        systemd.fail_unit('validator', 'failed')
    d = harness.daemon(config=world.config(updater_restart_units=['validator'], updater_interval_usec=1000000))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and 'failed too' in r.error_message, r
    wait_prop(d, 'State', lambda v: v == 'idle', timeout=30)
    assert world.head() == world.first
    h = history(d)
    assert [(e['action'], e['trigger'], e['result'], e['reason'].rsplit('; ', 1)[-1]) for e in h] == [
        ('apply', 'resume', 'failed', 'rolled back'),
        ('apply', 'resume', 'failed', 'not rolled back'),
        ('apply', ROOT_TRIGGER, 'failed', 'not rolled back'),
    ], h
    assert all((e['from'], e['to']) == (world.first, new) for e in h), h
