# SPDX-License-Identifier: Apache-2.0
"""Honest reachability (dbus-api.md), through the bus with the real daemon and
a VMM simulator whose Status hangs: VmmStatus says "unreachable" once the VMM
has not answered for longer than a poll interval while State stays what was
last known; StateReason says since when, counted from the first failed call;
LastSuccessfulCheckTimestamp stands still while LastCheckTimestamp (the last
attempt) moves; the metrics file (checked by promtool) and `platformctl
status` show the same; all of it clears when the VMM answers again."""
import os
import re

from vmenv import vm_env, SEC  # noqa: F401
from ctl_helpers import ctl, fields
from test_metrics import read_metrics, value, promtool_check

VM = 'validator_vm'
SINCE = re.compile(r'^cannot observe the VM since (\S+) \((\d+) s\), the state is as last seen: VMM unreachable: ')


def test_hanging_vmm_is_unreachable_and_stale(vm_env, harness):
    path = os.path.join(harness.workdir, 'textfile', 'platform-launcher.prom')
    env = vm_env(poll_sec=1, extra_config={'metrics_path': path})
    env.wait_prop('LastSuccessfulCheckTimestamp', lambda v: v > 0)
    assert env.get('VmmStatus') == 'running'

    # Every Status from now on hangs 1.5 s, then the connection drops.
    env.vmm.fault('Status', 'hang', times=0, seconds=1.5)
    env.wait_prop('VmmStatus', 'unreachable')
    good = env.get('LastSuccessfulCheckTimestamp')
    first = SINCE.match(env.get('StateReason'))
    assert first, env.get('StateReason')
    assert env.get('State') == 'running'           # as last known
    assert 'VMM unreachable' in env.get('LastError')

    # Failure after failure: the age grows from the first one, "since" stays.
    later = env.wait_prop('StateReason', lambda v: bool(SINCE.match(v)) and int(SINCE.match(v).group(2)) >= 4,
                          timeout=30)
    assert SINCE.match(later).group(1) == first.group(1), (first.group(0), later)
    checked = env.get('LastCheckTimestamp')
    assert checked > good                           # attempts go on ...
    assert env.get('LastSuccessfulCheckTimestamp') == good  # ... none succeeds
    assert env.get('VmmStatus') == 'unreachable' and env.get('State') == 'running'

    def stale(s):
        def v(name):
            return s.get((name, frozenset({'vm': VM}.items())), 0)
        return v('platform_launcher_vm_vmm_unreachable') == 1 and \
            v('platform_launcher_vm_last_check_timestamp_seconds') > good / SEC and \
            v('platform_launcher_vm_last_successful_check_age_seconds') >= 4
    samples, _ = read_metrics(path, cond=stale)
    assert value(samples, 'platform_launcher_vm_last_successful_check_timestamp_seconds', vm=VM) == good / SEC
    assert value(samples, 'platform_launcher_vm_state', vm=VM, state='running') == 1
    promtool_check(path)

    p = ctl(env.bus, 'status')
    assert p.returncode == 0, p.stderr
    assert 'Problem: VMM unreachable for VM %s: cannot observe the VM since %s' % (VM, first.group(1)) in p.stdout, \
        p.stdout
    good_shown = fields(p.stdout)['Last good check']
    assert good_shown != 'never' and good_shown != fields(p.stdout)['Last check'], p.stdout

    # The VMM answers again: everything says so.
    env.vmm.clear_faults()
    env.wait_prop('VmmStatus', 'running')
    env.wait_prop('LastSuccessfulCheckTimestamp', lambda v: v > good)
    env.wait_prop('StateReason', '')
    env.wait_prop('LastError', '')
    read_metrics(path, cond=lambda s: s.get(
        ('platform_launcher_vm_vmm_unreachable', frozenset({'vm': VM}.items()))) == 0)
    assert 'VMM unreachable' not in ctl(env.bus, 'status').stdout


def test_a_short_failure_keeps_the_last_known_vmm_status(vm_env):
    """One failed Status, shorter than a poll interval, is not "unreachable":
    VmmStatus stays as last seen, StateReason says what failed."""
    env = vm_env()                      # a long poll interval: checks on demand only
    env.vmm.fault('Status', 'http500', message='sim: one failure')
    r = env.update()
    assert not r.ok, r
    assert 'sim: one failure' in env.get('StateReason') and SINCE.match(env.get('StateReason'))
    assert env.get('VmmStatus') == 'running'
    assert env.update().ok
    env.wait_prop('StateReason', '')
