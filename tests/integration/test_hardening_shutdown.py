# SPDX-License-Identifier: Apache-2.0
"""SIGTERM with operations in flight (issue 9, defect 10): every waiting caller
gets an answer from the launcher itself, and the daemon exits cleanly."""
import time

from vmenv import vm_env  # noqa: F401

NEW_COMPOSE = 'services:\n  app:\n    image: "nginx:1.27"\n'
NO_REPLY = 'org.freedesktop.DBus.Error.NoReply'


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.02)


def test_sigterm_answers_a_pending_update(vm_env):
    env = vm_env(stop_timeout_sec=60, vmm_opts={'shutdown_seconds': 30})
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    seq = env.last_seq()
    call = env.update_async()
    # The replacement is in flight: the old guest takes 30 s to shut down.
    wait_for(lambda: env.calls_since(seq, ('ShutdownVm',)), 20, 'ShutdownVm at the VMM')
    assert not call.poll()
    assert env.daemon.stop() == 0
    r = call.wait(10)
    assert not r.ok and r.error_name == NO_REPLY, r
    # The launcher's own answer, not dbus-daemon's "recipient disconnected".
    assert 'platform-launcherd is stopping' in r.error_message, r
    assert 'Update' in r.error_message, r
