# SPDX-License-Identifier: Apache-2.0
"""The resource view (dbus-api.md "Resource view"): org.platform.Launcher1.Host
and the guest figures of running VMs from their agents (/guest/SysInfo through
the VMM); an older guest without the agent API is "not available", never an
error; platformctl status and the metrics file show it all."""
import os

import harness as H
from ctl_helpers import ctl
from test_vm_many import Many, wait_until
from vmenv import vm_env  # noqa: F401

HOST_IFACE = 'org.platform.Launcher1.Host'
GIB = 1024 ** 3
FAST = {'resource_interval_usec': 1000000}


def host(env, prop=None):
    r = env.bus.get_all(H.DAEMON_NAME, H.DAEMON_PATH, HOST_IFACE)
    assert r.ok, r
    return r.result if prop is None else r.result[prop]


def test_the_host_shows_capacity_and_what_every_started_vm_takes(vm_env):
    env = vm_env(extra_config={'capacity_vcpu': 64, 'capacity_memory_mib': 65536})
    m = Many(env)
    wait_until(lambda: host(env, 'MaxVms') == 1000, what='GetMeta max_cvm_number')
    h = host(env)
    assert (h['CapacityVcpu'], h['AllocatedVcpu'], h['CapacityMemoryMiB'], h['AllocatedMemoryMiB']) == \
        (64, 16, 65536, 16384), h
    assert (h['CapacityDiskGiB'], h['AllocatedDiskGiB'], h['StartedVms'], h['ManagedVms']) == (0, 200, 1, 1), h
    assert h['HostMemoryAvailableMiB'] > 0 and len(h['HostLoadAverage']) == 3
    # Announced: a second VM.
    mark = env.w.mark()
    assert m.add('b').ok
    m.running('b')
    env.w.wait_for(lambda s: s.member == 'PropertiesChanged' and s.args[0] == HOST_IFACE and
                   s.args[1].get('AllocatedVcpu') == 32, since=mark, what='Host.AllocatedVcpu 32')
    assert host(env, 'ManagedVms') == 2 and host(env, 'StartedVms') == 2


def test_guest_figures_of_running_vms_and_not_available_never_an_error(vm_env):
    env = vm_env(extra_config=FAST)
    vm = env.the_vm()
    ts = wait_until(lambda: env.get('ResourcesTimestamp'), what='guest figures')
    assert ts > 0
    p = env.props()
    assert p['GuestMemoryTotalBytes'] == 16 * GIB and p['GuestMemoryAvailableBytes'] == 12 * GIB, p
    assert p['GuestDiskTotalBytes'] == 200 * GIB and p['GuestDiskFreeBytes'] == 180 * GIB, p
    assert tuple(p['GuestLoadAverage']) == (0.25, 0.2, 0.1), p['GuestLoadAverage']
    # What the guest agent says, through the VMM.
    env.vmm.control('guest-sysinfo', {'id': vm['id'], 'sysinfo': {
        'total_memory': 8 * GIB, 'available_memory': 2 * GIB, 'uptime': '7200', 'loadavg_one': 150,
        'loadavg_five': 100, 'loadavg_fifteen': 50,
        'disks': [{'name': 'a', 'mount_point': '/', 'total_size': 10 * GIB, 'free_size': 4 * GIB},
                  {'name': 'b', 'mount_point': '/dstack/persistent', 'total_size': 90 * GIB,
                   'free_size': 6 * GIB}]}})
    env.wait_prop('GuestMemoryAvailableBytes', 2 * GIB)
    p = env.props()
    assert p['GuestUptimeUSec'] == 7200 * 10**6 and tuple(p['GuestLoadAverage']) == (1.5, 1.0, 0.5), p
    assert p['GuestDiskTotalBytes'] == 100 * GIB and p['GuestDiskFreeBytes'] == 10 * GIB, p
    # An older guest without the agent API: not available, and nothing else.
    env.vmm.control('guest-sysinfo', {'id': vm['id'], 'agent': False})
    env.wait_prop('ResourcesTimestamp', 0)
    p = env.props()
    assert p['GuestMemoryTotalBytes'] == 0 and p['State'] == 'running' and p['LastError'] == '', p
    # A reply that does not validate is not available either.
    env.vmm.control('guest-sysinfo', {'id': vm['id'], 'agent': True,
                                      'sysinfo': {'total_memory': 1, 'available_memory': 2}})
    env.vmm.wait_calls('guest.SysInfo', count=2, since_seq=env.last_seq())
    assert env.get('ResourcesTimestamp') == 0 and env.get('LastError') == ''
    # A stopped VM has none.
    env.vmm.control('guest-sysinfo', {'id': vm['id'], 'sysinfo': None})
    env.wait_prop('ResourcesTimestamp', lambda v: v > 0)
    assert env.vm_call('Stop').ok
    env.wait_prop('ResourcesTimestamp', 0)


def test_platformctl_status_shows_the_vms_and_the_host_and_the_metrics_file_exports_them(vm_env):
    env = vm_env(extra_config=dict(FAST, capacity_vcpu=64, capacity_memory_mib=65536))
    m = Many(env)
    assert m.add('b').ok
    m.running('b')
    wait_until(lambda: m.get('b', 'ResourcesTimestamp') and env.get('ResourcesTimestamp'), what='guest figures')
    p = ctl(env.bus, 'status')
    lines = p.stdout.splitlines()
    [head] = [i for i, line in enumerate(lines) if line.split()[:3] == ['NAME', 'STATE', 'VCPU']]
    rows = {line.split()[0]: line for line in lines[head + 1:head + 3]}
    assert set(rows) == {'validator_vm', 'b'}, lines
    assert '16' in rows['b'].split() and '16.0 GiB' in rows['b'] and '4.0 GiB (25%)' in rows['b'], rows['b']
    assert '0.25' in rows['b'].split(), rows['b']
    [hostline] = [line for line in lines if line.strip().startswith('Host:')]
    assert '32 of 64 vCPU, 32.0 of 64.0 GiB memory allocated; 2 VMs started (2 managed' in hostline, hostline

    path = os.path.join(env.h.workdir, 'launcher.prom')
    assert env.config_call('SetSettings', 'a{sv}', [{'MetricsPath': ['s', path]}]).ok

    def exported():
        try:
            text = open(path).read()
        except FileNotFoundError:
            return None
        want = ['platform_launcher_vm_guest_memory_total_bytes{vm="b"} %d' % (16 * GIB),
                'platform_launcher_vm_vcpu{vm="validator_vm"} 16',
                'platform_launcher_host_allocated_vcpu 32', 'platform_launcher_host_capacity_vcpu 64',
                'platform_launcher_host_managed_vms 2', 'platform_launcher_vm_guest_load1{vm="b"} 0.25']
        return text if all(w in text for w in want) else None
    wait_until(exported, what='the resource figures in the metrics file')
