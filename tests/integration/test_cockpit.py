# SPDX-License-Identifier: Apache-2.0
"""The Cockpit page in a real browser: the page as `meson install` puts it,
served by the real cockpit-ws with a real cockpit-bridge on the test's private
system bus (the daemon, polkitd and the simulators of vmenv.py), and Debian's
chromium driven headless by playwright-core (tests/browser/drive.js).

As root: the VM with its state, a secret set through the page (and never left
in the DOM), the page following a change made at the Platform API, the history
table live. As nobody: the page shows, and every action is refused in words.
Screenshots of each state: <build>/test-artifacts/cockpit/*.png.

One cockpit-ws per test (--local-session serves one browser session), under
dbus-run-session; the bridge runs as nobody through a wrapper for the denied
path. Chromium's own environment has no DBUS_SYSTEM_BUS_ADDRESS."""
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time

import pytest

import harness as H
from vmenv import vm_env, VM_PATH, SECRET  # noqa: F401
import simlib  # noqa: E402  (tests/sim, on the path once vmenv is imported)

COCKPIT_WS = '/usr/lib/cockpit/cockpit-ws'
COCKPIT_BRIDGE = '/usr/bin/cockpit-bridge'
CHROMIUM = '/usr/bin/chromium'
NODE = shutil.which('node') or '/usr/bin/node'
NPM = shutil.which('npm') or '/usr/bin/npm'
BROWSER_SRC = os.path.join(H.SOURCE_DIR, 'tests', 'browser')
ARTIFACTS = os.path.join(H.BUILD_DIR, 'test-artifacts', 'cockpit')
NEW_COMPOSE = 'services:\n  app:\n    image: "nginx:1.27"\n'
PAGE_TIMEOUT = 20000  # ms: the page waiting on the bus
DENIED_WORDS = 'Not authorized to'


def missing(what):
    """Without the browser stack the test cannot run: skip locally, fail in CI."""
    msg = 'Cockpit browser test needs %s (tests/packages.txt)' % what
    if os.environ.get('CI'):
        pytest.fail(msg)
    pytest.skip(msg)


# ---------------------------------------------------------------------------
# Fixtures: playwright-core from the lockfile, the installed package
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def drive_js():
    for path, what in ((CHROMIUM, 'chromium'), (COCKPIT_WS, 'cockpit-ws'), (COCKPIT_BRIDGE, 'cockpit-bridge'),
                       (NODE, 'nodejs'), (NPM, 'npm')):
        if not os.path.exists(path):
            missing(what)
    if not H.is_root():
        pytest.skip('needs root: real polkitd')
    # npm ci from the lockfile into the build dir, once per lockfile.
    with open(os.path.join(BROWSER_SRC, 'package-lock.json'), 'rb') as f:
        lock = hashlib.sha256(f.read()).hexdigest()[:16]
    d = os.path.join(H.BUILD_DIR, 'test-browser-' + lock)
    if not os.path.exists(os.path.join(d, 'node_modules', 'playwright-core', 'package.json')):
        os.makedirs(d, exist_ok=True)
        for name in ('package.json', 'package-lock.json', 'drive.js'):
            shutil.copy(os.path.join(BROWSER_SRC, name), d)
        p = subprocess.run([NPM, 'ci', '--no-audit', '--no-fund', '--ignore-scripts'], cwd=d,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, 'npm ci failed:\n' + p.stdout + p.stderr
    shutil.copy(os.path.join(BROWSER_SRC, 'drive.js'), d)
    return os.path.join(d, 'drive.js')


@pytest.fixture(scope='module')
def cockpit_share():
    """XDG_DATA_HOME holding cockpit/platform-launcher/ exactly as meson installs it."""
    dest = tempfile.mkdtemp(prefix='cockpit-install-')
    try:
        p = subprocess.run(['meson', 'install', '-C', H.BUILD_DIR, '--no-rebuild', '--destdir', dest],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        [manifest] = glob.glob(os.path.join(dest, '**', 'cockpit', 'platform-launcher', 'manifest.json'),
                               recursive=True)
        share = os.path.dirname(os.path.dirname(os.path.dirname(manifest)))
        # The bridge may run as nobody: the tree must be readable by everyone.
        for root, dirs, files in os.walk(dest):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        yield share
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class ProcessGroup:
    """A process started in its own session; stopped with its whole group."""

    def __init__(self, harness, name, argv, **kw):
        self.p = harness.procs.spawn(name, argv, start_new_session=True, **kw)

    def stop(self):
        pgid = self.p.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
            try:
                simlib.wait_until(lambda: self.p.poll() is not None and not group_members(pgid), timeout=3,
                                  what='process group %d gone' % pgid)
                return
            except Exception:
                continue
        raise AssertionError('process group %d left: %r' % (pgid, group_members(pgid)))


def group_members(pgid):
    """Live (not zombie) processes of a process group, from /proc."""
    out = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != 'Z':
            out.append(int(pid))
    return out


class Cockpit:
    """cockpit-ws --local-session on 127.0.0.1, its bridge as root or nobody."""

    def __init__(self, harness, bus, share, user=None):
        self.dir = os.path.join(harness.workdir, 'cockpit-' + (user or 'root'))
        home = os.path.join(self.dir, 'home')
        os.makedirs(home)
        os.chmod(self.dir, 0o755)
        bridge = COCKPIT_BRIDGE
        if user:
            os.chown(home, 65534, 65534)
            bridge = os.path.join(self.dir, 'bridge-as-' + user)
            with open(bridge, 'w') as f:
                # cockpit-ws gives the bridge its environment; only the user changes.
                f.write('#!/bin/sh\nexec setpriv --reuid=%s --regid=nogroup --clear-groups '
                        'env HOME=%s %s "$@"\n' % (user, home, COCKPIT_BRIDGE))
            os.chmod(bridge, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        self.port = free_port()
        env = {'PATH': '/usr/sbin:/usr/bin:/sbin:/bin', 'HOME': home, 'XDG_DATA_HOME': share,
               'DBUS_SYSTEM_BUS_ADDRESS': bus.address, 'LANG': 'C.UTF-8'}
        self.log = open(os.path.join(self.dir, 'cockpit-ws.log'), 'w')
        self.group = ProcessGroup(harness, 'cockpit-ws-' + (user or 'root'),
                                  ['dbus-run-session', '--', COCKPIT_WS, '--no-tls', '--local-session=' + bridge,
                                   '--port', str(self.port), '--address', '127.0.0.1'],
                                  env=env, stdout=self.log, stderr=subprocess.STDOUT)
        simlib.wait_until(self._listening, timeout=15, what='cockpit-ws listening on %d' % self.port)
        self.url = 'http://127.0.0.1:%d/cockpit/@localhost/platform-launcher/index.html' % self.port

    def _listening(self):
        assert self.group.p.poll() is None, 'cockpit-ws exited: ' + self.log_text()
        try:
            socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def log_text(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def stop(self):
        self.group.stop()
        self.log.close()


class Browser:
    def __init__(self, harness, drive_js, name):
        self.name = name
        self.err = open(os.path.join(harness.workdir, 'browser-%s.log' % name), 'w')
        env = {k: v for k, v in os.environ.items() if k not in ('DBUS_SYSTEM_BUS_ADDRESS', 'DBUS_SESSION_BUS_ADDRESS')}
        env['HOME'] = tempfile.mkdtemp(dir=harness.workdir, prefix='browser-home-')
        self.group = ProcessGroup(harness, 'browser-' + name, [NODE, drive_js], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  cwd=os.path.dirname(drive_js))
        self.p = self.group.p
        assert self._read() == 'ready'
        os.makedirs(ARTIFACTS, exist_ok=True)

    def _read(self):
        line = self.p.stdout.readline()
        if not line:
            raise AssertionError('browser driver died: ' + self.log_text()[-3000:])
        r = json.loads(line)
        if not r['ok']:
            raise AssertionError('%s\n--- browser log ---\n%s' % (r['error'], self.log_text()[-3000:]))
        return r.get('result')  # undefined in the page: no member

    def cmd(self, cmd, **kw):
        kw['cmd'] = cmd
        self.p.stdin.write(json.dumps(kw) + '\n')
        self.p.stdin.flush()
        return self._read()

    def log_text(self):
        self.err.flush()
        with open(self.err.name) as f:
            return f.read()

    def goto(self, url):
        assert self.cmd('goto', url=url) == 200

    def wait(self, js, timeout=PAGE_TIMEOUT):
        try:
            return self.cmd('waitFor', js=js, timeout=timeout)
        except AssertionError as e:
            self.screenshot('FAILED-' + self.name)
            raise AssertionError('%s\nwaiting for: %s\npage text:\n%s' % (e, js, self.text())) from None

    def eval(self, js):
        return self.cmd('eval', js=js)

    def text(self, selector='body'):
        return self.eval('document.querySelector(%s).innerText' % json.dumps(selector))

    def click(self, selector):
        return self.cmd('click', selector=selector)

    def fill(self, selector, value):
        return self.cmd('fill', selector=selector, value=value)

    def screenshot(self, name):
        return self.cmd('screenshot', path=os.path.join(ARTIFACTS, name + '.png'))

    def wait_text(self, selector, text, timeout=PAGE_TIMEOUT):
        return self.wait('(document.querySelector(%s) || {}).innerText?.includes(%s)' % (
            json.dumps(selector), json.dumps(text)), timeout)

    def wait_alert(self, action, text):
        return self.wait_text('#alerts [data-action="%s"]' % action, text)

    def quit(self):
        try:
            self.cmd('quit')
        except AssertionError:
            pass
        self.group.stop()
        self.err.close()


@pytest.fixture
def page(vm_env, drive_js, cockpit_share):
    """page(user=None) -> (env, cockpit, browser) with the page loaded and ready."""
    made = []

    def make(user=None, **kw):
        env = vm_env(**kw)
        cockpit = Cockpit(env.h, env.bus, cockpit_share, user=user)
        browser = Browser(env.h, drive_js, user or 'root')
        made.append((cockpit, browser))
        browser.goto(cockpit.url)
        browser.wait('document.getElementById("page").dataset.ready === "true"')
        return env, cockpit, browser
    yield make
    for cockpit, browser in made:
        violations = browser.cmd('cspViolations')
        browser.quit()
        cockpit.stop()
        assert violations == [], 'the page broke its Content Security Policy: %r' % violations


def dom_and_values(b):
    """Everything the page holds: its markup and the value of every field."""
    return b.eval('document.documentElement.outerHTML + JSON.stringify('
                  '[...document.querySelectorAll("input,select,textarea")].map(e => e.value))')


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def test_root_sees_vm_sets_env_and_follows_changes(page):
    env, cockpit, b = page(poll_sec=1)
    hash_ = env.get('ComposeHash')
    b.wait_text('#vm-state', 'running')
    b.wait_text('#vm-compose-hash', hash_)
    assert b.text('#vm-image') == 'dstack-0.5.2 (0.5.2)'
    assert b.text('#vm-resources') == '16 vCPU, 16384 MiB memory, 200 GiB disk'
    assert b.text('#daemon-status') == 'Connected to the launcher on the system bus.'
    # Configuration: settings and env keys, never values.
    assert b.eval('document.getElementById("set-ApiUrl").value') == env.config_get('ApiUrl')
    b.wait_text('#env-keys', 'HOTKEY_PASSPHRASE')
    # The history: the first deploy.
    b.wait('document.querySelectorAll("#history-rows tr").length === 1')
    row = b.text('#history-rows tr')
    assert 'deploy' in row and 'ok' in row and 'poll' in row and hash_[:12] in row, row
    html = dom_and_values(b)
    assert SECRET not in html
    b.screenshot('root-running')

    # Set an env value: the value goes to the daemon, not into the page.
    secret = SECRET + 'typed in the browser'
    mark = env.w.mark()
    b.fill('#env-key', 'NEW_SECRET_KEY')
    b.fill('#env-value', secret)
    b.click('#env-set')
    b.wait_alert('env-set', 'Env value NEW_SECRET_KEY set.')
    r = env.config_call('GetEnv', 's', ['NEW_SECRET_KEY'])
    assert r.ok and r.result[0] == secret, r
    b.wait_text('#env-keys', 'NEW_SECRET_KEY')
    assert secret not in dom_and_values(b)
    assert b.eval('document.getElementById("env-value").value') == ''
    assert 'SetEnv' not in cockpit.log_text() or secret not in cockpit.log_text()
    b.screenshot('root-env-set')

    # A change at the Platform API: the daemon's own poll applies it and the
    # page follows every state on the way, live (no click, no reload).
    b.eval('window.__states = []; new MutationObserver(() => window.__states.push('
           'document.getElementById("vm-state").textContent)).observe(document.getElementById("vm-state"), '
           '{childList: true, characterData: true, subtree: true})')
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    new_hash = env.expected_hash()
    env.w.wait_signal('VmUpdated', since=mark, cond=lambda a: a[1] == new_hash)
    b.wait_text('#vm-compose-hash', new_hash)
    b.wait_text('#vm-state', 'running')
    states = b.eval('window.__states')
    assert set(states) & {'creating', 'updating', 'starting', 'stopping'}, states
    # The history table follows: newest first, the deploy by the poll.
    b.wait('document.querySelectorAll("#history-rows tr[data-action=deploy]").length === 2')
    first = b.text('#history-rows tr')
    assert new_hash[:12] in first and hash_[:12] in first and 'poll' in first, first
    b.screenshot('root-after-api-change')

    # Stop from the page: the operator is the page's user.
    b.click('#vm-stop')
    b.wait_alert('vm-stop', 'Stop the VM: done.')
    b.wait_text('#vm-state', 'stopped')
    b.wait('document.querySelector("#history-rows tr").dataset.action === "stop"')
    assert 'uid 0 (cockpit-bridge)' in b.text('#history-rows tr')
    assert env.get('State') == 'stopped'
    assert b.eval('window.__states') is not None, 'the page was reloaded'
    b.screenshot('root-stopped')
    assert SECRET not in dom_and_values(b)


def test_settings_and_logs_as_root(page):
    env, cockpit, b = page()
    b.wait_text('#vm-state', 'running')
    b.fill('#set-StopTimeoutUSec', '7')
    b.click('#settings-save')
    b.wait_alert('settings', 'Settings saved: StopTimeoutUSec.')
    assert env.config_get('StopTimeoutUSec') == 7 * 10**6
    # Invalid input: the daemon's words, naming the field.
    b.fill('#set-ApiUrl', 'not a url')
    b.click('#settings-save')
    b.wait_alert('settings', 'Cannot change the settings:')
    assert 'ApiUrl' in b.text('#alerts [data-action="settings"]')
    # Update with nothing to change: done, and nothing recorded (the history is
    # of changes; an entry would have been sent before the reply).
    b.click('#vm-update')
    b.wait_alert('vm-update', 'Update the VM: done.')
    assert b.eval('document.querySelectorAll("#history-rows tr").length') == 1
    assert b.eval('document.querySelector("#history-rows tr").dataset.action') == 'deploy'
    b.click('#logs-show')
    b.wait('!document.getElementById("logs-text").hidden')
    b.screenshot('root-settings-and-logs')


def test_nobody_sees_the_page_and_every_action_is_refused(page):
    env, cockpit, b = page(user='nobody')
    hash_ = env.get('ComposeHash')
    b.wait_text('#vm-state', 'running')
    b.wait_text('#vm-compose-hash', hash_)
    b.wait_text('#env-keys', 'HOTKEY_PASSPHRASE')
    b.wait('document.querySelectorAll("#history-rows tr").length === 1')

    for button, action in (('#vm-update', 'vm-update'), ('#vm-start', 'vm-start'), ('#vm-stop', 'vm-stop'),
                           ('#vm-restart', 'vm-restart'), ('#logs-show', 'logs')):
        b.click(button)
        b.wait_alert(action, DENIED_WORDS)
    b.fill('#env-key', 'NOBODY_KEY')
    b.fill('#env-value', SECRET + 'from nobody')
    b.click('#env-set')
    b.wait_alert('env-set', DENIED_WORDS)
    assert b.eval('document.getElementById("env-value").value') == ''
    b.click('#env-keys button[data-key="HOTKEY_PASSPHRASE"]')
    b.wait_alert('env-remove', DENIED_WORDS)
    b.fill('#set-StopTimeoutUSec', '9')
    b.click('#settings-save')
    b.wait_alert('settings', DENIED_WORDS)
    assert b.eval('document.getElementById("set-StopTimeoutUSec").value') == '9'  # kept, to retry
    b.screenshot('nobody-denied')

    # Nothing changed.
    assert env.get('State') == 'running'
    assert 'NOBODY_KEY' not in env.config_get('EnvKeys')
    assert 'HOTKEY_PASSPHRASE' in env.config_get('EnvKeys')
    assert env.config_get('StopTimeoutUSec') != 9 * 10**6
    r = env.vm_call('GetHistory', 'u', [0])
    assert [e[2] for e in r.result[0]] == ['deploy']
    assert SECRET not in dom_and_values(b)


FAKE_UPDATER = os.path.join(BROWSER_SRC, 'fake_updater.py')


def test_updater_section_when_the_interface_exists(harness, bus, drive_js, cockpit_share):
    """The daemon has no Updater yet: fake_updater.py serves that interface as
    dbus-api.md describes it, and the page shows it and acts through it."""
    fake = harness.spawn('fake-updater', ['/usr/bin/python3', FAKE_UPDATER], stdout=subprocess.PIPE)
    assert fake.stdout.readline().strip() == b'ready'
    cockpit = Cockpit(harness, bus, cockpit_share)
    b = Browser(harness, drive_js, 'updater')
    a, c = 'a' * 40, 'c' * 40

    def fake_call(method, sig=None, args=None):
        r = bus.call(H.DAEMON_NAME, H.DAEMON_PATH, 'org.platform.Launcher1.Fake', method, sig, args)
        assert r.ok, r
        return r.result
    try:
        b.goto(cockpit.url)
        b.wait('document.getElementById("page").dataset.ready === "true"')
        b.wait('!document.getElementById("updater-card").hidden')
        b.wait_text('#updater-state', 'idle')
        b.wait_text('#updater-current', a)
        # Live: a deferral with its age, from PropertiesChanged alone.
        since = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() - 300))
        fake_call('SetProps', 's', [json.dumps({'State': 'deferred', 'TargetCommit': c, 'DeferReasons': [
            ['round-lock', 'a validation round is running', since]]})])
        b.wait_text('#updater-state', 'deferred')
        b.wait_text('#updater-defer', 'round-lock: a validation round is running (for 5 min)')
        b.wait_text('#updater-target', c)
        b.screenshot('updater-deferred')

        # A running operation shows its step and progress, and goes away after.
        fake_call('SetProps', 's', [json.dumps({'State': 'applying', 'Operation': 'build', 'Progress': 40})])
        b.wait('!document.getElementById("updater-progress").hidden')
        assert b.text('#updater-progress').split() == ['build', '40', '%']
        b.screenshot('updater-applying')
        fake_call('SetProps', 's', [json.dumps({'State': 'idle', 'DeferReasons': [], 'Operation': '',
                                                'Progress': 0})])
        b.wait('document.getElementById("updater-progress").hidden')
        assert b.text('#updater-defer') == ''
        b.click('#updater-check')
        b.wait_alert('updater-check', 'Update available: ' + c + '.')
        b.click('#updater-dry-run')
        b.wait_alert('updater-dry-run', 'Dry run: would go %s → %s.' % (a[:12], c[:12]))
        assert b.text('#updater-current') == a
        b.click('#updater-apply')
        b.wait_alert('updater-apply', 'Updated %s → %s.' % (a[:12], c[:12]))
        b.wait_text('#updater-current', c)
        b.click('#updater-rollback')
        b.wait_alert('updater-rollback', 'Rolled back %s → %s.' % (c[:12], a[:12]))
        b.wait_text('#updater-current', a)
        b.wait_text('#updater-quarantined', c)
        b.screenshot('updater-after-apply-and-rollback')
        calls = [m for m in json.loads(fake_call('Calls')[0]) if m[0] in ('Check', 'Apply', 'Rollback')]
        assert calls == [['Check', []], ['Apply', [{'dry-run': True}]], ['Apply', [{}]], ['Rollback', ['']]], calls
        assert b.cmd('cspViolations') == []
    finally:
        b.quit()
        cockpit.stop()


def test_updater_card_with_the_real_daemon(page):
    """The daemon always exports the Updater (State "disabled" without a
    repository): once the page says it is ready, the card is shown, at every
    load (it used to depend on the order the bridge answered the page's
    watches in: the daemon's root object holds the ObjectManager)."""
    env, cockpit, b = page()
    for i in range(6):
        if i:
            b.goto(cockpit.url)
            b.wait('document.getElementById("page").dataset.ready === "true"')
        assert b.eval('!document.getElementById("updater-card").hidden'), (i, b.text())
        assert b.text('#updater-state') == 'disabled', i
        assert b.text('#config-path').endswith('config.json'), i
        assert b.text('#daemon-status') == 'Connected to the launcher on the system bus.'


def test_page_opened_before_the_daemon_follows_it(page):
    """A page opened while the launcher is not on the bus (a cockpit.dbus
    client opened then is closed for good, and its proxies never get data)
    shows it once it starts, and again after a restart: every card, not only
    the one that happened to be ready."""
    env, cockpit, b = page(daemon=False)
    assert b.eval('document.getElementById("updater-card").hidden')
    assert 'not running' in b.text('#daemon-status')
    assert b.text('#vm-state') == 'none'
    env.start_daemon()
    env.wait_vm_object()
    env.wait_deployed()
    b.wait('!document.getElementById("updater-card").hidden')
    b.wait_text('#updater-state', 'disabled')
    b.wait_text('#vm-state', 'running')
    b.wait_text('#config-path', 'config.json')
    b.wait_text('#daemon-status', 'Connected to the launcher')
    b.wait('document.querySelectorAll("#history-rows tr[data-kind=vm]").length === 1')
    env.daemon.stop()
    b.wait_text('#daemon-status', 'not running')
    b.wait('document.getElementById("updater-card").hidden')
    env.daemon.start()
    b.wait_text('#updater-state', 'disabled')
    b.wait_text('#vm-state', 'running')
    b.wait('document.querySelectorAll("#history-rows tr[data-kind=vm]").length === 1')


def test_updater_history_in_the_table_live(harness, bus, polkit, drive_js, cockpit_share):
    from updater_world import World, updater as updater_call, wait_prop
    world = World(harness)
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert updater_call(d, 'Apply', 'a{sv}', [{}]).ok
    cockpit = Cockpit(harness, bus, cockpit_share)
    b = Browser(harness, drive_js, 'updater-history')
    try:
        b.goto(cockpit.url)
        b.wait('document.getElementById("page").dataset.ready === "true"')
        b.wait_text('#updater-state', 'idle')
        rows = 'document.querySelectorAll("#history-rows tr[data-kind=updater]")'
        b.wait(rows + '.length === 1')
        first = b.text('#history-rows tr[data-kind=updater]')
        assert 'Updater' in first and 'apply' in first and 'uid 0 (python3)' in first, first
        assert world.first[:12] in first and new[:12] in first, first
        # Live: the operator's Rollback shows up from HistoryAdded alone.
        assert updater_call(d, 'Rollback', 's', ['']).ok
        b.wait(rows + '.length === 2')
        b.wait(rows + '[0].dataset.action === "rollback"')
        b.screenshot('updater-history')
    finally:
        b.quit()
        cockpit.stop()
