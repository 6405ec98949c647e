# SPDX-License-Identifier: Apache-2.0
"""The Cockpit page in a real browser: the page as `meson install` puts it,
served by the real cockpit-ws with a real cockpit-bridge on the test's private
system bus (the daemon, polkitd and the simulators of vmenv.py), and Debian's
chromium driven headless by playwright-core (tests/browser/drive.js).

As root: the VM with its state, a secret set through the page (and never left
in the DOM), the page following a change made at the Platform API, the history
table live and paged. Every action that stops, replaces or rolls back asks
first with what it will do (from Vm.Plan or an Apply dry run); Cancel calls
nothing (checked at the daemon and the simulators). As nobody: the page shows,
every button is disabled and says why, and a call polkit refuses anyway is
shown in words. Dark mode, a 390 px wide screen, another locale, a VMM that
hangs, several VMs (fake_launcher.py), the Updater (fake_updater.py and the
real daemon) and its settings. The committed build (data/cockpit/dist) equals
a fresh one.

Screenshots of each state go to a temp dir under <build>/test-artifacts/
whose path is printed ("cockpit screenshots: ...").

One cockpit-ws per test (--local-session serves one browser session), under
dbus-run-session; the bridge runs as nobody through a wrapper for the denied
path. Chromium's own environment has no DBUS_SYSTEM_BUS_ADDRESS."""
import filecmp
import glob
import hashlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
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
PAGE_SRC = os.path.join(H.SOURCE_DIR, 'data', 'cockpit')
NEW_COMPOSE = 'services:\n  app:\n    image: "nginx:1.27"\n'
PAGE_TIMEOUT = 20000  # ms: the page waiting on the bus
DENIED_WORDS = 'Not authorized to'
ADMIN_WORDS = 'Needs administrative access'
FAKE_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fake_launcher.py')
FAKE_IFACE = 'org.platform.Launcher1.Fake'
UPDATER_IFACE = 'org.platform.Launcher1.Updater'


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
    # tests/run-tests.sh (and so CI) runs npm ci in tests/browser; without
    # that, npm ci from the lockfile into the build dir, once per lockfile.
    with open(os.path.join(BROWSER_SRC, 'package-lock.json'), 'rb') as f:
        lock_bytes = f.read()
    try:
        with open(os.path.join(BROWSER_SRC, 'node_modules', '.installed-lock'), 'rb') as f:
            if f.read() == lock_bytes:
                return os.path.join(BROWSER_SRC, 'drive.js')
    except OSError:
        pass
    d = os.path.join(H.BUILD_DIR, 'test-browser-' + hashlib.sha256(lock_bytes).hexdigest()[:16])
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
def shots():
    """Where the screenshots go: a temp dir of its own under <build>/test-artifacts, kept."""
    base = os.path.join(H.BUILD_DIR, 'test-artifacts')
    os.makedirs(base, exist_ok=True)
    d = tempfile.mkdtemp(prefix='cockpit-screenshots-', dir=base)
    os.chmod(d, 0o755)
    sys.__stderr__.write('cockpit screenshots: %s\n' % d)
    yield d
    sys.__stderr__.write('cockpit screenshots: %s (%d files)\n' % (d, len(os.listdir(d))))


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
    def __init__(self, harness, drive_js, name, shots):
        self.name = name
        self.shots = shots
        self.err = open(os.path.join(harness.workdir, 'browser-%s.log' % name), 'w')
        env = {k: v for k, v in os.environ.items() if k not in ('DBUS_SYSTEM_BUS_ADDRESS', 'DBUS_SESSION_BUS_ADDRESS')}
        env['HOME'] = tempfile.mkdtemp(dir=harness.workdir, prefix='browser-home-')
        self.group = ProcessGroup(harness, 'browser-' + name, [NODE, drive_js], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True,
                                  cwd=os.path.dirname(drive_js))
        self.p = self.group.p
        assert self._read() == 'ready'

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
        return self.cmd('screenshot', path=os.path.join(self.shots, name + '.png'))

    def press(self, key):
        return self.cmd('press', key=key)

    def hover(self, selector):
        return self.cmd('hover', selector=selector)

    def attr(self, selector, name):
        return self.eval('(document.querySelector(%s) || {getAttribute: () => "NO ELEMENT"}).getAttribute(%s)' % (
            json.dumps(selector), json.dumps(name)))

    def exists(self, selector):
        return self.eval('!!document.querySelector(%s)' % json.dumps(selector))

    def wait_gone(self, selector, timeout=PAGE_TIMEOUT):
        return self.wait('!document.querySelector(%s)' % json.dumps(selector), timeout)

    def reason(self, selector):
        """Why a button is disabled ("" when it is enabled): aria-disabled and its words."""
        if self.attr(selector, 'aria-disabled') != 'true':
            return ''
        return self.attr(selector, 'data-reason') or '(disabled without a reason)'

    def wait_enabled(self, selector, timeout=PAGE_TIMEOUT):
        return self.wait('(e => e && e.getAttribute("aria-disabled") !== "true" && !e.disabled)'
                         '(document.querySelector(%s))' % json.dumps(selector), timeout)

    def open_dialog(self, button, action, text=None):
        """Clicks button; waits for the confirmation dialog to say what will happen; returns its text."""
        self.wait_enabled(button)
        self.click(button)
        self.wait('(d => d && d.dataset.action === %s)(document.querySelector("#confirm-dialog"))' % json.dumps(action))
        self.wait('!document.querySelector("#confirm-dialog .pl-dialog-loading")')
        self.wait_enabled('#confirm-ok')
        body = self.text('#confirm-dialog')
        if text is not None:
            assert text in body, body
        return body

    def dialog_ok(self):
        self.wait_enabled('#confirm-ok')
        self.click('#confirm-ok')
        self.wait_gone('#confirm-dialog')

    def dialog_cancel(self):
        self.click('#confirm-cancel')
        self.wait_gone('#confirm-dialog')

    def context(self, url, **kw):
        """A fresh page (viewport, colorScheme, locale) loaded and ready."""
        self.cmd('context', **kw)
        self.goto(url)
        self.wait_ready()

    def wait_ready(self):
        self.wait('document.getElementById("page")?.dataset.ready === "true"')

    def check_clean(self):
        """No CSP violation, no uncaught exception in the page."""
        violations = self.cmd('cspViolations')
        errors = self.cmd('pageErrors')
        assert violations == [], 'the page broke its Content Security Policy: %r' % violations
        assert errors == [], 'uncaught exceptions in the page: %r' % errors

    def wait_text(self, selector, text, timeout=PAGE_TIMEOUT):
        return self.wait('(document.querySelector(%s) || {}).innerText?.includes(%s)' % (
            json.dumps(selector), json.dumps(text)), timeout)

    def wait_alert(self, action, text):
        return self.wait_text('#alerts [data-action="%s"]' % action, text)

    def no_horizontal_scroll(self):
        """Nothing wider than the window, and nothing cut off at a card's edge."""
        return self.eval('document.documentElement.scrollWidth <= window.innerWidth + 1 && '
                         '[...document.querySelectorAll(".pf-v6-c-card")].every(c => c.scrollWidth <= c.clientWidth + 1)')

    def quit(self):
        try:
            self.cmd('quit')
        except AssertionError:
            pass
        self.group.stop()
        self.err.close()


@pytest.fixture
def page(vm_env, drive_js, cockpit_share, shots):
    """page(user=None, **vm_env args) -> (env, cockpit, browser) with the page loaded and ready."""
    made = []

    def make(user=None, **kw):
        env = vm_env(**kw)
        cockpit = Cockpit(env.h, env.bus, cockpit_share, user=user)
        browser = Browser(env.h, drive_js, user or 'root', shots)
        made.append((cockpit, browser))
        browser.goto(cockpit.url)
        browser.wait_ready()
        return env, cockpit, browser
    yield make
    problems = []
    for cockpit, browser in made:
        try:
            browser.check_clean()
        except AssertionError as e:
            problems.append(str(e))
        browser.quit()
        cockpit.stop()
    assert not problems, problems


@pytest.fixture
def fake_page(harness, bus, drive_js, cockpit_share, shots):
    """fake_page() -> (fake, cockpit, browser): the page on fake_launcher.py (several VMs)."""
    made = []

    def make():
        log = open(os.path.join(harness.workdir, 'fake-launcher.log'), 'w')
        p = harness.spawn('fake-launcher', ['/usr/bin/python3', FAKE_LAUNCHER], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        bus.wait_for_name(H.DAEMON_NAME, proc=p)
        fake = FakeLauncher(bus)
        cockpit = Cockpit(harness, bus, cockpit_share)
        browser = Browser(harness, drive_js, 'fake', shots)
        made.append((cockpit, browser))
        return fake, cockpit, browser
    yield make
    for cockpit, browser in made:
        clean = None
        try:
            browser.check_clean()
        except AssertionError as e:
            clean = e
        browser.quit()
        cockpit.stop()
        if clean:
            raise clean


class FakeLauncher:
    def __init__(self, bus):
        self.bus = bus

    def call(self, method, sig=None, args=None):
        r = self.bus.call(H.DAEMON_NAME, H.DAEMON_PATH, FAKE_IFACE, method, sig, args)
        assert r.ok, r
        return r.result

    def add_vm(self, name, **props):
        self.call('AddVm', 'ss', [name, json.dumps(props)])

    def set_vm(self, name, **props):
        self.call('SetVm', 'ss', [name, json.dumps(props)])

    def add_history(self, name, entries):
        self.call('AddHistory', 'ss', [name, json.dumps(entries)])

    def calls(self, method=None):
        return [c for c in json.loads(self.call('Calls')[0]) if method in (None, c['method'])]


def dom_and_values(b):
    """Everything the page holds: its markup and the value of every field."""
    return b.eval('document.documentElement.outerHTML + JSON.stringify('
                  '[...document.querySelectorAll("input,select,textarea")].map(e => e.value))')


# ---------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------

def label_color(b, selector):
    """The colour of a PatternFly label (pf-m-green ...)."""
    cls = b.attr(selector, 'class') or ''
    return [c[len('pf-m-'):] for c in cls.split() if c[len('pf-m-'):] in
            ('green', 'red', 'orange', 'blue', 'grey', 'teal', 'purple', 'yellow', 'orangered')]


def test_root_sees_vm_sets_env_and_follows_changes(page):
    env, cockpit, b = page(poll_sec=1)
    hash_ = env.get('ComposeHash')
    b.wait_text('#vm-state', 'running')
    assert label_color(b, '#vm-state') == ['green']
    b.wait('document.querySelector("#vm-compose-hash [data-full]")?.dataset.full === %s' % json.dumps(hash_))
    assert b.text('#vm-compose-hash').strip() == hash_[:12]
    b.hover('#vm-compose-hash .pl-mono')  # the whole hash on hover
    b.wait_text('.pf-v6-c-tooltip', hash_)
    assert b.text('#vm-image') == 'dstack-0.5.2 (0.5.2)'
    assert b.text('#vm-resources') == '16 vCPU, 16 GiB memory, 200 GiB disk'
    assert b.text('#daemon-status') == 'Connected to the launcher on the system bus.'
    # Root may do everything: nothing disabled but what the state rules out.
    for button in ('#vm-update', '#vm-stop', '#vm-restart', '#logs-show', '#env-set', '#settings-save'):
        assert b.reason(button) == '', button
    assert 'already running' in b.reason('#vm-start')
    # Configuration: settings and env keys, never values.
    assert b.eval('document.getElementById("set-ApiUrl").value') == env.config_get('ApiUrl')
    b.wait_text('#env-keys', 'HOTKEY_PASSPHRASE')
    # The history: the first deploy, by the launcher's own check, in words.
    b.wait('document.querySelectorAll("#history-rows tr").length === 1')
    row = b.text('#history-rows tr')
    assert 'Deploy' in row and 'ok' in row and "The launcher's own check" in row and hash_[:12] in row, row
    assert b.attr('#history-rows tr td[data-trigger]', 'data-trigger') == 'poll'
    html = dom_and_values(b)
    assert SECRET not in html
    b.screenshot('root-running')

    # Set an env value the VM does not receive (not in its AllowedEnv): no
    # question, and the value goes to the daemon, not into the page.
    assert env.get('AllowedEnv') == ['DSTACK_VMM_URL', 'HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL']
    secret = SECRET + 'typed in the browser'
    mark = env.w.mark()
    b.fill('#env-key', 'NEW_SECRET_KEY')
    b.fill('#env-value', secret)
    b.click('#env-set')
    b.wait_alert('env-set', 'Env value NEW_SECRET_KEY set.')
    assert not b.exists('#confirm-dialog')
    r = env.config_call('GetEnv', 's', ['NEW_SECRET_KEY'])
    assert r.ok and r.result[0] == secret, r
    b.wait_text('#env-keys', 'NEW_SECRET_KEY')
    assert secret not in dom_and_values(b)
    assert 'SetEnv' not in cockpit.log_text() or secret not in cockpit.log_text()
    b.screenshot('root-env-set')

    # A change at the Platform API: the daemon's own poll applies it and the
    # page follows every state on the way, live (no click, no reload).
    b.eval('window.__states = []; new MutationObserver(() => window.__states.push('
           'document.getElementById("vm-state").textContent)).observe(document.getElementById("vm-card"), '
           '{childList: true, characterData: true, subtree: true})')
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    new_hash = env.expected_hash()
    env.w.wait_signal('VmUpdated', since=mark, cond=lambda a: a[1] == new_hash)
    b.wait('document.querySelector("#vm-compose-hash [data-full]")?.dataset.full === %s' % json.dumps(new_hash))
    b.wait_text('#vm-state', 'running')
    states = b.eval('window.__states')
    assert set(states) & {'creating', 'updating', 'starting', 'stopping'}, states
    # The history table follows: newest first, the deploy by the poll.
    b.wait('document.querySelectorAll("#history-rows tr[data-action=deploy]").length === 2')
    first = b.text('#history-rows tr')
    assert new_hash[:12] in first and hash_[:12] in first and "The launcher's own check" in first, first
    b.screenshot('root-after-api-change')

    # Stop from the page: asked first, then the operator is the page's user.
    text = b.open_dialog('#vm-stop', 'vm-stop', 'Stop validator_vm?')
    assert 'shut down gracefully (up to 1 s, then stopped hard)' in text and 'stays stopped' in text, text
    b.dialog_ok()
    b.wait_alert('vm-stop', 'Stop validator_vm: done.')
    b.wait_text('#vm-state', 'stopped')
    b.wait('document.querySelector("#history-rows tr").dataset.action === "stop"')
    assert 'uid 0 (cockpit-bridge)' in b.text('#history-rows tr')
    assert env.get('State') == 'stopped'
    assert b.eval('window.__states') is not None, 'the page was reloaded'
    assert 'already stopped' in b.reason('#vm-stop')
    b.screenshot('root-stopped')
    assert SECRET not in dom_and_values(b)


def test_every_confirmation_dialog_cancel_calls_nothing_confirm_acts(page):
    """Stop, Restart, Update (from Vm.Plan), Update with force, set and remove
    a key the VM receives, a setting that redeploys: each asks with what it
    will do; Cancel leaves the VMM, the daemon's state, history and env as
    they were; Confirm does it."""
    env, cockpit, b = page()
    b.wait_text('#vm-state', 'running')
    b.wait('document.querySelectorAll("#history-rows tr").length === 1')
    before = {
        'seq': env.last_seq(), 'history': env.vm_call('GetHistory', 'u', [0]).result[0],
        'hotkey': env.config_call('GetEnv', 's', ['HOTKEY_PASSPHRASE']).result[0],
        'keys': env.config_get('EnvKeys'), 'guest': env.config_get('GuestVmmUrl'),
        'hash': env.get('ComposeHash'),
    }

    # Update: what Vm.Plan says, and the force option.
    text = b.open_dialog('#vm-update', 'vm-update', 'Update validator_vm?')
    assert b.attr('#confirm-plan', 'data-plan') == 'none' and 'Nothing to change' in text, text
    assert 'force' in text
    b.screenshot('dialog-update')
    b.dialog_cancel()
    b.open_dialog('#vm-stop', 'vm-stop', 'Stop validator_vm?')
    b.dialog_cancel()
    b.open_dialog('#vm-restart', 'vm-restart', 'Then it is started again.')
    b.press('Escape')  # Escape cancels too
    b.wait_gone('#confirm-dialog')
    # A key the VM receives (HOTKEY_PASSPHRASE is in the compose's allowed_envs).
    b.fill('#env-key', 'HOTKEY_PASSPHRASE')
    b.fill('#env-value', SECRET + 'new words')
    text = b.open_dialog('#env-set', 'env-set', 'Set HOTKEY_PASSPHRASE?')
    assert 'validator_vm receives HOTKEY_PASSPHRASE' in text and 'replaced by a new VM' in text, text
    assert b.eval('document.getElementById("env-value").value') == ''
    assert SECRET + 'new words' not in dom_and_values(b)  # not even while the dialog is open
    b.screenshot('dialog-env-set')
    b.dialog_cancel()
    assert SECRET + 'new words' not in dom_and_values(b)
    b.open_dialog('#env-remove-VALIDATOR_BASE_URL', 'env-remove', 'Remove VALIDATOR_BASE_URL?')
    b.dialog_cancel()
    # A setting that redeploys: the VMM URL seen by the VM is DSTACK_VMM_URL.
    b.fill('#set-GuestVmmUrl', 'http://10.0.2.2:10399/')
    text = b.open_dialog('#settings-save', 'settings', 'Change settings that redeploy?')
    assert 'GuestVmmUrl' in text and 'DSTACK_VMM_URL' in text, text
    b.screenshot('dialog-settings')
    b.dialog_cancel()

    # Nothing happened: no VMM call that changes anything, no history, env and settings as they were.
    changing = env.calls_since(before['seq'], ['CreateVm', 'StopVm', 'ShutdownVm', 'RemoveVm', 'StartVm', 'UpdateVm',
                                               'UpgradeApp'])
    assert changing == [], changing
    assert env.vm_call('GetHistory', 'u', [0]).result[0] == before['history']
    assert env.config_call('GetEnv', 's', ['HOTKEY_PASSPHRASE']).result[0] == before['hotkey']
    assert env.config_get('EnvKeys') == before['keys']
    assert env.config_get('GuestVmmUrl') == before['guest']
    assert env.get('State') == 'running' and env.get('ComposeHash') == before['hash']
    assert not b.exists('#alerts [data-action^="vm-"]')

    # Confirm: Restart restarts.
    b.open_dialog('#vm-restart', 'vm-restart')
    b.dialog_ok()
    b.wait_alert('vm-restart', 'Restart validator_vm: done.')
    b.wait('document.querySelector("#history-rows tr")?.dataset.action === "restart"')
    assert 'uid 0 (cockpit-bridge)' in b.text('#history-rows tr')
    # Confirm with force: the VM is replaced although nothing changed.
    old_id = env.get('Id')
    b.open_dialog('#vm-update', 'vm-update')
    b.click('#confirm-dialog-option')
    b.dialog_ok()
    b.wait_alert('vm-update', 'Replace validator_vm: done.')
    assert env.get('Id') != old_id
    b.wait('document.querySelector("#history-rows tr")?.dataset.action === "deploy"')
    assert 'uid 0 (cockpit-bridge)' in b.text('#history-rows tr')
    # Confirm the setting: saved (and the VM follows it).
    b.fill('#set-GuestVmmUrl', 'http://10.0.2.2:10399/')
    b.open_dialog('#settings-save', 'settings')
    b.dialog_ok()
    b.wait_alert('settings', 'Settings saved: GuestVmmUrl.')
    assert env.config_get('GuestVmmUrl') == 'http://10.0.2.2:10399/'
    # Confirm removing a key: gone.
    b.open_dialog('#env-remove-VALIDATOR_BASE_URL', 'env-remove')
    b.dialog_ok()
    b.wait_alert('env-remove', 'Env value VALIDATOR_BASE_URL removed.')
    assert 'VALIDATOR_BASE_URL' not in env.config_get('EnvKeys')
    b.screenshot('root-after-confirmed-actions')
    # One alert per action, each can be dismissed.
    n = b.eval('document.querySelectorAll("#alerts [data-action=vm-update]").length')
    assert n == 1
    b.click('#alerts [data-action="vm-update"] button[aria-label^="Close"]')
    b.wait_gone('#alerts [data-action="vm-update"]')


def test_settings_validation_at_the_field_and_logs(page):
    env, cockpit, b = page()
    b.wait_text('#vm-state', 'running')
    b.fill('#set-StopTimeoutUSec', '7')
    b.click('#settings-save')  # no VM-replacing setting: no question
    b.wait_alert('settings', 'Settings saved: StopTimeoutUSec.')
    assert env.config_get('StopTimeoutUSec') == 7 * 10**6
    # Invalid input: the daemon's words, at the field it names; what was typed stays.
    b.fill('#set-PollIntervalUSec', '0')
    b.click('#settings-save')
    b.wait_text('#set-PollIntervalUSec-helper', "Setting 'PollIntervalUSec' is out of range")
    assert b.attr('#set-PollIntervalUSec', 'aria-invalid') == 'true'
    assert b.eval('document.getElementById("set-PollIntervalUSec").value') == '0'
    assert not b.exists('#alerts [data-action="settings"][class*="danger"]')
    b.screenshot('root-setting-invalid')
    # Update with nothing to change: asked, done, and nothing recorded (the
    # history is of changes; an entry would have been sent before the reply).
    b.open_dialog('#vm-update', 'vm-update', 'Nothing to change')
    b.dialog_ok()
    b.wait_alert('vm-update', 'Update validator_vm: done.')
    assert b.eval('document.querySelectorAll("#history-rows tr").length') == 1
    assert b.eval('document.querySelector("#history-rows tr").dataset.action') == 'deploy'
    b.click('#logs-show')
    b.wait('!!document.getElementById("logs-text")')
    b.screenshot('root-settings-and-logs')


def test_nobody_reads_only_buttons_say_why_and_a_refused_call_is_shown(page):
    env, cockpit, b = page(user='nobody')
    hash_ = env.get('ComposeHash')
    b.wait_text('#vm-state', 'running')
    b.wait('document.querySelector("#vm-compose-hash [data-full]")?.dataset.full === %s' % json.dumps(hash_))
    b.wait_text('#env-keys', 'HOTKEY_PASSPHRASE')
    b.wait('document.querySelectorAll("#history-rows tr").length === 1')
    b.wait('!!document.getElementById("read-only")')
    # Every action disabled, each with its reason (polkit would ask for an administrator).
    buttons = ('#vm-update', '#vm-start', '#vm-stop', '#vm-restart', '#logs-show', '#env-set', '#settings-save',
               '#env-remove-HOTKEY_PASSPHRASE', '#updater-check', '#updater-settings-save')
    for button in buttons:
        why = b.reason(button)
        assert ADMIN_WORDS in why and 'org.platform.launcher1.' in why, (button, why)
    assert b.eval('document.getElementById("env-value").disabled')
    assert b.eval('document.getElementById("set-ApiUrl").disabled')
    # The reason is what the user sees on hover.
    b.hover('#vm-stop')
    b.wait_text('.pf-v6-c-tooltip', ADMIN_WORDS)
    assert 'org.platform.launcher1.manage-vm' in b.text('.pf-v6-c-tooltip')
    b.screenshot('nobody-read-only')
    # Clicking a disabled button does nothing.
    b.eval('document.getElementById("vm-stop").click()')
    assert not b.exists('#confirm-dialog') and not b.exists('#alerts [data-action="vm-stop"]')

    # polkit's rules change: nobody may read logs, and configure except the
    # hotkey. The page asks polkit again; a call it still refuses is shown in words.
    env.polkit.add_rule('50-nobody-cockpit', '''
polkit.addRule(function(action, subject) {
    if (subject.user != "nobody") return polkit.Result.NOT_HANDLED;
    if (action.id == "org.platform.launcher1.read-logs") return polkit.Result.YES;
    if (action.id == "org.platform.launcher1.configure")
        return action.lookup("env_key") == "HOTKEY_PASSPHRASE" ? polkit.Result.NO : polkit.Result.YES;
    return polkit.Result.NOT_HANDLED;
});''')
    b.wait_enabled('#logs-show')
    b.click('#logs-show')
    b.wait('!!document.getElementById("logs-text")')
    b.wait_enabled('#env-remove-HOTKEY_PASSPHRASE')
    assert ADMIN_WORDS in b.reason('#vm-stop')  # still
    b.open_dialog('#env-remove-HOTKEY_PASSPHRASE', 'env-remove', 'Remove HOTKEY_PASSPHRASE?')
    b.dialog_ok()
    b.wait_alert('env-remove', DENIED_WORDS + ' remove env value HOTKEY_PASSPHRASE')
    b.screenshot('nobody-denied-in-words')

    # Nothing changed.
    assert env.get('State') == 'running'
    assert 'HOTKEY_PASSPHRASE' in env.config_get('EnvKeys')
    r = env.vm_call('GetHistory', 'u', [0])
    assert [e[2] for e in r.result[0]] == ['deploy']
    assert SECRET not in dom_and_values(b)


def test_dark_mode_narrow_screen_and_locale(page):
    """Cockpit's dark theme (the system's preference, or the shell's
    "shell:style"), a 390 px wide phone, and dates in the browser's locale."""
    env, cockpit, b = page()
    b.wait_text('#vm-state', 'running')
    assert not b.eval('document.documentElement.classList.contains("pf-v6-theme-dark")')
    b.screenshot('light')

    b.context(cockpit.url, colorScheme='dark')
    b.wait_text('#vm-state', 'running')
    assert b.eval('document.documentElement.classList.contains("pf-v6-theme-dark")')
    bg = b.eval('getComputedStyle(document.documentElement).backgroundColor')
    b.screenshot('dark')
    b.open_dialog('#vm-stop', 'vm-stop')
    b.screenshot('dark-dialog')
    b.dialog_cancel()
    # The shell's choice wins over the system's, and a change reaches the open page.
    b.eval('localStorage.setItem("shell:style", "light"); '
           'window.dispatchEvent(new CustomEvent("cockpit-style", {detail: {style: "light"}}))')
    b.wait('!document.documentElement.classList.contains("pf-v6-theme-dark")')
    assert b.eval('getComputedStyle(document.documentElement).backgroundColor') != bg
    b.eval('localStorage.removeItem("shell:style")')

    b.context(cockpit.url, viewport={'width': 390, 'height': 844})
    b.wait_text('#vm-state', 'running')
    b.wait('document.querySelectorAll("#history-rows tr").length === 1')
    assert b.no_horizontal_scroll(), b.eval('document.documentElement.scrollWidth')
    b.screenshot('narrow-390')
    b.open_dialog('#vm-restart', 'vm-restart')
    assert b.no_horizontal_scroll()
    b.screenshot('narrow-390-dialog')
    b.dialog_cancel()

    b.context(cockpit.url, locale='de-DE')
    b.wait_text('#vm-state', 'running')
    t = env.get('LastUpdateTimestamp')
    german = b.eval('new Intl.DateTimeFormat("de-DE", {dateStyle: "medium", timeStyle: "medium"}).format(new Date(%d))'
                    % (t // 1000))
    assert b.text('#vm-last-update') == german
    assert german != b.eval('new Intl.DateTimeFormat("en-US", {dateStyle: "medium", timeStyle: "medium"})'
                            '.format(new Date(%d))' % (t // 1000))
    b.screenshot('locale-de')


def test_a_hung_vmm_is_unreachable_never_green(page):
    env, cockpit, b = page(poll_sec=1)
    b.wait_text('#vm-state', 'running')
    assert label_color(b, '#vm-vmm-status [data-state]') == ['green']
    # The VMM stops answering: a check unanswered for longer than a poll
    # interval makes it unreachable.
    env.vmm.fault('Status', 'hang', times=0, seconds=120)
    env.wait_prop('VmmStatus', 'unreachable', timeout=40)
    b.wait('!!document.getElementById("vm-unreachable")')
    assert label_color(b, '#vm-state') == ['orange'], b.attr('#vm-state', 'class')
    assert 'last known' in b.text('#vm-state')
    assert 'unreachable' in b.text('#vm-vmm-status')
    assert label_color(b, '#vm-vmm-status [data-state]') == ['orange']
    reason = env.get('StateReason')
    b.wait_text('#vm-unreachable', reason.split(' (')[0])
    # The age counts from the last successful check, which a failed one does not move.
    ok_usec = env.get('LastSuccessfulCheckTimestamp')
    assert ok_usec > 0
    b.wait_text('#vm-unreachable-age', 'Last successful check ')
    assert b.eval('new Intl.DateTimeFormat(undefined, {dateStyle: "medium", timeStyle: "medium"})'
                  '.format(new Date(%d))' % (ok_usec // 1000)) in b.text('#vm-unreachable-age')
    b.screenshot('vmm-unreachable')
    env.vmm.clear_faults()
    env.vmm.release()
    env.wait_prop('VmmStatus', 'running', timeout=40)
    b.wait_gone('#vm-unreachable')
    assert label_color(b, '#vm-state') == ['green']


NOW_USEC = int(time.time() * 1e6)
FAKE_VM = {
    'Id': 'vm-1', 'State': 'running', 'VmmStatus': 'running', 'AppId': 'a' * 40, 'ComposeHash': 'c' * 64,
    'TargetComposeHash': 'c' * 64, 'Image': 'dstack-0.5.2', 'ImageVersion': '0.5.2', 'Vcpu': 4, 'MemoryMiB': 6000,
    'DiskGiB': 40, 'LastCheckTimestamp': NOW_USEC, 'LastUpdateTimestamp': NOW_USEC - 7200 * 10**6,
}


def test_several_vms_as_a_list_env_asks_only_for_the_vms_that_receive_it(fake_page):
    fake, cockpit, b = fake_page()
    fake.add_vm('validator_vm', **dict(FAKE_VM, AllowedEnv=['HOTKEY_PASSPHRASE', 'DSTACK_VMM_URL']))
    fake.add_vm('challenge_vm', **dict(FAKE_VM, Id='vm-2', ComposeHash='d' * 64, State='stopped', VmmStatus='stopped',
                                       AllowedEnv=['CHALLENGE_TOKEN']))
    fake.add_vm('miner_vm', **dict(FAKE_VM, Id='vm-3', ComposeHash='e' * 64, AllowedEnv=[],
                                   VmmStatus='unreachable', LastCheckTimestamp=int(time.time() * 1e6),
                                   LastSuccessfulCheckTimestamp=int(time.time() * 1e6) - 300 * 10**6,
                                   StateReason='VMM unreachable since 5 min: timed out'))
    b.goto(cockpit.url)
    b.wait_ready()
    b.wait('document.querySelectorAll("#vm-list tbody tr").length === 3')
    names = b.eval('[...document.querySelectorAll("#vm-list tbody tr")].map(r => r.dataset.name)')
    assert names == ['challenge_vm', 'miner_vm', 'validator_vm'], names
    assert 'stopped' in b.text('#vm-list tr[data-name="challenge_vm"]')
    b.screenshot('several-vms')
    # The card shows the VM clicked.
    b.click('#vm-list tr[data-name="miner_vm"] .pl-vm-select')
    b.wait_text('#vm-name', 'miner_vm')
    # Unreachable: never green, and the age counts from the last successful check.
    assert label_color(b, '#vm-state') == ['orange']
    b.wait_text('#vm-unreachable-age', 'Last successful check 5 minutes ago')
    assert 'Last successful check' in b.text('#vm-props')
    b.screenshot('several-vms-unreachable')
    b.click('#vm-list tr[data-name="validator_vm"] .pl-vm-select')
    b.wait_text('#vm-name', 'validator_vm')
    assert label_color(b, '#vm-state') == ['green']

    # A key no VM receives: set at once, no question.
    b.fill('#env-key', 'UNUSED_KEY')
    b.fill('#env-value', 'x')
    b.click('#env-set')
    b.wait_alert('env-set', 'Env value UNUSED_KEY set.')
    assert not b.exists('#confirm-dialog')
    # A key one VM receives: asked, naming that VM only; Cancel calls nothing.
    b.fill('#env-key', 'CHALLENGE_TOKEN')
    b.fill('#env-value', 'y')
    text = b.open_dialog('#env-set', 'env-set', 'Set CHALLENGE_TOKEN?')
    assert 'challenge_vm' in b.text('#confirm-vms') and 'validator_vm' not in b.text('#confirm-vms'), text
    b.dialog_cancel()
    assert [c['args'] for c in fake.calls('SetEnv')] == [['UNUSED_KEY']]
    b.fill('#env-key', 'CHALLENGE_TOKEN')
    b.fill('#env-value', 'y')
    b.open_dialog('#env-set', 'env-set')
    b.dialog_ok()
    b.wait_alert('env-set', 'Env value CHALLENGE_TOKEN set.')
    assert [c['args'] for c in fake.calls('SetEnv')] == [['UNUSED_KEY'], ['CHALLENGE_TOKEN']]


def test_history_pages_shortens_hashes_and_says_steps_in_words(fake_page):
    fake, cockpit, b = fake_page()
    fake.add_vm('validator_vm', **FAKE_VM)
    entries = [[NOW_USEC - (30 - i) * 60 * 10**6, 'vm', 'deploy' if i % 2 else 'restart', 'poll' if i % 3 else
                'uid 0 (platformctl)', '%064x' % i, '%064x' % (i + 1), 'ok', '', 1500000] for i in range(25)]
    fake.add_history('validator_vm', entries)
    b.goto(cockpit.url)
    b.wait_ready()
    b.wait('document.querySelectorAll("#history-rows tr").length === 10')
    assert '1 - 10' in b.text('#history-pagination') and '25' in b.text('#history-pagination')
    first = b.text('#history-rows tr')
    newest = entries[-1]
    assert newest[5][:12] in first and newest[5] not in first, first
    b.hover('#history-rows tr td:nth-child(7) .pl-mono')
    b.wait_text('.pf-v6-c-tooltip', newest[5])
    assert b.exists('#history-rows tr button[aria-label="Copy %s"]' % newest[5])
    b.click('#history-pagination button[aria-label="Go to next page"]')
    b.wait('document.querySelector("#history-rows tr td")?.innerText !== %s' % json.dumps(first.split('\t')[0]))
    b.wait('document.querySelectorAll("#history-rows tr").length === 10')
    assert '11 - 20' in b.text('#history-pagination')
    b.click('#history-pagination button[aria-label="Go to next page"]')
    b.wait('document.querySelectorAll("#history-rows tr").length === 5')
    # Live: a new entry arrives at the top, on the first page.
    # The step running now, in words.
    fake.set_vm('validator_vm', Operation='stop-graceful', Progress=40, State='stopping')
    b.wait('!!document.getElementById("vm-progress")')
    assert 'Shutting the VM down' in b.text('#vm-progress')
    assert 'busy: shutting the vm down' in b.reason('#vm-update')
    b.screenshot('history-paged-and-step')


def test_committed_bundle_is_a_fresh_build(tmp_path):
    """data/cockpit/dist is what build.mjs makes from src/ with the locked
    packages: the shipped page cannot drift from its source."""
    if not os.path.exists(os.path.join(PAGE_SRC, 'node_modules', 'esbuild', 'package.json')):
        missing('data/cockpit/node_modules (npm ci in data/cockpit; tests/run-tests.sh does it)')
    out = tmp_path / 'page'
    p = subprocess.run([NODE, os.path.join(PAGE_SRC, 'build.mjs'), '--outdir', str(out)], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    dist = os.path.join(PAGE_SRC, 'dist')
    built = sorted(os.listdir(out))
    assert built == sorted(os.listdir(dist)), (built, os.listdir(dist))
    match, mismatch, errors = filecmp.cmpfiles(dist, str(out), built, shallow=False)
    assert not mismatch and not errors, ('data/cockpit/dist differs from a fresh build (run node '
                                         'data/cockpit/build.mjs and commit dist/): %r' % (mismatch + errors))
    sizes = {f: os.path.getsize(os.path.join(dist, f)) for f in built}
    sys.__stderr__.write('cockpit page sizes: %r\n' % sizes)


PAGE_FILES = ('index.html', 'manifest.json', 'platform-launcher.js', 'platform-launcher.css',
              'platform-launcher.LEGAL.txt')


def installed_page(builddir):
    """{file: the file meson installs it from} for the Cockpit page."""
    p = subprocess.run(['meson', 'introspect', builddir, '--installed'], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = {}
    for src, dest in json.loads(p.stdout).items():
        if os.path.dirname(dest).endswith('/cockpit/platform-launcher'):
            out[os.path.basename(dest)] = src
    return out


def test_meson_installs_the_built_page_or_the_committed_one(tmp_path):
    """With node and data/cockpit/node_modules meson installs the page it
    built; without (here: -Dcockpit_page=disabled, what a host without node
    gets) the committed data/cockpit/dist."""
    dist = os.path.join(PAGE_SRC, 'dist')
    built = installed_page(H.BUILD_DIR)
    assert sorted(built) == sorted(PAGE_FILES), built
    # What meson decided when it configured this build directory (it looks
    # for node_modules then; a later npm ci needs meson setup --reconfigure).
    p = subprocess.run(['meson', 'introspect', '--targets', H.BUILD_DIR], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    can_build = any(t['name'] == 'cockpit-page' for t in json.loads(p.stdout))
    for f, src in built.items():
        want = os.path.join(H.BUILD_DIR, 'data', 'cockpit', f) if can_build else os.path.join(dist, f)
        assert os.path.realpath(src) == os.path.realpath(want), (f, src, want)
    b = str(tmp_path / 'build-no-node')
    p = subprocess.run(['meson', 'setup', b, H.SOURCE_DIR, '-Dcockpit_page=disabled', '-Dman=disabled'],
                       capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout + p.stderr
    assert 'Cockpit page: the committed data/cockpit/dist' in p.stdout
    committed = installed_page(b)
    assert committed == {f: os.path.join(dist, f) for f in PAGE_FILES}, committed


FAKE_UPDATER = os.path.join(BROWSER_SRC, 'fake_updater.py')


def test_updater_section_dialogs_cancel_and_confirm(harness, bus, drive_js, cockpit_share, shots):
    """The Updater as dbus-api.md describes it (fake_updater.py): Apply says
    what it would do from a dry run, Rollback what it returns to, turning
    automatic updates on that they then apply by themselves; Cancel calls
    nothing."""
    fake = harness.spawn('fake-updater', ['/usr/bin/python3', FAKE_UPDATER], stdout=subprocess.PIPE)
    assert fake.stdout.readline().strip() == b'ready'
    cockpit = Cockpit(harness, bus, cockpit_share)
    b = Browser(harness, drive_js, 'updater', shots)
    a, c = 'a' * 40, 'c' * 40

    def fake_call(method, sig=None, args=None):
        r = bus.call(H.DAEMON_NAME, H.DAEMON_PATH, 'org.platform.Launcher1.Fake', method, sig, args)
        assert r.ok, r
        return r.result

    def calls():
        return [m for m in json.loads(fake_call('Calls')[0]) if m[0] in ('Check', 'Apply', 'Rollback', 'SetAutoUpdate')]
    try:
        b.goto(cockpit.url)
        b.wait_ready()
        b.wait('!!document.getElementById("updater-card")')
        b.wait_text('#updater-state', 'idle')
        assert label_color(b, '#updater-state') == ['green']
        b.wait('document.querySelector("#updater-current [data-full]")?.dataset.full === %s' % json.dumps(a))
        # Live: a deferral with its age, from PropertiesChanged alone.
        since = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(time.time() - 300))
        fake_call('SetProps', 's', [json.dumps({'State': 'deferred', 'TargetCommit': c, 'DeferReasons': [
            ['round-lock', 'a validation round is running', since]]})])
        b.wait_text('#updater-state', 'deferred')
        b.wait_text('#updater-defer', 'A validation round is running: a validation round is running (for 5 min)')
        b.wait('document.querySelector("#updater-target [data-full]")?.dataset.full === %s' % json.dumps(c))
        b.screenshot('updater-deferred')

        # A running operation shows its step in words and its progress, and disables the actions.
        fake_call('SetProps', 's', [json.dumps({'State': 'applying', 'Operation': 'build', 'Progress': 40})])
        b.wait('!!document.getElementById("updater-progress")')
        assert 'Building' in b.text('#updater-progress') and '40%' in b.text('#updater-progress')
        assert 'busy: building' in b.reason('#updater-apply')
        b.screenshot('updater-applying')
        fake_call('SetProps', 's', [json.dumps({'State': 'idle', 'DeferReasons': [], 'Operation': '',
                                                'Progress': 0})])
        b.wait_gone('#updater-progress')
        assert b.text('#updater-defer') == ''
        assert 'no previous commit' in b.reason('#updater-rollback')
        b.click('#updater-check')
        b.wait_alert('updater-check', 'Update available: ' + c + '.')
        b.click('#updater-dry-run')
        b.wait_alert('updater-dry-run', 'Dry run: would go %s → %s.' % (a[:12], c[:12]))

        # Apply: the dry run's answer; Cancel applies nothing.
        text = b.open_dialog('#updater-apply', 'updater-apply', 'Moves /srv/validator from')
        assert a[:12] in text and c[:12] in text and 'rolled back automatically' in text, text
        b.screenshot('dialog-updater-apply')
        b.dialog_cancel()
        assert calls()[-1] == ['Apply', [{'dry-run': True}]]
        assert b.text('#updater-current').strip() == a[:12]
        b.open_dialog('#updater-apply', 'updater-apply')
        b.dialog_ok()
        b.wait_alert('updater-apply', 'Updated %s → %s.' % (a[:12], c[:12]))
        b.wait('document.querySelector("#updater-current [data-full]")?.dataset.full === %s' % json.dumps(c))
        # Rollback: what it returns to; Cancel rolls nothing back.
        text = b.open_dialog('#updater-rollback', 'updater-rollback', 'Returns from')
        assert 'quarantined' in text, text
        b.dialog_cancel()
        assert calls()[-1][0] == 'Apply'
        b.open_dialog('#updater-rollback', 'updater-rollback')
        b.dialog_ok()
        b.wait_alert('updater-rollback', 'Rolled back %s → %s.' % (c[:12], a[:12]))
        b.wait('document.querySelector("#updater-current [data-full]")?.dataset.full === %s' % json.dumps(a))
        b.wait('document.querySelector("#updater-quarantined [data-full]")?.dataset.full === %s' % json.dumps(c))
        # Automatic updates off: asked first (they would apply by themselves); Cancel leaves it.
        fake_call('SetProps', 's', [json.dumps({'AutoUpdate': False})])
        b.wait('!document.getElementById("updater-auto-switch").checked')
        b.click('label[for="updater-auto-switch"]')
        b.wait('(d => d && d.dataset.action === "updater-auto")(document.querySelector("#confirm-dialog"))')
        b.dialog_cancel()
        assert not b.eval('document.getElementById("updater-auto-switch").checked')
        b.click('label[for="updater-auto-switch"]')
        b.wait('!!document.querySelector("#confirm-dialog")')
        b.dialog_ok()
        b.wait('document.getElementById("updater-auto-switch").checked')
        b.screenshot('updater-after-apply-and-rollback')
        assert calls() == [['Check', []], ['Apply', [{'dry-run': True}]], ['Apply', [{'dry-run': True}]],
                           ['Apply', [{'dry-run': True}]], ['Apply', [{}]], ['Rollback', ['']],
                           ['SetAutoUpdate', [True]]], calls()
        b.check_clean()
    finally:
        b.quit()
        cockpit.stop()


def test_updater_settings_viewed_and_edited_with_the_daemons_validation(page):
    """The Updater's settings in force are shown and editable; the daemon
    validates (its InvalidArgs message at the field), and the card shows
    the updater at every load (its interface is on the root object that
    also holds the ObjectManager)."""
    env, cockpit, b = page()
    for i in range(3):
        if i:
            b.goto(cockpit.url)
            b.wait_ready()
        assert b.exists('#updater-card'), (i, b.text())
        assert b.text('#updater-state') == 'disabled', i
        assert b.text('#config-path').endswith('config.json'), i
        assert b.text('#daemon-status') == 'Connected to the launcher on the system bus.'
    assert 'The updater is off' in b.reason('#updater-check')
    b.click('#updater-settings button')  # expand
    b.wait('!!document.getElementById("set-UpdaterBranch")')
    assert b.eval('document.getElementById("set-UpdaterBranch").value') == 'release'
    assert b.eval('document.getElementById("set-UpdaterIntervalUSec").value') == '300'
    # What the daemon refuses is said at the field, in its words.
    b.fill('#set-UpdaterRepository', 'relative/path')
    b.click('#updater-settings-save')
    b.wait_text('#set-UpdaterRepository-helper', "Setting 'UpdaterRepository' must be an absolute path")
    r = env.bus.get_property(H.DAEMON_NAME, H.DAEMON_PATH, UPDATER_IFACE, 'Repository')
    assert r.ok and r.result == '', r
    b.screenshot('updater-settings-invalid')
    # Lists and durations: one command a line, words quoted as a shell would.
    b.fill('#set-UpdaterRepository', '')
    b.fill('#set-UpdaterBuildCommands', 'make build\n/usr/bin/env "A B=1" true')
    b.fill('#set-UpdaterRestartUnits', 'validator.service\nvalidator-api.service')
    b.fill('#set-UpdaterIntervalUSec', '90')
    b.click('#updater-settings-save')
    b.wait_alert('updater-settings', 'Settings saved:')
    r = env.bus.get_all(H.DAEMON_NAME, H.DAEMON_PATH, UPDATER_IFACE)
    assert r.ok, r
    assert r.result['BuildCommands'] == [['make', 'build'], ['/usr/bin/env', 'A B=1', 'true']], r.result
    assert r.result['RestartUnits'] == ['validator.service', 'validator-api.service']
    assert r.result['IntervalUSec'] == 90 * 10**6
    b.wait('document.getElementById("set-UpdaterBuildCommands").value === %s' % json.dumps(
        'make build\n/usr/bin/env "A B=1" true'))
    b.screenshot('updater-settings-saved')


def test_page_opened_before_the_daemon_follows_it(page):
    """A page opened while the launcher is not on the bus (a cockpit.dbus
    client opened then is closed for good, and its proxies never get data)
    shows it once it starts, and again after a restart: every card, not only
    the one that happened to be ready."""
    env, cockpit, b = page(daemon=False)
    assert not b.exists('#updater-card')
    assert 'not running' in b.text('#daemon-status')
    assert b.text('#vm-state') == 'none'
    env.start_daemon()
    env.wait_vm_object()
    env.wait_deployed()
    b.wait('!!document.getElementById("updater-card")')
    b.wait_text('#updater-state', 'disabled')
    b.wait_text('#vm-state', 'running')
    b.wait_text('#config-path', 'config.json')
    b.wait_text('#daemon-status', 'Connected to the launcher')
    b.wait('document.querySelectorAll("#history-rows tr[data-kind=vm]").length === 1')
    env.daemon.stop()
    b.wait_text('#daemon-status', 'not running')
    b.wait_gone('#updater-card')
    env.daemon.start()
    b.wait_text('#updater-state', 'disabled')
    b.wait_text('#vm-state', 'running')
    b.wait('document.querySelectorAll("#history-rows tr[data-kind=vm]").length === 1')


def test_updater_history_in_the_table_live(harness, bus, polkit, drive_js, cockpit_share, shots):
    from updater_world import World, updater as updater_call, wait_prop
    world = World(harness)
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert updater_call(d, 'Apply', 'a{sv}', [{}]).ok
    cockpit = Cockpit(harness, bus, cockpit_share)
    b = Browser(harness, drive_js, 'updater-history', shots)
    try:
        b.goto(cockpit.url)
        b.wait_ready()
        b.wait_text('#updater-state', 'idle')
        rows = 'document.querySelectorAll("#history-rows tr[data-kind=updater]")'
        b.wait(rows + '.length === 1')
        first = b.text('#history-rows tr[data-kind=updater]')
        assert 'Updater' in first and 'Update applied' in first and 'uid 0 (python3)' in first, first
        assert world.first[:12] in first and new[:12] in first, first
        # Live: the operator's Rollback shows up from HistoryAdded alone.
        assert updater_call(d, 'Rollback', 's', ['']).ok
        b.wait(rows + '.length === 2')
        b.wait(rows + '[0].dataset.action === "rollback"')
        b.screenshot('updater-history')
        b.check_clean()
    finally:
        b.quit()
        cockpit.stop()
