# SPDX-License-Identifier: Apache-2.0
"""No slip at the terminal costs the VM (issue 16): an empty secret from
/dev/null or a stray Enter is refused before anything is sent, and a command
that replaces, restarts or stops the VM (or restarts the validator's services)
says what will happen and asks [y/N] on a terminal, while scripts (stdin not a
terminal, or --yes) run as before. Driven as an operator would: a real pty for
the prompts, /dev/null and pipes for scripts, the real daemon on the VMM and
Platform API simulators."""
import json
import os
import subprocess
import sys

import pytest

import harness as H
from terminal import on_terminal, Terminal

SOURCE_DIR = os.environ.get('PLATFORM_SOURCE_DIR',
                            os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'sim'))
import simlib  # noqa: E402
from simlib import api, api_process, vmm, vmm_process  # noqa: E402,F401 (fixtures)

from ctl_helpers import PLATFORMCTL  # noqa: E402
from test_platformctl_vm import RUNNING, fake  # noqa: E402,F401 (the contract's stand-in)

PLATFORM = os.path.join(os.path.dirname(PLATFORMCTL), 'platform')
SECRET = 'S3CRET-hotkey'
QUESTION = 'Continue? [y/N] '


def ctl(bus, *args, stdin=subprocess.DEVNULL, timeout=120):
    """As a script runs it: stdin /dev/null unless given (a str is piped)."""
    if isinstance(stdin, str):
        return subprocess.run([PLATFORMCTL] + list(args), env=bus.env(), input=stdin, capture_output=True,
                              text=True, timeout=timeout)
    return subprocess.run([PLATFORMCTL] + list(args), env=bus.env(), stdin=stdin, capture_output=True, text=True,
                          timeout=timeout)


def terminal(bus, *args, answers=(), binary=PLATFORMCTL, timeout=120):
    return on_terminal([binary] + list(args), bus.env(), answers=answers, timeout=timeout)


def vm_props(bus):
    p = ctl(bus, '--json', 'vm', 'status', timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def wait_vm(bus, pred, what, timeout=60):
    last = [None]

    def check():
        p = ctl(bus, '--json', 'vm', 'status', timeout=30)
        last[0] = json.loads(p.stdout) if p.returncode == 0 else None
        return last[0] is not None and pred(last[0])
    try:
        simlib.wait_until(check, timeout, what, interval=0.05)
    except Exception as e:
        raise AssertionError('%s; last vm status: %r' % (e, last[0]))
    return last[0]


@pytest.fixture
def launcher(bus, polkit, harness, daemon_binary, vmm, api):
    config = {
        'env': {'HOTKEY_PASSPHRASE': SECRET, 'VALIDATOR_BASE_URL': 'https://validator.example'},
        'api_url': api.url + '/config/compose/validator_vm',
        'vmm_url': vmm.url,
        'poll_interval_usec': 24 * 3600 * 1000000,
        'stop_timeout_usec': 5 * 1000000,
        'capacity_vcpu': 100000, 'capacity_memory_mib': 1 << 30,  # the simulated VMs outgrow this machine
    }
    d = harness.daemon(config=config)
    wait_vm(bus, lambda v: v['Name'] == 'validator_vm', 'the Vm object')
    return d


@pytest.fixture
def running(launcher, bus, vmm):
    p = ctl(bus, 'vm', 'update')
    assert p.returncode == 0, p.stderr
    return wait_vm(bus, lambda v: v['State'] == 'running', 'a running VM')


def get_env(daemon, key):
    r = daemon.call('GetEnv', 's', [key])
    return r.result[0] if r.ok else None


# --- 1. an empty secret is never sent ------------------------------------------

@pytest.mark.parametrize('stdin', [subprocess.DEVNULL, '', '\n'], ids=['dev-null', 'empty-pipe', 'newline'])
def test_empty_value_from_stdin_is_refused(running, bus, launcher, stdin):
    p = ctl(bus, 'config', 'set-env', 'HOTKEY_PASSPHRASE', stdin=stdin)
    assert p.returncode == 65, p
    assert p.stderr == ('Refusing an empty value for HOTKEY_PASSPHRASE (from standard input); nothing was changed. '
                        'Use --allow-empty to set it empty.\n'), p.stderr
    assert get_env(launcher, 'HOTKEY_PASSPHRASE') == SECRET
    assert vm_props(bus)['Id'] == running['Id']   # not replaced
    # The same through the Rust launcher's command.
    p = subprocess.run([PLATFORM, 'config', 'set-passphrase'], env=bus.env(), stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 65 and 'Refusing an empty value for HOTKEY_PASSPHRASE' in p.stderr, p
    assert get_env(launcher, 'HOTKEY_PASSPHRASE') == SECRET


def test_empty_value_accepted_with_allow_empty(launcher, bus):
    p = ctl(bus, 'config', 'set-env', 'OPTIONAL_FLAG', '--allow-empty', stdin='')
    assert p.returncode == 0, p
    assert get_env(launcher, 'OPTIONAL_FLAG') == ''
    # Given on the command line, an empty value is what the operator typed.
    assert ctl(bus, 'config', 'set-env', 'OTHER_FLAG', '').returncode == 0
    assert get_env(launcher, 'OTHER_FLAG') == ''


def test_allow_empty_only_for_set_env(launcher, bus):
    p = ctl(bus, 'config', 'get-env', 'HOTKEY_PASSPHRASE', '--allow-empty')
    assert p.returncode == 64 and p.stderr == "--allow-empty applies to 'config set-env' only.\n", p


def test_empty_value_from_the_prompt_is_refused(running, bus, launcher):
    """A stray Enter at the no-echo prompt."""
    rc, screen = terminal(bus, 'config', 'set-env', 'HOTKEY_PASSPHRASE',
                          answers=[('Value for HOTKEY_PASSPHRASE: ', '')])
    assert rc == 65, screen
    assert 'Refusing an empty value for HOTKEY_PASSPHRASE (from the prompt); nothing was changed.' in screen, screen
    assert QUESTION not in screen
    assert get_env(launcher, 'HOTKEY_PASSPHRASE') == SECRET
    assert vm_props(bus)['Id'] == running['Id']


# --- 1. what replaces the VM is said and asked first ----------------------------

REPLACE = ('This replaces VM validator_vm if the value differs: env HOTKEY_PASSPHRASE changes; it is down from its '
           'graceful stop (up to 5s) until the new VM has booted.\n')


@pytest.mark.parametrize('answer', ['', 'n', 'no', 'yes please'], ids=['enter', 'n', 'no', 'other'])
def test_set_env_of_a_received_key_asks_and_no_is_the_default(running, bus, launcher, vmm, answer):
    seen = len(vmm.calls())
    rc, screen = terminal(bus, 'config', 'set-env', 'HOTKEY_PASSPHRASE',
                          answers=[('Value for HOTKEY_PASSPHRASE: ', 'another secret'), (QUESTION, answer)])
    assert rc == 1, screen
    assert REPLACE + QUESTION in screen, screen
    assert screen.endswith('Cancelled.\n'), screen
    assert 'another secret' not in screen                    # the prompt does not echo
    assert get_env(launcher, 'HOTKEY_PASSPHRASE') == SECRET  # never sent
    assert vm_props(bus)['Id'] == running['Id']
    assert [c['method'] for c in vmm.calls()[seen:] if c['method'] in ('ShutdownVm', 'StopVm', 'CreateVm')] == []


def test_set_env_yes_replaces_the_vm(running, bus, launcher):
    rc, screen = terminal(bus, 'config', 'set-env', 'HOTKEY_PASSPHRASE', 'new secret', answers=[(QUESTION, 'y')])
    assert rc == 0, screen
    assert REPLACE in screen
    assert get_env(launcher, 'HOTKEY_PASSPHRASE') == 'new secret'
    v = vm_props(bus)
    assert v['State'] == 'running' and v['Id'] != running['Id'], v


def test_in_place_strategy_is_said(running, bus, launcher):
    assert ctl(bus, 'config', 'set', 'UpdateStrategy', 'in-place').returncode == 0
    rc, screen = terminal(bus, 'config', 'set-env', 'HOTKEY_PASSPHRASE', 'x', answers=[(QUESTION, 'n')])
    assert rc == 1, screen
    assert ('This updates VM validator_vm in place and restarts it if the value differs: env HOTKEY_PASSPHRASE '
            'changes; it is down from its graceful stop (up to 5s) until it has booted again.\n' + QUESTION) in screen
    assert get_env(launcher, 'HOTKEY_PASSPHRASE') == SECRET


def test_scripts_are_not_asked(running, bus, launcher):
    """stdin not a terminal (a script, cron, ssh host cmd): no question, as before."""
    p = ctl(bus, 'config', 'set-env', 'HOTKEY_PASSPHRASE', 'from a script')
    assert p.returncode == 0, p
    assert QUESTION not in p.stdout + p.stderr
    v = wait_vm(bus, lambda v: v['State'] == 'running', 'running again')
    assert v['Id'] != running['Id']
    # --yes on a terminal: no question either.
    rc, screen = terminal(bus, '--yes', 'config', 'remove-env', 'HOTKEY_PASSPHRASE')
    assert rc in (0, 78), screen   # HOTKEY_PASSPHRASE may be required: then the VM is blocked, not replaced
    assert QUESTION not in screen
    assert get_env(launcher, 'HOTKEY_PASSPHRASE') is None


def test_a_key_the_vm_does_not_receive_is_not_asked(running, bus, launcher):
    assert 'NOT_IN_THE_COMPOSE' not in vm_props(bus)['AllowedEnv']
    rc, screen = terminal(bus, 'config', 'set-env', 'NOT_IN_THE_COMPOSE', 'x')
    assert rc == 0, screen
    assert QUESTION not in screen
    assert 'VM validator_vm is not changed (plan: none).' in screen


def test_remove_env_asks(running, bus, launcher):
    rc, screen = terminal(bus, 'config', 'remove-env', 'VALIDATOR_BASE_URL', answers=[(QUESTION, 'n')])
    assert rc == 1, screen
    assert ('This replaces VM validator_vm: env VALIDATOR_BASE_URL is removed; it is down from its graceful stop '
            '(up to 5s) until the new VM has booted.\n' + QUESTION) in screen, screen
    assert get_env(launcher, 'VALIDATOR_BASE_URL') == 'https://validator.example'


def test_set_vmm_url_asks_only_when_it_changes(running, bus, launcher):
    current = launcher.get('GuestVmmUrl')
    rc, screen = terminal(bus, 'config', 'set-vmm-url', current)
    assert rc == 0 and QUESTION not in screen, screen
    rc, screen = terminal(bus, 'config', 'set-vmm-url', 'http://10.0.2.2:9999/', answers=[(QUESTION, 'N')])
    assert rc == 1, screen
    assert 'This replaces VM validator_vm: env DSTACK_VMM_URL changes;' in screen, screen
    assert launcher.get('GuestVmmUrl') == current


def test_allowed_env_property(running, bus, launcher, api):
    """Vm.AllowedEnv: the keys the VM's spec lets in, sorted, and emitted when the spec changes."""
    v = vm_props(bus)
    assert v['AllowedEnv'] == sorted(v['AllowedEnv'])
    assert {'DSTACK_VMM_URL', 'HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL'} <= set(v['AllowedEnv']), v
    assert 'NEW_KEY' not in v['AllowedEnv']
    with bus.collect(sender=H.DAEMON_NAME, path=H.DAEMON_PATH + '/vm/validator_5fvm',
                     member='PropertiesChanged') as changes:
        api.patch_doc(required_env=['HOTKEY_PASSPHRASE', 'NEW_KEY'])
        ctl(bus, 'vm', 'update')   # blocked (NEW_KEY is not set), but the spec is fetched
        v = vm_props(bus)
        assert 'NEW_KEY' in v['AllowedEnv'], v
        changes.wait_for(lambda s: 'NEW_KEY' in s.args[1].get('AllowedEnv', []), timeout=10,
                         what='AllowedEnv emitted')


# --- 1. vm stop, restart, update --force ----------------------------------------

@pytest.mark.parametrize('verb,text', [
    ('stop', 'This stops VM validator_vm (a graceful stop, up to 5s). It stays stopped until platformctl vm start.\n'),
    ('restart', 'This restarts VM validator_vm: it is down from its graceful stop (up to 5s) until it has booted '
                'again.\n'),
])
def test_vm_stop_and_restart_ask(running, bus, vmm, verb, text):
    boots = vmm.vm(running['Id'])['boot_count']
    rc, screen = terminal(bus, 'vm', verb, answers=[(QUESTION, '')])
    assert rc == 1 and screen.endswith('Cancelled.\n'), screen
    assert text + QUESTION in screen, screen
    assert vmm.status_of(running['Id']) == 'running' and vmm.vm(running['Id'])['boot_count'] == boots
    rc, screen = terminal(bus, 'vm', verb, answers=[(QUESTION, 'y')])
    assert rc == 0, screen
    assert vm_props(bus)['State'] == ('stopped' if verb == 'stop' else 'running')


def test_vm_update_force_asks(running, bus, vmm):
    rc, screen = terminal(bus, 'vm', 'update', '--force', answers=[(QUESTION, 'no')])
    assert rc == 1, screen
    assert ('This replaces VM validator_vm (recreate: nothing differs, --force): it is down from its graceful stop '
            '(up to 5s) until the new VM has booted.\n' + QUESTION) in screen, screen
    assert vm_props(bus)['Id'] == running['Id']
    # Nothing to do: nothing asked.
    rc, screen = terminal(bus, 'vm', 'update')
    assert rc == 0 and QUESTION not in screen, screen
    rc, screen = terminal(bus, '-y', 'vm', 'update', '--force')
    assert rc == 0 and QUESTION not in screen, screen
    assert vm_props(bus)['Id'] != running['Id']


def test_vm_update_names_the_planned_changes(fake, bus):
    """What Plan says (here the contract's stand-in, so the plan is exactly this)."""
    fake.add_vm(**RUNNING)
    fake.set_plan('recreate', [['compose_hash', 'c' * 64, 'd' * 64], ['env', 'differs', 'HOTKEY_PASSPHRASE']])
    rc, screen = terminal(bus, 'vm', 'update', answers=[(QUESTION, 'n')])
    assert rc == 1, screen
    assert ('This replaces VM validator_vm (recreate: compose_hash, env differ): it is down from its graceful stop '
            '(up to 1min) until the new VM has booted.\n' + QUESTION) in screen, screen
    fake.set_plan('update-in-place', [['vcpu', '2', '4']])
    rc, screen = terminal(bus, 'vm', 'update', answers=[(QUESTION, 'n')])
    assert ('This updates VM validator_vm in place and restarts it (vcpu differs): it is down from its graceful '
            'stop (up to 1min) until it has booted again.\n' + QUESTION) in screen, screen
    assert fake.calls('Update') == []
    fake.script('Update', [{'props': {'State': 'running'}}])
    rc, screen = terminal(bus, 'vm', 'update', answers=[(QUESTION, 'y')])
    assert rc == 0, screen
    assert fake.calls('Update') != []
    # Nothing planned (start, none): nothing asked.
    fake.set_plan('start', [])
    rc, screen = terminal(bus, 'vm', 'update')
    assert rc == 0 and QUESTION not in screen, screen


def test_stop_of_a_stopped_vm_is_not_asked(running, bus):
    assert ctl(bus, 'vm', 'stop').returncode == 0
    rc, screen = terminal(bus, 'vm', 'stop')
    assert rc == 0 and QUESTION not in screen, screen


def test_ctrl_d_at_the_question_cancels(running, bus, launcher):
    t = Terminal([PLATFORMCTL, 'vm', 'restart'], bus.env())
    try:
        t.expect(QUESTION)
        os.write(t.master, b'\x04')   # Ctrl-D: end of input
        rc, screen = t.wait(30)
    finally:
        t.close()
    assert rc == 1 and screen.endswith('Cancelled.\n'), screen
    assert vm_props(bus)['Id'] == running['Id']


# --- 1. the Updater: apply (when it would restart) and rollback ------------------

@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    from updater_world import World
    return World(harness)


def updater_daemon(harness, world, **extra):
    from updater_world import wait_prop
    d = harness.daemon(config=world.config(**extra))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    return d


def test_updater_apply_asks_when_it_would_restart(harness, bus, world):
    new = world.release('2')
    updater_daemon(harness, world)
    rc, screen = terminal(bus, 'updater', 'apply', answers=[(QUESTION, 'n')])
    assert rc == 1, screen
    assert ('This updates %s from %s to %s, builds it and restarts 1 restart command.\n'
            % (world.work, world.first[:12], new[:12]) + QUESTION) in screen, screen
    assert world.head() == world.first and world.actions() == []
    rc, screen = terminal(bus, 'updater', 'apply', answers=[(QUESTION, 'y')])
    assert rc == 0, screen
    assert world.head() == new and 'restart 2' in world.actions()
    # Progress lines name the operation.
    for step in ('fetch', 'checkout', 'build', 'restart', 'health'):
        assert 'apply: %s (' % step in screen, screen
    # Up to date: nothing restarts, nothing asked.
    rc, screen = terminal(bus, 'updater', 'apply')
    assert rc == 0 and QUESTION not in screen and 'Up to date: %s' % new in screen, screen


def test_updater_apply_without_restarts_is_not_asked(harness, bus, world):
    new = world.release('2')
    updater_daemon(harness, world, updater_restart_commands=[])
    rc, screen = terminal(bus, 'updater', 'apply')
    assert rc == 0 and QUESTION not in screen, screen
    assert world.head() == new


def test_updater_rollback_asks(harness, bus, world):
    new = world.release('2')
    updater_daemon(harness, world)
    assert ctl(bus, 'updater', 'apply').returncode == 0   # a script: not asked
    assert world.head() == new
    rc, screen = terminal(bus, 'updater', 'rollback', answers=[(QUESTION, '')])
    assert rc == 1, screen
    assert ('This rolls back %s from %s to %s (%s is quarantined), builds it and restarts 1 restart command.\n'
            % (world.work, new[:12], world.first[:12], new[:12]) + QUESTION) in screen, screen
    assert world.head() == new
    rc, screen = terminal(bus, 'updater', 'rollback', '--yes')
    assert rc == 0 and QUESTION not in screen, screen
    assert world.head() == world.first


# --- 2. updater apply --force reaches the daemon --------------------------------

def test_updater_apply_force_skips_the_busy_gates(harness, bus, world):
    """The docs tell operators to use --force when a gate is wrongly closed."""
    lock = os.path.join(world.dir, 'round.lock')
    open(lock, 'w').close()
    new = world.release('2')
    updater_daemon(harness, world, updater_round_lock_file=lock)
    p = ctl(bus, 'updater', 'apply')
    assert p.returncode == 75 and 'round-lock' in p.stderr, p
    p = ctl(bus, 'updater', 'apply', '--force')
    assert p.returncode == 0, p
    assert p.stdout.strip() == 'Updated %s -> %s' % (world.first, new), p.stdout
    assert world.head() == new


@pytest.mark.parametrize('binary,args', [
    (PLATFORMCTL, ['config', 'set-env', 'HOTKEY_PASSPHRASE']),
    (PLATFORM, ['config', 'set-passphrase'])], ids=['platformctl', 'platform'])
def test_a_value_on_the_command_line_leaves_it(running, bus, launcher, binary, args):
    """Any user can read a process's command line (ps, /proc/PID/cmdline) for
    as long as it runs: the [y/N] question (or a polkit password prompt) keeps
    it running for as long as the operator takes. The value is taken out of
    the command line before either."""
    value = 'argv-secret-%d' % os.getpid()
    t = Terminal([binary] + args + [value], bus.env())
    try:
        t.expect(QUESTION)
        with open('/proc/%d/cmdline' % t.p.pid, 'rb') as f:
            cmdline = f.read()
        ps = subprocess.run(H.as_user_argv('nobody', ['ps', '-o', 'args=', '-p', str(t.p.pid)]),
                            capture_output=True, text=True)
        assert ps.returncode == 0 and 'set-' in ps.stdout, ps
        t.type('n')
        rc, screen = t.wait()
    finally:
        t.close()
    assert rc == 1, screen
    assert value.encode() not in cmdline, cmdline
    assert value not in ps.stdout, ps.stdout
    assert get_env(launcher, 'HOTKEY_PASSPHRASE') == SECRET
