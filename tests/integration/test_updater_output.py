# SPDX-License-Identifier: Apache-2.0
"""What a child prints cannot make the Updater unreadable or slow (issue 15,
D2 and D3), through the bus with the real daemon:

- D2: a build step printing bytes that are not UTF-8 (and an escape, a NUL)
  then failing: Apply still answers, LastError still reads, UpdateFailed and
  HistoryAdded still go out, all with U+FFFD in place of the bad bytes, and
  bounded even when the line is 200 KB long;
- D3: a step printing as fast as it can (`yes`) with a 2 s command timeout:
  Apply answers within about 3 s (the timeout holds), properties answer
  meanwhile, and the log stays small (at most 50 lines a second; the rest is
  counted)."""
import os
import re
import subprocess
import threading
import time

import pytest

from ctl_helpers import PLATFORMCTL
from updater_world import World, updater, prop, wait_prop, wait_file, updater_signals

FAILED = 'org.platform.Launcher1.Error.Failed'
REPLACEMENT = '\ufffd'


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness)


def test_invalid_utf8_from_a_build_reaches_the_bus_as_valid_text(harness, world):
    world.build_extra = ('[ "$(cat version.txt)" = 2 ] && printf \'broken \\377\\376 \\033[31m nul \\000 end\\n\' >&2 '
                         '&& exit 1')
    bad = world.release('2')
    world.build_extra = ''
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    with updater_signals(d) as sc:
        r = updater(d, 'Apply', 'a{sv}', [{}], timeout=30)
        # the reply arrives, with the text made valid
        assert not r.ok and r.error_name == FAILED, r
        assert 'broken %s%s ?[31m nul ? end' % (REPLACEMENT, REPLACEMENT) in r.error_message, r.error_message
        s = sc.wait_for(lambda s: s.member == 'UpdateFailed')
        assert s.args[0] == bad and REPLACEMENT in s.args[1]
        h = sc.wait_for(lambda s: s.member == 'HistoryAdded')
        assert REPLACEMENT in h.args[7]
    err = prop(d, 'LastError')
    assert REPLACEMENT in err and 'rolled back' in err, err
    r = updater(d, 'GetHistory', 'u', [0])
    assert r.ok and REPLACEMENT in r.result[0][0][7], r
    assert world.head() == world.first and prop(d, 'State') == 'idle'


def test_c1_controls_from_a_build_never_reach_the_operators_terminal(harness, world):
    """U+009B is CSI to a terminal that takes 8-bit controls: the repository
    owner's build output must not clear root's screen through LastError,
    `platformctl updater status` or the history."""
    world.build_extra = ('[ "$(cat version.txt)" = 2 ] && printf \'owned \\302\\2332J \\302\\23331m red\\n\' >&2 '
                         '&& exit 1')
    world.release('2')
    world.build_extra = ''
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}], timeout=30)
    assert not r.ok and 'owned ?2J ?31m red' in r.error_message, r.error_message
    assert 'owned ?2J ?31m red' in prop(d, 'LastError')
    for args in (['updater', 'status'], ['updater', 'history'], ['--json', 'updater', 'history']):
        p = subprocess.run([PLATFORMCTL] + args, env=harness.bus.env(), capture_output=True, timeout=30)
        assert p.returncode == 0 and b'owned' in p.stdout, p
        assert not re.search(rb'\xc2[\x80-\x9f]', p.stdout), p.stdout


def test_a_huge_line_is_bounded(harness, world):
    world.build_extra = ('[ "$(cat version.txt)" = 2 ] && { head -c 200000 /dev/zero | tr \'\\0\' \'\\377\'; '
                         'exit 1; }')
    world.release('2')
    world.build_extra = ''
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}], timeout=30)
    assert not r.ok and r.error_name == FAILED, r
    assert REPLACEMENT in r.error_message and len(r.error_message.encode()) < 4200, len(r.error_message)
    assert len(prop(d, 'LastError').encode()) < 4200


def test_a_flooding_step_is_killed_on_time_and_starves_nothing(harness, world):
    flood = 'if [ "$(cat version.txt)" = 2 ]; then exec yes; fi; echo "build $(cat version.txt)" >> %s' % world.log
    world.release('2')
    d = harness.daemon(config=world.config(updater_build_commands=[['sh', '-c', flood]],
                                           updater_command_timeout_usec=2000000))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    log_before = os.path.getsize(d.log_path)
    done = []

    def apply():
        t0 = time.monotonic()
        done.append((updater(d, 'Apply', 'a{sv}', [{}], timeout=60), time.monotonic() - t0))
    t = threading.Thread(target=apply, daemon=True)
    t.start()
    wait_prop(d, 'Operation', lambda v: v == 'build')
    # the loop answers while the child floods
    slowest = 0
    while not done:
        t0 = time.monotonic()
        prop(d, 'State')
        slowest = max(slowest, time.monotonic() - t0)
    t.join(5)
    r, took = done[0]
    assert not r.ok and r.error_name == FAILED, r
    assert 'timed out after 2.0 s' in r.error_message and 'rolled back' in r.error_message, r.error_message
    # 2 s timeout + the rollback: before D3 it answered after 25 s
    print('\nApply against a flooding build answered after %.2f s; slowest Get %.3f s' % (took, slowest))
    assert took < 8, took
    assert slowest < 1.0, slowest
    grown = os.path.getsize(d.log_path) - log_before
    assert grown < 64 * 1024, grown   # 671 MB in 25 s before
    assert 'lines not logged' in d.log_text()
    assert world.actions() == ['build 1', 'restart 1']
