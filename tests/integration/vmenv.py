# SPDX-License-Identifier: Apache-2.0
"""One test's world for the VM reconciler: private bus, real polkitd, the VMM
and Platform API simulators, and platform-launcherd configured to use them.

    def test_x(vm_env):
        env = vm_env()                      # started, first deployment done
        env.api.patch_doc(compose_content='...')
        mark = env.w.mark()
        assert env.update().ok
        env.w.wait_signal('VmUpdated', since=mark)

Everything is waited for on conditions with bounded timeouts: bus signals
(collected from before the daemon starts, so none is missed), the daemon's
PropertiesChanged, and the simulators' server-side `wait`. No fixed sleeps.

Deterministic by default: the poll interval is long (10 h), so after the
start-up tick nothing happens unless the test calls Vm.Update (or SetEnv...).
Tests that need polling pass poll_sec=1.
"""
import hashlib
import json
import os
import sys
import time

import pytest
from gi.repository import Gio, GLib

import harness as H

sys.path.insert(0, os.path.join(H.SOURCE_DIR, 'tests', 'sim'))
import simlib  # noqa: E402
import vmm_sim  # noqa: E402  (decrypt_env: read what the daemon really sent)

VM_NAME = 'validator_vm'
VM_PATH = H.DAEMON_PATH + '/vm/validator_5fvm'
VM_IFACE = 'org.platform.Launcher1.Vm'
OM_IFACE = 'org.freedesktop.DBus.ObjectManager'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'
DOC_PATH = '/config/compose/validator_vm'

MANAGE_VM = 'org.platform.launcher1.manage-vm'
READ_LOGS = 'org.platform.launcher1.read-logs'

ERR = 'org.platform.Launcher1.Error.'
BUSY = ERR + 'Busy'
BLOCKED = ERR + 'Blocked'
NOT_FOUND = ERR + 'NotFound'
API_UNAVAILABLE = ERR + 'ApiUnavailable'
ACCESS_DENIED = 'org.freedesktop.DBus.Error.AccessDenied'
INTERACTIVE_REQUIRED = 'org.freedesktop.DBus.Error.InteractiveAuthorizationRequired'

SEC = 1000000
LONG_POLL_USEC = 10 * 3600 * SEC
GUEST_VMM_URL = 'http://10.0.2.2:10300/'
DEFAULT_ENV_KEYS = ('DSTACK_VMM_URL', 'HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL')
MANIFEST_KEYS = ('gateway_enabled', 'key_provider_id', 'kms_enabled', 'local_key_provider_enabled',
                 'manifest_version', 'name', 'no_instance_id', 'public_logs', 'public_sysinfo',
                 'public_tcbinfo', 'runner', 'secure_time')

# VMM methods that change something. Everything else is a read.
WRITES = ('CreateVm', 'StartVm', 'ShutdownVm', 'StopVm', 'RemoveVm', 'UpdateVm', 'UpgradeApp')

# Every secret carries this marker so one search of the daemon's log finds a leak.
SECRET = 'S3CRET-'
DEFAULT_LOCAL_ENV = {'HOTKEY_PASSPHRASE': SECRET + 'hotkey words', 'VALIDATOR_BASE_URL': 'https://validator.example'}

HOST_CAPACITY = {'capacity_vcpu': 100000, 'capacity_memory_mib': 1 << 30}

OP_TIMEOUT = 15      # one Vm operation (a recreate takes ~1 s against the simulator)
WAIT = 20            # waiting for a state the daemon reaches on its own


# ---------------------------------------------------------------------------
# What the daemon should build, computed independently (dstack.md §4)
# ---------------------------------------------------------------------------

def app_compose_from_doc(doc):
    """app-compose.json text Platform Network recomputes from an API document."""
    prov = doc['provisioning']
    allowed = set(DEFAULT_ENV_KEYS) | set(doc.get('required_env') or []) | set(prov.get('env_keys') or [])
    d = {k: prov['manifest_defaults'][k] for k in MANIFEST_KEYS}
    d['allowed_envs'] = sorted(allowed)
    d['docker_compose_file'] = doc['compose_content']
    return json.dumps(d, sort_keys=True, separators=(',', ':'), ensure_ascii=False)


def sha256(text):
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def denied(r):
    return (not r.ok) and r.error_name in (ACCESS_DENIED, INTERACTIVE_REQUIRED)


# ---------------------------------------------------------------------------
# Signals: one collector for the whole test, started before the daemon
# ---------------------------------------------------------------------------

class Watcher:
    """Collects, from before the daemon starts until the test ends, every signal
    on the Vm object and the ObjectManager/Config object. No sender filter: the
    daemon may emit before it owns its name, and it is restarted in some tests.

    mark() returns a position; wait_*(since=mark) look only at later signals."""

    def __init__(self, conn):
        self.conn = conn
        self.ctx = GLib.MainContext.new()
        self.signals = []
        self.subs = []
        self.ctx.push_thread_default()
        try:
            for path in (VM_PATH, H.DAEMON_PATH):
                self.subs.append(conn.signal_subscribe(None, None, None, path, None,
                                                       Gio.DBusSignalFlags.NONE, self._on, None))
        finally:
            self.ctx.pop_thread_default()
        conn.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId',
                       None, None, Gio.DBusCallFlags.NONE, 5000, None)

    def _on(self, conn, sender, path, interface, member, params, _data):
        self.signals.append(H.SignalCollector.Signal(sender, path, interface, member, params.unpack()))

    def pump(self):
        while self.ctx.iteration(False):
            pass
        return self.signals

    def mark(self):
        self.pump()
        return len(self.signals)

    def since(self, mark, member=None, path=VM_PATH):
        self.pump()
        return [s for s in self.signals[mark:] if (member is None or s.member == member)
                and (path is None or s.path == path)]

    def vm_signals(self, mark, member):
        """VmUpdated / UpdateFailed args since mark."""
        return [s.args for s in self.since(mark, member) if s.interface == VM_IFACE]

    def wait_for(self, cond, since=0, timeout=WAIT, what='a signal'):
        found = []

        def done():
            if not found:
                for s in self.signals[since:]:
                    if cond(s):
                        found.append(s)
                        break
            return bool(found)
        H._wait_loop(self.ctx, done, timeout, what + ' (signals since mark: %r)' % (self.signals[since:][-15:],))
        return found[0]

    def wait_signal(self, member, since=0, cond=None, timeout=WAIT):
        """A Vm signal (VmUpdated, UpdateFailed) after `since`; returns its args."""
        s = self.wait_for(lambda s: s.path == VM_PATH and s.interface == VM_IFACE and s.member == member
                          and (cond is None or cond(s.args)), since, timeout, 'Vm.%s' % member)
        return s.args

    def close(self):
        for sub in self.subs:
            self.conn.signal_unsubscribe(sub)
        self.subs = []
        self.pump()


class AsyncCall:
    """A method call in flight (Gio async on its own context), for operations
    that must be running while the test does something else."""

    def __init__(self, conn, dest, path, iface, method, signature, args, timeout):
        self.ctx = GLib.MainContext.new()
        self.done = False
        self.result = None
        self.started = time.monotonic()
        params = H.to_variant('(%s)' % signature, args) if signature else None
        self.ctx.push_thread_default()
        try:
            conn.call(dest, path, iface, method, params, None, Gio.DBusCallFlags.NONE, int(timeout * 1000),
                      None, self._reply, None)
        finally:
            self.ctx.pop_thread_default()

    def _reply(self, conn, res, _data):
        try:
            v = conn.call_finish(res)
            self.result = H.CallResult(True, tuple(v.unpack()))
        except GLib.Error as e:
            name = Gio.DBusError.get_remote_error(e)
            msg = e.message
            if name:
                Gio.DBusError.strip_remote_error(e)
                msg = e.message
            self.result = H.CallResult(False, None, name, msg)
        self.done = True

    def wait(self, timeout=OP_TIMEOUT):
        H._wait_loop(self.ctx, lambda: self.done, timeout, 'the reply to an asynchronous call')
        return self.result

    def poll(self):
        while self.ctx.iteration(False):
            pass
        return self.done


# ---------------------------------------------------------------------------
# The environment
# ---------------------------------------------------------------------------

class VmEnv:
    def __init__(self, harness, poll_sec=None, stop_timeout_sec=1, strategy='recreate', local_env=None,
                 vmm_opts=None, api_doc=None, polkit=True, guest_vmm_url=GUEST_VMM_URL, extra_config=None):
        self.h = harness
        self.poll_usec = int(poll_sec * SEC) if poll_sec else LONG_POLL_USEC
        self.stop_timeout_usec = int(stop_timeout_sec * SEC)
        self.strategy = strategy
        self.local_env = dict(DEFAULT_LOCAL_ENV if local_env is None else local_env)
        self.vmm_opts = dict(shutdown_seconds=0.2, remove_seconds=0.2)
        self.vmm_opts.update(vmm_opts or {})
        self.api_doc = api_doc
        self.use_polkit = polkit
        self.guest_vmm_url = guest_vmm_url
        self.extra_config = extra_config or {}
        self.polkit = None
        self.daemon = None

    # ---- start ----------------------------------------------------------
    def start(self, deploy=True, daemon=True, wait_object=True):
        h = self.h
        self.bus = h.bus or h.start_bus()
        if self.use_polkit:
            if not H.is_root():
                pytest.skip('real polkitd needs root')
            self.polkit = h.polkit or h.start_polkit('real')
        self.vmm = self._sim(simlib.start_vmm, 'vmm', self.vmm_opts)
        self.api = self._sim(simlib.start_api, 'api', {})
        if self.api_doc is not None:
            self.api.patch_doc(**self.api_doc)
        self.w = Watcher(self.bus.conn)
        self.daemon = h.daemon(config=self.config(), start=False)
        if daemon:
            self.start_daemon()
            if wait_object or deploy:
                self.wait_vm_object()
            if deploy:
                self.wait_deployed()
        return self

    def _sim(self, fn, name, opts):
        d = os.path.join(self.h.workdir, name + '-sim')
        os.makedirs(d, exist_ok=True)
        sim = fn(d, **opts)
        # Tracked by the harness: stopped by pid at teardown, even on failure.
        self.h.procs.procs.append((name + '-sim', sim.proc))
        return sim

    def config(self):
        c = {'api_url': self.api.url + DOC_PATH, 'vmm_url': self.vmm.url, 'dstack_vmm_url': self.guest_vmm_url,
             'poll_interval_usec': self.poll_usec, 'stop_timeout_usec': self.stop_timeout_usec,
             'update_strategy': self.strategy, 'env': dict(self.local_env)}
        # The simulated VMs (16 vCPU, 16 GiB each) would not fit this machine's
        # own capacity; tests of the capacity check set their own figures.
        c.update(HOST_CAPACITY)
        c.update(self.extra_config)
        return c

    def start_daemon(self):
        self.daemon.start()
        return self.daemon

    def kill_daemon(self):
        """SIGKILL (crash); waits for the name to leave the bus."""
        return self.daemon.kill()

    def restart_daemon(self):
        self.daemon.restart()

    # ---- what the daemon should do ------------------------------------------
    def doc(self):
        st, _, data = self.api.get_doc()
        assert st == 200, st
        return json.loads(data)

    def expected_compose(self):
        return app_compose_from_doc(self.doc())

    def expected_hash(self):
        return sha256(self.expected_compose())

    def expected_env(self, doc=None):
        """The env the guest must see: local values of allowed keys, plus
        DSTACK_VMM_URL = GuestVmmUrl unless set locally."""
        allowed = set(json.loads(app_compose_from_doc(doc or self.doc()))['allowed_envs'])
        env = {k: v for k, v in self.local_env.items() if k in allowed}
        env.setdefault('DSTACK_VMM_URL', self.guest_vmm_url)
        return env

    # ---- bus ---------------------------------------------------------------
    def vm_call(self, method, signature=None, args=None, user=None, timeout=OP_TIMEOUT):
        return self.bus.call(H.DAEMON_NAME, VM_PATH, VM_IFACE, method, signature, args, user=user,
                             timeout=timeout)

    def vm_call_async(self, method, signature=None, args=None, timeout=OP_TIMEOUT):
        return AsyncCall(self.bus.conn, H.DAEMON_NAME, VM_PATH, VM_IFACE, method, signature, args, timeout)

    def update(self, force=None, user=None, timeout=OP_TIMEOUT):
        opts = {} if force is None else {'force': ['b', force]}
        return self.vm_call('Update', 'a{sv}', [opts], user=user, timeout=timeout)

    def update_async(self, force=None):
        opts = {} if force is None else {'force': ['b', force]}
        return self.vm_call_async('Update', 'a{sv}', [opts])

    def plan(self, user=None):
        r = self.vm_call('Plan', user=user)
        assert r.ok, 'Plan failed: %r' % (r,)
        action, changes = r.result
        return action, [tuple(c) for c in changes]

    def config_call(self, method, signature=None, args=None, user=None, timeout=OP_TIMEOUT):
        return self.bus.call(H.DAEMON_NAME, H.DAEMON_PATH, H.CONFIG_IFACE, method, signature, args,
                             user=user, timeout=timeout)

    def set_env(self, key, value):
        r = self.config_call('SetEnv', 'ss', [key, value])
        assert r.ok, 'SetEnv %s: %r' % (key, r)
        self.local_env[key] = value

    def remove_env(self, key):
        r = self.config_call('RemoveEnv', 's', [key])
        assert r.ok, 'RemoveEnv %s: %r' % (key, r)
        self.local_env.pop(key, None)

    def try_get(self, prop, iface=VM_IFACE, path=VM_PATH):
        return self.bus.get_property(H.DAEMON_NAME, path, iface, prop)

    def get(self, prop):
        r = self.try_get(prop)
        assert r.ok, 'Get Vm.%s: %r (no Vm object at %s?)' % (prop, r, VM_PATH)
        return r.result

    def props(self):
        r = self.bus.get_all(H.DAEMON_NAME, VM_PATH, VM_IFACE)
        assert r.ok, 'GetAll on %s: %r (no Vm object?)' % (VM_PATH, r)
        return r.result

    def config_get(self, prop):
        r = self.try_get(prop, H.CONFIG_IFACE, H.DAEMON_PATH)
        assert r.ok, 'Get Config.%s: %r' % (prop, r)
        return r.result

    def wait_prop(self, prop, expect, timeout=WAIT, iface=VM_IFACE):
        """Wait until property `prop` satisfies expect (a value or a predicate),
        as announced by PropertiesChanged (or InterfacesAdded for a new object).
        The current value (Get) counts too."""
        pred = expect if callable(expect) else (lambda v: v == expect)
        path = VM_PATH if iface == VM_IFACE else H.DAEMON_PATH
        mark = self.w.mark()
        r = self.try_get(prop, iface, path)
        if r.ok and pred(r.result):
            return r.result
        seen = {'i': mark, 'last': r.result if r.ok else r, 'hit': False}

        def cond():
            if seen['hit']:             # _wait_loop calls cond() again after it was true
                return True
            sigs = self.w.signals
            while seen['i'] < len(sigs):
                s = sigs[seen['i']]
                seen['i'] += 1
                val = None
                has = False
                if s.path == path and s.interface == PROPS_IFACE and s.member == 'PropertiesChanged' \
                        and s.args[0] == iface:
                    if prop in s.args[1]:
                        val, has = s.args[1][prop], True
                    elif prop in s.args[2]:
                        g = self.try_get(prop, iface, path)
                        val, has = (g.result, True) if g.ok else (None, False)
                elif s.path == H.DAEMON_PATH and s.interface == OM_IFACE and s.member == 'InterfacesAdded' \
                        and s.args[0] == path and iface in s.args[1] and prop in s.args[1][iface]:
                    val, has = s.args[1][iface][prop], True
                if has:
                    seen['last'] = val
                    if pred(val):
                        seen['hit'] = True
                        return True
            return False
        try:
            H._wait_loop(self.w.ctx, cond, timeout, '%s.%s' % (iface, prop))
        except TimeoutError:
            now = self.try_get(prop, iface, path)
            now_v = now.result if now.ok else now
            extra = ''
            if now.ok and pred(now.result):
                extra = ' -- Get has the value, but no PropertiesChanged/InterfacesAdded announced it'
            raise AssertionError('timed out after %ss waiting for %s.%s %s; last announced %r, Get now %r%s; '
                                 'State=%r StateReason=%r LastError=%r' % (
                                     timeout, iface.rsplit('.', 1)[-1], prop,
                                     getattr(expect, '__name__', '== %r' % (expect,)),
                                     seen['last'], now_v, extra, self._safe('State'),
                                     self._safe('StateReason'), self._safe('LastError')))
        return seen['last']

    def wait_vm_object(self, timeout=10):
        """The Vm object appears once the spec names the VM (InterfacesAdded)."""
        try:
            return self.wait_prop('Name', VM_NAME, timeout)
        except AssertionError:
            r = self.daemon.call('GetManagedObjects', iface=OM_IFACE)
            raise AssertionError('no Vm object at %s %ss after start; GetManagedObjects: %r' % (
                VM_PATH, timeout, sorted(r.result[0]) if r.ok else r)) from None

    def _safe(self, prop):
        r = self.try_get(prop)
        return r.result if r.ok else None

    def wait_deployed(self, compose_hash=None, timeout=WAIT):
        """Wait for the daemon to report the desired VM running."""
        h = compose_hash or self.expected_hash()
        self.wait_prop('ComposeHash', h, timeout)
        self.wait_prop('State', 'running', timeout)
        return h

    # ---- the simulators ------------------------------------------------------
    def named_vms(self, name=VM_NAME):
        return [v for v in self.vmm.vms() if v['name'] == name]

    def the_vm(self):
        vms = self.named_vms()
        assert len(vms) == 1, 'expected exactly one VM named %s at the VMM, found %d: %r' % (
            VM_NAME, len(vms), [(v['id'], v['status']) for v in vms])
        return vms[0]

    def last_seq(self):
        calls = self.vmm.calls()
        return calls[-1]['seq'] if calls else 0

    def calls_since(self, seq, methods=None):
        return [c for c in self.vmm.calls() if c['seq'] > seq and (methods is None or c['method'] in methods)]

    def writes_since(self, seq):
        return [(c['seq'], c['method']) for c in self.calls_since(seq, WRITES)]

    def wait_calls(self, method, count=1, state='received', since=0, timeout=WAIT):
        return self.vmm.wait_calls(method, count=count, state=state, since_seq=since, timeout=timeout)

    def sent_env(self, call, app_id=None):
        """Decrypt the encrypted_env of a CreateVm/UpdateVm call with the
        simulated KMS key of the app id the VM runs with (CreateVm: the one
        sent, else sha256(compose_file)[:40]): exactly what the daemon sent."""
        body = call['body']
        blob = body.get('encrypted_env') or ''
        if not blob:
            return {}
        app_id = app_id or body.get('app_id') or sha256(body['compose_file'])[:40]
        priv = bytes.fromhex(self.vmm.kms_key(app_id)['private_key'])
        pt = vmm_sim.decrypt_env(priv, bytes.fromhex(blob))
        return {e['key']: e['value'] for e in json.loads(pt)['env']}

    def assert_converged(self, compose_hash=None, env=None):
        """Exactly one VM with the name, running, booted with the desired
        compose and env; the daemon reports it."""
        h = compose_hash or self.expected_hash()
        want_env = self.expected_env() if env is None else env
        vm = self.the_vm()
        assert vm['status'] == 'running', vm
        assert vm['boot_compose_hash'] == h, (vm['boot_compose_hash'], h)
        assert sha256(vm['configuration']['compose_file']) == h
        assert vm['env'] == want_env, 'guest env %r != %r' % (sorted(vm['env'] or {}), sorted(want_env))
        assert vm['env_dropped'] == [], vm['env_dropped']
        p = self.props()
        assert p['Id'] == vm['id'], (p['Id'], vm['id'])
        assert p['ComposeHash'] == h and p['TargetComposeHash'] == h, p
        assert p['State'] == 'running', p
        assert p['VmmStatus'] == 'running', p
        return vm


@pytest.fixture
def vm_env(harness, daemon_binary):
    """Factory: vm_env(**VmEnv options) -> started VmEnv (first deployment
    done unless deploy=False; daemon not started if daemon=False)."""
    envs = []

    def make(deploy=True, daemon=True, wait_object=True, **kw):
        e = VmEnv(harness, **kw)
        envs.append(e)
        return e.start(deploy=deploy, daemon=daemon, wait_object=wait_object)
    yield make
    for e in envs:
        if getattr(e, 'w', None) is not None:
            e.w.close()
        if e.daemon is not None:
            e.daemon.assert_not_logged(SECRET)
