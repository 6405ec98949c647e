# SPDX-License-Identifier: Apache-2.0
"""Several managed VMs (dbus-api.md "v2: Several managed VMs"): Config.AddVm
with file:// sources in the Platform API's spec format, one Vm object per VM,
env granted per VM, RemoveVm (forget or destroy), per-VM history and metrics,
operations on different VMs side by side, a bad source blocking only its VM,
and a crash in the middle of an operation on one of three VMs."""
import json
import os
import time

import harness as H
from vmenv import (vm_env, sha256, app_compose_from_doc, denied, MANAGE_VM, VM_IFACE, VM_NAME, OM_IFACE,  # noqa: F401
                   BLOCKED, NOT_FOUND, WRITES, SECRET, OP_TIMEOUT, WAIT)

INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'


def vm_path(name):
    """sd_bus_path_encode: every byte but [A-Za-z0-9] as _xx."""
    label = ''.join(c if c.isascii() and c.isalnum() else '_%02x' % ord(c) for c in name)
    return H.DAEMON_PATH + '/vm/' + label


def wait_until(cond, timeout=WAIT, what='a condition'):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, 'timed out after %ss waiting for %s' % (timeout, what)
        time.sleep(0.05)


class Many:
    """The API's VM (deployed by vm_env) plus VMs added from file:// specs."""

    def __init__(self, env):
        self.env = env
        self.dir = os.path.join(env.h.workdir, 'specs')
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        os.chmod(self.dir, 0o755)

    def doc(self, tag, required_env=None, vcpu=None):
        """A document in the API's format for an added VM; its compose names the tag."""
        d = self.env.doc()
        d['compose_content'] = 'services:\n  %s:\n    image: example/%s:1\n' % (tag, tag)
        d['required_env'] = list(required_env or [])
        d['provisioning']['vm_parameters']['ports'] = []
        if vcpu:
            d['provisioning']['vm_parameters']['vcpu'] = vcpu
        return d

    def write(self, name, doc, mode=0o644):
        path = os.path.join(self.dir, name + '.json')
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(doc if isinstance(doc, str) else json.dumps(doc))
        os.chmod(tmp, mode)
        os.rename(tmp, path)
        return 'file://' + path

    def add(self, name, doc=None, user=None, **opts):
        source = self.write(name, doc or self.doc(name))
        return self.add_source(name, source, user=user, **opts)

    def add_source(self, name, source, user=None, **opts):
        o = {}
        for k, v in opts.items():
            o[k] = ['as', v] if isinstance(v, list) else ['b', v] if isinstance(v, bool) else ['s', v]
        return self.env.config_call('AddVm', 'ssa{sv}', [name, source, o], user=user)

    def remove(self, name, destroy=None, user=None, timeout=OP_TIMEOUT):
        o = {} if destroy is None else {'destroy': ['b', destroy]}
        return self.env.config_call('RemoveVm', 'sa{sv}', [name, o], user=user, timeout=timeout)

    def get(self, name, prop):
        r = self.env.bus.get_property(H.DAEMON_NAME, vm_path(name), VM_IFACE, prop)
        return r.result if r.ok else None

    def call(self, name, method, signature=None, args=None, user=None, timeout=OP_TIMEOUT):
        return self.env.bus.call(H.DAEMON_NAME, vm_path(name), VM_IFACE, method, signature, args, user=user,
                                 timeout=timeout)

    def wait(self, name, prop, expect, timeout=WAIT):
        pred = expect if callable(expect) else (lambda v: v == expect)
        return wait_until(lambda: pred(self.get(name, prop)), timeout,
                          '%s.%s %r (now %r, StateReason %r)' % (name, prop, expect, self.get(name, prop),
                                                                  self.get(name, 'StateReason')))

    def at_vmm(self, name):
        return [v for v in self.env.vmm.vms() if v['name'] == name]

    def running(self, name, doc=None):
        """Exactly one VM of the name at the VMM, running the document's compose."""
        self.wait(name, 'State', 'running')
        vms = self.at_vmm(name)
        assert len(vms) == 1 and vms[0]['status'] == 'running', vms
        if doc is not None:
            h = sha256(app_compose_from_doc(doc))
            assert vms[0]['boot_compose_hash'] == h
            assert self.get(name, 'ComposeHash') == h
        return vms[0]

    def objects(self):
        r = self.env.daemon.call('GetManagedObjects', iface=OM_IFACE)
        assert r.ok, r
        return sorted(p for p, ifaces in r.result[0].items() if VM_IFACE in ifaces)

    def config_file(self):
        with open(self.env.daemon.config_path) as f:
            return json.load(f)


def creates_since(env, seq, name):
    return [c for c in env.calls_since(seq, ('CreateVm',)) if c['body']['name'] == name]


# ---------------------------------------------------------------------------


def test_add_vm_from_a_file_runs_it_with_only_the_granted_env_and_keeps_it(vm_env):
    env = vm_env()
    m = Many(env)
    doc = m.doc('mon')
    seq = env.last_seq()
    r = m.add('mon', doc, EnvKeys=['HOTKEY_PASSPHRASE'])
    assert r.ok, r
    vm = m.running('mon', doc)
    assert m.objects() == sorted([vm_path(VM_NAME), vm_path('mon')])
    assert m.get('mon', 'Name') == 'mon' and m.get('mon', 'Id') == vm['id']
    # Granted: HOTKEY_PASSPHRASE (and the guest-facing DSTACK_VMM_URL); not VALIDATOR_BASE_URL,
    # although the compose allows it and it is set locally.
    [create] = creates_since(env, seq, 'mon')
    sent = env.sent_env(create)
    assert sorted(sent) == ['DSTACK_VMM_URL', 'HOTKEY_PASSPHRASE'], sorted(sent)
    # The API's VM was left alone.
    assert [m for _, m in env.writes_since(seq)] == ['CreateVm']
    assert env.get('State') == 'running'

    vms = env.config_get('Vms')
    assert [tuple(v) for v in vms] == [(VM_NAME, env.api.url + '/config/compose/validator_vm'),
                                        ('mon', 'file://' + os.path.join(m.dir, 'mon.json'))]
    stored = m.config_file()['vms']['mon']
    assert stored['source'].endswith('/mon.json') and stored['env_keys'] == ['HOTKEY_PASSPHRASE'], stored

    # A restart keeps it: nothing is written at the VMM.
    seq = env.last_seq()
    env.restart_daemon()
    env.wait_vm_object()
    m.running('mon', doc)
    env.wait_prop('State', 'running')
    assert env.writes_since(seq) == []

    # The file changes: the VM follows it (Update reads it now; a poll would too).
    doc2 = m.doc('mon2')
    m.write('mon', doc2)
    seq = env.last_seq()
    assert m.call('mon', 'Update', 'a{sv}', [{}]).ok
    m.running('mon', doc2)
    assert {c['body']['name'] for c in env.calls_since(seq, ('CreateVm',))} == {'mon'}


BAD_ADDS = [
    ('bad-name', 'a/b', None, {}, "Invalid VM name 'a/b'"),
    ('empty-name', '', None, {}, 'Invalid VM name'),
    ('api-vm-name', VM_NAME, None, {}, 'already managed'),
    ('unknown-option', 'x1', None, {'Colour': ['s', 'red']}, "Unknown option 'Colour'"),
    ('wrong-type', 'x2', None, {'Autostart': ['s', 'no']}, "Option 'Autostart' must be of type 'b'"),
    ('bad-strategy', 'x3', None, {'UpdateStrategy': ['s', 'sideways']}, 'UpdateStrategy'),
    ('bad-env-key', 'x4', None, {'EnvKeys': ['as', ['NOT-A-KEY']]}, 'EnvKeys'),
    ('credentials', 'x5', 'https://user:pw@example.com/spec', {}, 'Invalid source'),
    ('relative-file', 'x6', 'file://specs/x.json', {}, 'Invalid source'),
    ('unix-socket', 'x7', 'unix:/run/x.sock', {}, 'Invalid source'),
    ('missing-file', 'x8', 'file:///nonexistent/spec.json', {}, 'cannot open'),
]


def test_add_vm_refuses_bad_input_and_changes_nothing(vm_env):
    env = vm_env()
    m = Many(env)
    with open(env.daemon.config_path, 'rb') as f:
        before = f.read()
    seq = env.last_seq()
    for what, name, source, opts, message in BAD_ADDS:
        src = source or m.write('ok', m.doc('ok'))
        r = env.config_call('AddVm', 'ssa{sv}', [name, src, opts])
        assert not r.ok and r.error_name == INVALID_ARGS and message in r.error_message, (what, r)
    # A file not owned by root, or writable by others: refused, naming why.
    src = m.write('theirs', m.doc('theirs'))
    os.chown(src[len('file://'):], 65534, 65534)
    r = m.add_source('theirs', src)
    assert not r.ok and r.error_name == INVALID_ARGS and 'owned by uid 65534' in r.error_message, r
    src = m.write('open', m.doc('open'), mode=0o666)
    r = m.add_source('open', src)
    assert not r.ok and r.error_name == INVALID_ARGS and 'writable by others' in r.error_message, r
    with open(env.daemon.config_path, 'rb') as f:
        assert f.read() == before
    assert m.objects() == [vm_path(VM_NAME)]
    assert env.writes_since(seq) == []


def test_a_required_key_not_granted_blocks_that_vm_only_and_is_never_sent(vm_env):
    env = vm_env()
    m = Many(env)
    seq = env.last_seq()
    assert m.add('lean', m.doc('lean', required_env=['HOTKEY_PASSPHRASE'])).ok
    m.wait('lean', 'State', 'blocked')
    assert 'not granted: HOTKEY_PASSPHRASE' in m.get('lean', 'StateReason')
    assert m.get('lean', 'RequiredEnv') == ['HOTKEY_PASSPHRASE']
    assert m.get('lean', 'MissingEnv') == []          # it is set locally; only not granted
    assert creates_since(env, seq, 'lean') == []
    r = m.call('lean', 'Update', 'a{sv}', [{}])
    assert not r.ok and r.error_name == BLOCKED and 'not granted' in r.error_message, r
    assert env.get('State') == 'running'
    # Config.RequiredEnv is the union of the VMs'.
    assert 'HOTKEY_PASSPHRASE' in env.config_get('RequiredEnv')

    # Granted (RemoveVm + AddVm with EnvKeys): deployed, with that key only.
    assert m.remove('lean').ok
    assert m.add('lean', m.doc('lean', required_env=['HOTKEY_PASSPHRASE']), EnvKeys=['HOTKEY_PASSPHRASE']).ok
    m.running('lean')
    [create] = creates_since(env, seq, 'lean')
    assert sorted(env.sent_env(create)) == ['DSTACK_VMM_URL', 'HOTKEY_PASSPHRASE']


def test_remove_vm_forgets_or_destroys(vm_env):
    env = vm_env()
    m = Many(env)
    assert m.add('keep').ok
    vm = m.running('keep')
    r = env.config_call('RemoveVm', 'sa{sv}', [VM_NAME, {}])
    assert not r.ok and r.error_name == INVALID_ARGS and 'ApiUrl' in r.error_message, r
    r = m.remove('nope')
    assert not r.ok and r.error_name == NOT_FOUND, r

    # Forget: the object goes, the VM stays at the VMM, running.
    mark = env.w.mark()
    seq = env.last_seq()
    assert m.remove('keep').ok
    env.w.wait_for(lambda s: s.member == 'InterfacesRemoved' and s.args[0] == vm_path('keep'), since=mark)
    assert m.objects() == [vm_path(VM_NAME)]
    assert [v['id'] for v in m.at_vmm('keep') if v['status'] == 'running'] == [vm['id']]
    assert env.writes_since(seq) == []
    assert 'keep' not in m.config_file().get('vms', {})
    assert [tuple(v)[0] for v in env.config_get('Vms')] == [VM_NAME]

    # Destroy: every VM of the name is stopped and removed; the reply waits for it.
    assert m.add('gone').ok
    m.running('gone')
    r = m.remove('gone', destroy=True)
    assert r.ok, r
    assert m.at_vmm('gone') == []
    assert vm_path('gone') not in m.objects()
    assert 'gone' not in m.config_file().get('vms', {})
    env.assert_converged()


def test_a_bad_source_leaves_the_last_good_state_of_that_vm_only(vm_env):
    env = vm_env()
    m = Many(env)
    doc_a, doc_b = m.doc('a1'), m.doc('b1')
    assert m.add('a', doc_a).ok and m.add('b', doc_b).ok
    vm_a = m.running('a', doc_a)
    m.running('b', doc_b)

    def blocked(reason_part, how):
        seq = env.last_seq()
        how()
        assert m.call('a', 'Update', 'a{sv}', [{}]).error_name == BLOCKED
        assert reason_part in m.get('a', 'StateReason'), m.get('a', 'StateReason')
        assert m.get('a', 'State') == 'blocked'
        # a's VM is kept as it was; b's follows its own file at once.
        doc = m.doc('b%d' % seq)
        m.write('b', doc)
        assert m.call('b', 'Update', 'a{sv}', [{}]).ok
        m.running('b', doc)
        assert [v['id'] for v in m.at_vmm('a')] == [vm_a['id']]
        assert all(c['body'].get('id') != vm_a['id'] for c in env.calls_since(seq, WRITES))
        assert m.get('b', 'State') == 'running' and env.get('State') == 'running'

    blocked('invalid spec from file://', lambda: m.write('a', '{"vm_type": '))
    blocked('larger than', lambda: m.write('a', '{"pad": "' + 'x' * (9 * 1024 * 1024) + '"}'))
    path = os.path.join(m.dir, 'a.json')
    m.write('a', doc_a)
    blocked('owned by uid 65534', lambda: os.chown(path, 65534, 65534))
    os.chown(path, 0, 0)
    blocked('writable by its group', lambda: os.chmod(path, 0o664))
    os.chmod(path, 0o644)
    # Fixed: a is running again, with its last good spec, nothing replaced.
    seq = env.last_seq()
    assert m.call('a', 'Update', 'a{sv}', [{}]).ok
    m.running('a', doc_a)
    assert env.writes_since(seq) == []


def test_operations_on_different_vms_run_side_by_side(vm_env):
    env = vm_env(stop_timeout_sec=30, vmm_opts={'shutdown_seconds': 3})
    m = Many(env)
    assert m.add('slow').ok and m.add('quick').ok
    m.running('slow')
    m.running('quick')
    from vmenv import AsyncCall
    restart = AsyncCall(env.bus.conn, H.DAEMON_NAME, vm_path('slow'), VM_IFACE, 'Restart', None, None, 30)
    m.wait('slow', 'State', 'stopping')
    # On the same VM: Busy. On another: runs now, done while the first still stops.
    r = m.call('slow', 'Stop')
    assert not r.ok and r.error_name.endswith('.Busy'), r
    # (Each VM's shutdown takes 3 s here: an Update with nothing to change is
    # the operation that ends at once.)
    started = time.monotonic()
    seq = env.last_seq()
    r = m.call('quick', 'Update', 'a{sv}', [{}])
    assert r.ok, r
    assert time.monotonic() - started < 2
    assert not restart.poll(), ('the restart of another VM ended first', restart.result)
    assert env.writes_since(seq) == [] or all(c['body'].get('id') != m.get('quick', 'Id')
                                              for c in env.calls_since(seq, WRITES))
    assert restart.wait(30).ok
    m.running('slow')
    m.running('quick')


def test_per_vm_history_and_metrics(vm_env):
    env = vm_env()
    m = Many(env)
    metrics = os.path.join(env.h.workdir, 'launcher.prom')
    r = env.config_call('SetSettings', 'a{sv}', [{'MetricsPath': ['s', metrics]}])
    assert r.ok, r
    assert m.add('hist').ok
    m.running('hist')
    r = m.call('hist', 'GetHistory', 'u', [0])
    assert r.ok, r
    entries = r.result[0]
    assert [e[2] for e in entries] == ['deploy'] and entries[0][6] == 'ok', entries
    api = env.vm_call('GetHistory', 'u', [0]).result[0]
    assert all(e[1] == 'vm' for e in api) and len(api) >= 1

    def has_label():
        try:
            with open(metrics) as f:
                text = f.read()
        except FileNotFoundError:
            return False
        return 'platform_launcher_vm_state{vm="hist",state="running"} 1' in text and \
            'platform_launcher_vm_state{vm="validator_vm",state="running"} 1' in text
    wait_until(has_label, what='per-VM metrics')


def test_nobody_needs_manage_vm_with_the_vm_detail(vm_env):
    env = vm_env()
    m = Many(env)
    src = m.write('ruled', m.doc('ruled'))
    assert denied(m.add_source('ruled', src, user='nobody'))
    rule = '''polkit.addRule(function(action, subject) {
    if (action.id == "%s" && action.lookup("vm") == "ruled")
        return polkit.Result.YES;
});''' % MANAGE_VM
    env.polkit.add_rule('50-vm-detail', rule)
    other = m.write('other', m.doc('other'))
    assert denied(m.add_source('other', other, user='nobody'))
    r = m.add_source('ruled', src, user='nobody')
    assert r.ok, r
    m.running('ruled')
    assert denied(m.remove('other', user='nobody')) or m.remove('other', user='nobody').error_name == NOT_FOUND
    r = m.call('ruled', 'Restart', user='nobody')
    assert r.ok, r
    assert m.remove('ruled', user='nobody').ok


def test_api_url_empty_stops_managing_the_api_vm(vm_env):
    env = vm_env()
    m = Many(env)
    vm = env.the_vm()
    seq = env.last_seq()
    url = env.config_get('ApiUrl')
    mark = env.w.mark()
    assert env.config_call('SetSettings', 'a{sv}', [{'ApiUrl': ['s', '']}]).ok
    env.w.wait_for(lambda s: s.member == 'InterfacesRemoved' and s.args[0] == vm_path(VM_NAME), since=mark)
    assert m.objects() == [] and env.config_get('Vms') == []
    assert env.the_vm()['id'] == vm['id'] and env.the_vm()['status'] == 'running'
    assert env.config_call('SetSettings', 'a{sv}', [{'ApiUrl': ['s', url]}]).ok
    env.wait_vm_object()
    env.wait_prop('State', 'running')
    assert env.get('Id') == vm['id']
    assert env.writes_since(seq) == []


def test_autostart_false_waits_for_start(vm_env):
    env = vm_env()
    m = Many(env)
    seq = env.last_seq()
    assert m.add('later', Autostart=False).ok
    m.wait('later', 'State', 'stopped')
    assert 'Start creates it' in m.get('later', 'StateReason')
    assert creates_since(env, seq, 'later') == []
    r = m.call('later', 'Start')
    assert r.ok, r
    m.running('later')
    assert len(creates_since(env, seq, 'later')) == 1


def test_a_crash_in_an_operation_on_one_of_three_vms_converges(vm_env):
    env = vm_env(stop_timeout_sec=30, vmm_opts={'shutdown_seconds': 2})
    m = Many(env)
    docs = {'one': m.doc('one'), 'two': m.doc('two')}
    for name, doc in docs.items():
        assert m.add(name, doc).ok
    for name, doc in docs.items():
        m.running(name, doc)
    # A new spec for 'two'; the daemon dies while the old VM shuts down.
    docs['two'] = m.doc('two-b')
    m.write('two', docs['two'])
    seq = env.last_seq()
    from vmenv import AsyncCall
    AsyncCall(env.bus.conn, H.DAEMON_NAME, vm_path('two'), VM_IFACE, 'Update', 'a{sv}', [{}], 30)
    env.wait_calls('ShutdownVm', since=seq)
    env.kill_daemon()
    env.start_daemon()
    env.wait_vm_object()
    for name, doc in docs.items():
        m.running(name, doc)
    env.wait_prop('State', 'running')
    env.assert_converged()
    names = sorted(v['name'] for v in env.vmm.vms() if v['status'] != 'removing')
    assert names == sorted([VM_NAME, 'one', 'two']), env.vmm.vms()


def test_platformctl_vm_list_add_remove(vm_env):
    from ctl_helpers import ctl
    env = vm_env()
    m = Many(env)
    src = m.write('mon', m.doc('mon'))
    p = ctl(env.bus, 'vm', 'add', 'mon', src, '--env', 'HOTKEY_PASSPHRASE', '--strategy', 'in-place')
    assert p.returncode == 0, (p.stdout, p.stderr)
    m.running('mon')
    stored = m.config_file()['vms']['mon']
    assert stored['env_keys'] == ['HOTKEY_PASSPHRASE'] and stored['update_strategy'] == 'in-place', stored

    p = ctl(env.bus, 'vm', 'list')
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ['NAME', 'STATE', 'VMM', 'SOURCE']
    assert lines[1].split()[0] == VM_NAME and lines[2].split()[:3] == ['mon', 'running', 'running'], lines
    assert lines[2].split()[3] == src
    p = ctl(env.bus, '--json', 'vm', 'list')
    listed = json.loads(p.stdout)
    assert [(v['Name'], v['Source'], v['State']) for v in listed] == [
        (VM_NAME, env.config_get('ApiUrl'), 'running'), ('mon', src, 'running')]

    # Two VMs: a verb needs the name.
    p = ctl(env.bus, 'vm', 'status')
    assert p.returncode != 0 and 'name one' in p.stderr, p.stderr
    p = ctl(env.bus, 'vm', 'status', 'mon')
    assert p.returncode == 0 and 'mon' in p.stdout, p.stderr

    p = ctl(env.bus, 'vm', 'add', 'x')
    assert p.returncode == 64 and 'Usage' in p.stderr, p.stderr
    p = ctl(env.bus, 'vm', 'status', '--destroy')
    assert p.returncode == 64, p.stderr
    p = ctl(env.bus, 'vm', 'add', 'bad/name', src)
    assert p.returncode != 0 and 'Invalid VM name' in p.stderr, p.stderr

    p = ctl(env.bus, 'vm', 'remove', 'mon', '--destroy')
    assert p.returncode == 0, (p.stdout, p.stderr)
    assert m.at_vmm('mon') == []
    p = ctl(env.bus, 'vm', 'list')
    assert 'mon' not in p.stdout
