# SPDX-License-Identifier: Apache-2.0
"""The whole life cycle under valgrind (issue 9): deploy, replace, stop, start,
config changes, a bad file, SIGHUP, and SIGTERM with an Update in flight. Any
definite leak or invalid access makes valgrind exit 99, which Daemon.stop()
reports as a failure. Registered only in builds without sanitizers (valgrind
cannot run an ASan binary); takes about a minute."""
import os
import shutil
import signal
import time

import pytest

import harness as H
from vmenv import vm_env, SECRET  # noqa: F401

NEW_COMPOSE = 'services:\n  app:\n    image: "nginx:1.27"\n'
NEWER_COMPOSE = 'services:\n  app:\n    image: "nginx:1.28"\n'
SLOW = 120  # every wait under valgrind


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, 'timed out waiting for ' + what
        time.sleep(0.05)


def test_lifecycle_under_valgrind(vm_env):
    vg = shutil.which('valgrind')
    if not vg:
        pytest.skip('valgrind is not installed')
    env = vm_env(daemon=False, stop_timeout_sec=60)
    d = env.daemon
    log = os.path.join(d.dir, 'valgrind.log')
    argv = d.argv
    d.argv = lambda: [vg, '--quiet', '--leak-check=full', '--show-leak-kinds=definite',
                      '--errors-for-leak-kinds=definite', '--error-exitcode=99', '--num-callers=30',
                      '--log-file=' + log] + argv()
    d.start(timeout=SLOW)
    env.wait_vm_object(timeout=SLOW)
    env.wait_deployed(timeout=SLOW)

    # Config: write, read, a bad file on Reload and SIGHUP, a good one again.
    assert d.call('SetEnv', 'ss', ['EXTRA', SECRET + 'extra'], timeout=SLOW).ok
    assert d.call('GetEnv', 's', ['EXTRA'], timeout=SLOW).ok
    good = d.read_config()
    d.write_config('{"env": {"A": "%sx" "B": 1}}' % SECRET)
    assert not d.call('Reload', timeout=SLOW).ok
    d.send_signal(signal.SIGHUP)
    d.write_config(good)
    assert d.call('Reload', timeout=SLOW).ok
    assert env.plan()[0]

    # Replace, stop, start.
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    r = env.update(timeout=SLOW)
    assert r.ok, r
    env.wait_deployed(timeout=SLOW)
    assert env.vm_call('Stop', timeout=SLOW).ok
    env.wait_prop('State', 'stopped', SLOW)
    assert env.vm_call('Start', timeout=SLOW).ok
    env.wait_prop('State', 'running', SLOW)

    # SIGTERM while a replacement waits for a slow guest shutdown.
    env.vmm.config(shutdown_seconds=60)
    env.api.patch_doc(compose_content=NEWER_COMPOSE)
    seq = env.last_seq()
    call = env.update_async()
    wait_for(lambda: env.calls_since(seq, ('ShutdownVm',)), SLOW, 'ShutdownVm at the VMM')
    rc = d.stop(timeout=SLOW, check=False)
    with open(log) as f:
        report = f.read()
    assert rc == 0, 'valgrind exit %s:\n%s' % (rc, report[-8000:])
    assert 'definitely lost' not in report and 'Invalid ' not in report, report[-8000:]
    r = call.wait(SLOW)
    assert not r.ok and 'stopping' in r.error_message, r


def test_get_logs_callers_gone_and_pending_at_shutdown_under_valgrind(vm_env):
    """Issue 15 D9: a GetLogs whose caller went away while its VMM request
    waited, and one still at the VMM at SIGTERM, are freed (valgrind's
    definite leaks), and the second caller is answered."""
    vg = shutil.which('valgrind')
    if not vg:
        pytest.skip('valgrind is not installed')
    env = vm_env(daemon=False)
    d = env.daemon
    log = os.path.join(d.dir, 'valgrind.log')
    argv = d.argv
    d.argv = lambda: [vg, '--quiet', '--leak-check=full', '--show-leak-kinds=definite',
                      '--errors-for-leak-kinds=definite', '--error-exitcode=99', '--num-callers=30',
                      '--log-file=' + log] + argv()
    d.start(timeout=SLOW)
    env.wait_vm_object(timeout=SLOW)
    env.wait_deployed(timeout=SLOW)

    env.vmm.fault('logs', 'hang', times=0)
    seq = env.last_seq()
    gone = env.h.spawn('getlogs-gone', ['gdbus', 'call', '--system', '--dest', H.DAEMON_NAME, '--object-path',
                                        '/org/platform/Launcher1/vm/validator_5fvm', '--method',
                                        'org.platform.Launcher1.Vm.GetLogs', 'serial', '10', '--timeout', '300'])
    env.wait_calls('logs', count=1, state='blocked', since=seq, timeout=SLOW)
    gone.kill()
    gone.wait(10)
    # The VMM answers the one whose caller left (nobody to tell), then one waits at SIGTERM.
    env.vmm.release('logs')
    seq = env.last_seq()
    call = env.vm_call_async('GetLogs', 'su', ['serial', 1], timeout=SLOW)
    env.wait_calls('logs', count=1, state='blocked', since=seq, timeout=SLOW)
    rc = d.stop(timeout=SLOW, check=False)
    with open(log) as f:
        report = f.read()
    assert rc == 0, 'valgrind exit %s:\n%s' % (rc, report[-8000:])
    assert 'definitely lost' not in report and 'Invalid ' not in report, report[-8000:]
    r = call.wait(SLOW)
    assert not r.ok and 'stopping' in r.error_message, r
    env.vmm.release('logs')
