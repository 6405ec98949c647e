#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Load benchmark (issue 9): platform-launcherd under many readers and a flood.

Not a test: prints figures (a table and one SUMMARY line; --json adds a JSON line).
One world (tests/integration/harness.py): a private system bus, real polkitd, the
VMM and API simulators (tests/sim) and the real daemon. As root.

  idle phase     N clients (default 50) start together, each makes C calls
                 (default 2000) alternating Config.ApiUrl Get, Vm.State Get and
                 Vm.Plan(), on its own connection, each call timed.
  loaded phase   the same, while (1) a VM replacement is in flight: Vm.Update
                 after a new compose, the old guest takes --shutdown-seconds
                 (default 30) to shut down, and (2) F `nobody` clients (default 4)
                 each keep 120 Config.GetEnv calls in flight (tests/integration/
                 flood.py), and (3) a polkit-allowed user (`daemon`) calls GetEnv
                 every --auth-interval seconds.

Reported: errors per phase (target 0), median and p99 per phase and the ratio
loaded/idle p99 (target <= 2x), the daemon's RSS (VmRSS every 0.25 s: start,
peak, end, and the slope over the loaded phase; target flat), whether the
replacement was in flight for the whole loaded phase, the authorized caller's
calls (target: all served), the flood's outcomes and the daemon's log lines.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'integration'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'sim'))
os.environ.setdefault('PLATFORM_SOURCE_DIR', SOURCE_DIR)

VM_NAME = 'validator_vm'
VM_PATH = '/org/platform/Launcher1/vm/validator_5fvm'
VM_IFACE = 'org.platform.Launcher1.Vm'
API_PATH = '/config/compose/validator_vm'
READ_SECRETS = 'org.platform.launcher1.read-secrets'
FLOOD = os.path.join(SOURCE_DIR, 'tests', 'integration', 'flood.py')
USEC = 1000000
SECRET_VALUE = 'bench-passphrase'

H = None        # harness module, imported once PLATFORM_BUILD_DIR is set
simlib = None


def pct(xs, p):
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * p / 100.0))]


def compose_text(i):
    return 'services:\n  app:\n    image: "nginx:1.%d"\n' % i


# ---------------------------------------------------------------------------
# Worker: one client process (bench-load.py --worker JSON)
# ---------------------------------------------------------------------------

def worker(req):
    from gi.repository import Gio, GLib
    conn = Gio.DBusConnection.new_for_address_sync(
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'],
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    dest, cfg_path, cfg_iface = req['dest'], req['config_path'], req['config_iface']
    calls = [
        ('get-apiurl', cfg_path, 'org.freedesktop.DBus.Properties', 'Get', GLib.Variant('(ss)', (cfg_iface, 'ApiUrl'))),
        ('get-state', VM_PATH, 'org.freedesktop.DBus.Properties', 'Get', GLib.Variant('(ss)', (VM_IFACE, 'State'))),
        ('plan', VM_PATH, VM_IFACE, 'Plan', None),
    ]
    print('ready', flush=True)
    sys.stdin.readline()  # go
    lat = {c[0]: [] for c in calls}
    errors = {}
    t0 = time.monotonic()
    for i in range(req['calls']):
        name, path, iface, method, params = calls[i % len(calls)]
        s = time.monotonic_ns()
        try:
            conn.call_sync(dest, path, iface, method, params, None, Gio.DBusCallFlags.NONE, 30000, None)
            lat[name].append((time.monotonic_ns() - s) // 1000)
        except GLib.Error as e:
            key = Gio.DBusError.get_remote_error(e) or e.message
            errors[key] = errors.get(key, 0) + 1
    print(json.dumps({'lat_us': lat, 'errors': errors, 'wall_s': time.monotonic() - t0}), flush=True)


# ---------------------------------------------------------------------------
# The world and its measurements
# ---------------------------------------------------------------------------

def rss_kib(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for ln in f:
                if ln.startswith('VmRSS:'):
                    return int(ln.split()[1])
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    def __init__(self, pid, period=0.25):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.samples = []   # (t, kib)
        self.stop_ev = threading.Event()

    def run(self):
        while not self.stop_ev.is_set():
            v = rss_kib(self.pid)
            if v is not None:
                self.samples.append((time.monotonic(), v))
            self.stop_ev.wait(self.period)

    def window(self, t0, t1):
        return [(t, v) for t, v in self.samples if t0 <= t <= t1]


def slope_kib_per_s(samples):
    if len(samples) < 2:
        return 0.0
    ts = [t for t, _ in samples]
    vs = [v for _, v in samples]
    mt, mv = statistics.mean(ts), statistics.mean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (v - mv) for t, v in samples) / den if den else 0.0


def run_clients(h, n, calls):
    req = json.dumps({'dest': H.DAEMON_NAME, 'config_path': H.DAEMON_PATH, 'config_iface': H.CONFIG_IFACE,
                      'calls': calls})
    procs = [h.spawn('load-%d' % i, [H.PYTHON, os.path.abspath(__file__), '--worker', req],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(n)]
    for p in procs:
        if p.stdout.readline().strip() != 'ready':
            raise RuntimeError('load client did not start: %s' % p.stderr.read())
    t0 = time.monotonic()
    for p in procs:
        p.stdin.write('go\n')
        p.stdin.flush()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError('load client failed: %s' % err)
        results.append(json.loads(out.strip().splitlines()[-1]))
    t1 = time.monotonic()
    lat = {}
    errors = {}
    for r in results:
        for k, v in r['lat_us'].items():
            lat.setdefault(k, []).extend(v)
        for k, v in r['errors'].items():
            errors[k] = errors.get(k, 0) + v
    return {'t0': t0, 't1': t1, 'lat': lat, 'all': [x for v in lat.values() for x in v], 'errors': errors}


def phase_stats(ph):
    a = ph['all']
    out = {'calls': len(a) + sum(ph['errors'].values()), 'errors': sum(ph['errors'].values()),
           'error_kinds': ph['errors'], 'wall_s': ph['t1'] - ph['t0'],
           'median_us': statistics.median(a) if a else None, 'p99_us': pct(a, 99) if a else None,
           'max_us': max(a) if a else None}
    out['per_call'] = {k: {'median_us': statistics.median(v), 'p99_us': pct(v, 99)} for k, v in ph['lat'].items() if v}
    out['calls_per_s'] = len(a) / out['wall_s'] if out['wall_s'] > 0 else 0
    return out


def auth_worker(req):
    """The polkit-allowed user (run as `daemon`): GetEnv every interval on one
    connection until stdin says stop; prints [[ok, latency_s, error], ...]."""
    import select
    from gi.repository import Gio, GLib
    conn = Gio.DBusConnection.new_for_address_sync(
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'],
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    print('ready', flush=True)
    sys.stdin.readline()  # go
    out = []
    while True:
        t = time.monotonic()
        try:
            v = conn.call_sync(req['dest'], req['path'], req['iface'], 'GetEnv',
                               GLib.Variant('(s)', ('HOTKEY_PASSPHRASE',)), None, Gio.DBusCallFlags.NONE, 30000, None)
            ok = v.unpack() == (req['expect'],)
            out.append([ok, time.monotonic() - t, None if ok else 'wrong value'])
        except GLib.Error as e:
            out.append([False, time.monotonic() - t, Gio.DBusError.get_remote_error(e) or e.message])
        if select.select([sys.stdin], [], [], req['interval'])[0]:
            break
    print(json.dumps(out), flush=True)


class AuthorizedCaller:
    """The polkit-allowed user reading a secret while the flood runs (own process, own connection)."""

    def __init__(self, h, interval):
        req = json.dumps({'dest': H.DAEMON_NAME, 'path': H.DAEMON_PATH, 'iface': H.CONFIG_IFACE,
                          'interval': interval, 'expect': SECRET_VALUE})
        self.p = h.spawn('auth-client', [H.PYTHON, os.path.abspath(__file__), '--auth-worker', req], user='daemon',
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if self.p.stdout.readline().strip() != 'ready':
            raise RuntimeError('authorized client did not start: %s' % self.p.stderr.read())
        self.results = []

    def start(self):
        self.p.stdin.write('go\n')
        self.p.stdin.flush()

    def stop(self):
        out, err = self.p.communicate('stop\n', timeout=120)
        if self.p.returncode != 0:
            raise RuntimeError('authorized client failed: %s' % err)
        self.results = [tuple(x) for x in json.loads(out.strip().splitlines()[-1])]


def bench_load(args):
    h = H.Harness(prefix='platform-bench-load-')
    sims = []
    try:
        bus = h.start_bus()
        polkit = h.start_polkit('real')
        polkit.allow(READ_SECRETS, user='daemon')
        vmm = simlib.start_vmm(h.workdir, shutdown_seconds=args.shutdown_seconds, remove_seconds=0.5)
        sims.append(vmm)
        api = simlib.start_api(h.workdir)
        sims.append(api)
        api.patch_doc(required_env=['HOTKEY_PASSPHRASE'], compose_content=compose_text(0))
        cfg = {'api_url': api.url + API_PATH, 'vmm_url': vmm.url, 'poll_interval_usec': 3600 * USEC,
               'stop_timeout_usec': int((args.shutdown_seconds + 60) * USEC),
               'env': {'HOTKEY_PASSPHRASE': SECRET_VALUE},
               'capacity_vcpu': 100000, 'capacity_memory_mib': 1 << 30}
        vmm.config(shutdown_seconds=0.2)    # the first deployment has nothing to stop anyway
        d = h.daemon(config=cfg, binary=args.daemon)
        pid = d.proc.pid
        r = d.call('Update', 'a{sv}', [{}], iface=VM_IFACE, path=VM_PATH, timeout=60)
        if not r.ok or d.get('State', iface=VM_IFACE, path=VM_PATH) != 'running':
            raise RuntimeError('first deployment failed: %r\n%s' % (r, d.log_text()[-3000:]))
        rss = RssSampler(pid)
        rss.start()

        idle = run_clients(h, args.clients, args.calls)
        rss_after_idle = rss_kib(pid)

        # The replacement: a new compose, Update pending while the old guest takes its time.
        vmm.config(shutdown_seconds=args.shutdown_seconds)
        vm_id = [v for v in vmm.vms() if v['name'] == VM_NAME][0]['id']
        api.patch_doc(compose_content=compose_text(1))
        vmm.reset_calls()
        updater = h.spawn('busctl-update', ['busctl', '--timeout=%d' % int(args.shutdown_seconds + 120), 'call',
                                            H.DAEMON_NAME, VM_PATH, VM_IFACE, 'Update', 'a{sv}', '0'],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        vmm.wait_calls('ShutdownVm', count=1, state='done', timeout=30)
        t_shutdown = time.monotonic()

        flood_req = json.dumps({'dest': H.DAEMON_NAME, 'path': H.DAEMON_PATH, 'interface': H.CONFIG_IFACE,
                                'method': 'GetEnv', 'signature': 's', 'args': ['HOTKEY_PASSPHRASE'],
                                'in_flight': 120, 'seconds': args.flood_seconds, 'timeout': 60})
        floods = [h.spawn('flood-%d' % i, [H.PYTHON, FLOOD, flood_req], user='nobody',
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(args.flooders)]
        auth = AuthorizedCaller(h, args.auth_interval)
        auth.start()
        loaded = run_clients(h, args.clients, args.calls)
        try:
            in_flight_at_end = vmm.vm(vm_id)['status'] == 'stopping'
        except simlib.SimError:     # already replaced: the loaded phase outlasted the shutdown
            in_flight_at_end = False
        auth.stop()
        flood_out = {}
        for p in floods:
            out, err = p.communicate(timeout=args.flood_seconds + 120)
            res = json.loads(out.decode().strip().splitlines()[-1]) if p.returncode == 0 else {'outcomes': {}}
            for k, v in res['outcomes'].items():
                flood_out[k] = flood_out.get(k, 0) + v
        out, err = updater.communicate(timeout=args.shutdown_seconds + 180)
        update_ok = updater.returncode == 0
        t_update_done = time.monotonic()
        rss.stop_ev.set()
        rss.join(5)
        log_lines = d.log_text().count('\n')
    finally:
        problems = h.cleanup()
        for s in sims:
            s.stop()
        for p in problems:
            print('cleanup: %s' % p, file=sys.stderr)

    si, sl = phase_stats(idle), phase_stats(loaded)
    ratio = sl['p99_us'] / si['p99_us'] if si['p99_us'] else float('inf')
    win = rss.window(loaded['t0'], loaded['t1'])
    rss_info = {'start_kib': rss.samples[0][1], 'after_idle_kib': rss_after_idle,
                'loaded_start_kib': win[0][1] if win else None, 'loaded_end_kib': win[-1][1] if win else None,
                'peak_kib': max(v for _, v in rss.samples), 'end_kib': rss.samples[-1][1],
                'loaded_slope_kib_per_s': slope_kib_per_s(win)}
    auth_ok = sum(1 for ok, _, _ in auth.results if ok)
    auth_info = {'calls': len(auth.results), 'served': auth_ok,
                 'max_s': max((t for _, t, _ in auth.results), default=None),
                 'errors': [e for ok, _, e in auth.results if not ok][:3]}

    print('Load: %d clients x %d calls (ApiUrl Get, Vm.State Get, Vm.Plan in turn); loaded = during a VM '
          'replacement with a %.0f s guest shutdown + %d nobody clients flooding GetEnv (120 in flight each)'
          % (args.clients, args.calls, args.shutdown_seconds, args.flooders))
    print('%-8s %8s %7s %10s %10s %10s %9s %8s' % ('phase', 'calls', 'errors', 'median_us', 'p99_us', 'max_us',
                                                     'calls/s', 'wall_s'))
    for name, s in (('idle', si), ('loaded', sl)):
        print('%-8s %8d %7d %10.0f %10.0f %10.0f %9.0f %8.1f' % (name, s['calls'], s['errors'], s['median_us'],
                                                                s['p99_us'], s['max_us'], s['calls_per_s'], s['wall_s']))
    for name, s in (('idle', si), ('loaded', sl)):
        print('  %s per call: %s' % (name, ', '.join('%s median %.0f / p99 %.0f us' % (k, v['median_us'], v['p99_us'])
                                                     for k, v in sorted(s['per_call'].items()))))
    if si['error_kinds'] or sl['error_kinds']:
        print('  errors: idle %r, loaded %r' % (si['error_kinds'], sl['error_kinds']))
    covered = max(0.0, min(loaded['t1'], t_shutdown + args.shutdown_seconds) - loaded['t0'])
    print('replacement in flight for the whole loaded phase: %s (%.1f of its %.1f s; Update replied %s %.1f s '
          'after ShutdownVm)' % ('yes' if in_flight_at_end else 'NO', covered, sl['wall_s'],
                                 'ok' if update_ok else 'FAILED', t_update_done - t_shutdown))
    print('RSS (KiB): start %d, after idle %d, loaded %s -> %s, peak %d, end %d; slope over the loaded phase '
          '%.1f KiB/s' % (rss_info['start_kib'], rss_info['after_idle_kib'] or -1, rss_info['loaded_start_kib'],
                          rss_info['loaded_end_kib'], rss_info['peak_kib'], rss_info['end_kib'],
                          rss_info['loaded_slope_kib_per_s']))
    print('authorized caller (polkit-allowed user, GetEnv every %.1f s during the flood): %d of %d served, '
          'slowest %.0f ms%s' % (args.auth_interval, auth_ok, len(auth.results), (auth_info['max_s'] or 0) * 1000,
                                 '; errors %r' % auth_info['errors'] if auth_info['errors'] else ''))
    print('flood outcomes: %r; daemon log: %d lines in all' % (flood_out, log_lines))
    met = {'errors': si['errors'] + sl['errors'] == 0, 'p99_ratio': ratio <= 2.0,
           'authorized_served': auth_ok == len(auth.results) and auth_ok > 0, 'update_ok': update_ok}
    print('SUMMARY load: errors %d (target 0: %s); p99 idle %.0f us, loaded %.0f us, ratio %.2f (target <= 2x: %s); '
          'RSS %d -> %d KiB (slope %.1f KiB/s); authorized caller %d/%d served (%s)' % (
              si['errors'] + sl['errors'], 'met' if met['errors'] else 'NOT met', si['p99_us'], sl['p99_us'], ratio,
              'met' if met['p99_ratio'] else 'NOT met', rss_info['start_kib'], rss_info['end_kib'],
              rss_info['loaded_slope_kib_per_s'], auth_ok, len(auth.results),
              'met' if met['authorized_served'] else 'NOT met'))
    return {'benchmark': 'load', 'clients': args.clients, 'calls': args.calls, 'idle': si,
            'loaded': sl, 'p99_ratio': ratio, 'rss': rss_info, 'authorized': auth_info,
            'flood': flood_out, 'replacement_in_flight': in_flight_at_end, 'replacement_covered_s': covered,
            'update_ok': update_ok,
            'log_lines': log_lines, 'met': met}


def main():
    global H, simlib
    if len(sys.argv) == 3 and sys.argv[1] == '--worker':
        return worker(json.loads(sys.argv[2]))
    if len(sys.argv) == 3 and sys.argv[1] == '--auth-worker':
        return auth_worker(json.loads(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-C', '--build-dir', default=os.environ.get('PLATFORM_BUILD_DIR', 'build'))
    ap.add_argument('--daemon', help='daemon binary (default: BUILD/src/daemon/platform-launcherd)')
    ap.add_argument('--clients', type=int, default=50)
    ap.add_argument('--calls', type=int, default=2000, help='calls per client (default 2000)')
    ap.add_argument('--flooders', type=int, default=4)
    ap.add_argument('--flood-seconds', type=float, default=30.0)
    ap.add_argument('--shutdown-seconds', type=float, default=30.0)
    ap.add_argument('--auth-interval', type=float, default=0.5)
    ap.add_argument('--json', action='store_true')
    args = ap.parse_args()

    os.environ['PLATFORM_BUILD_DIR'] = os.path.abspath(args.build_dir)
    import harness
    import simlib as sl
    H, simlib = harness, sl
    args.daemon = os.path.abspath(args.daemon) if args.daemon else H.daemon_binary()
    if not os.path.exists(args.daemon):
        sys.exit('platform-launcherd not built: %s' % args.daemon)
    if not H.is_root():
        sys.exit('bench-load needs root (real polkitd, nobody clients)')
    res = bench_load(args)
    if args.json:
        print(json.dumps(res))


if __name__ == '__main__':
    main()
