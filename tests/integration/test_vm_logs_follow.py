# SPDX-License-Identifier: Apache-2.0
"""Vm.FollowLogs and `platformctl vm logs -f` with the real daemon against the
VMM simulator: the VMM's follow=true stream reaches the reader through a pipe
the daemon feeds, without dstack's "[vmm heartbeat]" lines (dstack
vmm/src/main_routes.rs vm_logs), and every way a stream ends frees it."""
import os
import re
import select
import signal
import subprocess
import time

import harness as H
from ctl_helpers import PLATFORMCTL
from vmenv import vm_env, READ_LOGS, denied  # noqa: F401

HEARTBEAT = 0.2  # the simulator's heartbeat period here (dstack: 60 s)


def start(env, *args, user=None):
    return env.h.spawn('platformctl-logs-f', [PLATFORMCTL, 'vm', 'logs', '-f'] + list(args), user=user,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)


class Reader:
    """platformctl's stdout, read with bounded waits."""

    def __init__(self, p):
        self.p = p
        os.set_blocking(p.stdout.fileno(), False)
        self.buf = b''

    def lines_until(self, last, timeout=10):
        deadline = time.monotonic() + timeout
        while (last + '\n').encode() not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                raise AssertionError('%r did not come within %ss; have %r' % (last, timeout, self.buf[-2000:]))
            chunk = self.p.stdout.read()
            if not chunk:
                raise AssertionError('platformctl ended before %r: %r %r' % (last, self.buf[-2000:],
                                                                             self.p.stderr.read()))
            self.buf += chunk
        return self.buf.decode().splitlines()

    def eof(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                raise AssertionError('no EOF within %ss' % timeout)
            chunk = self.p.stdout.read()
            if not chunk:
                return self.buf.decode()
            self.buf += chunk


def streams(env):
    return env.vmm.control('log-streams')


def wait_streams(env, n, timeout=10, poke=True):
    """Waits until the simulator serves n follow streams. A stream whose reader
    went away is noticed by the simulator when it next writes, so appended
    lines poke it."""
    deadline = time.monotonic() + timeout
    while streams(env)['open'] != n:
        assert time.monotonic() < deadline, ('follow streams', streams(env), 'want', n)
        if poke:
            append(env, ['poke'])
        select.select([], [], [], 0.05)
    return streams(env)


def append(env, lines, ch='serial'):
    r = env.vmm.control('vm-log', {'id': env.the_vm()['id'], 'ch': ch, 'lines': lines})
    assert 'count' in r, r


def make_env(vm_env, **kw):
    return vm_env(vmm_opts={'log_heartbeat_seconds': HEARTBEAT}, **kw)


def test_lines_in_order_without_heartbeats(vm_env):
    env = make_env(vm_env)
    p = start(env, '-n', '1')
    r = Reader(p)
    first = r.lines_until('[sim serial] validator_vm: status running')
    assert first == ['[sim serial] validator_vm: status running'], first  # -n 1: only the last line
    wait_streams(env, 1, poke=False)
    append(env, ['line %d' % i for i in range(1, 4)])
    # Several heartbeat periods of silence: the VMM sends heartbeats.
    deadline = time.monotonic() + 3 * HEARTBEAT
    while time.monotonic() < deadline:
        select.select([], [], [], deadline - time.monotonic())
    append(env, ['line 4'])
    got = r.lines_until('line 4')
    assert got == ['[sim serial] validator_vm: status running', 'line 1', 'line 2', 'line 3', 'line 4'], got
    assert not any('heartbeat' in ln for ln in got)
    assert streams(env)['heartbeats'] >= 2, streams(env)  # they were sent, and hidden
    # Ctrl-C: exit 0, quietly.
    p.send_signal(signal.SIGINT)
    assert p.wait(10) == 0
    assert p.stderr.read() == b''
    wait_streams(env, 0)


def test_reader_gone_frees_stream_and_a_second_works(vm_env):
    env = make_env(vm_env)
    p = start(env, '--channel', 'stdout')
    Reader(p).lines_until('[sim stdout] validator_vm: status running')
    wait_streams(env, 1, poke=False)
    p.kill()  # the read end closes without a word
    p.wait(10)
    # Heartbeats only (no line to write): the daemon sees the reader go from
    # POLLERR on its write end and closes the VMM connection.
    wait_streams(env, 0, poke=False)
    q = start(env, '--channel', 'stdout', '-n', '2')
    r = Reader(q)
    r.lines_until('[sim stdout] validator_vm: status running')
    append(env, ['after'], ch='stdout')
    assert r.lines_until('after')[-1] == 'after'
    q.send_signal(signal.SIGTERM)
    assert q.wait(10) == 0


def test_nobody_denied_unless_allowed(vm_env):
    env = make_env(vm_env)
    seq = env.last_seq()
    r = env.vm_call('FollowLogs', 'su', ['serial', 10], user='nobody')
    assert denied(r), r
    p = H.run_tool(env.bus, [PLATFORMCTL, '--no-ask-password', 'vm', 'logs', '-f'], user='nobody')
    assert p.returncode == 77, (p.returncode, p.stderr)
    assert env.calls_since(seq, ('logs',)) == [], 'logs read for a denied caller'
    assert streams(env)['opened'] == 0
    env.polkit.allow(READ_LOGS, user='nobody')
    p = start(env, user='nobody')
    r = Reader(p)
    r.lines_until('[sim serial] validator_vm: status running')
    append(env, ['for nobody'])
    r.lines_until('for nobody')
    p.send_signal(signal.SIGINT)
    assert p.wait(10) == 0


def test_bad_arguments(vm_env):
    env = make_env(vm_env)
    r = env.vm_call('FollowLogs', 'su', ['console', 10])
    assert r.error_name == 'org.freedesktop.DBus.Error.InvalidArgs' and 'console' in r.error_message, r
    r = env.vm_call('FollowLogs', 'su', ['serial', 10001])
    assert r.error_name == 'org.freedesktop.DBus.Error.InvalidArgs', r
    p = H.run_tool(env.bus, [PLATFORMCTL, 'vm', 'status', '-f'])
    assert p.returncode == 64 and "--follow applies to 'vm logs' only" in p.stderr, p.stderr
    p = H.run_tool(env.bus, [PLATFORMCTL, 'vm', 'logs', '-f', '--json'])
    assert p.returncode == 64, p.stderr


def test_limit_per_user(vm_env):
    env = make_env(vm_env)
    ps = []
    for i in range(4):
        ps.append(start(env))
        Reader(ps[-1]).lines_until('[sim serial] validator_vm: status running')
    p = H.run_tool(env.bus, [PLATFORMCTL, 'vm', 'logs', '-f'])
    assert p.returncode != 0 and 'Too many log streams open for this user' in p.stderr, (p.returncode, p.stderr)
    assert streams(env)['open'] == 4
    # One ends: room for another.
    ps[0].send_signal(signal.SIGINT)
    assert ps[0].wait(10) == 0
    wait_streams(env, 3)
    q = start(env)
    Reader(q).lines_until('[sim serial] validator_vm: status running')
    for x in ps[1:] + [q]:
        x.send_signal(signal.SIGINT)
        assert x.wait(10) == 0


def test_slow_reader_blocks_nothing(vm_env):
    env = make_env(vm_env)
    p = start(env, '-n', '1')
    r = Reader(p)
    r.lines_until('[sim serial] validator_vm: status running')
    p.send_signal(signal.SIGSTOP)  # reads nothing more
    try:
        # ~1.2 MB: more than the pipe (64 KiB) and the daemon's buffer (256 KiB) hold.
        big = 'x' * 1000
        for k in range(12):
            append(env, ['%d-%d %s' % (k, i, big) for i in range(100)])
        worst = 0.0
        for _ in range(20):
            t = time.monotonic()
            assert env.get('State') == 'running'
            worst = max(worst, time.monotonic() - t)
        assert worst < 0.1, 'a property Get took %.3f s while the reader was stuck' % worst
    finally:
        p.send_signal(signal.SIGCONT)
    append(env, ['the end'])  # the marker comes before the first line that fits again
    got = r.lines_until('the end', timeout=20)
    marks = [ln for ln in got if ln.startswith('-- platform-launcherd: ') and 'lines dropped' in ln]
    assert marks, 'no dropped-lines marker'
    kept = [ln for ln in got if ln[:1].isdigit()]
    assert 0 < len(kept) < 1200, len(kept)
    # What came is in order.
    idx = [tuple(int(x) for x in ln.split(' ')[0].split('-')) for ln in kept]
    assert idx == sorted(idx)
    p.send_signal(signal.SIGINT)
    assert p.wait(10) == 0


DROPPED = re.compile(r'^-- platform-launcherd: (\d+) (line|lines) dropped: the reader did not keep up --$')


def test_dropped_lines_are_counted_exactly(vm_env):
    """Issue 15 D8: every line the reader did not get is counted in exactly one
    marker, a marker comes right before the line after its gap (never a run of
    "1 lines dropped"), and "1 line" is singular."""
    env = make_env(vm_env)
    p = start(env, '-n', '1')
    r = Reader(p)
    r.lines_until('[sim serial] validator_vm: status running')
    p.send_signal(signal.SIGSTOP)
    total = 0
    try:
        big = 'x' * 1000
        for k in range(12):
            append(env, ['%d-%d %s' % (k, i, big) for i in range(100)])
            total += 100
        # A property answer proves the daemon took in every chunk before the reader resumes.
        assert env.get('State') == 'running'
        wait_streams(env, 1, poke=False)
    finally:
        p.send_signal(signal.SIGCONT)
    append(env, ['the end'])
    got = r.lines_until('the end', timeout=20)
    got = got[got.index('[sim serial] validator_vm: status running') + 1:]
    kept, dropped, markers = 0, 0, 0
    for i, ln in enumerate(got):
        m = DROPPED.match(ln)
        if m:
            n = int(m.group(1))
            assert (m.group(2) == 'line') == (n == 1), ln
            assert i + 1 < len(got) and not DROPPED.match(got[i + 1]), 'a marker not followed by a line: %r' % got[i:i + 3]
            dropped += n
            markers += 1
        elif ln[:1].isdigit():
            kept += 1
    assert markers >= 1 and kept > 0, (markers, kept)
    assert kept + dropped == total, 'kept %d + dropped %d != %d sent' % (kept, dropped, total)
    p.send_signal(signal.SIGINT)
    assert p.wait(10) == 0


def test_daemon_stop_ends_stream(vm_env):
    env = make_env(vm_env)
    p = start(env)
    r = Reader(p)
    r.lines_until('[sim serial] validator_vm: status running')
    env.daemon.stop()  # SIGTERM; asserts a clean exit
    r.eof()
    assert p.wait(10) == 0
    assert p.stderr.read() == b''


def test_vmm_ending_stream_ends_reader(vm_env):
    env = make_env(vm_env)
    p = start(env)
    r = Reader(p)
    r.lines_until('[sim serial] validator_vm: status running')
    wait_streams(env, 1, poke=False)
    env.vmm.control('log-streams', {'end': True})  # as a VMM restart does
    r.eof()
    assert p.wait(10) == 0
    assert p.stderr.read() == b''
    wait_streams(env, 0, poke=False)


def test_replaced_vm_ends_stream_with_a_line(vm_env):
    env = make_env(vm_env)
    old = env.the_vm()['id']
    p = start(env)
    r = Reader(p)
    r.lines_until('[sim serial] validator_vm: status running')
    assert env.update(force=True).ok  # recreate: the VM gets a new id
    new = env.the_vm()['id']
    assert new != old
    out = r.eof(timeout=30)
    assert p.wait(10) == 0
    last = out.splitlines()[-1]
    # The VMM's stream of the old VM does not end (dstack tails the removed
    # VM's file); the daemon ends it when the VM it follows is no longer the
    # VM: went away (removed, id "") or replaced.
    assert last in ('-- platform-launcherd: VM validator_vm was replaced (new id %s); follow again --' % new,
                    '-- platform-launcherd: VM validator_vm (id %s) went away --' % old), out
    wait_streams(env, 0, poke=False)
