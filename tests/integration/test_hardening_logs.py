# SPDX-License-Identifier: Apache-2.0
"""A VM's log is text someone else wrote (issue 15 D6, D9, D12).

- GetLogs answers with valid UTF-8 whatever bytes the VMM sends (an invalid
  byte or a NUL becomes U+FFFD); FollowLogs' stream is sanitized the same way.
- A GetLogs whose caller goes away, whose VMM client is replaced, or that is
  still at the VMM at shutdown is freed (and answered while anyone listens);
  GetLogs in flight are bounded per uid like FollowLogs.
- `platformctl vm logs` on a terminal shows control characters escaped (C
  style, as systemd's cescape() writes them); `--all` or a pipe passes them.

The simulator sends a lone surrogate U+DC80..U+DCFF of a line given to
/_sim/vm-log as the raw byte it stands for (Python's surrogateescape)."""
import os
import pty
import select
import signal
import subprocess
import time
import tty

import harness as H
from ctl_helpers import PLATFORMCTL
from vmenv import vm_env, VM_PATH, VM_IFACE  # noqa: F401

LIMITS_EXCEEDED = 'org.freedesktop.DBus.Error.LimitsExceeded'
GETLOGS_PER_UID_MAX = 4


def append(env, lines, ch='serial'):
    r = env.vmm.control('vm-log', {'id': env.the_vm()['id'], 'ch': ch, 'lines': lines})
    assert 'count' in r, r


# ---- D6: invalid UTF-8 ----------------------------------------------------

BAD_LINES = ['before', 'bad \udcff byte', 'cut \udce2\udc82 short', 'nul \x00 byte', 'after']
GOOD_LINES = ['before', 'bad \ufffd byte', 'cut \ufffd\ufffd short', 'nul \ufffd byte', 'after']


def test_get_logs_answers_invalid_utf8_with_replacement_characters(vm_env):
    env = vm_env()
    append(env, BAD_LINES)
    r = env.vm_call('GetLogs', 'su', ['serial', len(BAD_LINES)], timeout=10)
    assert r.ok, r
    assert r.result[0] == ''.join(ln + '\n' for ln in GOOD_LINES), r.result
    # and goes on answering
    assert env.get('State') == 'running'
    r = env.vm_call('GetLogs', 'su', ['serial', 1], timeout=10)
    assert r.ok and r.result[0] == 'after\n', r


def test_follow_logs_stream_is_valid_utf8(vm_env):
    env = vm_env()
    p = env.h.spawn('platformctl-logs-f', [PLATFORMCTL, 'vm', 'logs', '-f', '-n', '1'],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got = read_until(p, b'status running\n')
    append(env, BAD_LINES)
    got += read_until(p, b'after\n')
    text = got.decode('utf-8')  # strict: raises on any invalid byte
    assert text.endswith(''.join(ln + '\n' for ln in GOOD_LINES)), text
    p.send_signal(signal.SIGINT)
    assert p.wait(10) == 0


def read_until(p, end, timeout=10):
    """Bytes from p.stdout until `end` was read (bounded)."""
    fd = p.stdout.fileno()
    os.set_blocking(fd, False)
    buf = b''
    deadline = time.monotonic() + timeout
    while end not in buf:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], 'no %r within %ss: %r' % (end, timeout, buf)
        chunk = os.read(fd, 65536)
        assert chunk, 'EOF before %r: %r' % (end, buf)
        buf += chunk
    return buf


# ---- D9: callers gone, clients replaced, shutdown ----------------------------

def gdbus_get_logs(env, name):
    """A GetLogs from a separate process (a caller that can go away)."""
    return env.h.spawn(name, ['gdbus', 'call', '--system', '--dest', H.DAEMON_NAME, '--object-path', VM_PATH,
                              '--method', VM_IFACE + '.GetLogs', 'serial', '10', '--timeout', '120'],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_get_logs_callers_gone_are_freed_and_in_flight_calls_bounded(vm_env):
    env = vm_env()
    env.vmm.fault('logs', 'hang', times=0)
    seq = env.last_seq()
    callers = [gdbus_get_logs(env, 'getlogs-%d' % i) for i in range(GETLOGS_PER_UID_MAX)]
    env.wait_calls('logs', count=GETLOGS_PER_UID_MAX, state='blocked', since=seq)
    # One more from the same uid: refused at once, never queued.
    r = env.vm_call('GetLogs', 'su', ['serial', 10], timeout=10)
    assert not r.ok and r.error_name == LIMITS_EXCEEDED, r
    # The callers go away without a word: their calls are dropped (and their
    # VMM requests cancelled) at once, not when the VMM answers or times out.
    for p in callers:
        p.kill()
        p.wait(10)
    env.vmm.clear_faults()
    deadline = time.monotonic() + 10
    while True:
        r = env.vm_call('GetLogs', 'su', ['serial', 1], timeout=10)
        if r.ok:
            break
        assert r.error_name == LIMITS_EXCEEDED, r
        assert time.monotonic() < deadline, 'GetLogs of callers gone still held: %r' % (r,)
        time.sleep(0.05)
    assert r.result[0].endswith('\n'), r
    env.vmm.release('logs')


def test_get_logs_in_flight_is_answered_after_vmm_url_change(vm_env):
    env = vm_env()
    env.vmm.fault('logs', 'hold', times=1)  # held, then answered
    seq = env.last_seq()
    call = env.vm_call_async('GetLogs', 'su', ['serial', 1], timeout=60)
    env.wait_calls('logs', count=1, state='blocked', since=seq)
    # The launcher moves to another VMM address while the call waits at the old one.
    r = env.config_call('SetSettings', 'a{sv}', [{'VmmUrl': ['s', 'http://127.0.0.1:9/']}])
    assert r.ok, r
    # The launcher has tried the new address (VmmStatus keeps its last word
    # until the failure has lasted a poll interval: honest reachability).
    env.wait_prop('StateReason', lambda v: v.startswith('cannot observe the VM'), timeout=30)
    env.vmm.release('logs')
    r = call.wait(30)
    assert r.ok and r.result[0].endswith('\n'), r


def test_get_logs_at_the_vmm_at_shutdown_is_answered(vm_env):
    env = vm_env()
    env.vmm.fault('logs', 'hang', times=1)
    seq = env.last_seq()
    call = env.vm_call_async('GetLogs', 'su', ['serial', 1], timeout=60)
    env.wait_calls('logs', count=1, state='blocked', since=seq)
    env.daemon.stop()
    r = call.wait(30)
    assert not r.ok and 'stopping' in r.error_message, r
    env.vmm.release('logs')


# ---- D12: terminal escapes -------------------------------------------------

NASTY = ['plain', 'colour \x1b[31mred\x1b[0m', 'clear \x1b[2J\x1b[H home', 'bell \x07 back\x08 cr\rX',
         'title \x1b]0;pwned\x07 osc', 'tab\there', 'c1 \u009b31m csi', 'del \x7f', 'crlf\r']
ESCAPED = ['plain', 'colour \\033[31mred\\033[0m', 'clear \\033[2J\\033[H home', 'bell \\a back\\b cr\\rX',
           'title \\033]0;pwned\\a osc', 'tab\there', 'c1 \\302\\233' + '31m csi', 'del \\177', 'crlf']
RAW = [ln.encode('utf-8') for ln in NASTY]


def run_on_pty(env, argv, timeout=15):
    """platformctl with stdout on a real terminal (raw mode, so the bytes read
    are the bytes written); returns (exit status, bytes)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    try:
        p = env.h.spawn('platformctl-pty', argv, stdout=slave, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        os.close(slave)
        slave = -1
        out = b''
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, 'platformctl did not finish: %r' % out
            if not select.select([master], [], [], left)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the slave side is closed
                break
            if not chunk:
                break
            out += chunk
        return p.wait(10), out
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)


def test_vm_logs_on_a_terminal_shows_control_characters_escaped(vm_env):
    env = vm_env()
    append(env, NASTY)
    rc, out = run_on_pty(env, [PLATFORMCTL, 'vm', 'logs', '-n', str(len(NASTY))])
    assert rc == 0, out
    assert out.decode('utf-8') == ''.join(ln + '\n' for ln in ESCAPED), out
    assert b'\x1b' not in out and b'\x07' not in out and b'\r' not in out
    # --all: as they are (journalctl -a), also on a terminal.
    rc, out = run_on_pty(env, [PLATFORMCTL, 'vm', 'logs', '--all', '-n', str(len(NASTY))])
    assert rc == 0, out
    assert out == b''.join(ln + b'\n' for ln in RAW), out


def test_vm_logs_follow_on_a_terminal_shows_control_characters_escaped(vm_env):
    env = vm_env()
    master, slave = pty.openpty()
    tty.setraw(slave)
    p = env.h.spawn('platformctl-pty-f', [PLATFORMCTL, 'vm', 'logs', '-f', '-n', '1'], stdout=slave,
                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    os.close(slave)
    try:
        out = b''
        deadline = time.monotonic() + 15
        appended = False
        while not out.endswith(b'crlf\n'):
            left = deadline - time.monotonic()
            assert left > 0, out
            if b'status running\n' in out and not appended:
                append(env, NASTY)
                appended = True
            if select.select([master], [], [], min(left, 0.2))[0]:
                out += os.read(master, 65536)
        got = out.decode('utf-8').split('status running\n', 1)[1]
        assert got == ''.join(ln + '\n' for ln in ESCAPED), got
        p.send_signal(signal.SIGINT)
        assert p.wait(10) == 0
    finally:
        os.close(master)


def test_vm_logs_to_a_pipe_keeps_the_bytes(vm_env):
    env = vm_env()
    append(env, NASTY)
    p = subprocess.run([PLATFORMCTL, 'vm', 'logs', '-n', str(len(NASTY))], env=env.bus.env(),
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    assert p.returncode == 0, p
    assert p.stdout == b''.join(ln + b'\n' for ln in RAW), p.stdout


def test_vm_logs_json_is_unaffected(vm_env):
    env = vm_env()
    append(env, ['esc \x1b[31m'])
    p = H.run_tool(env.bus, [PLATFORMCTL, '--json', 'vm', 'logs', '-n', '1'])
    assert p.returncode == 0, p
    assert '\\u001b[31m' in p.stdout, p.stdout
