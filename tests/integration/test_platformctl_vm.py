# SPDX-License-Identifier: Apache-2.0
"""platformctl's Vm commands, status and monitor against the bus contract.

The launcher here is fake_launcher.py: it serves Config and Vm exactly as the
interface XML describes and does what the test scripts, so every path of the
client (progress, --no-block, errors, exit codes, JSON) is tested without a
reconciler. test_platformctl_live.py runs the commands against the real daemon.
"""
import json
import os
import signal
import subprocess
import time

import pytest

import harness as H
from ctl_helpers import PLATFORMCTL, Monitor, ctl, fields, one_line_error, run_on_pty, screen_lines

FAKE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fake_launcher.py')
FAKE_IFACE = 'org.platform.Launcher1.Fake'
VM_IFACE = 'org.platform.Launcher1.Vm'
VM_PATH = '/org/platform/Launcher1/vm/validator_5fvm'

NOW_USEC = int(time.time() * 1e6)
RUNNING = {
    'Id': 'vm-1234', 'State': 'running', 'VmmStatus': 'running', 'AppId': 'a' * 40,
    'ComposeHash': 'c' * 64, 'TargetComposeHash': 'c' * 64, 'Image': 'dstack-0.5.2',
    'ImageVersion': '0.5.2', 'Vcpu': 16, 'MemoryMiB': 16384, 'DiskGiB': 200,
    'LastCheckTimestamp': NOW_USEC - 180 * 1000000, 'LastUpdateTimestamp': NOW_USEC - 7200 * 1000000,
    'UpdateCount': 3, 'RestartCount': 1,
}


class FakeLauncher:
    def __init__(self, bus):
        self.bus = bus

    def call(self, method, sig, args):
        r = self.bus.call(H.DAEMON_NAME, H.DAEMON_PATH, FAKE_IFACE, method, sig, args)
        assert r.ok, r
        return r.result

    def add_vm(self, name='validator_vm', **props):
        self.call('AddVm', 'ss', [name, json.dumps(props)])

    def remove_vm(self, name='validator_vm'):
        self.call('RemoveVm', 's', [name])

    def set_vm(self, name='validator_vm', **props):
        self.call('SetVm', 'ss', [name, json.dumps(props)])

    def script(self, method, steps, name='validator_vm'):
        self.call('Script', 'sss', [name, method, json.dumps(steps)])

    def set_plan(self, action, changes, name='validator_vm'):
        self.call('SetPlan', 'ss', [name, json.dumps([action, changes])])

    def calls(self, method=None):
        return [c for c in json.loads(self.call('Calls', None, None)[0]) if method in (None, c['method'])]


@pytest.fixture
def fake(bus, harness):
    log = open(os.path.join(harness.workdir, 'fake-launcher.log'), 'w')
    p = harness.spawn('fake-launcher', ['/usr/bin/python3', FAKE], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    bus.wait_for_name(H.DAEMON_NAME, proc=p)
    return FakeLauncher(bus)


@pytest.fixture
def vm(fake):
    fake.add_vm(**RUNNING)
    return fake


# --- finding the VM -------------------------------------------------------

def test_no_vm_object(fake, bus):
    for args in (['vm', 'status'], ['vm'], ['vm', 'update'], ['vm', 'logs']):
        one_line_error(ctl(bus, *args), 66, 'The launcher manages no VM.')
    assert fake.calls() == []


def test_vm_found_by_object_manager_not_by_path(fake, bus):
    fake.add_vm('odd name/1', State='running')
    p = ctl(bus, 'vm', 'status')
    assert p.returncode == 0, p.stderr
    assert fields(p.stdout)['Name'] == 'odd name/1'
    assert fields(p.stdout)['Object'] == '/org/platform/Launcher1/vm/odd_20name_2f1'


def test_several_vms_need_a_name(fake, bus):
    fake.add_vm('validator_vm', State='running')
    fake.add_vm('other', State='stopped')
    one_line_error(ctl(bus, 'vm', 'status'), 64, 'manages 2 VMs: name one')
    p = ctl(bus, 'vm', 'status', 'other')
    assert p.returncode == 0 and fields(p.stdout)['State'] == 'stopped', p
    one_line_error(ctl(bus, 'vm', 'stop', 'nope'), 66, "No VM named 'nope'")
    assert ctl(bus, 'vm', 'stop', 'other').returncode == 0
    assert [c['vm'] for c in fake.calls('Stop')] == ['other']


# --- status ---------------------------------------------------------------

def test_vm_status_human(vm, bus):
    p = ctl(bus, 'vm', 'status')
    assert p.returncode == 0, p.stderr
    f = fields(p.stdout)
    assert f['Name'] == 'validator_vm'
    assert f['State'] == 'running'
    assert f['Id'] == 'vm-1234'
    assert f['Compose hash'] == 'c' * 64
    assert f['Image'] == 'dstack-0.5.2 (0.5.2)'
    assert f['Resources'] == '16 vCPU, 16384 MiB memory, 200 GiB disk'
    assert f['Last check'].endswith('; 3min ago'), f
    assert f['Last update'].endswith('; 2h 0min ago'), f
    assert f['Count'] == '3 updates, 1 restarts'
    assert f['Last error'] == '(none)'
    assert 'Problem' not in p.stdout


def test_vm_status_never_checked(fake, bus):
    fake.add_vm(State='pending', StateReason='no spec yet')
    f = fields(ctl(bus, 'vm', 'status').stdout)
    assert f['State'] == 'pending (no spec yet)'
    assert f['Last check'] == 'never' and f['Last update'] == 'never'


def test_vm_status_json(vm, bus):
    for args in (['--json', 'vm', 'status'], ['vm', 'status', '--json']):
        p = ctl(bus, *args)
        assert p.returncode == 0, p.stderr
        doc = json.loads(p.stdout)
        assert doc['Name'] == 'validator_vm'
        for k, v in RUNNING.items():
            assert doc[k] == v, k
        assert doc['LastError'] == ''


def test_problems_first(vm, bus):
    vm.set_vm(State='blocked', StateReason='missing env: HOTKEY_PASSPHRASE', LastError='VMM said no')
    for args in (['vm', 'status'], ['status']):
        lines = ctl(bus, *args).stdout.splitlines()
        assert lines[0].strip() == 'Problem: VM validator_vm blocked: missing env: HOTKEY_PASSPHRASE', lines
        assert lines[1].strip() == 'Problem: last error: VMM said no', lines
        assert not any('Problem' in line for line in lines[2:]), lines


def test_status_vm_before_config(vm, bus):
    vm.set_vm(TargetComposeHash='d' * 64)
    p = ctl(bus, 'status')
    assert p.returncode == 0, p.stderr
    lines = [line.strip() for line in p.stdout.splitlines()]
    assert lines[0] == 'VM: validator_vm'
    assert lines.index('State: running') < lines.index('API URL: http://127.0.0.1:1/config/compose/validator_vm')
    f = fields(p.stdout)
    assert f['Compose hash'] == '%s (target %s)' % ('c' * 64, 'd' * 64)
    assert f['Last check'].endswith('3min ago')
    doc = json.loads(ctl(bus, 'status', '--json').stdout)
    assert [v['Name'] for v in doc['Vms']] == ['validator_vm']
    assert doc['Config']['VmmUrl'] == 'http://127.0.0.1:2'


def test_status_without_vm(fake, bus):
    p = ctl(bus, 'status')
    assert p.returncode == 0, p.stderr
    assert fields(p.stdout)['VM'] == '(none yet)'
    assert json.loads(ctl(bus, '--json', 'status').stdout)['Vms'] == []


# --- plan -----------------------------------------------------------------

def test_plan(vm, bus):
    vm.set_plan('recreate', [['compose_hash', 'c' * 8, 'd' * 8], ['image', 'dstack-0.5.2', 'dstack-0.5.5'],
                             ['env', '', 'NEW_KEY']])
    p = ctl(bus, 'vm', 'plan')
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == 'Action: recreate'
    assert lines[1].split() == ['FIELD', 'CURRENT', 'TARGET']
    assert lines[2].split() == ['compose_hash', 'cccccccc', 'dddddddd']
    assert lines[3].split() == ['image', 'dstack-0.5.2', 'dstack-0.5.5']
    # Columns line up: the TARGET column starts at the same offset on every row.
    assert len({line.rindex(' ') for line in lines[1:]}) == 1, lines
    doc = json.loads(ctl(bus, '--json', 'vm', 'plan').stdout)
    assert doc['Action'] == 'recreate'
    assert doc['Changes'][2] == {'Field': 'env', 'Current': '', 'Target': 'NEW_KEY'}
    assert vm.calls() == [], 'Plan is not an operation'


def test_plan_nothing_to_do(vm, bus):
    p = ctl(bus, 'vm', 'plan')
    assert p.stdout == 'Action: none\nNo changes.\n', p.stdout
    assert ctl(bus, '-q', 'vm', 'plan').stdout == 'Action: none\n'


# --- operations -----------------------------------------------------------

@pytest.mark.parametrize('verb,method', [('start', 'Start'), ('stop', 'Stop'), ('restart', 'Restart'),
                                         ('update', 'Update')])
def test_operation_calls_method_and_waits(vm, bus, verb, method):
    vm.script(method, [{'delay': 0.3}, {'props': {'State': 'running'}}])
    t0 = time.monotonic()
    p = ctl(bus, 'vm', verb)
    assert p.returncode == 0, p.stderr
    assert time.monotonic() - t0 >= 0.3, 'returned before the reply'
    # Not a terminal: one line per step.
    # Each line names the operation.
    assert p.stdout == '' and p.stderr == '%s validator_vm: running\n' % verb, p
    calls = vm.calls()
    assert [c['method'] for c in calls] == [method]
    assert calls[0]['no_reply'] is False
    if method == 'Update':
        assert calls[0]['args'] == [{}]


def test_update_force(vm, bus):
    assert ctl(bus, 'vm', 'update', '--force').returncode == 0
    assert vm.calls('Update')[0]['args'] == [{'force': True}]


def test_no_block_returns_once_the_operation_is_under_way(vm, bus):
    vm.script('Update', [{'delay': 0.3}, {'props': {'State': 'updating'}}, {'delay': 20}])
    t0 = time.monotonic()
    p = ctl(bus, '--no-block', 'vm', 'update')
    assert p.returncode == 0, p.stderr
    assert 0.3 <= time.monotonic() - t0 < 10
    assert p.stdout == '' and p.stderr == ''
    # It still asks for the reply: the launcher drops a call whose sender is gone
    # before it could be authorized.
    assert vm.calls('Update')[0]['no_reply'] is False
    # Also accepted after the verb.
    vm.script('Stop', [{'props': {'State': 'stopping'}}, {'delay': 20}])
    assert ctl(bus, 'vm', 'stop', '--no-block').returncode == 0


def test_no_block_returns_on_a_quick_reply(vm, bus):
    assert ctl(bus, '--no-block', 'vm', 'start').returncode == 0
    vm.script('Restart', [{'error': ['org.platform.Launcher1.Error.Busy', 'Another operation is running.']}])
    one_line_error(ctl(bus, '--no-block', 'vm', 'restart'), 75,
                   'Failed to restart validator_vm: Another operation is running.')


ERRORS = [
    ('org.platform.Launcher1.Error.Busy', 'Another operation on validator_vm is running.', 75),
    ('org.platform.Launcher1.Error.Blocked', 'missing env: HOTKEY_PASSPHRASE', 78),
    ('org.platform.Launcher1.Error.VmmUnavailable', 'Cannot reach the VMM at http://127.0.0.1:2.', 69),
    ('org.platform.Launcher1.Error.ApiUnavailable', 'Cannot reach the Platform API.', 69),
    ('org.platform.Launcher1.Error.Failed', 'CreateVm failed: Image not found: x', 1),
    ('org.freedesktop.DBus.Error.AccessDenied', 'Access denied.', 77),
    ('org.freedesktop.DBus.Error.InvalidArgs', "Unknown option 'x'.", 65),
]


@pytest.mark.parametrize('name,message,code', ERRORS, ids=[e[0].rsplit('.', 1)[1] for e in ERRORS])
def test_operation_errors_one_line(vm, bus, name, message, code):
    vm.script('Update', [{'props': {'State': 'updating'}}, {'error': [name, message]}])
    p = ctl(bus, 'vm', 'update')
    # The step line, then the error on one line.
    assert p.returncode == code, p
    assert p.stderr.splitlines() == ['update validator_vm: updating', 'Failed to update validator_vm: ' + message], p


def test_error_without_message(vm, bus):
    vm.script('Update', [{'error': ['org.platform.Launcher1.Error.Blocked', '']}])
    one_line_error(ctl(bus, 'vm', 'update'), 78, 'Failed to update validator_vm: Blocked, see platformctl status.')


def test_last_error_equal_to_reason_shown_once(vm, bus):
    vm.set_vm(State='blocked', StateReason='missing env: X', LastError='missing env: X')
    lines = ctl(bus, 'status').stdout.splitlines()
    assert lines[0].strip() == 'Problem: VM validator_vm blocked: missing env: X'
    assert 'Problem' not in lines[1]


def test_progress_on_a_terminal(vm, bus):
    vm.script('Update', [
        {'props': {'State': 'updating', 'StateReason': 'creating the new VM'}},
        {'delay': 0.2},
        {'props': {'StateReason': 'starting vm-5678'}},
        {'delay': 0.2},
        {'props': {'LastCheckTimestamp': NOW_USEC}},   # not State: not shown
        {'props': {'State': 'running', 'StateReason': '', 'Id': 'vm-5678'}},
        {'signal': ['VmUpdated', ['c' * 64, 'd' * 64, 'vm-5678']]},
    ])
    rc, out, err = run_on_pty(bus, 'vm', 'update')
    assert rc == 0, err
    assert out == ''
    assert screen_lines(err) == [
        'update validator_vm: updating: creating the new VM',
        'update validator_vm: updating: starting vm-5678',
        'update validator_vm: running',
        'update validator_vm: compose hash %s -> %s, VM id vm-5678' % ('c' * 64, 'd' * 64),
    ], err


def test_progress_then_error_on_a_terminal(vm, bus):
    vm.script('Stop', [{'props': {'State': 'stopping'}},
                       {'error': ['org.platform.Launcher1.Error.Failed', 'StopVm failed: VM not found: vm-1234']}])
    rc, _, err = run_on_pty(bus, 'vm', 'stop')
    assert rc == 1
    assert screen_lines(err) == ['stop validator_vm: stopping',
                                 'Failed to stop validator_vm: StopVm failed: VM not found: vm-1234'], err


def test_no_progress_when_quiet_one_line_per_step_when_not_a_terminal(vm, bus):
    steps = [{'props': {'State': 'starting'}}, {'props': {'State': 'running'}}]
    vm.script('Start', steps)
    rc, _, err = run_on_pty(bus, '-q', 'vm', 'start')
    assert rc == 0 and err == '', err
    vm.set_vm(State='stopped')
    vm.script('Start', [{'props': {'State': 'starting', 'StateReason': 'booting: 1 s of 60 s'}},
                        {'props': {'StateReason': 'booting: 2 s of 60 s'}},
                        {'props': {'State': 'running', 'StateReason': ''}}])
    p = ctl(bus, 'vm', 'start')
    # The launcher's own counter does not make a new step.
    assert p.returncode == 0 and p.stderr == ('start validator_vm: starting: booting: 1 s of 60 s\n'
                                              'start validator_vm: running\n'), p


def test_terminal_shows_elapsed_time_of_a_step(vm, bus):
    vm.script('Stop', [{'props': {'State': 'stopping', 'StateReason': 'stopping the old VM'}}, {'delay': 2.5},
                       {'props': {'State': 'stopped', 'StateReason': ''}}])
    rc, _, err = run_on_pty(bus, 'vm', 'stop')
    assert rc == 0, err
    assert '\rstop validator_vm: stopping: stopping the old VM (2 s)\x1b[K' in err, repr(err)
    assert screen_lines(err) == ['stop validator_vm: stopping: stopping the old VM', 'stop validator_vm: stopped'], \
        repr(err)


def test_terminal_keeps_the_launchers_own_deadline(vm, bus):
    vm.script('Stop', [{'props': {'State': 'stopping', 'StateReason': 'stopping the old VM: 1 s of 60 s'}},
                       {'delay': 1.2},
                       {'props': {'StateReason': 'stopping the old VM: 2 s of 60 s', 'Operation': 'stop-graceful',
                                  'Progress': 40}},
                       {'delay': 1.2},
                       {'props': {'State': 'stopped', 'StateReason': '', 'Operation': ''}}])
    rc, _, err = run_on_pty(bus, 'vm', 'stop')
    assert rc == 0, err
    assert '\rstop validator_vm: stopping: stopping the old VM: 2 s of 60 s [40%]\x1b[K' in err, repr(err)
    assert ' s of 60 s (' not in err, repr(err)


def test_ctrl_c_leaves_the_operation_running(vm, bus):
    vm.script('Stop', [{'props': {'State': 'stopping'}}, {'delay': 30}])
    p = subprocess.Popen([PLATFORMCTL, 'vm', 'stop'], env=bus.env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stderr.readline() == 'stop validator_vm: stopping\n'
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=10)
    assert p.returncode == 130
    assert err == 'The operation continues; follow it with platformctl monitor.\n', err


def test_progress_ignores_other_vms(fake, bus):
    fake.add_vm('validator_vm', State='stopped')
    fake.add_vm('other', State='stopped')
    # A change of the other VM while this one starts is not this command's progress.
    fake.script('Start', [{'props': {'State': 'starting'}}, {'delay': 0.5}, {'props': {'State': 'running'}}])
    fake.script('Stop', [{'delay': 0.2}, {'props': {'State': 'stopping'}}], name='other')
    p = subprocess.Popen([PLATFORMCTL, 'vm', 'stop', 'other'], env=bus.env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    rc, _, err = run_on_pty(bus, 'vm', 'start', 'validator_vm')
    p.wait(10)
    assert rc == 0
    assert screen_lines(err) == ['start validator_vm: starting', 'start validator_vm: running'], err


# --- logs -----------------------------------------------------------------

def test_logs(vm, bus):
    p = ctl(bus, 'vm', 'logs')
    assert p.returncode == 0, p.stderr
    assert p.stdout == 'serial line 1\nserial line 2\nserial line 3\n'
    p = ctl(bus, 'vm', 'logs', '-n', '2', '--channel', 'stderr')
    assert p.stdout == 'stderr line 1\nstderr line 2\n', p
    p = ctl(bus, 'vm', 'logs', '--lines=1', '--channel=stdout', '--json')
    assert json.loads(p.stdout) == {'Channel': 'stdout', 'Text': 'stdout line 1\n'}
    assert [c['args'] for c in vm.calls('GetLogs')] == [['serial', 100], ['stderr', 2], ['stdout', 1]]


USAGE = [
    (('vm', 'logs', '-n', '0'), "Invalid number of lines '0': use 1..10000."),
    (('vm', 'logs', '-n', '10001'), "Invalid number of lines '10001'"),
    (('vm', 'logs', '-n', 'ten'), "Invalid number of lines 'ten'"),
    (('vm', 'logs', '--channel', 'console'), "Invalid log channel 'console': use serial, stdout or stderr."),
    (('vm', 'logs', '--channel'), "Option '--channel' needs an argument."),
    (('vm', 'update', '--bogus'), "Unknown option '--bogus'."),
    (('vm', 'start', '-x'), "Unknown option '-x'."),
    (('vm', 'status', '--force'), "--force applies to 'vm update' and 'updater apply' only."),
    (('vm', 'update', '-n', '5'), "--lines applies to 'vm logs', 'vm history' and 'updater history', --channel to 'vm logs' only."),
    (('vm', 'stop', 'a', 'b'), 'Usage: platformctl vm stop [NAME]'),
    (('vm', 'frobnicate'), "Unknown vm command 'frobnicate'."),
    (('monitor', 'now'), 'Usage: platformctl monitor'),
    (('status', '--bogus'), "Unknown option '--bogus'."),
]


@pytest.mark.parametrize('args,message', USAGE, ids=[' '.join(u[0]) for u in USAGE])
def test_usage_errors(vm, bus, args, message):
    one_line_error(ctl(bus, *args), 64, message)
    assert vm.calls() == []


# --- monitor --------------------------------------------------------------

def test_monitor_vm_signals_json(vm, bus, harness):
    m = Monitor(harness, bus, '--json')
    vm.set_vm(State='updating', StateReason='creating the new VM')
    vm.script('Update', [{'signal': ['VmUpdated', ['c' * 64, 'd' * 64, 'vm-2']]},
                         {'signal': ['UpdateFailed', ['e' * 64, 'CreateVm failed']]}])
    assert ctl(bus, 'vm', 'update').returncode == 0
    vm.add_vm('second', State='pending')
    vm.remove_vm('second')

    doc = json.loads(m.line())
    assert doc['Object'] == 'vm validator_vm' and doc['Vm'] == 'validator_vm'
    assert doc['Path'] == VM_PATH and doc['Member'] == 'PropertiesChanged'
    assert doc['Args']['interface_name'] == VM_IFACE
    assert doc['Args']['changed_properties'] == {'State': 'updating', 'StateReason': 'creating the new VM'}
    assert abs(doc['Timestamp'] / 1e6 - time.time()) < 60
    doc = json.loads(m.line())
    assert doc['Member'] == 'VmUpdated' and doc['Interface'] == VM_IFACE
    assert doc['Args'] == {'old_compose_hash': 'c' * 64, 'new_compose_hash': 'd' * 64, 'vm_id': 'vm-2'}
    doc = json.loads(m.line())
    assert doc['Member'] == 'UpdateFailed'
    assert doc['Args'] == {'target_compose_hash': 'e' * 64, 'reason': 'CreateVm failed'}
    doc = json.loads(m.line())
    assert doc['Member'] == 'InterfacesAdded' and doc['Vm'] == 'second'
    assert doc['Args']['object_path'] == '/org/platform/Launcher1/vm/second'
    assert doc['Args']['interfaces_and_properties'][VM_IFACE]['State'] == 'pending'
    doc = json.loads(m.line())
    assert doc['Member'] == 'InterfacesRemoved' and doc['Args']['interfaces'] == [VM_IFACE]
    assert m.stop() == 0


def test_monitor_human(vm, bus, harness):
    m = Monitor(harness, bus)
    vm.set_vm(State='blocked', StateReason='missing env: X', Vcpu=8)
    vm.script('Start', [{'signal': ['VmUpdated', ['', 'd' * 8, 'vm-2']]}])
    assert ctl(bus, 'vm', 'start').returncode == 0
    vm.add_vm('second', State='pending')

    def body(line):
        date, time_, rest = line.split(' ', 2)
        assert len(date) == 10 and len(time_) == 15, line
        return rest
    assert body(m.line()) == 'vm validator_vm: State=blocked StateReason="missing env: X" Vcpu=8'
    assert body(m.line()) == 'vm validator_vm: VmUpdated old_compose_hash="" new_compose_hash=dddddddd vm_id=vm-2'
    assert body(m.line()) == 'vm second: added org.platform.Launcher1.Vm'
    assert m.stop(2) == 0   # SIGINT


def test_monitor_sees_launcher_go_and_come(fake, bus, harness):
    m = Monitor(harness, bus)
    for name, p in harness.procs.procs:
        if name == 'fake-launcher':
            harness.procs.stop(p)
    assert m.line().endswith(' launcher: stopped')
    harness.spawn('fake-launcher-2', ['/usr/bin/python3', FAKE], stdout=subprocess.DEVNULL)
    assert m.line().endswith(' launcher: started')
    bus.wait_for_name(H.DAEMON_NAME)
    FakeLauncher(bus).add_vm('validator_vm', State='pending')
    assert m.line().endswith(' vm validator_vm: added org.platform.Launcher1.Vm')
    assert m.stop() == 0


@pytest.mark.parametrize('state,code', [('running', 0), ('pending', 0), ('updating', 0), ('blocked', 78),
                                        ('failed', 78), ('stopped', 78)])
def test_status_exit_code_like_systemctl_is_active(vm, bus, state, code):
    vm.set_vm(State=state)
    p = ctl(bus, 'status')
    assert p.returncode == code
    # A non-zero exit is explained on the first line.
    assert p.stdout.startswith('         Problem: VM validator_vm ') == (code != 0), p.stdout
    p = ctl(bus, 'status', '--json')
    assert p.returncode == code and json.loads(p.stdout)['Vms'][0]['State'] == state


def test_monitor_prints_times_as_times(vm, bus, harness):
    m = Monitor(harness, bus)
    t = 1767225600 * 1000000     # 2026-01-01 00:00:00 UTC
    vm.set_vm(LastCheckTimestamp=t, UpdateCount=3)
    line = m.line()
    stamp = time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(t / 1e6))
    assert 'vm validator_vm: ' in line and ' UpdateCount=3' in line, line
    assert ' LastCheckTimestamp="%s"' % stamp in line, line
    assert str(t) not in line
    assert m.stop() == 0


# --- a config change that replaces the VM ---------------------------------------

def test_set_env_follows_the_replacement_it_causes(vm, bus):
    vm.set_plan('recreate', [['env', 'HOTKEY', 'HOTKEY (changed)']])
    # The launcher begins a moment after the change is answered (so the plan is asked first).
    vm.script('SetEnv', [{'delay': 0.5}, {'props': {'State': 'stopping', 'StateReason': 'stopping the old VM'}},
                         {'delay': 0.3},
                         {'props': {'State': 'creating', 'StateReason': 'creating the new VM'}},
                         {'props': {'State': 'running', 'StateReason': '', 'Id': 'vm-new'}},
                         {'signal': ['VmUpdated', ['c' * 64, 'c' * 64, 'vm-new']]}])
    p = ctl(bus, 'config', 'set-env', 'HOTKEY', 'v2')
    assert p.returncode == 0, p
    assert p.stdout == ('Env value set. This replaces VM validator_vm (recreate): it is down from its graceful '
                        'stop (up to 1min) until the new VM has booted.\n'), p.stdout
    assert p.stderr.splitlines() == ['recreate validator_vm: stopping: stopping the old VM',
                                     'recreate validator_vm: creating: creating the new VM',
                                     'recreate validator_vm: running',
                                     'recreate validator_vm: compose hash %s -> %s, VM id vm-new' % ('c' * 64, 'c' * 64)
                                     ], p.stderr


def test_set_env_reports_a_failed_replacement(vm, bus):
    vm.set_plan('recreate', [])
    vm.script('SetEnv', [{'props': {'State': 'updating', 'StateReason': 'creating the new VM'}},
                         {'props': {'State': 'running', 'StateReason': ''}},
                         {'signal': ['UpdateFailed', ['d' * 64, 'CreateVm failed: no capacity']]}])
    p = ctl(bus, 'config', 'set-env', 'HOTKEY', 'v2')
    assert p.returncode == 1, p
    assert p.stderr.splitlines()[-1] == 'Updating VM validator_vm failed: CreateVm failed: no capacity', p.stderr


def test_set_env_no_block_and_json(vm, bus):
    vm.set_plan('recreate', [])
    vm.script('SetEnv', [{'delay': 20}])
    t0 = time.monotonic()
    p = ctl(bus, '--no-block', 'config', 'set-env', 'HOTKEY', 'v2')
    assert p.returncode == 0 and time.monotonic() - t0 < 5, p
    assert p.stdout.endswith('Follow it with platformctl monitor or platformctl vm status.\n'), p.stdout
    p = ctl(bus, '--json', '--no-block', 'config', 'set-env', 'HOTKEY', 'v2')
    assert p.returncode == 0 and p.stdout == '', p


def test_set_env_does_not_wait_for_a_launcher_that_never_begins(vm, bus):
    """The plan said recreate but nothing moves: bounded (30 s), then exit 75 with where to look."""
    vm.set_plan('recreate', [])
    t0 = time.monotonic()
    p = ctl(bus, 'config', 'set-env', 'HOTKEY', 'v2', timeout=60)
    assert p.returncode == 75, p
    assert 25 <= time.monotonic() - t0 < 45
    assert p.stderr == 'The launcher has not begun on the VM; see platformctl vm plan and platformctl monitor.\n'


def test_set_env_without_consequence_returns_at_once(vm, bus):
    vm.set_plan('none', [])
    p = ctl(bus, 'config', 'set-env', 'UNUSED', 'x')
    assert p.returncode == 0 and p.stdout == 'Env value set. VM validator_vm is not changed (plan: none).\n', p
    assert p.stderr == ''
