#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Property Get latency while an Updater command floods its output (issue 15, D3).

Not a test: prints figures. On one private system bus (tests/integration/harness.py)
the real daemon keeps a real git deployment (tests/integration/updater_world.py)
whose release 2 builds with `yes` (as fast as a child can print) until the
command timeout. Round by round it runs the same C client (bench-get,
sd_bus_get_property in a loop) against org.platform.Launcher1.Updater State:

  idle   nothing runs;
  flood  an Apply is running the flooding build (measured only while it runs).

and prints median, p99 and calls/s of each, and the ratio flood/idle (the
target: p99 within 2x). Also the daemon's log growth and CPU time during the
floods. See README.md.
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
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
os.environ.setdefault('PLATFORM_SOURCE_DIR', os.path.abspath(os.path.join(HERE, '..', '..')))


def cpu_seconds(pid):
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-C', '--build-dir', default=os.environ.get('PLATFORM_BUILD_DIR', 'build'),
                    help='meson build directory (default: $PLATFORM_BUILD_DIR or ./build)')
    ap.add_argument('-n', '--calls', type=int, default=3000, help='measured calls per round (default 3000)')
    ap.add_argument('-r', '--rounds', type=int, default=5, help='rounds of idle then flood (default 5)')
    ap.add_argument('-w', '--warmup', type=int, default=200, help='unmeasured calls per round (default 200)')
    ap.add_argument('-f', '--flood-seconds', type=int, default=5,
                    help='how long each flood lasts (default 5; a round must fit in it)')
    ap.add_argument('--json', action='store_true', help='print the result as JSON too')
    args = ap.parse_args()

    os.environ['PLATFORM_BUILD_DIR'] = os.path.abspath(args.build_dir)
    import harness as H
    from updater_world import World, updater, prop, wait_prop

    client = os.path.join(os.environ['PLATFORM_BUILD_DIR'], 'tests', 'bench', 'bench-get')
    for f in (client, H.daemon_binary()):
        if not os.path.exists(f):
            sys.exit('not built: %s (ninja -C %s)' % (f, args.build_dir))

    h = H.Harness(prefix='platform-bench-')
    try:
        bus = h.start_bus()
        world = World(h)
        # `yes` for a bounded time: the build then fails, the Apply rolls back
        flood = 'if [ "$(cat version.txt)" = 2 ]; then exec timeout %d yes; fi' % args.flood_seconds
        world.release('2')
        d = h.daemon(config=world.config(updater_build_commands=[['sh', '-c', flood]],
                                         updater_command_timeout_usec=(args.flood_seconds + 60) * 1000000,
                                         updater_health_command=[]))
        wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
        spec = (H.DAEMON_NAME, H.DAEMON_PATH, 'org.platform.Launcher1.Updater', 'State')

        def measure():
            p = subprocess.run([client, *spec, str(args.calls), str(args.warmup)], env=bus.env(),
                               capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                sys.exit('bench-get failed: %s' % p.stderr.strip())
            return json.loads(p.stdout.strip().splitlines()[-1])

        results = {'idle': [], 'flood': []}
        log_growth, cpu, floods = 0, 0.0, 0
        for _ in range(args.rounds):
            results['idle'].append(measure())
            # a flood: Apply runs the build (forced: the last round quarantined it)
            log0, cpu0 = os.path.getsize(d.log_path), cpu_seconds(d.proc.pid)
            out = []
            t = threading.Thread(target=lambda: out.append(updater(d, 'Apply', 'a{sv}', [{'force': ['b', True]}],
                                                                   timeout=600)), daemon=True)
            t.start()
            wait_prop(d, 'Operation', lambda v: v == 'build')
            t0 = time.monotonic()
            results['flood'].append(measure())
            dt = time.monotonic() - t0
            cpu += cpu_seconds(d.proc.pid) - cpu0
            floods += dt
            if prop(d, 'Operation') != 'build':
                print('warning: the flood ended before the round (raise --flood-seconds)', file=sys.stderr)
            log_growth += os.path.getsize(d.log_path) - log0
            t.join(args.flood_seconds + 120)
            r = out[0] if out else None
            if r is None or r.ok:
                sys.exit('the flooding Apply did not fail as expected: %r' % (r,))
            wait_prop(d, 'State', lambda v: v == 'idle')

        summary = {}
        print('%-8s %10s %10s %10s %12s   (%d rounds x %d calls of Updater.State, median over rounds)' % (
            'phase', 'median_us', 'p99_us', 'mean_us', 'calls/s', args.rounds, args.calls))
        for phase in ('idle', 'flood'):
            rs = results[phase]
            s = {k: statistics.median(r[k] for r in rs) for k in ('median_us', 'p99_us', 'mean_us', 'calls_per_s')}
            summary[phase] = s
            print('%-8s %10.1f %10.1f %10.1f %12.0f' % (phase, s['median_us'], s['p99_us'], s['mean_us'],
                                                        s['calls_per_s']))
        ratio = {'median': summary['flood']['median_us'] / summary['idle']['median_us'],
                 'p99': summary['flood']['p99_us'] / summary['idle']['p99_us']}
        summary['ratio_flood_over_idle'] = ratio
        summary['daemon_log_bytes_per_flood_second'] = log_growth / floods if floods else 0
        summary['daemon_cpu_share_during_flood'] = cpu / floods if floods else 0
        print('ratio flood/idle: median %.2f, p99 %.2f (target p99 <= 2)' % (ratio['median'], ratio['p99']))
        print('during the floods: daemon log +%.0f bytes/s, daemon CPU %.0f %% of one core' % (
            summary['daemon_log_bytes_per_flood_second'], 100 * summary['daemon_cpu_share_during_flood']))
        if args.json:
            print(json.dumps(summary))
    finally:
        problems = h.cleanup()
        if problems:
            print('cleanup: %s' % problems, file=sys.stderr)
            sys.exit(1)


if __name__ == '__main__':
    main()
