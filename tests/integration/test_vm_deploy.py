# SPDX-License-Identifier: Apache-2.0
"""VM reconciler: first deployment, the env that reaches the guest, idle polls,
restart without change, and the exported Vm interface (updater.md "VM
reconciliation", dstack.md §3-§4, dbus/org.platform.Launcher1.Vm.xml)."""
import os
import time
import xml.etree.ElementTree as ET

import pytest

import harness as H
from vmenv import vm_env, VM_NAME, VM_PATH, VM_IFACE, OM_IFACE, SEC, SECRET, DOC_PATH, sha256  # noqa: F401

# The compose-hash vector (shared/vectors/compose-hash.txt): the API simulator's
# default document yields it.
VECTOR_HASH = '70cfd2f4b998b97f124bdeb743a964a8fac44151ca8183dd8f0a4df1177cb4db'

IDLE_POLLS = int(os.environ.get('PLATFORM_TEST_IDLE_POLLS', '10'))


def test_first_deployment(vm_env):
    """Fresh daemon, no VM at the VMM: one CreateVm, VM running, VmUpdated with
    the hash of the bytes the VMM received, the Vm object announced."""
    env = vm_env(deploy=False)
    old, new, vm_id = env.w.wait_signal('VmUpdated')
    creates = env.calls_since(0, ('CreateVm',))
    assert len(creates) == 1, [c['body'] for c in creates]
    body = creates[0]['body']
    sent = body['compose_file']
    # Hash = sha256 of the exact bytes the VMM got, = the independently built
    # app-compose.json, = the published vector for this document.
    assert new == sha256(sent)
    assert sent == env.expected_compose()
    assert new == VECTOR_HASH
    assert old == ''
    vm = env.assert_converged(new)
    assert vm_id == vm['id']
    assert vm['app_id'] == new[:40]
    # The request as dstack wants it (dstack.md §2, §6.2).
    assert body['name'] == VM_NAME
    assert body['image'] == 'dstack-0.5.2'
    assert (body['vcpu'], body['memory'], body['disk_size']) == (16, 16384, 200)
    assert body.get('app_id') in (None, new[:40]), body.get('app_id')
    assert not body.get('stopped'), body.get('stopped')
    for p in body['ports']:
        assert p.get('host_address', '') is not None, 'host_address sent as null: %r' % p
    assert [(p['protocol'], p['host_port'], p['vm_port']) for p in body['ports']] == [('tcp', 0, 0)]
    # Announced through the ObjectManager, with its properties.
    added = [s for s in env.w.since(0, 'InterfacesAdded', path=H.DAEMON_PATH)
             if s.interface == OM_IFACE and s.args[0] == VM_PATH]
    assert added, 'no InterfacesAdded for %s' % VM_PATH
    assert VM_IFACE in added[0].args[1], added[0].args
    assert added[0].args[1][VM_IFACE].get('Name') == VM_NAME
    r = env.daemon.call('GetManagedObjects', iface=OM_IFACE)
    assert r.ok and VM_PATH in r.result[0], r
    # Properties describe what runs.
    p = env.props()
    assert p['Name'] == VM_NAME
    assert p['AppId'] == new[:40]
    assert (p['Image'], p['ImageVersion']) == ('dstack-0.5.2', '0.5.2')
    assert (p['Vcpu'], p['MemoryMiB'], p['DiskGiB']) == (16, 16384, 200)
    now = time.time() * SEC
    assert now - 60 * SEC < p['LastUpdateTimestamp'] <= now + SEC, p['LastUpdateTimestamp']
    assert now - 60 * SEC < p['LastCheckTimestamp'] <= now + SEC, p['LastCheckTimestamp']
    assert p['UpdateCount'] >= 1
    assert p['RestartCount'] == 0
    assert env.w.vm_signals(0, 'UpdateFailed') == []


def test_env_reaching_the_guest(vm_env):
    """Local values for the allowed keys plus DSTACK_VMM_URL = GuestVmmUrl; a
    key set locally but not allowed by the compose is not sent at all."""
    guest = 'http://10.0.2.2:16850/'
    local = {'HOTKEY_PASSPHRASE': SECRET + 'hotkey "quoted" \u00e9 words',
             'VALIDATOR_BASE_URL': 'https://validator.example/x?a=1',
             'NOT_ALLOWED_KEY': SECRET + 'not for the guest'}
    env = vm_env(local_env=local, guest_vmm_url=guest)
    want = {'HOTKEY_PASSPHRASE': local['HOTKEY_PASSPHRASE'],
            'VALIDATOR_BASE_URL': local['VALIDATOR_BASE_URL'],
            'DSTACK_VMM_URL': guest}
    assert env.expected_env() == want
    [create] = env.calls_since(0, ('CreateVm',))
    assert env.sent_env(create) == want            # what was encrypted and sent
    vm = env.assert_converged(env=want)              # what the guest decrypted
    assert vm['env_dropped'] == []
    assert env.config_get('EnvKeys') == sorted(local)
    assert env.config_get('GuestVmmUrl') == guest


def test_exported_vm_interface_equals_xml(vm_env):
    env = vm_env()
    r = env.bus.call(H.DAEMON_NAME, VM_PATH, 'org.freedesktop.DBus.Introspectable', 'Introspect')
    assert r.ok, r
    exported = ET.fromstring(r.result[0]).find("interface[@name='%s']" % VM_IFACE)
    assert exported is not None, r.result[0]
    contract = ET.parse(os.path.join(H.SOURCE_DIR, 'dbus', VM_IFACE + '.xml')).getroot()
    [iface] = contract.findall('interface')

    def normalise(e):
        return (e.tag, tuple(sorted(e.attrib.items())), tuple(normalise(c) for c in e))
    assert normalise(iface) == normalise(exported)


@pytest.mark.parametrize('polls', [IDLE_POLLS])
def test_idle_polls_change_nothing(vm_env, polls):
    """With nothing changed, N polls make no VMM write and emit no signal;
    each poll is a conditional fetch answered 304."""
    env = vm_env(poll_sec=1)
    seq = env.last_seq()
    api_before = len(env.api.requests(DOC_PATH))
    mark = env.w.mark()
    vm_before = env.the_vm()
    env.wait_calls('Status', count=polls, since=seq, timeout=polls * 2.5 + 10)
    env.w.pump()
    assert env.writes_since(seq) == []
    assert env.w.vm_signals(mark, 'VmUpdated') == []
    assert env.w.vm_signals(mark, 'UpdateFailed') == []
    checks = [s for s in env.w.since(mark, 'PropertiesChanged')
              if s.args[0] == VM_IFACE and 'LastCheckTimestamp' in s.args[1]]
    assert len(checks) >= polls - 1, '%d polls but LastCheckTimestamp announced %d times' % (polls, len(checks))
    states = [s.args[1]['State'] for s in env.w.since(mark, 'PropertiesChanged')
              if s.args[0] == VM_IFACE and 'State' in s.args[1]]
    assert set(states) <= {'running'}, states
    vm = env.the_vm()
    assert (vm['id'], vm['boot_count']) == (vm_before['id'], vm_before['boot_count'])
    assert env.get('State') == 'running'
    # The spec fetch is conditional (updater.md step 1): after the first
    # fetch, the API answers 304 and sends no body.
    reqs = env.api.requests(DOC_PATH)[api_before:]
    assert len(reqs) >= polls - 1, len(reqs)
    assert all(r['conditional'] and r['not_modified'] for r in reqs), \
        [(r['seq'], r['conditional'], r['not_modified']) for r in reqs]


def test_hundred_updates_without_change_write_nothing(vm_env):
    """100 checks with nothing changed (driven by Vm.Update, one fetch and one
    Status each): zero VMM writes, no VmUpdated or UpdateFailed, all 304."""
    env = vm_env()
    seq = env.last_seq()
    api_before = len(env.api.requests(DOC_PATH))
    mark = env.w.mark()
    vm_before = env.the_vm()
    for _ in range(100):
        r = env.update()
        assert r.ok, r
    env.w.pump()
    assert env.writes_since(seq) == []
    assert env.calls_since(seq, ('Status',)) and len(env.calls_since(seq, ('Status',))) >= 100
    assert env.w.vm_signals(mark, 'VmUpdated') == []
    assert env.w.vm_signals(mark, 'UpdateFailed') == []
    vm = env.the_vm()
    assert (vm['id'], vm['boot_count']) == (vm_before['id'], vm_before['boot_count'])
    reqs = env.api.requests(DOC_PATH)[api_before:]
    assert len(reqs) == 100 and all(r['conditional'] and r['not_modified'] for r in reqs)


def test_daemon_restart_adopts_without_touching(vm_env):
    """The state store remembers what was deployed: a restarted daemon
    (SIGTERM or SIGKILL) adopts the running VM, no VMM write, no signal."""
    env = vm_env()
    vm = env.the_vm()
    seq = env.last_seq()
    count = env.get('UpdateCount')
    for how in ('restart', 'kill'):
        if how == 'restart':
            env.restart_daemon()
        else:
            env.kill_daemon()
            env.start_daemon()
        mark = env.w.mark()
        env.wait_prop('State', 'running')
        r = env.update()                  # joins or follows the start-up check
        assert r.ok, r
        assert env.writes_since(seq) == [], how
        assert env.w.vm_signals(mark, 'VmUpdated') == [], how
        after = env.assert_converged()
        assert (after['id'], after['boot_count']) == (vm['id'], vm['boot_count'])
        assert env.get('UpdateCount') == count, how
