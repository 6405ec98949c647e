#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Scale and cost benchmark (issue 17, item 5): platform-launcherd on the VMM
and API simulators, as root, each part in its own world (a private system bus,
tests/sim/vmm_sim.py, api_sim.py and the real daemon).

Not a test: prints a table and one SUMMARY line (--json adds a JSON line).

  1 VM     the Platform API's VM, as shipped:
           - CPU per idle poll, driven by Vm.Update and by the poll timer (1 s):
             on-CPU time of the daemon from /proc/PID/task/*/schedstat (noisy on
             a loaded machine) and, unless --no-callgrind, instructions counted
             by callgrind (valgrind --tool=callgrind; stable under load; the
             daemon runs under valgrind in a world of its own);
           - PropertiesChanged signals per idle poll (the Vm object) and per
             Updater Check (a world with a git deployment, tests/integration/
             updater_world.py);
           - private dirty memory (/proc/PID/smaps_rollup) after start-up
             against bench-floor (the same libraries and their set-up, nothing
             else), and its growth over --memory-polls idle Vm.Update calls.
  N VMs    (--vms, default 50) declared in config.json "vms" with file://
           sources in the Platform API's format, ApiUrl empty, PollIntervalUSec
           1 s; first the same world with 1 such VM, then with N:
           - VMM writes over --rounds idle poll rounds (target 0), VMM Status
             calls per round (target 1, not 1 per VM), CPU per round (target
             <= N x the 1-VM figure), private dirty per extra VM (target
             <= 64 KiB), GetManagedObjects: the daemon's CPU per call, and the
             latency busctl sees less a Ping's (target < 20 ms; a Python
             client's own unpacking of the reply is not the daemon's);
           - the time the launcher adds to replacing one VM (a new compose in its
             file, then Vm.Update; the faithful simulator shuts the guest down in
             --shutdown-seconds and removes it in --remove-seconds): from the
             guest down to RemoveVm sent, plus from the VM gone to CreateVm sent,
             median of --runs; with N VMs the same as with 1 (within 2x + 10 ms).

Figures and their meaning: tests/bench/README.md, "bench-scale".
"""
import argparse
import glob
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'integration'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'sim'))
os.environ.setdefault('PLATFORM_SOURCE_DIR', SOURCE_DIR)

USEC = 1000000
VM_IFACE = 'org.platform.Launcher1.Vm'
OM_IFACE = 'org.freedesktop.DBus.ObjectManager'
PROPS_IFACE = 'org.freedesktop.DBus.Properties'
UPDATER_IFACE = 'org.platform.Launcher1.Updater'
BIG_CAPACITY = {'capacity_vcpu': 100000, 'capacity_memory_mib': 1 << 30, 'capacity_disk_gib': 1 << 20}

H = None        # harness module, imported once PLATFORM_BUILD_DIR is set
simlib = None
BR = None       # bench-reconcile.py, for its World and /proc helpers


def load_bench_reconcile():
    spec = importlib.util.spec_from_file_location('bench_reconcile', os.path.join(HERE, 'bench-reconcile.py'))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    m.H, m.simlib = H, simlib
    return m


def unit_environment(name):
    """The value the shipped unit gives the environment variable name, or None."""
    path = os.path.join(SOURCE_DIR, 'data', 'platform-launcher.service.in')
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith('Environment=' + name + '='):
                return line[len('Environment=' + name + '='):]
    return None


def private_dirty_kib(pid):
    with open('/proc/%d/smaps_rollup' % pid) as f:
        for line in f:
            if line.startswith('Private_Dirty:'):
                return int(line.split()[1])
    return None


def floor_private_dirty(h):
    path = os.path.join(os.environ['PLATFORM_BUILD_DIR'], 'tests', 'bench', 'bench-floor')
    if not os.path.exists(path):
        return None
    p = h.spawn('bench-floor', [path], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        if p.stdout.readline().strip() != b'ready':
            return None
        return private_dirty_kib(p.pid)
    finally:
        p.stdin.close()
        p.stdout.close()
        p.wait(10)


def vm_path(name):
    label = ''.join(c if c.isascii() and c.isalnum() else '_%02x' % ord(c) for c in name)
    return H.DAEMON_PATH + '/vm/' + label


class Sched:
    """The daemon's on-CPU time over a window."""

    def __init__(self, pid):
        self.pid = pid
        self.ns0 = BR.cpu_ns(pid)

    def us(self):
        return (BR.cpu_ns(self.pid) - self.ns0) / 1e3


# ---------------------------------------------------------------------------
# callgrind: the daemon under valgrind, counters zeroed and dumped around a phase
# ---------------------------------------------------------------------------

class Callgrind:
    def __init__(self, workdir, daemon):
        self.dir = os.path.join(workdir, 'callgrind')
        os.makedirs(self.dir, exist_ok=True)
        self.out = os.path.join(self.dir, 'cg.out')
        self.wrapper = os.path.join(self.dir, 'platform-launcherd')
        with open(self.wrapper, 'w') as f:
            f.write('#!/bin/sh\nexec valgrind --tool=callgrind --callgrind-out-file=%s --dump-instr=no '
                    '--collect-systime=no %s "$@"\n' % (self.out, daemon))
        os.chmod(self.wrapper, 0o755)

    def zero(self, pid):
        subprocess.run(['callgrind_control', '-z', str(pid)], check=True, capture_output=True, timeout=60)

    def dump(self, pid, label):
        before = set(glob.glob(self.out + '.*'))
        subprocess.run(['callgrind_control', '-d', label, str(pid)], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for path in sorted(set(glob.glob(self.out + '.*')) - before):
                with open(path) as f:
                    for line in f:
                        if line.startswith('summary:'):
                            return int(line.split()[1])
            time.sleep(0.1)
        raise RuntimeError('callgrind dump %s not found' % label)


def bench_callgrind(args):
    """Instructions per idle poll, through Vm.Update and on the timer."""
    import tempfile
    tmp = tempfile.mkdtemp(prefix='platform-bench-cg-')
    cg = Callgrind(tmp, H.daemon_binary())

    class A:
        daemon = cg.wrapper
    old = H.DEFAULT_TIMEOUT
    H.DEFAULT_TIMEOUT = 120     # valgrind starts slowly
    try:
        with BR.World(A()) as w:
            for _ in range(5):
                w.update(timeout=120)
            cg.zero(w.pid)
            n = args.cg_polls
            for _ in range(n):
                w.update(timeout=120)
            ir_update = cg.dump(w.pid, 'update') / n
            r = w.daemon.call('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', 1 * USEC]}])
            if not r.ok:
                raise RuntimeError('SetSettings: %r' % r)
            time.sleep(3)
            cg.zero(w.pid)
            a0 = len(w.api.requests(BR.API_PATH))
            time.sleep(args.cg_seconds)
            a1 = len(w.api.requests(BR.API_PATH))
            ir_timer = cg.dump(w.pid, 'timer') / max(a1 - a0, 1)
    finally:
        H.DEFAULT_TIMEOUT = old
        subprocess.run(['rm', '-rf', tmp])
    return {'ir_update': ir_update, 'ir_timer': ir_timer}


# ---------------------------------------------------------------------------
# 1 VM: CPU, signals, memory
# ---------------------------------------------------------------------------

def count_signals(w, fn, path, interface):
    with w.bus.collect(sender=H.DAEMON_NAME, path=path, interface=PROPS_IFACE, member='PropertiesChanged') as sc:
        fn()
        time.sleep(0.3)
        sigs = [s for s in sc.pump() if s.args and s.args[0] == interface]
    return len(sigs)


def bench_one(args):
    res = {}
    with BR.World(args) as w:
        pid = w.pid
        res['floor_dirty_kib'] = floor_private_dirty(w.h)
        res['startup_dirty_kib'] = private_dirty_kib(pid)
        for _ in range(20):
            w.update()
        w.vmm.reset_calls()
        s = Sched(pid)
        n = args.polls
        for _ in range(n):
            w.update()
        res['update_us'] = s.us() / n
        writes = [c['method'] for c in w.vmm.calls() if c['method'] not in ('Status', 'GetInfo', 'GetMeta')]
        if writes:
            raise RuntimeError('idle Vm.Update polls wrote to the VMM: %r' % writes[:5])
        res['update_signals'] = count_signals(w, w.update, BR.VM_PATH, VM_IFACE)
        # Memory growth over many idle polls.
        before = private_dirty_kib(pid)
        for _ in range(args.memory_polls):
            w.update()
        res['growth_kib'] = private_dirty_kib(pid) - before
        res['after_dirty_kib'] = private_dirty_kib(pid)
        # The poll timer, no D-Bus call in between.
        r = w.daemon.call('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', 1 * USEC]}])
        if not r.ok:
            raise RuntimeError('SetSettings: %r' % r)
        time.sleep(2.5)
        a0 = len(w.api.requests(BR.API_PATH))
        s = Sched(pid)
        time.sleep(args.timer_seconds)
        polls = len(w.api.requests(BR.API_PATH)) - a0
        res['timer_us'] = s.us() / max(polls, 1)
        res['timer_polls'] = polls
    return res


def bench_updater_signals(args):
    """PropertiesChanged on the Updater during one idle Check."""
    from updater_world import World as UWorld, updater
    h = H.Harness(prefix='platform-bench-upd-')
    try:
        h.start_bus()
        world = UWorld(h)
        d = h.daemon(config=world.config())
        r = updater(d, 'Check')          # the first one fills what it learns
        if not r.ok:
            raise RuntimeError('Updater.Check: %r' % r)
        with h.bus.collect(sender=H.DAEMON_NAME, path=H.DAEMON_PATH, interface=PROPS_IFACE,
                           member='PropertiesChanged') as sc:
            r = updater(d, 'Check')
            time.sleep(0.3)
            n = len([s for s in sc.pump() if s.args and s.args[0] == UPDATER_IFACE])
        return n
    finally:
        h.cleanup()


# ---------------------------------------------------------------------------
# N VMs from file:// sources
# ---------------------------------------------------------------------------

def compose(tag, i):
    return 'services:\n  %s:\n    image: "example/%s:%d"\n' % (tag, tag, i)


class FileWorld:
    """ApiUrl empty; n VMs declared in config.json, each from its own file."""

    def __init__(self, args, n, vmm_opts=None):
        self.args = args
        self.n = n
        self.h = H.Harness(prefix='platform-bench-scale-')
        self.sims = []
        try:
            self.bus = self.h.start_bus()
            self.vmm = simlib.start_vmm(self.h.workdir, **(vmm_opts or {}))
            self.sims.append(self.vmm)
            api = simlib.start_api(self.h.workdir)
            self.sims.append(api)
            st, _, data = api.get_doc()
            self.template = json.loads(data)
            self.dir = os.path.join(self.h.workdir, 'specs')
            os.makedirs(self.dir, mode=0o755, exist_ok=True)
            os.chmod(self.dir, 0o755)
            self.names = ['vm%02d' % i for i in range(n)]
            vms = {name: {'source': self.write(name, 0)} for name in self.names}
            cfg = {'api_url': '', 'vmm_url': self.vmm.url, 'poll_interval_usec': 1 * USEC,
                   'stop_timeout_usec': 60 * USEC, 'vms': vms}
            cfg.update(BIG_CAPACITY)
            self.daemon = self.h.daemon(config=cfg)
            self.pid = self.daemon.proc.pid
            deadline = time.monotonic() + 60 + 2 * n
            while not all(self.get(nm, 'State') == 'running' for nm in self.names):
                if time.monotonic() > deadline:
                    raise RuntimeError('not all VMs running: %r; log tail:\n%s' % (
                        {nm: self.get(nm, 'State') for nm in self.names}, self.daemon.log_text()[-3000:]))
                time.sleep(0.2)
        except BaseException:
            self.close()
            raise

    def write(self, name, i):
        d = json.loads(json.dumps(self.template))
        d['compose_content'] = compose(name, i)
        d['required_env'] = []
        d['provisioning']['vm_parameters']['ports'] = []
        path = os.path.join(self.dir, name + '.json')
        with open(path + '.tmp', 'w') as f:
            json.dump(d, f)
        os.chmod(path + '.tmp', 0o644)
        os.rename(path + '.tmp', path)
        return 'file://' + path

    def get(self, name, prop):
        r = self.bus.get_property(H.DAEMON_NAME, vm_path(name), VM_IFACE, prop)
        return r.result if r.ok else None

    def call(self, name, method, signature=None, args=None, timeout=60):
        return self.bus.call(H.DAEMON_NAME, vm_path(name), VM_IFACE, method, signature, args, timeout=timeout)

    def close(self):
        problems = self.h.cleanup()
        for s in self.sims:
            s.stop()
        for p in problems:
            print('cleanup: %s' % p, file=sys.stderr)


def idle_rounds(w, rounds):
    """VMM calls, CPU and rounds over `rounds` poll rounds (1 s apart)."""
    time.sleep(2.5)                     # the polls that followed start-up are over
    w.vmm.reset_calls()
    s = Sched(w.pid)
    time.sleep(rounds)
    us = s.us()
    calls = w.vmm.calls()
    statuses = [c for c in calls if c['method'] == 'Status']
    writes = [c['method'] for c in calls if c['method'] not in ('Status', 'GetInfo', 'GetMeta', 'SysInfo')]
    return {'statuses': len(statuses), 'writes': writes, 'cpu_us': us,
            'cpu_us_per_round': us / max(len(statuses), 1), 'rounds': rounds}


def busctl_ms(w, args, n=7):
    env = dict(os.environ)
    env.update(w.bus.env())
    ts = []
    for _ in range(n):
        t0 = time.monotonic()
        p = subprocess.run(['busctl', '--system', 'call', H.DAEMON_NAME, H.DAEMON_PATH] + args, env=env,
                           capture_output=True, timeout=60)
        ts.append((time.monotonic() - t0) * 1e3)
        if p.returncode != 0:
            raise RuntimeError('busctl %r: %s' % (args, p.stderr))
    return statistics.median(ts)


def get_managed_objects(w, n=20):
    """GetManagedObjects: the daemon's CPU per call (n calls), and the latency
    a lean client sees: busctl's wall time less that of a Ping (busctl's own
    start-up), medians of 7."""
    s = Sched(w.pid)
    for _ in range(n):
        r = w.daemon.call('GetManagedObjects', iface=OM_IFACE)
        if not r.ok:
            raise RuntimeError('GetManagedObjects: %r' % r)
    cpu_ms = s.us() / n / 1e3
    gmo = busctl_ms(w, [OM_IFACE, 'GetManagedObjects'])
    ping = busctl_ms(w, ['org.freedesktop.DBus.Peer', 'Ping'])
    return cpu_ms, max(gmo - ping, 0.0)


def replace_added_ms(w, name, i, S, R):
    """One replacement of `name` (a new compose in its file, Vm.Update): the time
    the launcher adds, from the VMM simulator's call log (receipt times)."""
    seq = w.vmm.calls()[-1]['seq'] if w.vmm.calls() else 0
    w.write(name, i)
    r = w.call(name, 'Update', 'a{sv}', [{}], timeout=120)
    if not r.ok:
        raise RuntimeError('Update %s: %r' % (name, r))
    calls = [c for c in w.vmm.calls() if c['seq'] > seq]

    def one(method):
        cs = [c for c in calls if c['method'] == method]
        if len(cs) != 1:
            raise RuntimeError('expected one %s, got %r' % (method, [c['method'] for c in calls]))
        return cs[0]
    sd, rm, cr = one('ShutdownVm'), one('RemoveVm'), one('CreateVm')
    t_down, t_gone = sd['mono'] + S, rm['mono'] + R
    return ((rm['mono'] - t_down) + (cr['mono'] - t_gone)) * 1e3


def bench_many(args):
    S, R = args.shutdown_seconds, args.remove_seconds
    vmm_opts = {'shutdown_seconds': S, 'remove_seconds': R}
    out = {}
    for n in (1, args.vms):
        w = FileWorld(args, n, vmm_opts)
        try:
            r = {'dirty_kib': private_dirty_kib(w.pid)}
            r.update(idle_rounds(w, args.rounds))
            r['gmo_cpu_ms'], r['gmo_ms'] = get_managed_objects(w)
            target = w.names[n // 2]
            r['replace_ms'] = statistics.median(replace_added_ms(w, target, k + 1, S, R) for k in range(args.runs))
            out[n] = r
        finally:
            w.close()
    return out


# ---------------------------------------------------------------------------

def main():
    global H, simlib, BR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-C', '--build-dir', default=os.environ.get('PLATFORM_BUILD_DIR', 'build'))
    ap.add_argument('--polls', type=int, default=300, help='idle Vm.Update polls timed (default 300)')
    ap.add_argument('--memory-polls', type=int, default=2000, help='idle polls for the memory growth (default 2000)')
    ap.add_argument('--timer-seconds', type=float, default=10.0, help='timer polls at 1 s for this long (default 10)')
    ap.add_argument('--vms', type=int, default=50, help='VMs in the large world (default 50)')
    ap.add_argument('--rounds', type=int, default=10, help='idle poll rounds (1 s) per world (default 10)')
    ap.add_argument('--runs', type=int, default=7, help='replacements per world (default 7)')
    ap.add_argument('--shutdown-seconds', type=float, default=0.5)
    ap.add_argument('--remove-seconds', type=float, default=0.3)
    ap.add_argument('--no-callgrind', action='store_true', help='skip the instruction counts')
    ap.add_argument('--cg-polls', type=int, default=50, help='Vm.Update polls under callgrind (default 50)')
    ap.add_argument('--cg-seconds', type=float, default=10.0, help='timer polls under callgrind (default 10 s)')
    ap.add_argument('--no-updater', action='store_true', help='skip the Updater signal count')
    ap.add_argument('--no-unit-environment', action='store_true',
                    help="do not give the daemon the unit's GLIBC_TUNABLES")
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()

    os.environ['PLATFORM_BUILD_DIR'] = os.path.abspath(args.build_dir)
    import harness
    import simlib as sl
    H, simlib = harness, sl
    BR = load_bench_reconcile()
    args.daemon = H.daemon_binary()
    if not H.is_root():
        sys.exit('bench-scale: run as root (the harness, /proc of the daemon)')
    # The daemon runs as its unit runs it: the unit's GLIBC_TUNABLES (malloc's
    # per-thread cache off) reach the daemon and bench-floor alike.
    tunables = unit_environment('GLIBC_TUNABLES')
    if tunables is not None and not args.no_unit_environment:
        os.environ['GLIBC_TUNABLES'] = tunables
    # A binary just linked is dirty in the page cache until written back, and
    # smaps counts its mapped pages as private dirty: write it back first.
    os.sync()

    one = bench_one(args)
    cg = None if args.no_callgrind else bench_callgrind(args)
    upd = None if args.no_updater else bench_updater_signals(args)
    many = bench_many(args)
    m1, mn = many[1], many[args.vms]
    N = args.vms
    extra_kib = (mn['dirty_kib'] - m1['dirty_kib']) / max(N - 1, 1)

    rows = []

    def row(what, value, target, ok):
        rows.append((what, value, target, 'met' if ok else ('NOT met' if ok is not None else '-')))

    row('idle poll, Vm.Update: CPU', '%.0f us' % one['update_us'], '< 400 us', one['update_us'] < 400)
    row('idle poll, timer 1 s: CPU', '%.0f us (%d polls)' % (one['timer_us'], one['timer_polls']), '< 400 us',
        one['timer_us'] < 400)
    if cg:
        row('idle poll, Vm.Update: instructions', '%.0f k' % (cg['ir_update'] / 1e3), '(was 1.34 M)', None)
        row('idle poll, timer: instructions', '%.0f k' % (cg['ir_timer'] / 1e3), '(was 0.76-0.80 M)', None)
    row('PropertiesChanged per idle poll (Vm)', '%d' % one['update_signals'], '1', one['update_signals'] <= 1)
    if upd is not None:
        row('PropertiesChanged per idle Updater Check', '%d (was 9)' % upd, 'one per loop iteration', None)
    if one['floor_dirty_kib'] is not None:
        over = one['startup_dirty_kib'] - one['floor_dirty_kib']
        row('private dirty after start-up', '%d KiB (floor %d, +%d)' % (one['startup_dirty_kib'],
                                                                        one['floor_dirty_kib'], over),
            'floor + 256 KiB', over <= 256)
    row('private dirty growth, %d idle polls' % args.memory_polls, '%+d KiB' % one['growth_kib'], '<= 64 KiB',
        one['growth_kib'] <= 64)
    row('%d VMs: VMM writes over %d idle rounds' % (N, args.rounds), '%d' % len(mn['writes']), '0',
        not mn['writes'])
    row('%d VMs: VMM Status per round' % N, '%.1f (%d in %d s)' % (mn['statuses'] / args.rounds, mn['statuses'],
                                                                  args.rounds),
        '1', mn['statuses'] <= args.rounds + 1)
    row('%d VMs: CPU per round' % N, '%.0f us (1 VM: %.0f us)' % (mn['cpu_us_per_round'], m1['cpu_us_per_round']),
        '<= %d x 1 VM' % N, mn['cpu_us_per_round'] <= N * m1['cpu_us_per_round'])
    row('%d VMs: private dirty per extra VM' % N, '%.1f KiB' % extra_kib, '<= 64 KiB', extra_kib <= 64)
    row('%d VMs: GetManagedObjects latency' % N, '%.2f ms (1 VM: %.2f ms)' % (mn['gmo_ms'], m1['gmo_ms']),
        '< 20 ms', mn['gmo_ms'] < 20)
    row('%d VMs: GetManagedObjects daemon CPU' % N, '%.2f ms (1 VM: %.2f ms)' % (mn['gmo_cpu_ms'], m1['gmo_cpu_ms']),
        '-', None)
    row('replace one of %d: time added' % N, '%.1f ms (1 VM: %.1f ms)' % (mn['replace_ms'], m1['replace_ms']),
        'same as 1 VM', mn['replace_ms'] <= 2 * m1['replace_ms'] + 10)

    print('bench-scale (schedstat CPU of the daemon; callgrind instructions; %d-VM world from file:// sources)' % N)
    print('%-44s %-34s %-28s %s' % ('measure', 'value', 'target', 'verdict'))
    for r in rows:
        print('%-44s %-34s %-28s %s' % r)
    met = sum(1 for r in rows if r[3] == 'met')
    judged = sum(1 for r in rows if r[3] != '-')
    print('SUMMARY scale: %d/%d targets met; idle poll %.0f us (Update) / %.0f us (timer)%s; %d VMs: %d writes, '
          '%.1f Status/round, GetManagedObjects %.1f ms, %.1f KiB per extra VM; replace-one added %.1f ms vs %.1f ms'
          % (met, judged, one['update_us'], one['timer_us'],
             ' = %.0f k / %.0f k instructions' % (cg['ir_update'] / 1e3, cg['ir_timer'] / 1e3) if cg else '',
             N, len(mn['writes']), mn['statuses'] / args.rounds, mn['gmo_ms'], extra_kib, mn['replace_ms'],
             m1['replace_ms']))
    if args.json:
        print(json.dumps({'one': one, 'callgrind': cg, 'updater_signals': upd,
                          'many': {str(k): v for k, v in many.items()}}))


if __name__ == '__main__':
    main()
