# SPDX-License-Identifier: Apache-2.0
"""Authorization under a flood (issue 9, defect 4): unprivileged callers cannot
deny service to authorized ones, fill the log, or leave a call unanswered."""
import json
import os
import subprocess
import time

import pytest

import harness as H
from launcher import (ACCESS_DENIED, CONFIGURE, INTERACTIVE_REQUIRED, LIMITS_EXCEEDED, READ_SECRETS, RUST_CONFIG, SECRET,
                      assert_no_secret_logged)

FLOOD = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'flood.py')


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


def flood_request(**kw):
    req = dict(dest=H.DAEMON_NAME, path=H.DAEMON_PATH, interface=H.CONFIG_IFACE, method='GetEnv',
               signature='s', args=['HOTKEY_PASSPHRASE'], in_flight=120, seconds=8, timeout=60)
    req.update(kw)
    return req


def start_flood(harness, n, **kw):
    return [harness.spawn('flood-%d' % i, [H.PYTHON, FLOOD, json.dumps(flood_request(**kw))], user='nobody',
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(n)]


def flood_results(procs, timeout=90):
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr.decode(errors='replace')
        out.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    return out


def wait_logged(daemon, text, timeout=20):
    deadline = time.monotonic() + timeout
    while text not in daemon.log_text():
        assert time.monotonic() < deadline, 'never logged: %r' % text
        time.sleep(0.02)


def test_flood_of_unprivileged_calls_does_not_deny_authorized_user(daemon, polkit, harness):
    polkit.allow(READ_SECRETS, user='daemon')
    floods = start_flood(harness, 4)
    # The caps are engaged: the flood is really in flight.
    wait_logged(daemon, 'Too many authorizations')
    results = []
    for _ in range(20):
        r = daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE'], user='daemon', timeout=30)
        results.append(r)
    flooded = flood_results(floods)
    failed = [r for r in results if not r.ok]
    assert not failed, '%d of 20 authorized calls failed: %r' % (len(failed), failed[:3])
    assert all(r.result == (SECRET + 'hotkey words here',) for r in results)

    outcomes = {}
    for f in flooded:
        for k, v in f['outcomes'].items():
            outcomes[k] = outcomes.get(k, 0) + v
    print('\nflood outcomes: %r' % outcomes)
    assert set(outcomes) <= {ACCESS_DENIED, INTERACTIVE_REQUIRED, LIMITS_EXCEEDED}, outcomes
    assert outcomes.get(LIMITS_EXCEEDED, 0) > 0
    assert 'ok' not in outcomes

    # The log stays bounded, and polkit was never reported missing.
    log = daemon.log_text()
    lines = log.count('\n')
    print('daemon log: %d lines for %d flood calls' % (lines, sum(outcomes.values())))
    assert lines < 300, log[-3000:]
    assert 'polkit is not available' not in log
    # Rate-limited: 10 lines per 10 s (the flood runs 8 s), however many calls are refused.
    assert log.count('Too many authorizations') <= 20, log[-3000:]
    # Nothing is left pending: the daemon still serves everyone.
    assert daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE'], user='daemon').ok
    assert_no_secret_logged(daemon)


def test_caller_that_left_is_not_polkit_unavailable(daemon, polkit, harness):
    (p,) = start_flood(harness, 1, in_flight=8, leave=True)
    (res,) = flood_results([p])
    assert res['sent'] == 8
    # Each query ends (the handler runs again or the idle cleanup drops it):
    # the per-sender cap would otherwise keep refusing, and the log would say polkit is gone.
    polkit.allow(READ_SECRETS, user='daemon')
    deadline = time.monotonic() + 20
    while True:
        r = daemon.call('GetEnv', 's', ['HOTKEY_PASSPHRASE'], user='daemon')
        if r.ok:
            break
        assert time.monotonic() < deadline, r
    log = daemon.log_text()
    assert 'polkit is not available' not in log, log[-2000:]
    assert daemon.running()


def test_one_sender_is_capped(daemon, polkit, harness):
    (p,) = start_flood(harness, 1, in_flight=40, seconds=3)
    (res,) = flood_results([p])
    assert res['outcomes'].get(LIMITS_EXCEEDED, 0) > 0, res
    assert set(res['outcomes']) <= {ACCESS_DENIED, INTERACTIVE_REQUIRED, LIMITS_EXCEEDED}, res


def test_query_whose_handler_never_comes_back_is_freed(bus, mock_polkit, harness, daemon_binary):
    """SetSettings re-run after authorization finds nothing to change and
    answers without asking for its verdict: the idle-priority cleanup must
    free the query, or nobody's uid would be refused after 8 such calls."""
    from gi.repository import GLib
    d = harness.daemon(config=RUST_CONFIG)
    mock_polkit.allow(CONFIGURE)
    for i in range(12):
        usec = (10 + i) * 1000000
        mock_polkit.hang(True)
        req = {'dest': H.DAEMON_NAME, 'path': H.DAEMON_PATH, 'interface': H.CONFIG_IFACE,
               'method': 'SetSettings', 'signature': 'a{sv}', 'args': [{'PollIntervalUSec': ['t', usec]}],
               'timeout': 20}
        p = harness.spawn('client-%d' % i, [H.PYTHON, H.CLIENT_PY, json.dumps(req)], user='nobody',
                          stdout=subprocess.PIPE)
        H._wait_loop(GLib.MainContext.default(), mock_polkit.has_hanging_calls, 10, 'polkit call to hang',
                     check=lambda: None)
        # Root (no polkit) makes the same change meanwhile.
        assert d.call('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', usec]}]).ok
        mock_polkit.hang(False)
        mock_polkit.release()
        out, _ = p.communicate(timeout=20)
        r = json.loads(out)
        assert r['ok'], (i, r)
    assert d.get('PollIntervalUSec') == 21000000
