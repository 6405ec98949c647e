#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Updater benchmarks: platform-launcherd keeping a real git deployment current.

Not a test: prints figures. One world per run: a private system bus with the
real polkitd (tests/integration/harness.py), a bare "origin" + working clone
(tests/integration/updater_world.py), and the real daemon.

  (a) overhead  the launcher's own time in an Apply: the wall time of the call
                (client side) minus the time of the child processes (git,
                build, restart and health commands) as the daemon measured
                them (its debug line "N µs in child processes"). Target < 100 ms.
  (b) idle-cpu  daemon CPU (its own threads, /proc/PID/task/*/schedstat;
                its git children are not counted) per automatic check that
                finds nothing new, AutoUpdate on with a 1 s interval. Target < 5 ms.
  (c) shell     the same update done by a shell loop like alphacore's
                autoupdate_release.sh (flock, fetch, compare, status --porcelain,
                reset, build, restart, health), for comparison.

Usage: bench-update.py [--builddir DIR] [--rounds N] [--json]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'integration'))
os.environ.setdefault('PLATFORM_SOURCE_DIR', SOURCE_DIR)

SHELL_LOOP = r'''
set -e
cd "$1"
exec 9>.git/platform-launcher-update.lock
flock -n 9 || { echo busy; exit 75; }
git fetch --quiet origin release
[ "$(git rev-parse HEAD)" = "$(git rev-parse origin/release)" ] && exit 0
[ -z "$(git status --porcelain --untracked-files=all)" ] || { echo dirty; exit 1; }
git reset --hard --quiet origin/release
sh build.sh
echo "restart $(cat version.txt)" >> "$2"
i=0; until sh health.sh; do i=$((i+1)); [ $i -lt 240 ] || exit 1; sleep 0.5; done
'''


def cpu_ns(pid):
    """CPU time of the daemon's own threads (not its children), in ns, from
    /proc/PID/task/*/schedstat (utime+stime in /proc/PID/stat count 10 ms ticks)."""
    total = 0
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def child_usec(log_text):
    m = re.findall(r'transaction ended; (\d+) µs in child processes', log_text)
    return int(m[-1]) if m else None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--builddir', default=os.path.join(SOURCE_DIR, 'build'))
    p.add_argument('--rounds', type=int, default=10)
    p.add_argument('--idle-seconds', type=float, default=10.0)
    p.add_argument('--json', action='store_true')
    a = p.parse_args()
    os.environ['PLATFORM_BUILD_DIR'] = os.path.abspath(a.builddir)

    import harness as H
    from updater_world import World, updater, prop, wait_prop

    h = H.Harness(prefix='bench-update-')
    out = {}
    try:
        bus = h.start_bus()
        h.start_polkit('real')
        world = World(h)
        d = h.daemon(config=world.config(), args=['--log-level=debug'])
        wait_prop(d, 'CurrentCommit', lambda v: v == world.first)

        # (a) overhead per Apply
        walls, childs = [], []
        for i in range(a.rounds):
            world.release(str(i + 2))
            t0 = time.monotonic()
            r = updater(d, 'Apply', 'a{sv}', [{}])
            wall = (time.monotonic() - t0) * 1e6
            assert r.ok, r
            c = child_usec(d.log_text())
            walls.append(wall)
            childs.append(c)
        over = [(w - c) / 1000.0 for w, c in zip(walls, childs)]
        out['apply_wall_ms_median'] = statistics.median(walls) / 1000.0
        out['apply_children_ms_median'] = statistics.median(childs) / 1000.0
        out['apply_overhead_ms_median'] = statistics.median(over)
        out['apply_overhead_ms_max'] = max(over)

        # (c) the same update by a shell loop
        shell = []
        for i in range(a.rounds):
            world.release('s%d' % i)
            t0 = time.monotonic()
            subprocess.run(['sh', '-c', SHELL_LOOP, 'sh', world.work, world.log], check=True,
                           env={'PATH': '/usr/bin:/bin', 'HOME': '/nonexistent', 'GIT_CONFIG_NOSYSTEM': '1',
                                'GIT_CONFIG_GLOBAL': '/dev/null'})
            shell.append((time.monotonic() - t0) * 1000.0)
        out['shell_loop_ms_median'] = statistics.median(shell)

        # (b) CPU per idle automatic check
        r = updater(d, 'Apply', 'a{sv}', [{}])   # catch up with the shell's commits
        assert r.ok, r
        d.call('SetSettings', 'a{sv}', [{'UpdaterIntervalUSec': ['t', 1000000]}])
        # as in production: info, not the debug level (a) needed for the child times
        r = d.call('Set', 'ssv', ['org.freedesktop.LogControl1', 'LogLevel', ['s', 'info']],
                   iface='org.freedesktop.DBus.Properties', path='/org/freedesktop/LogControl1')
        assert r.ok, r
        last = prop(d, 'LastCheckTimestamp')
        assert updater(d, 'SetAutoUpdate', 'b', [True]).ok
        last = wait_prop(d, 'LastCheckTimestamp', lambda v: v > last, timeout=15)
        t0 = cpu_ns(d.proc.pid)
        checks = 0
        deadline = time.monotonic() + a.idle_seconds
        while time.monotonic() < deadline:
            last = wait_prop(d, 'LastCheckTimestamp', lambda v: v > last, timeout=5)
            checks += 1
        ns = cpu_ns(d.proc.pid) - t0
        out['idle_checks'] = checks
        out['idle_cpu_ms_per_check'] = ns / 1e6 / max(1, checks)
    finally:
        problems = h.cleanup()
        if problems:
            print('teardown problems:', problems, file=sys.stderr)

    print('Updater benchmark (%d rounds)' % a.rounds)
    print('  Apply wall time, median           %8.1f ms' % out['apply_wall_ms_median'])
    print('  child processes (git, build, ...)  %8.1f ms' % out['apply_children_ms_median'])
    print('  launcher overhead, median / max    %8.1f / %.1f ms  (target < 100 ms)' % (
        out['apply_overhead_ms_median'], out['apply_overhead_ms_max']))
    print('  same update by a shell loop, median %7.1f ms' % out['shell_loop_ms_median'])
    print('  CPU per idle automatic check       %8.2f ms over %d checks (target < 5 ms, git excluded)' % (
        out['idle_cpu_ms_per_check'], out['idle_checks']))
    if a.json:
        print(json.dumps(out))


if __name__ == '__main__':
    main()
