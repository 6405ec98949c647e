# SPDX-License-Identifier: Apache-2.0
"""The round lockfile is a path someone else controls (issue 15, D4). Whatever
sits there — a FIFO, a directory, a symbolic link, a file too large to be a
lockfile — the daemon never blocks on it: the gate is closed, with a reason
naming what it found, and every property stays answered."""
import json
import os

import pytest

from updater_world import World, updater, prop, wait_prop

DEFERRED = 'org.platform.Launcher1.Error.Deferred'


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness)


def make_fifo(path, world):
    os.mkfifo(path, 0o644)


def make_dir(path, world):
    os.mkdir(path)


def make_symlink_to_fifo(path, world):
    target = os.path.join(world.dir, 'elsewhere.fifo')
    os.mkfifo(target, 0o644)
    os.symlink(target, path)


def make_symlink_to_file(path, world):
    target = os.path.join(world.dir, 'elsewhere.json')
    with open(target, 'w') as f:
        json.dump({'pid': os.getpid()}, f)
    os.symlink(target, path)


def make_too_large(path, world):
    with open(path, 'w') as f:
        f.write('{"pid": %d, "pad": "%s"}' % (os.getpid(), 'x' * (64 * 1024)))


KINDS = [
    ('fifo', make_fifo, 'is a FIFO'),
    ('directory', make_dir, 'is a directory'),
    ('symlink-to-fifo', make_symlink_to_fifo, 'is a symbolic link'),
    ('symlink-to-file', make_symlink_to_file, 'is a symbolic link'),
    ('too-large', make_too_large, 'larger than 65536 bytes'),
]


@pytest.mark.parametrize('name,make,says', KINDS, ids=[k[0] for k in KINDS])
def test_lockfile_that_is_not_a_regular_file_closes_the_gate(harness, world, name, make, says):
    lock = os.path.join(world.dir, 'round.lock')
    world.release('2')
    d = harness.daemon(config=world.config(updater_round_lock_file=lock))
    make(lock, world)
    # Bounded: today's daemon opened a FIFO blocking and never answered again.
    r = updater(d, 'Apply', 'a{sv}', [{}], timeout=10)
    assert not r.ok and r.error_name == DEFERRED, r
    assert 'round-lock' in r.error_message and says in r.error_message, r.error_message
    reasons = prop(d, 'DeferReasons')
    assert [g for g, _, _ in reasons] == ['round-lock'], reasons
    assert 'round lockfile' in reasons[0][1] and lock in reasons[0][1] and says in reasons[0][1], reasons
    # Still answering: a property, and the Config interface.
    assert prop(d, 'State') == 'deferred'
    assert d.get('ConfigError') == ''
    assert world.actions() == []
    # Gone: the update goes through.
    if os.path.isdir(lock) and not os.path.islink(lock):
        os.rmdir(lock)
    else:
        os.unlink(lock)
    r = updater(d, 'Apply', 'a{sv}', [{}], timeout=60)
    assert r.ok, r


def test_fifo_lockfile_with_auto_update_keeps_daemon_answering(harness, world):
    """With AutoUpdate nobody calls: the first check (within 10 s of start-up)
    meets the FIFO on its own, and the daemon must go on answering."""
    lock = os.path.join(world.dir, 'round.lock')
    os.mkfifo(lock, 0o644)
    world.release('2')
    d = harness.daemon(config=world.config(updater_round_lock_file=lock, updater_auto_update=True))
    reasons = wait_prop(d, 'DeferReasons', lambda v: v != [], timeout=30, what='the automatic check to defer')
    assert 'is a FIFO' in reasons[0][1], reasons
    assert d.get('ConfigError') == '' and prop(d, 'State') == 'deferred'
