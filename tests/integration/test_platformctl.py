# SPDX-License-Identifier: Apache-2.0
"""platformctl as an operator meets it: a thin client of the bus API."""
import json
import os
import select
import signal
import subprocess
import time

import pytest

import harness as H
from launcher import RUST_CONFIG, SECRET, CONFIGURE, assert_no_secret_logged

PLATFORMCTL = os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platformctl')


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


def ctl(bus, *args, user=None, stdin=None):
    if stdin is None:
        return H.run_tool(bus, [PLATFORMCTL] + list(args), user=user)
    return subprocess.run(H.as_user_argv(user, [PLATFORMCTL] + list(args)), env=bus.env(), input=stdin,
                          capture_output=True, text=True, timeout=30)


def test_status(daemon, bus):
    p = ctl(bus)
    assert p.returncode == 0, p.stderr
    assert 'Guest VMM URL: http://10.0.2.2:16850/' in p.stdout
    assert 'Env keys: HOTKEY_PASSPHRASE VALIDATOR_BASE_URL' in p.stdout
    assert SECRET not in p.stdout


def test_status_shows_config_problem_first(bus, polkit, harness, daemon_binary):
    harness.daemon(config='{"env": ')
    p = ctl(bus, 'status')
    assert p.returncode == 0, p.stderr
    # Problems (the VM's, if it has any, then the config's) come before anything else.
    lines = [line.strip() for line in p.stdout.splitlines()]
    problems = lines[:next(i for i, line in enumerate(lines) if not line.startswith('Problem: '))]
    assert any(line.startswith('Problem: config file not in force') for line in problems), lines


def test_status_json_lists_vms_and_config(daemon, bus):
    doc = json.loads(ctl(bus, 'status', '--json').stdout)
    assert isinstance(doc['Vms'], list)
    assert all(v['Name'] for v in doc['Vms'])
    assert doc['Config']['EnvKeys'] == ['HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL']


def test_json(daemon, bus):
    p = ctl(bus, '--json', 'config', 'show')
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)['Config']
    assert doc['EnvKeys'] == ['HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL']
    assert doc['PollIntervalUSec'] == 5000000
    p = ctl(bus, '--json', 'config', 'list-env')
    assert json.loads(p.stdout) == ['HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL']


def test_set_env_from_stdin_and_get(daemon, bus):
    p = ctl(bus, 'config', 'set-env', 'FROM_STDIN', stdin=SECRET + 'piped value\n')
    assert p.returncode == 0, p.stderr
    p = ctl(bus, 'config', 'get-env', 'FROM_STDIN')
    assert p.returncode == 0 and p.stdout == SECRET + 'piped value\n', p
    p = ctl(bus, 'config', 'set-env', 'DASH', '-', stdin=SECRET + 'dash')
    assert p.returncode == 0, p.stderr
    assert daemon.call('GetEnv', 's', ['DASH']).result == (SECRET + 'dash',)
    assert_no_secret_logged(daemon)


def test_set_env_argument_remove_list(daemon, bus):
    assert ctl(bus, 'config', 'set-env', 'ARG_KEY', 'value').returncode == 0
    assert 'ARG_KEY' in ctl(bus, 'config', 'list-env').stdout.split()
    assert ctl(bus, 'config', 'remove-env', 'ARG_KEY').returncode == 0
    assert 'ARG_KEY' not in daemon.get('EnvKeys')


def test_set_vmm_url_keeps_rust_meaning(daemon, bus):
    p = ctl(bus, 'config', 'set-vmm-url', 'http://10.0.2.2:9999/')
    assert p.returncode == 0, p.stderr
    assert daemon.get('GuestVmmUrl') == 'http://10.0.2.2:9999/'
    assert daemon.read_config()['dstack_vmm_url'] == 'http://10.0.2.2:9999/'


def test_set_times_and_strings(daemon, bus):
    assert ctl(bus, 'config', 'set', 'PollIntervalUSec', '30s').returncode == 0
    assert daemon.get('PollIntervalUSec') == 30000000
    assert ctl(bus, 'config', 'set', 'StopTimeoutUSec', '2min').returncode == 0
    assert daemon.get('StopTimeoutUSec') == 120000000
    assert ctl(bus, 'config', 'set', 'UpdateStrategy', 'in-place').returncode == 0
    assert daemon.get('UpdateStrategy') == 'in-place'


def test_reload(daemon, bus):
    doc = daemon.read_config()
    doc['env']['RELOADED'] = 'x'
    daemon.write_config(doc)
    assert ctl(bus, 'config', 'reload').returncode == 0
    assert 'RELOADED' in daemon.get('EnvKeys')


EXIT_CODES = [
    (('config', 'get-env', 'NOPE'), 66, "No env value 'NOPE' is set."),
    (('config', 'set', 'Bogus', 'x'), 65, "Unknown setting 'Bogus'."),
    (('config', 'set', 'PollIntervalUSec', 'soon'), 64, 'Invalid time'),
    (('config', 'set-env', 'BAD-KEY', 'v'), 65, 'Invalid env key'),
    (('frobnicate',), 64, "Unknown command 'frobnicate'"),
    (('config', 'get-env'), 64, 'Usage: platformctl config get-env KEY'),
    (('vm', 'status', 'no_such_vm'), 66, "No VM named 'no_such_vm' is managed by the launcher."),
    (('vm', 'logs', '-n', '0'), 64, "Invalid number of lines '0'"),
    (('vm', 'update', '--bogus'), 64, "Unknown option '--bogus'."),
    (('vm', 'frobnicate'), 64, "Unknown vm command 'frobnicate'."),
    (('monitor', 'extra'), 64, 'Usage: platformctl monitor'),
]


@pytest.mark.parametrize('args,code,message', EXIT_CODES, ids=[' '.join(e[0]) for e in EXIT_CODES])
def test_errors_one_line_and_exit_code(daemon, bus, args, code, message):
    p = ctl(bus, *args)
    assert p.returncode == code, (p.returncode, p.stderr)
    assert message in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_nobody_denied_then_allowed(daemon, bus, polkit):
    p = ctl(bus, '--no-ask-password', 'config', 'set-env', 'NB', 'v', user='nobody')
    assert p.returncode == 77, (p.returncode, p.stderr)
    assert 'not authorized' in p.stderr or 'Interactive authentication required' in p.stderr
    assert 'NB' not in daemon.get('EnvKeys')
    # Reading is open to everyone.
    assert ctl(bus, 'status', user='nobody').returncode == 0
    polkit.allow(CONFIGURE, user='nobody')
    p = ctl(bus, 'config', 'set-env', 'NB', 'v', user='nobody')
    assert p.returncode == 0, p.stderr
    assert 'NB' in daemon.get('EnvKeys')


def test_daemon_not_running(bus):
    p = ctl(bus, 'status')
    assert p.returncode == 69, (p.returncode, p.stderr)


def test_daemon_not_running_vm_and_monitor(bus):
    p = ctl(bus, 'vm', 'status')
    assert p.returncode == 69, (p.returncode, p.stderr)
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def read_line(f, timeout):
    """One line from a pipe, or '' after timeout seconds."""
    if not select.select([f], [], [], timeout)[0]:
        return ''
    return f.readline()


def test_monitor_prints_config_changes(daemon, bus, harness):
    m = harness.spawn('platformctl-monitor', [PLATFORMCTL, 'monitor', '--json'], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    # The banner goes out once the matches are in place.
    assert read_line(m.stderr, 10).startswith('Monitoring org.platform.Launcher1'), m
    r = daemon.call('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', 7000000]}])
    assert r.ok, r
    line = read_line(m.stdout, 10)
    assert line, 'no line from platformctl monitor within 10 s'
    doc = json.loads(line)
    assert doc['Object'] == 'config'
    assert (doc['Path'], doc['Interface'], doc['Member']) == (
        '/org/platform/Launcher1', 'org.freedesktop.DBus.Properties', 'PropertiesChanged')
    assert doc['Args']['interface_name'] == 'org.platform.Launcher1.Config'
    assert doc['Args']['changed_properties'] == {'PollIntervalUSec': 7000000}
    assert abs(doc['Timestamp'] / 1e6 - time.time()) < 60
    m.terminate()
    assert m.wait(10) == 0
    assert m.stdout.read() == ''


def test_monitor_human_secret_free(daemon, bus, harness):
    m = harness.spawn('platformctl-monitor', [PLATFORMCTL, 'monitor'], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    assert read_line(m.stderr, 10).startswith('Monitoring'), m
    assert ctl(bus, 'config', 'set-env', 'NEW_SECRET', stdin=SECRET + 'never shown').returncode == 0
    # The VM's own lines (its object announced as the daemon starts) may come first.
    seen = []
    while True:
        line = read_line(m.stdout, 10)
        assert line, 'no config line from platformctl monitor within 10 s: %r' % seen
        seen.append(line)
        assert SECRET not in line
        body = line.split(' ', 2)[2]   # after the date and the time
        if not body.startswith('vm '):
            break
    assert body.startswith('config:'), seen
    assert ' EnvKeys=["HOTKEY_PASSPHRASE","NEW_SECRET","VALIDATOR_BASE_URL"]' in body, line
    assert SECRET not in line
    m.send_signal(2)
    assert m.wait(10) == 0


# --- issue 10: a CLI as finished as systemd's ---------------------------------

@pytest.mark.parametrize('args,header', [
    (('config', '--help'), 'Config commands:'),
    (('--help', 'config'), 'Config commands:'),
    (('vm', '--help'), 'VM commands'),
    (('vm', 'update', '-h'), 'VM commands'),
    (('status', '--help'), 'Exits 78 when the VM is'),
    (('monitor', '--help'), 'until Ctrl-C'),
    (('--help',), 'Exit status:'),
])
def test_help_on_every_verb_group(args, header):
    # No bus needed for help.
    p = subprocess.run([PLATFORMCTL] + list(args), capture_output=True, text=True, timeout=10,
                       env={'PATH': os.environ['PATH'], 'DBUS_SYSTEM_BUS_ADDRESS': 'unix:path=/nonexistent'})
    assert p.returncode == 0, p
    assert header in p.stdout and p.stderr == '', p


def test_options_anywhere(daemon, bus):
    for args in (('config', 'show', '--json'), ('config', '--json', 'show'), ('--json', 'config', 'show'),
                 ('config', 'show', '-q', '--json', '--no-pager')):
        p = ctl(bus, *args)
        assert p.returncode == 0, (args, p.stderr)
        assert json.loads(p.stdout)['Config']['EnvKeys'] == ['HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL'], args
    # A lone '-' is an argument (read the value from stdin), '--' ends the options.
    p = ctl(bus, 'config', 'set-env', 'DASHED', '-', '--no-ask-password', stdin='v1\n')
    assert p.returncode == 0, p.stderr
    p = ctl(bus, 'config', 'set-env', '--', 'DASHED', '-starts-with-a-dash')
    assert p.returncode == 0, p.stderr
    assert ctl(bus, 'config', 'get-env', 'DASHED').stdout == '-starts-with-a-dash\n'


@pytest.mark.parametrize('setting,value,message', [
    ('PollIntervalUSec', '0s', "Invalid time '0s' for PollIntervalUSec: must be between 1s and 1d."),
    ('PollIntervalUSec', '2d', "Invalid time '2d' for PollIntervalUSec: must be between 1s and 1d."),
    ('StopTimeoutUSec', '500ms', "Invalid time '500ms' for StopTimeoutUSec: must be between 1s and 1h."),
    ('StopTimeoutUSec', '61min', "Invalid time '61min' for StopTimeoutUSec: must be between 1s and 1h."),
    ('StopTimeoutUSec', '5 min', "Invalid time '5 min' for StopTimeoutUSec: use e.g. 30s, 500ms, 5min, 1h, 1d."),
])
def test_durations_in_the_users_words(daemon, bus, setting, value, message):
    before = daemon.get(setting)
    p = ctl(bus, 'config', 'set', setting, value)
    assert p.returncode == 64 and p.stderr == message + '\n', p
    assert daemon.get(setting) == before


def test_durations_accepted_and_shown(daemon, bus):
    assert ctl(bus, 'config', 'set', 'PollIntervalUSec', '1d').returncode == 0
    assert daemon.get('PollIntervalUSec') == 86400 * 1000000
    assert ctl(bus, 'config', 'set', 'StopTimeoutUSec', '90s').returncode == 0
    out = ctl(bus, 'config', 'show').stdout
    assert ' PollIntervalUSec: 1d\n' in out and ' StopTimeoutUSec: 90s\n' in out, out


def test_absent_launcher_names_the_unit(bus):
    for args in (('status',), ('config', 'show'), ('vm', 'plan')):
        p = ctl(bus, *args)
        assert p.returncode == 69, p
        assert p.stderr == 'platform-launcher.service is not running (systemctl start platform-launcher)\n', p


def test_colour_only_on_a_terminal_or_when_asked(bus, polkit, harness, daemon_binary):
    harness.daemon(config='{"env": ')   # a config problem: a red "Problem:"
    red = '\x1b[0;1;31mProblem:\x1b[0m'

    def status(**env):
        e = bus.env()
        for k in ('NO_COLOR', 'SYSTEMD_COLORS'):
            e.pop(k, None)
        e.update(env)
        return subprocess.run([PLATFORMCTL, 'status'], env=e, capture_output=True, text=True, timeout=30).stdout
    assert red not in status() and '\x1b' not in status()           # a pipe
    assert red in status(SYSTEMD_COLORS='1')
    assert red in status(SYSTEMD_COLORS='256', NO_COLOR='1')        # systemd: SYSTEMD_COLORS first
    assert '\x1b' not in status(SYSTEMD_COLORS='0')
    # On a terminal: colour, unless NO_COLOR (whatever its value) or SYSTEMD_COLORS=no.
    import pty
    for env, coloured in (({}, True), ({'NO_COLOR': ''}, False), ({'SYSTEMD_COLORS': 'no'}, False),
                          ({'TERM': 'dumb'}, False)):
        master, slave = pty.openpty()
        e = bus.env()
        e.pop('NO_COLOR', None)
        e.pop('SYSTEMD_COLORS', None)
        e.setdefault('TERM', 'xterm')
        e.update(env)
        p = subprocess.Popen([PLATFORMCTL, 'status'], env=e, stdout=slave, stderr=subprocess.DEVNULL,
                             stdin=subprocess.DEVNULL)
        os.close(slave)
        out = b''
        while True:
            if not select.select([master], [], [], 20)[0]:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        p.wait(10)
        os.close(master)
        assert (red.encode() in out) == coloured, (env, out)


def test_platform_compat_command(daemon, bus):
    """The Rust launcher's "platform config ..." verbs, through the same binary."""
    platform = os.path.join(os.path.dirname(PLATFORMCTL), 'platform')
    assert os.readlink(platform) == 'platformctl'

    def run(*args, stdin=None):
        return subprocess.run([platform] + list(args), env=bus.env(), input=stdin, capture_output=True,
                              text=True, timeout=60)
    assert run('config', 'set-env', 'COMPAT_KEY', 'compat-value').returncode == 0
    assert run('config', 'get-env', 'COMPAT_KEY').stdout == 'compat-value\n'
    assert 'COMPAT_KEY' in run('config', 'list-env').stdout.split()
    assert run('config', 'set-vmm-url', 'http://10.0.2.2:7777/').returncode == 0
    assert daemon.get('GuestVmmUrl') == 'http://10.0.2.2:7777/'
    p = run('config', 'set-passphrase', stdin='word ' * 12)
    assert p.returncode == 0, p.stderr
    assert ctl(bus, 'config', 'get-env', 'HOTKEY_PASSPHRASE').stdout == ('word ' * 12).rstrip('\n') + '\n'
    for args in (('config', 'show'), ('config',)):
        out = run(*args).stdout
        assert ' GuestVmmUrl: http://10.0.2.2:7777/\n' in out, (args, out)
    assert run('config', 'remove-env', 'COMPAT_KEY').returncode == 0
    assert 'COMPAT_KEY' not in daemon.get('EnvKeys')
    p = run('run')
    assert p.returncode == 64 and 'systemctl start platform-launcher.service' in p.stderr, p
    p = run('bogus')
    assert p.returncode == 64 and p.stderr.startswith('Usage: platform config show'), p


def test_monitor_human_durations(daemon, bus, harness):
    m = harness.spawn('platformctl-monitor', [PLATFORMCTL, 'monitor'], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    assert read_line(m.stderr, 10).startswith('Monitoring'), m
    assert ctl(bus, 'config', 'set', 'StopTimeoutUSec', '90s').returncode == 0
    line = read_line(m.stdout, 10)
    assert line.endswith(' config: StopTimeoutUSec=90s\n'), line
    m.send_signal(2)
    assert m.wait(10) == 0


def test_polkit_agent_on_a_terminal(daemon, bus, polkit):
    """nobody at a terminal: platformctl runs pkttyagent, polkit asks it for an
    admin password (as systemctl does); without a terminal or with
    --no-ask-password nobody is asked and the answer is 77 at once."""
    import fcntl
    import pty
    import termios
    master, slave = pty.openpty()

    def controlling_terminal():   # a login's terminal: pkttyagent opens /dev/tty
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    p = subprocess.Popen(H.as_user_argv('nobody', [PLATFORMCTL, 'config', 'set-env', 'AGENT_KEY', 'v']),
                         env=bus.env(), stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal)
    os.close(slave)
    out = b''
    deadline = time.monotonic() + 20
    try:
        while b'Password:' not in out and time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
            elif p.poll() is not None:
                break
        assert b'AUTHENTICATING FOR org.platform.launcher1.configure' in out, out
        assert b'Password:' in out, out
        # The prompt is where this test ends: polkit-agent-helper-1 is setuid and
        # answers polkitd on the host's system bus, never on this test's private one.
        os.killpg(p.pid, signal.SIGTERM)
        assert p.wait(10) != 0
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
        os.close(master)
    assert 'AGENT_KEY' not in daemon.get('EnvKeys')
    # Not a terminal: no agent, no prompt.
    q = ctl(bus, 'config', 'set-env', 'AGENT_KEY', 'v', user='nobody')
    assert q.returncode == 77 and 'AUTHENTICATING' not in q.stderr + q.stdout, q
    # A terminal but --no-ask-password: the same.
    master, slave = pty.openpty()
    q = subprocess.Popen(H.as_user_argv('nobody', [PLATFORMCTL, '--no-ask-password', 'config', 'set-env', 'AGENT_KEY',
                                                   'v']),
                         env=bus.env(), stdin=slave, stdout=slave, stderr=slave, preexec_fn=controlling_terminal)
    os.close(slave)
    out = b''
    try:
        while True:
            if not select.select([master], [], [], 20)[0]:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert q.wait(10) == 77, out
    finally:
        if q.poll() is None:
            q.kill()
            q.wait()
        os.close(master)
    assert b'AUTHENTICATING' not in out and b'Interactive authentication required' in out, out


def test_platform_help_lists_only_its_verbs():
    """`platform --help` is the Rust launcher's command set, not platformctl's (issue 16)."""
    platform = os.path.join(os.path.dirname(PLATFORMCTL), 'platform')
    env = {'PATH': os.environ['PATH'], 'DBUS_SYSTEM_BUS_ADDRESS': 'unix:path=/nonexistent'}
    p = subprocess.run([platform, '--help'], capture_output=True, text=True, timeout=10, env=env)
    assert p.returncode == 0 and p.stderr == '', p
    assert p.stdout.startswith('platform [OPTIONS...] config COMMAND'), p.stdout
    verbs = [line.split()[1] for line in p.stdout.splitlines() if line.startswith('  config ')]
    assert verbs == ['show', 'list-env', 'set-env', 'get-env', 'remove-env', 'set-vmm-url', 'set-passphrase'], verbs
    for other in ('vm ', 'updater', 'monitor', 'reload', 'config set ', '--force', '--channel', '--dry-run'):
        assert other not in p.stdout, other
    # And it does only those.
    for args in (('config', 'reload'), ('config', 'set', 'ApiUrl', 'x'), ('vm', 'status'), ('status',)):
        q = subprocess.run([platform] + list(args), capture_output=True, text=True, timeout=10, env=env)
        assert q.returncode == 64 and q.stderr.startswith('Usage: platform config show'), (args, q)
