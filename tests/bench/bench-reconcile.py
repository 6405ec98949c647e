#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Reconciler benchmarks: platform-launcherd against the VMM and API simulators.

Not a test: prints figures (a table and a one-line summary per benchmark; --json
adds a JSON line). Each benchmark runs in its own world: a private system bus
(tests/integration/harness.py), tests/sim/vmm_sim.py and api_sim.py on loopback,
and the real daemon. Select with flags (none = all):

  --recreate   (a) time the launcher adds between "old guest down" and "CreateVm
               sent" during a recreate, from the VMM simulator's call log, against
               the faithful simulator with [cvm.auto_restart] on (a graceful stop
               ends `exited`; StopVm must follow at once); compared with the Rust
               launcher's fixed 7 s of sleeps. Target < 50 ms.
  --get-stop   (b) property Get latency (build/tests/bench/bench-get, Config.ApiUrl)
               idle vs while Vm.Stop waits for a 30 s simulated shutdown. Target
               within 2x.
  --cpu        (c) daemon CPU time (utime+stime, /proc/PID/stat) and peak RSS
               (VmHWM) over back-to-back idle polls driven with Vm.Update; baselines
               Vm.Plan (no I/O) and Config Get. Targets < 1 ms/poll, < 8 MiB.
  --bytes      (d) bytes per idle poll with validators (ETag/Last-Modified, 304)
               and without (200 with the whole document each time).
  --idle-writes (e) VMM writes over N idle polls (Vm.Update) of the Platform
               API's own document, whose one port has host_address null (the VMM
               reports it resolved to 127.0.0.1). Target 0.

See tests/bench/README.md for how each figure is computed.
"""
import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'integration'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'sim'))
os.environ.setdefault('PLATFORM_SOURCE_DIR', SOURCE_DIR)

VM_NAME = 'validator_vm'
VM_PATH = '/org/platform/Launcher1/vm/validator_5fvm'
VM_IFACE = 'org.platform.Launcher1.Vm'
API_PATH = '/config/compose/validator_vm'
RUST_SLEEPS_MS = 7000.0     # the Rust launcher: StopVm, sleep 5 s, RemoveVm, sleep 2 s, CreateVm
USEC = 1000000

H = None        # harness module, imported once PLATFORM_BUILD_DIR is set
simlib = None


def pct(xs, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p / 100.0))]


def compose_text(i):
    return 'services:\n  app:\n    image: "nginx:1.%d"\n' % i


# ---------------------------------------------------------------------------
# One world: bus + simulators + daemon
# ---------------------------------------------------------------------------

class World:
    def __init__(self, args, vmm_opts=None, config=None, relay=False, prefix='platform-bench-'):
        self.h = H.Harness(prefix=prefix)
        self.sims = []
        self.relay = None
        try:
            self.bus = self.h.start_bus()
            self.vmm = simlib.start_vmm(self.h.workdir, **(vmm_opts or {}))
            self.sims.append(self.vmm)
            self.api = simlib.start_api(self.h.workdir)
            self.sims.append(self.api)
            self.api.patch_doc(required_env=['HOTKEY_PASSPHRASE'], compose_content=compose_text(0))
            api_base = self.api.url
            if relay:
                self.relay = CountingRelay(self.api.url)
                api_base = self.relay.url
            cfg = {'api_url': api_base + API_PATH, 'vmm_url': self.vmm.url,
                   'poll_interval_usec': 3600 * USEC,      # polls are driven by Vm.Update
                   'stop_timeout_usec': 60 * USEC,
                   'env': {'HOTKEY_PASSPHRASE': 'bench-passphrase'},
                   'capacity_vcpu': 100000, 'capacity_memory_mib': 1 << 30}
            cfg.update(config or {})
            self.daemon = self.h.daemon(config=cfg, binary=args.daemon)
            self.pid = self.daemon.proc.pid
            # The start-up tick creates the VM; an Update joins it or runs after it.
            self.update(timeout=60)
            st = self.vm_prop('State')
            if st != 'running':
                raise RuntimeError('VM not running after start-up (State=%r); daemon log:\n%s'
                                   % (st, self.daemon.log_text()[-3000:]))
        except BaseException:
            self.close()
            raise

    def update(self, force=False, timeout=30):
        r = self.daemon.call('Update', 'a{sv}', [{'force': ['b', force]}], iface=VM_IFACE, path=VM_PATH,
                             timeout=timeout)
        if not r.ok:
            raise RuntimeError('Vm.Update failed: %r; daemon log tail:\n%s' % (r, self.daemon.log_text()[-3000:]))
        return r

    def vm_call(self, method, signature=None, args=None, timeout=30):
        return self.daemon.call(method, signature, args, iface=VM_IFACE, path=VM_PATH, timeout=timeout)

    def vm_prop(self, prop):
        return self.daemon.get(prop, iface=VM_IFACE, path=VM_PATH)

    def vm_id(self):
        vms = [v for v in self.vmm.vms() if v['name'] == VM_NAME]
        if len(vms) != 1:
            raise RuntimeError('expected one VM named %s, VMM has %r' % (VM_NAME, [(v['id'], v['status']) for v in vms]))
        return vms[0]['id']

    def close(self):
        if self.relay:
            self.relay.close()
        problems = self.h.cleanup()     # daemon first (SIGTERM), then everything else
        for s in self.sims:
            s.stop()
        for p in problems:
            print('cleanup: %s' % p, file=sys.stderr)
        return problems

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CountingRelay:
    """TCP relay on 127.0.0.1 that counts the bytes on the wire each way."""

    def __init__(self, target_url):
        u = urllib.parse.urlsplit(target_url)
        self.target = (u.hostname, u.port)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(('127.0.0.1', 0))
        self.lsock.listen(16)
        self.url = 'http://127.0.0.1:%d' % self.lsock.getsockname()[1]
        self.lock = threading.Lock()
        self.up = self.down = self.connections = 0
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def counters(self):
        with self.lock:
            return self.up, self.down, self.connections

    def _accept(self):
        while not self.closed:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            s = socket.create_connection(self.target)
            with self.lock:
                self.connections += 1
                self.socks += [c, s]
            threading.Thread(target=self._pipe, args=(c, s, 'up'), daemon=True).start()
            threading.Thread(target=self._pipe, args=(s, c, 'down'), daemon=True).start()

    def _pipe(self, src, dst, direction):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                with self.lock:
                    setattr(self, direction, getattr(self, direction) + len(data))
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.lsock.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------------------
# /proc
# ---------------------------------------------------------------------------

CLK_TCK = os.sysconf('SC_CLK_TCK')


def cpu_ticks(pid):
    """utime + stime of the whole process (all threads), in clock ticks."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return int(fields[11]) + int(fields[12])


def cpu_ns(pid):
    """On-CPU time of all threads from /proc/PID/task/*/schedstat (ns), or None."""
    total = 0
    try:
        for t in os.listdir('/proc/%d/task' % pid):
            with open('/proc/%d/task/%s/schedstat' % (pid, t)) as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


def proc_status_kib(pid, key):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    return None


def mem_info(pid):
    """VmRSS, VmHWM, RssAnon, RssFile (status) and Pss, Private (smaps_rollup), in KiB."""
    m = {k: proc_status_kib(pid, k) for k in ('VmRSS', 'VmHWM', 'RssAnon', 'RssFile')}
    try:
        with open('/proc/%d/smaps_rollup' % pid) as f:
            roll = {line.split(':')[0]: int(line.split()[1]) for line in f if line.split()[-1:] == ['kB']}
        m['Pss'] = roll.get('Pss')
        m['Private'] = roll.get('Private_Clean', 0) + roll.get('Private_Dirty', 0)
    except OSError:
        m['Pss'] = m['Private'] = None
    return m


def floor_mem(w, args_):
    """bench-floor (the daemon's libraries and their set-up, no work): its memory."""
    path = os.path.join(os.environ['PLATFORM_BUILD_DIR'], 'tests', 'bench', 'bench-floor')
    if not os.path.exists(path):
        return None
    p = w.h.spawn('bench-floor', [path] + list(args_), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        if p.stdout.readline().strip() != b'ready':
            return None
        return mem_info(p.pid)
    finally:
        p.stdin.close()
        p.stdout.close()
        p.wait(10)


def reset_hwm(pid):
    """Reset VmHWM to the current RSS (clear_refs 5); False if not possible."""
    try:
        with open('/proc/%d/clear_refs' % pid, 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def nthreads(pid):
    return len(os.listdir('/proc/%d/task' % pid))


# ---------------------------------------------------------------------------
# (a) recreate: time added between "old VM stopped" and "CreateVm sent"
# ---------------------------------------------------------------------------

def analyze_recreate(calls, old_id, S, R):
    """From the VMM call log of one recreate. Times in ms. See README.md."""
    def one(method):
        cs = [c for c in calls if c['method'] == method]
        if len(cs) != 1:
            raise RuntimeError('expected one %s in the recreate, got %d' % (method, len(cs)))
        return cs[0]
    sd, rm, cr = one('ShutdownVm'), one('RemoveVm'), one('CreateVm')
    # StopVm only when the guest's "powering off" report was lost (the VM
    # ended `exited`: the simulator's --no-guest-shutdown-notify); normally
    # ShutdownVm ends `stopped` and the launcher goes straight to RemoveVm.
    stops = [c for c in calls if c['method'] == 'StopVm']
    st = stops[0] if len(stops) == 1 else None
    # The simulator sets the VM's deadline while serving the call, between
    # its receipt (mono) and its reply (done_mono): guest down at
    # ShutdownVm+S, gone at RemoveVm+R. Receipt times give the earliest instants, so the
    # launcher is charged with the simulator's own processing (conservative).
    t_stopped = sd['mono'] + S
    t_gone = rm['mono'] + R
    vmm_remove = t_gone - rm['mono']
    added = (cr['mono'] - t_stopped) - vmm_remove
    # Lower bound: the latest instants the deadlines can have been set.
    added_lo = (cr['mono'] - (sd['done_mono'] + S)) - R - (rm['done_mono'] - rm['mono'])
    infos = [c for c in calls if c['method'] == 'GetInfo' and (c.get('body') or {}).get('id') == old_id]
    stop_polls = [c for c in infos if sd['mono'] < c['mono'] < rm['mono']]
    gone_polls = [c for c in infos if rm['mono'] < c['mono'] < cr['mono']]
    seen_stopped = next((c for c in stop_polls if c['mono'] >= t_stopped), None)
    seen_gone = next((c for c in gone_polls if c['mono'] >= t_gone), None)
    ms = 1000.0
    return {
        'shutdown_s': S, 'remove_s': R,
        'added_ms': added * ms,
        'added_lo_ms': added_lo * ms,
        'down_to_stopvm_ms': ((st['mono'] - t_stopped) * ms) if st else None,
        'stop_detect_ms': ((seen_stopped['mono'] - t_stopped) * ms) if seen_stopped else None,
        'stopped_seen_to_remove_ms': ((rm['mono'] - seen_stopped['mono']) * ms) if seen_stopped else None,
        'gone_detect_ms': ((seen_gone['mono'] - t_gone) * ms) if seen_gone else None,
        'gone_seen_to_create_ms': ((cr['mono'] - seen_gone['mono']) * ms) if seen_gone else None,
        'getinfo_stop': len(stop_polls), 'getinfo_gone': len(gone_polls),
    }


def bench_recreate(args):
    rng = random.Random(args.seed)
    runs = []
    # [cvm.auto_restart] on, as in dstack's sample vmm.toml (the simulator's default).
    opts = {'shutdown_seconds': 0.5, 'remove_seconds': 0.5, 'auto_restart_seconds': 5}
    if args.lost_notify:
        opts['no_guest_shutdown_notify'] = True   # the guest's "powering off" report lost: the VM ends `exited`
    with World(args, vmm_opts=opts) as w:
        for i in range(1, args.runs + 1):
            S = args.shutdown_seconds if args.shutdown_seconds is not None else round(rng.uniform(0.3, 3.0), 3)
            R = args.remove_seconds if args.remove_seconds is not None else round(rng.uniform(0.2, 1.5), 3)
            w.vmm.config(shutdown_seconds=S, remove_seconds=R)
            old_id = w.vm_id()
            old_hash = w.vm_prop('ComposeHash')
            w.api.patch_doc(required_env=['HOTKEY_PASSPHRASE'], compose_content=compose_text(i))
            w.vmm.reset_calls()
            t0 = time.monotonic()
            w.update(timeout=S + R + 60)
            wall = time.monotonic() - t0
            new_hash = w.vm_prop('ComposeHash')
            if new_hash == old_hash or w.vm_prop('State') != 'running':
                raise RuntimeError('run %d: the VM was not recreated (State=%r)' % (i, w.vm_prop('State')))
            r = analyze_recreate(w.vmm.calls(), old_id, S, R)
            r['update_call_s'] = wall
            runs.append(r)

    print('(a) recreate: time added by the launcher between "old guest down" and "CreateVm received"')
    print('%3s %7s %7s %9s %9s %9s %9s %9s %9s %9s %8s' % (
        'run', 'S_s', 'R_s', 'added_ms', 'lo_ms', 'down>stop', 'stopdet', 'stop>rm', 'gonedet', 'gone>cr',
        'GetInfo'))

    def f(v):
        return '%9.1f' % v if v is not None else '%9s' % '-'
    for i, r in enumerate(runs, 1):
        print('%3d %7.3f %7.3f %s %s %s %s %s %s %s %8s' % (
            i, r['shutdown_s'], r['remove_s'], f(r['added_ms']), f(r['added_lo_ms']), f(r['down_to_stopvm_ms']),
            f(r['stop_detect_ms']),
            f(r['stopped_seen_to_remove_ms']), f(r['gone_detect_ms']), f(r['gone_seen_to_create_ms']),
            '%d+%d' % (r['getinfo_stop'], r['getinfo_gone'])))
    added = [r['added_ms'] for r in runs]
    med, mx = statistics.median(added), max(added)
    det = [r['stop_detect_ms'] + r['gone_detect_ms'] for r in runs
           if r['stop_detect_ms'] is not None and r['gone_detect_ms'] is not None]
    own = [r['stopped_seen_to_remove_ms'] + r['gone_seen_to_create_ms'] for r in runs
           if r['stopped_seen_to_remove_ms'] is not None and r['gone_seen_to_create_ms'] is not None]
    summary = {'benchmark': 'recreate', 'runs': len(runs), 'added_median_ms': med, 'added_max_ms': mx,
               'added_p90_ms': pct(added, 90),
               'poll_detection_median_ms': statistics.median(det) if det else None,
               'launcher_reaction_median_ms': statistics.median(own) if own else None,
               'rust_sleeps_ms': RUST_SLEEPS_MS, 'ratio_rust_over_ours': RUST_SLEEPS_MS / med if med > 0 else None,
               'target_ms': 50.0, 'meets_target': mx < 50.0, 'per_run': runs}
    print('of which: waiting for the next GetInfo (stopdet+gonedet) median %.1f ms; reacting to what it saw '
          '(stop>rm + gone>cr) median %.1f ms' % (summary['poll_detection_median_ms'] or 0,
                                                  summary['launcher_reaction_median_ms'] or 0))
    print('SUMMARY recreate: added median %.1f ms, max %.1f ms over %d runs (target < 50 ms: %s); '
          'Rust launcher 7000 ms of sleeps = %.0fx ours' % (
              med, mx, len(runs), 'met' if summary['meets_target'] else 'NOT met', summary['ratio_rust_over_ours'] or 0))
    return summary


# ---------------------------------------------------------------------------
# (e) VMM writes over idle polls of a spec with ports
# ---------------------------------------------------------------------------

WRITES = ('CreateVm', 'StartVm', 'ShutdownVm', 'StopVm', 'RemoveVm', 'UpdateVm', 'UpgradeApp')


def bench_idle_writes(args):
    with World(args) as w:
        st, _, data = w.api.get_doc()
        ports = json.loads(data)['provisioning']['vm_parameters']['ports']
        reported = w.vmm.vm(w.vm_id())['configuration']['ports']
        w.vmm.reset_calls()
        for _ in range(args.idle_polls):
            w.update()
        calls = w.vmm.calls()
        writes = [c['method'] for c in calls if c['method'] in WRITES]
        plan = w.vm_call('Plan')
    print('(e) VMM writes over %d idle polls of a spec with ports' % args.idle_polls)
    print('spec ports %s; the VMM reports %s' % (json.dumps(ports), json.dumps(reported)))
    print('VMM calls %d, writes %d %s; Plan %r' % (len(calls), len(writes), writes[:10], plan.result))
    summary = {'benchmark': 'idle-writes', 'polls': args.idle_polls, 'vmm_calls': len(calls),
               'vmm_writes': len(writes), 'target': 0, 'meets_target': not writes}
    print('SUMMARY idle-writes: %d VMM writes over %d idle polls (target 0: %s)' % (
        len(writes), args.idle_polls, 'met' if not writes else 'NOT met'))
    return summary


# ---------------------------------------------------------------------------
# (b) property Get latency during a 30 s shutdown
# ---------------------------------------------------------------------------

def run_bench_get(client, bus, n, warmup):
    spec = [H.DAEMON_NAME, H.DAEMON_PATH, H.CONFIG_IFACE, 'ApiUrl']
    p = subprocess.run([client, *spec, str(n), str(warmup)], env=bus.env(), capture_output=True, text=True,
                       timeout=600)
    if p.returncode != 0:
        raise RuntimeError('bench-get failed: %s' % p.stderr.strip())
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_get_stop(args):
    client = os.path.join(os.environ['PLATFORM_BUILD_DIR'], 'tests', 'bench', 'bench-get')
    if not os.path.exists(client):
        sys.exit('bench-get client not built: %s (ninja -C %s)' % (client, args.build_dir))
    shutdown_s = args.stop_seconds
    idle, during = [], []
    with World(args, vmm_opts={'shutdown_seconds': shutdown_s, 'remove_seconds': 0.5},
               config={'stop_timeout_usec': int((shutdown_s + 10) * USEC)}) as w:
        vm_id = w.vm_id()
        for _ in range(args.get_rounds):
            idle.append(run_bench_get(client, w.bus, args.get_calls, args.get_warmup))
        w.vmm.reset_calls()
        # Vm.Stop replies only when the VM has stopped: send it from a child,
        # do not wait for the reply here.
        stopper = w.h.spawn('busctl-stop', ['busctl', '--timeout=%d' % int(shutdown_s + 60), 'call',
                                            H.DAEMON_NAME, VM_PATH, VM_IFACE, 'Stop'],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        w.vmm.wait_calls('ShutdownVm', count=1, state='done', timeout=10)
        t_shutdown = w.vmm.calls('ShutdownVm')[0]['mono']
        cpu0 = cpu_ns(w.pid)
        # Leave 2 s of margin so that no round ends after the VM stopped.
        while time.monotonic() < t_shutdown + shutdown_s - 2.0 - 1.5 * (during[-1]['n'] / during[-1]['calls_per_s']
                                                                      if during else 1.0):
            r = run_bench_get(client, w.bus, args.get_calls, args.get_warmup)
            r['vm_status_after'] = w.vmm.vm(vm_id)['status']
            r['t_after_shutdown_s'] = time.monotonic() - t_shutdown
            if r['vm_status_after'] != 'stopping':
                break
            during.append(r)
        out, err = stopper.communicate(timeout=shutdown_s + 90)
        stop_wall = time.monotonic() - t_shutdown
        cpu1 = cpu_ns(w.pid)
        if stopper.returncode != 0:
            raise RuntimeError('Vm.Stop failed: %s' % err.decode(errors='replace'))
        getinfo = len(w.vmm.calls('GetInfo'))
        for _ in range(args.get_rounds):
            idle.append(run_bench_get(client, w.bus, args.get_calls, args.get_warmup))
    if not during:
        raise RuntimeError('no bench-get round fitted in the shutdown window')

    def agg(rs):
        return {k: statistics.median(r[k] for r in rs) for k in ('median_us', 'p99_us', 'mean_us', 'calls_per_s')} | \
               {'p99_max_us': max(r['p99_us'] for r in rs), 'max_us': max(r['max_us'] for r in rs), 'rounds': len(rs)}
    si, sd = agg(idle), agg(during)
    print('(b) Config.ApiUrl Get latency, idle vs during a %.0f s simulated shutdown (Vm.Stop pending)' % shutdown_s)
    print('%-16s %7s %10s %10s %12s %12s %10s' % ('phase', 'rounds', 'median_us', 'p99_us', 'worst_p99_us',
                                                   'max_us', 'calls/s'))
    for name, s in (('idle', si), ('during-shutdown', sd)):
        print('%-16s %7d %10.1f %10.1f %12.1f %12.1f %10.0f' % (name, s['rounds'], s['median_us'], s['p99_us'],
                                                                s['p99_max_us'], s['max_us'], s['calls_per_s']))
    ratio_med, ratio_p99 = sd['median_us'] / si['median_us'], sd['p99_us'] / si['p99_us']
    print('(%d rounds x %d calls each; idle rounds before and after the stop; medians over rounds; '
          'Vm.Stop replied %.1f s after ShutdownVm; the launcher sent %d GetInfo meanwhile)' % (
              args.get_rounds, args.get_calls, stop_wall, getinfo))
    # What the daemon itself did meanwhile (it also served every Get of the rounds).
    calls_during = sum(r['n'] + args.get_warmup for r in during)
    print('daemon CPU from ShutdownVm to the Stop reply: %.1f ms (schedstat), while serving %d Gets and %d GetInfo '
          'polls' % ((cpu1 - cpu0) / 1e6 if cpu0 is not None else -1, calls_during, getinfo))
    summary = {'benchmark': 'get-during-stop', 'shutdown_s': shutdown_s, 'idle': si, 'during_shutdown': sd,
               'daemon_cpu_ms_during_stop': (cpu1 - cpu0) / 1e6 if cpu0 is not None else None,
               'gets_during_stop': calls_during,
               'ratio_median': ratio_med, 'ratio_p99': ratio_p99, 'target_ratio': 2.0,
               'meets_target': ratio_p99 <= 2.0, 'stop_reply_after_s': stop_wall, 'getinfo_during_stop': getinfo}
    print('SUMMARY get-stop: idle median %.1f us p99 %.1f us; during shutdown median %.1f us p99 %.1f us; '
          'ratio median %.2f, p99 %.2f (target within 2x: %s)' % (
              si['median_us'], si['p99_us'], sd['median_us'], sd['p99_us'], ratio_med, ratio_p99,
              'met' if summary['meets_target'] else 'NOT met'))
    return summary


# ---------------------------------------------------------------------------
# (c) CPU and RSS per idle poll
# ---------------------------------------------------------------------------

def measure_cpu(pid, n, fn):
    t0, ns0, wall0 = cpu_ticks(pid), cpu_ns(pid), time.monotonic()
    for _ in range(n):
        fn()
    wall = time.monotonic() - wall0
    t1, ns1 = cpu_ticks(pid), cpu_ns(pid)
    ticks_us = (t1 - t0) * 1e6 / CLK_TCK / n
    sched_us = (ns1 - ns0) / 1e3 / n if ns0 is not None and ns1 is not None else None
    return {'n': n, 'cpu_us_per_call': ticks_us, 'schedstat_us_per_call': sched_us, 'wall_ms_per_call': wall * 1e3 / n}


def hostnamed_pid(bus):
    """The pid owning org.freedesktop.hostname1 (under unshare it is not our child's pid)."""
    r = H.gio_call(bus.conn, 'org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                   'GetConnectionUnixProcessID', 's', [H.Hostnamed.NAME])
    return r.result[0]


def bench_cpu(args):
    n = args.polls
    res = {}
    with World(args) as w:
        pid = w.pid
        startup = {'rss_kib': proc_status_kib(pid, 'VmRSS'), 'hwm_kib': proc_status_kib(pid, 'VmHWM')}
        for _ in range(20):                          # warm-up: connections open, caches filled
            w.update()
        can_reset = reset_hwm(pid)
        api_before = len(w.api.requests(API_PATH))
        w.vmm.reset_calls()
        res['update'] = measure_cpu(pid, n, w.update)
        res['update']['hwm_kib'] = proc_status_kib(pid, 'VmHWM')
        res['update']['rss_kib'] = proc_status_kib(pid, 'VmRSS')
        fetches = len(w.api.requests(API_PATH)) - api_before
        vmm_calls = w.vmm.calls()
        writes = [c['method'] for c in vmm_calls if c['method'] not in ('Status', 'GetInfo')]
        if fetches != n or len(vmm_calls) != n or writes:
            raise RuntimeError('idle polls were not idle: %d fetches, %d VMM calls, writes %r for %d Updates'
                               % (fetches, len(vmm_calls), writes[:5], n))
        res['plan'] = measure_cpu(pid, n, lambda: w.vm_call('Plan'))
        res['get'] = measure_cpu(pid, n, lambda: w.vm_prop('State'))
        res['hwm_after_all_kib'] = proc_status_kib(pid, 'VmHWM')
        res['threads'] = nthreads(pid)
        res['mem'] = {'platform-launcherd': mem_info(pid)}
        # Baselines: the same libraries doing nothing, and an sd-bus daemon of systemd.
        for name, a in (('bench-floor (libs + set-up)', []), ('bench-floor --libs-only', ['--libs-only'])):
            m = floor_mem(w, a)
            if m:
                res['mem'][name] = m
        if os.path.exists(H.HOSTNAMED) and not args.no_hostnamed:
            try:
                hn = H.Hostnamed(w.bus, w.h.workdir, w.h.procs, read_only=H.is_root()).start()
                for _ in range(100):
                    w.bus.get_property(H.Hostnamed.NAME, H.Hostnamed.PATH, H.Hostnamed.IFACE, 'Hostname')
                res['mem']['systemd-hostnamed'] = mem_info(hostnamed_pid(w.bus))
                hn.stop()
            except Exception as e:    # a baseline only
                print('(hostnamed baseline skipped: %s)' % e, file=sys.stderr)
        res['startup'] = startup
        res['hwm_reset'] = can_reset
        if args.timer_seconds > 0:
            # The real idle loop: the poll timer, no D-Bus call in between.
            r = w.daemon.call('SetSettings', 'a{sv}', [{'PollIntervalUSec': ['t', 1 * USEC]}])
            if not r.ok:
                raise RuntimeError('SetSettings: %r' % r)
            # Start measuring right after a timer-driven poll, not at a guess.
            seen = len(w.api.requests(API_PATH))
            simlib.wait_until(lambda: len(w.api.requests(API_PATH)) > seen, timeout=10,
                              what='the first poll on the new interval', interval=0.005)
            a0, t0, ns0 = len(w.api.requests(API_PATH)), cpu_ticks(pid), cpu_ns(pid)
            time.sleep(args.timer_seconds)
            a1, t1, ns1 = len(w.api.requests(API_PATH)), cpu_ticks(pid), cpu_ns(pid)
            polls = a1 - a0
            res['timer'] = {'n': polls, 'seconds': args.timer_seconds,
                            'cpu_us_per_call': (t1 - t0) * 1e6 / CLK_TCK / polls if polls else None,
                            'schedstat_us_per_call': (ns1 - ns0) / 1e3 / polls if polls and ns0 is not None else None}

    hwm_mib = res['update']['hwm_kib'] / 1024.0
    print('(c) daemon CPU per call (utime+stime from /proc/PID/stat, %d Hz ticks; schedstat = ns on-CPU) '
          'and memory' % CLK_TCK)
    print('%-34s %7s %12s %14s %10s' % ('driver', 'calls', 'cpu_us/call', 'sched_us/call', 'wall_ms'))
    rows = [('Vm.Update (idle poll: 304+Status)', res['update']),
            ('Vm.Plan (no I/O; baseline)', res['plan']),
            ('Get Vm.State (baseline)', res['get'])]
    if 'timer' in res:
        rows.append(('poll timer 1 s (no D-Bus)', res['timer']))
    for name, r in rows:
        print('%-34s %7d %12s %14s %10s' % (
            name[:34], r['n'], '%.1f' % r['cpu_us_per_call'] if r['cpu_us_per_call'] is not None else '-',
            '%.1f' % r['schedstat_us_per_call'] if r.get('schedstat_us_per_call') is not None else '-',
            '%.2f' % r['wall_ms_per_call'] if 'wall_ms_per_call' in r else '-'))
    print('memory: after start-up VmRSS %.2f MiB VmHWM %.2f MiB; %s during %d polls VmHWM %.2f MiB, '
          'VmRSS after %.2f MiB; threads %d' % (
              startup['rss_kib'] / 1024.0, startup['hwm_kib'] / 1024.0,
              'HWM reset, then' if can_reset else '(HWM not resettable)', n, hwm_mib,
              res['update']['rss_kib'] / 1024.0, res['threads']))
    print('%-30s %8s %8s %8s %8s %8s %8s   (MiB)' % ('process', 'VmRSS', 'VmHWM', 'RssAnon', 'RssFile', 'Pss',
                                                    'Private'))

    def mib(v):
        return '%8.2f' % (v / 1024.0) if v is not None else '%8s' % '-'
    for name, m in res['mem'].items():
        print('%-30s %s %s %s %s %s %s' % (name, mib(m['VmRSS']), mib(m['VmHWM']), mib(m['RssAnon']),
                                           mib(m['RssFile']), mib(m['Pss']), mib(m['Private'])))
    per_poll = res['update']['cpu_us_per_call']
    summary = {'benchmark': 'cpu', 'polls': n, 'cpu_us_per_poll': per_poll,
               'schedstat_us_per_poll': res['update']['schedstat_us_per_call'],
               'peak_rss_mib': hwm_mib, 'target_cpu_us': 1000.0, 'target_rss_mib': 8.0,
               'meets_target': per_poll < 1000.0 and hwm_mib < 8.0, 'detail': res}
    print('SUMMARY cpu: %.0f us CPU per idle poll (schedstat %.0f us; target < 1000 us), peak RSS %.2f MiB '
          '(target < 8 MiB): %s' % (per_poll, res['update']['schedstat_us_per_call'] or -1, hwm_mib,
                                    'met' if summary['meets_target'] else 'NOT met'))
    return summary


# ---------------------------------------------------------------------------
# (d) bytes per idle poll
# ---------------------------------------------------------------------------

def request_header_bytes(req):
    """Size of the request head as received: request line, headers, blank line."""
    n = len('%s %s HTTP/1.1\r\n' % (req['http_method'], req['path']))
    n += sum(len(k) + 2 + len(v) + 2 for k, v in req['headers'].items())
    return n + 2


def bytes_phase(w, n):
    w.api.reset_calls()
    u0, d0, c0 = w.relay.counters()
    for _ in range(n):
        w.update()
    u1, d1, c1 = w.relay.counters()
    reqs = w.api.requests(API_PATH)
    if len(reqs) != n:
        raise RuntimeError('expected %d document requests, got %d' % (n, len(reqs)))
    return {'polls': n,
            'status': sorted({r['status'] for r in reqs}),
            'conditional': sum(1 for r in reqs if r.get('conditional')),
            'not_modified': sum(1 for r in reqs if r.get('not_modified')),
            'body_out_per_poll': sum(r['bytes_out'] for r in reqs) / n,
            'req_head_per_poll': sum(request_header_bytes(r) for r in reqs) / n,
            'wire_up_per_poll': (u1 - u0) / n, 'wire_down_per_poll': (d1 - d0) / n,
            'wire_total_per_poll': ((u1 - u0) + (d1 - d0)) / n,
            'new_connections': c1 - c0}


def bench_bytes(args):
    n = args.byte_polls
    with World(args, relay=True) as w:
        doc = w.api.request('GET', '/_sim/doc')[2]
        w.update()
        with_v = bytes_phase(w, n)
        # Same document, served without ETag and Last-Modified: nothing to send back.
        w.api.set_doc(doc, etag=False, last_modified_header=False)
        w.update()
        w.update()
        without_v = bytes_phase(w, n)
    print('(d) bytes per idle poll of %s (document %d bytes)' % (API_PATH, len(doc)))
    print('%-24s %5s %6s %5s %9s %9s %9s %9s %9s %5s' % (
        'mode', 'polls', 'status', 'cond', 'body_out', 'req_head', 'wire_up', 'wire_dn', 'wire_tot', 'conns'))
    for name, r in (('ETag/Last-Modified', with_v), ('no validators', without_v)):
        print('%-24s %5d %6s %5d %9.0f %9.0f %9.0f %9.0f %9.0f %5d' % (
            name, r['polls'], ','.join(map(str, r['status'])), r['conditional'], r['body_out_per_poll'],
            r['req_head_per_poll'], r['wire_up_per_poll'], r['wire_down_per_poll'], r['wire_total_per_poll'],
            r['new_connections']))
    ratio_wire = without_v['wire_total_per_poll'] / with_v['wire_total_per_poll']
    ratio_body = (without_v['body_out_per_poll'] / with_v['body_out_per_poll']
                  if with_v['body_out_per_poll'] else None)
    print('(body_out: response body bytes from the API simulator log; req_head: request head rebuilt from the '
          'logged headers; wire: all bytes through a counting loopback relay, both ways)')
    summary = {'benchmark': 'bytes', 'document_bytes': len(doc), 'with_validators': with_v,
               'without_validators': without_v, 'ratio_wire_without_over_with': ratio_wire,
               'ratio_body_without_over_with': ratio_body}
    print('SUMMARY bytes: %.0f B/poll on the wire with validators (304, body %.0f B) vs %.0f B/poll without '
          '(200, body %.0f B): %.1fx less with conditional requests' % (
              with_v['wire_total_per_poll'], with_v['body_out_per_poll'], without_v['wire_total_per_poll'],
              without_v['body_out_per_poll'], ratio_wire))
    return summary


# ---------------------------------------------------------------------------

def main():
    global H, simlib
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-C', '--build-dir', default=os.environ.get('PLATFORM_BUILD_DIR', 'build'),
                    help='meson build directory (default: $PLATFORM_BUILD_DIR or ./build)')
    ap.add_argument('--daemon', help='daemon binary (default: BUILD/src/daemon/platform-launcherd)')
    ap.add_argument('--recreate', action='store_true', help='(a) time added during a recreate')
    ap.add_argument('--get-stop', action='store_true', help='(b) Get latency during a simulated shutdown')
    ap.add_argument('--cpu', action='store_true', help='(c) CPU and RSS per idle poll')
    ap.add_argument('--bytes', action='store_true', help='(d) bytes per idle poll')
    ap.add_argument('--idle-writes', action='store_true', help='(e) VMM writes over idle polls of a spec with ports')
    ap.add_argument('--idle-polls', type=int, default=100, help='(e) idle polls (default 100)')
    ap.add_argument('--runs', type=int, default=10, help='(a) recreates (default 10)')
    ap.add_argument('--lost-notify', action='store_true',
                    help='(a) the guest\'s "powering off" report is lost: the VM ends exited, StopVm follows')
    ap.add_argument('--seed', type=int, default=1, help='(a) seed of the shutdown/remove durations (default 1)')
    ap.add_argument('--shutdown-seconds', type=float, help='(a) fixed ShutdownVm duration (default: uniform 0.3-3 s)')
    ap.add_argument('--remove-seconds', type=float, help='(a) fixed RemoveVm duration (default: uniform 0.2-1.5 s)')
    ap.add_argument('--stop-seconds', type=float, default=30.0, help='(b) simulated shutdown (default 30 s)')
    ap.add_argument('--get-calls', type=int, default=5000, help='(b) Get calls per bench-get round (default 5000)')
    ap.add_argument('--get-warmup', type=int, default=200, help='(b) unmeasured calls per round (default 200)')
    ap.add_argument('--get-rounds', type=int, default=3, help='(b) idle rounds before and after the stop (default 3)')
    ap.add_argument('--polls', type=int, default=1000, help='(c) Vm.Update polls (default 1000)')
    ap.add_argument('--timer-seconds', type=float, default=10.0,
                    help='(c) also measure timer-driven polls at 1 s for this long (0 = skip; default 10)')
    ap.add_argument('--no-hostnamed', action='store_true', help='(c) no systemd-hostnamed memory baseline')
    ap.add_argument('--byte-polls', type=int, default=100, help='(d) polls per mode (default 100)')
    ap.add_argument('--json', action='store_true', help='print the results as one JSON line too')
    args = ap.parse_args()

    os.environ['PLATFORM_BUILD_DIR'] = os.path.abspath(args.build_dir)
    import harness
    import simlib as sl
    H, simlib = harness, sl
    args.daemon = os.path.abspath(args.daemon) if args.daemon else H.daemon_binary()
    if not os.path.exists(args.daemon):
        sys.exit('platform-launcherd not built: %s (ninja -C %s)' % (args.daemon, args.build_dir))
    if not H.is_root():
        print('note: not root; /proc/PID/clear_refs may be refused (peak RSS then includes start-up)',
              file=sys.stderr)

    chosen = [k for k in ('recreate', 'get_stop', 'cpu', 'bytes', 'idle_writes') if getattr(args, k)]
    chosen = chosen or ['recreate', 'get_stop', 'cpu', 'bytes', 'idle_writes']
    fns = {'recreate': bench_recreate, 'get_stop': bench_get_stop, 'cpu': bench_cpu, 'bytes': bench_bytes,
           'idle_writes': bench_idle_writes}
    results = {}
    for i, k in enumerate(chosen):
        if i:
            print()
        results[k] = fns[k](args)
        sys.stdout.flush()
    if args.json:
        print(json.dumps(results))


if __name__ == '__main__':
    main()
