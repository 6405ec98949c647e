#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Property Get latency: systemd-hostnamed (reference) vs platform-launcherd.

Not a test: prints figures. On one private system bus (tests/integration/harness.py)
it starts /lib/systemd/systemd-hostnamed and, if built, platform-launcherd, then runs
the same C client (bench-get, sd_bus_get_property in a loop, CLOCK_MONOTONIC) against
  org.freedesktop.hostname1      /org/freedesktop/hostname1  Hostname
  org.platform.Launcher1.Config  /org/platform/Launcher1     ApiUrl
alternating targets round by round, and prints median, p99, calls/s and the ratio
ours/hostnamed. See README.md.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))
os.environ.setdefault('PLATFORM_SOURCE_DIR', os.path.abspath(os.path.join(HERE, '..', '..')))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-C', '--build-dir', default=os.environ.get('PLATFORM_BUILD_DIR', 'build'),
                    help='meson build directory (default: $PLATFORM_BUILD_DIR or ./build)')
    ap.add_argument('-n', '--calls', type=int, default=10000, help='measured calls per round (default 10000)')
    ap.add_argument('-r', '--rounds', type=int, default=5, help='rounds per target, alternating (default 5)')
    ap.add_argument('-w', '--warmup', type=int, default=500, help='unmeasured calls per round (default 500)')
    ap.add_argument('--no-polkit', action='store_true', help='do not start polkitd')
    ap.add_argument('--json', action='store_true', help='print the result as JSON too')
    args = ap.parse_args()

    os.environ['PLATFORM_BUILD_DIR'] = os.path.abspath(args.build_dir)
    import harness as H

    client = os.path.join(os.environ['PLATFORM_BUILD_DIR'], 'tests', 'bench', 'bench-get')
    if not os.path.exists(client):
        sys.exit('bench-get client not built: %s (ninja -C %s)' % (client, args.build_dir))

    h = H.Harness(prefix='platform-bench-')
    try:
        bus = h.start_bus()
        if H.is_root() and not args.no_polkit:
            h.start_polkit('real')
        # /etc read-only for hostnamed needs root; Get alone changes nothing anyway.
        hn = H.Hostnamed(bus, h.workdir, h.procs, read_only=H.is_root()).start()
        targets = [('hostnamed', hn, (H.Hostnamed.NAME, H.Hostnamed.PATH, H.Hostnamed.IFACE, 'Hostname'))]
        if os.path.exists(H.daemon_binary()):
            d = h.daemon(config={'env': {}})
            targets.append(('platform-launcherd', d, (H.DAEMON_NAME, H.DAEMON_PATH, H.CONFIG_IFACE, 'ApiUrl')))
        else:
            print('platform-launcherd not built (%s): measuring hostnamed only' % H.daemon_binary())

        def run(name, svc, spec):
            for attempt in (1, 2):
                if isinstance(svc, H.Hostnamed):
                    svc.ensure_running()   # it exits after ~30 s idle
                p = subprocess.run([client, *spec, str(args.calls), str(args.warmup)], env=bus.env(),
                                   capture_output=True, text=True, timeout=600)
                if p.returncode == 0:
                    return json.loads(p.stdout.strip().splitlines()[-1])
                if attempt == 2 or not isinstance(svc, H.Hostnamed):
                    sys.exit('%s: bench-get failed: %s' % (name, p.stderr.strip()))

        results = {name: [] for name, _, _ in targets}
        for _ in range(args.rounds):
            for name, svc, spec in targets:
                results[name].append(run(name, svc, spec))

        summary = {}
        print('%-20s %10s %10s %10s %12s   (%d rounds x %d calls, median over rounds)' % (
            'service', 'median_us', 'p99_us', 'mean_us', 'calls/s', args.rounds, args.calls))
        for name, _, spec in targets:
            rs = results[name]
            s = {k: statistics.median(r[k] for r in rs) for k in ('median_us', 'p99_us', 'mean_us', 'calls_per_s')}
            s['property'] = '%s.%s' % (spec[2], spec[3])
            summary[name] = s
            print('%-20s %10.1f %10.1f %10.1f %12.0f   %s' % (name, s['median_us'], s['p99_us'], s['mean_us'],
                                                          s['calls_per_s'], s['property']))
        if 'platform-launcherd' in summary:
            o, r = summary['platform-launcherd'], summary['hostnamed']
            ratio = {'median': o['median_us'] / r['median_us'], 'p99': o['p99_us'] / r['p99_us'],
                     'calls_per_s': o['calls_per_s'] / r['calls_per_s']}
            summary['ratio_ours_over_hostnamed'] = ratio
            print('ratio ours/hostnamed: median %.2f, p99 %.2f, calls/s %.2f' % (
                ratio['median'], ratio['p99'], ratio['calls_per_s']))
        if args.json:
            print(json.dumps(summary))
    finally:
        problems = h.cleanup()
        if problems:
            print('cleanup: %s' % problems, file=sys.stderr)
            sys.exit(1)


if __name__ == '__main__':
    main()
