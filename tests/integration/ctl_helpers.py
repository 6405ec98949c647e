# SPDX-License-Identifier: Apache-2.0
"""Running platformctl in tests: output parsing, a terminal, monitor lines."""
import os
import pty
import select
import subprocess
import time

import harness as H

PLATFORMCTL = os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platformctl')


def ctl(bus, *args, timeout=30):
    return H.run_tool(bus, [PLATFORMCTL] + list(args), timeout=timeout)


def one_line_error(p, code, text):
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert text in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def error_after_steps(p, code, text):
    """A long operation that failed: its step lines (not a terminal: one per
    step), then the error on one last line."""
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert lines and text in lines[-1], p.stderr
    assert not any(line.startswith('Failed') for line in lines[:-1]), p.stderr


def fields(stdout):
    """'   Label: value' lines as a dict."""
    out = {}
    for line in stdout.splitlines():
        k, sep, v = line.partition(': ')
        if sep:
            out.setdefault(k.strip(), v)
    return out


def run_on_pty(bus, *args, timeout=20):
    """platformctl with stderr on a terminal (stdout a pipe): what the operator sees."""
    master, slave = pty.openpty()
    p = subprocess.Popen([PLATFORMCTL] + list(args), env=bus.env(), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    out = b''
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.1)
            if r:
                try:
                    chunk = os.read(master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        p.wait(max(0.1, deadline - time.monotonic()))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
    return p.returncode, p.stdout.read(), out.decode().replace('\r\n', '\n')


def screen_lines(err):
    """What a terminal shows at the end: each line as last redrawn (after its
    last carriage return), without colour and line-clearing escapes, and
    without the elapsed-time suffix " (N s)" platformctl redraws each second."""
    import re
    out = []
    for line in err.split('\n'):
        line = re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', line.split('\r')[-1])
        line = re.sub(r' \(\d+ s\)$', '', line)
        if line:
            out.append(line)
    return out


class Monitor:
    """platformctl monitor as a subprocess; lines read with a bounded wait."""

    def __init__(self, harness, bus, *args):
        self.p = harness.spawn('platformctl-monitor', [PLATFORMCTL, 'monitor'] + list(args), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        os.set_blocking(self.p.stdout.fileno(), False)
        banner = self._readline(self.p.stderr, 10)
        assert banner.startswith('Monitoring org.platform.Launcher1'), banner
        self.buf = b''

    @staticmethod
    def _readline(f, timeout):
        r, _, _ = select.select([f], [], [], timeout)
        return f.readline().decode() if r else ''

    def line(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b'\n' not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                raise AssertionError('no line from platformctl monitor within %ss (have %r)' % (timeout, self.buf))
            chunk = self.p.stdout.read()
            if not chunk:
                raise AssertionError('platformctl monitor exited: %r' % self.buf)
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b'\n')
        return line.decode()

    def stop(self, sig=15):
        self.p.send_signal(sig)
        return self.p.wait(10)
