# SPDX-License-Identifier: Apache-2.0
"""A command on a real terminal (a pty as its stdin, stdout and stderr), driven
as an operator would: wait for a prompt, type an answer, read what it said."""
import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import termios
import time

import harness as H


def _controlling_terminal():
    """A login's terminal: its own session, the pty as controlling terminal
    (pkttyagent, run by platformctl on a terminal, opens /dev/tty)."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    def __init__(self, argv, env, user=None):
        self.master, slave = pty.openpty()
        self.p = subprocess.Popen(H.as_user_argv(user, argv), env=env, stdin=slave, stdout=slave, stderr=slave,
                                  preexec_fn=_controlling_terminal)
        os.close(slave)
        self.out = b''

    def _read(self, timeout):
        if not select.select([self.master], [], [], timeout)[0]:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:   # EIO: the other side is closed
            chunk = b''
        self.out += chunk
        return bool(chunk)

    def expect(self, text, timeout=30):
        """Waits until the terminal shows text; returns everything shown so far."""
        deadline = time.monotonic() + timeout
        while text.encode() not in self.out:
            left = deadline - time.monotonic()
            if left <= 0 or (not self._read(left) and self.p.poll() is not None):
                raise AssertionError('%r not shown within %ss; the terminal shows %r (exit %r)'
                                     % (text, timeout, self.text(), self.p.poll()))
        return self.text()

    def type(self, line):
        os.write(self.master, line.encode() + b'\n')

    def wait(self, timeout=60):
        """Reads until the command exits; returns (exit status, the screen's text)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._read(min(0.2, max(0.0, deadline - time.monotonic()))) and self.p.poll() is not None:
                break
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
            raise AssertionError('still running after %ss; the terminal shows %r' % (timeout, self.text()))
        return self.p.returncode, self.text()

    def text(self):
        """What was shown, with CRLF as LF and without colour or line-clearing escapes."""
        t = self.out.decode(errors='replace').replace('\r\n', '\n')
        return re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', t)

    def close(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()
        os.close(self.master)


def on_terminal(argv, env, answers=(), timeout=60, user=None):
    """Runs argv on a terminal; each (prompt, answer) is typed once prompt shows.
    Returns (exit status, the screen's text)."""
    t = Terminal(argv, env, user=user)
    try:
        for prompt, answer in answers:
            t.expect(prompt, timeout)
            t.type(answer)
        return t.wait(timeout)
    finally:
        t.close()
