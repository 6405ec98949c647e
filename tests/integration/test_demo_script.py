# SPDX-License-Identifier: Apache-2.0
"""tests/demo.sh, the README's Quick start (issue 16, 8): it installs only what
the demo needs, not the test suite's list, and builds in a directory of its
own, so that a later `meson setup build --prefix=/usr` is not silently kept at
/usr/local. apt-get, dpkg-query and meson are stand-ins on PATH that record
how the script calls them."""
import os
import subprocess

import harness as H

DEMO = os.path.join(H.SOURCE_DIR, 'tests', 'demo.sh')
STUB = '''#!/bin/sh
printf '%%s\\n' "$0 $*" >> %(log)s
case "$(basename "$0")" in
dpkg-query) exit 1 ;;   # nothing installed: the script installs all it needs
id) echo 0 ;;           # as root
esac
exit 0
'''


def run_demo(tmp_path, *args):
    bindir = tmp_path / 'bin'
    bindir.mkdir()
    log = tmp_path / 'calls.log'
    for name in ('apt-get', 'dpkg-query', 'meson', 'id'):
        path = bindir / name
        path.write_text(STUB % {'log': log})
        path.chmod(0o755)
    env = dict(os.environ, PATH='%s:%s' % (bindir, os.environ['PATH']))
    p = subprocess.run(['bash', DEMO] + list(args), env=env, capture_output=True, text=True, timeout=60)
    calls = [line.split(' ', 1) for line in log.read_text().splitlines()] if log.exists() else []
    return p, [(os.path.basename(c[0]), c[1] if len(c) > 1 else '') for c in calls]


def suite_packages():
    with open(os.path.join(H.SOURCE_DIR, 'tests', 'packages.txt')) as f:
        return [w for line in f for w in line.split('#')[0].split()]


def test_demo_installs_only_what_it_needs(tmp_path):
    p, calls = run_demo(tmp_path, '--no-run')
    assert p.returncode == 0, p
    installs = [args for tool, args in calls if tool == 'apt-get' and args.startswith('install')]
    assert len(installs) == 1, calls
    wanted = [w for w in installs[0].split() if not w.startswith('-') and w != 'install']
    listed = subprocess.run(['bash', DEMO, '--packages'], capture_output=True, text=True, timeout=30).stdout.split()
    assert sorted(wanted) == sorted(listed)
    suite = suite_packages()
    assert set(wanted) < set(suite), set(wanted) - set(suite)
    for test_only in ('clang', 'libclang-rt-14-dev', 'chromium', 'valgrind', 'nodejs', 'cockpit-ws', 'zsh',
                      'openssh-server', 'python3-pytest', 'python3-dbusmock'):
        assert test_only not in wanted, test_only
    for needed in ('meson', 'libsystemd-dev', 'dbus-daemon', 'polkitd', 'python3-gi', 'git'):
        assert needed in wanted, needed


def test_demo_builds_in_its_own_directory(tmp_path):
    p, calls = run_demo(tmp_path, '--no-run', '--no-deps')
    assert p.returncode == 0, p
    meson = [args for tool, args in calls if tool == 'meson']
    demo_dir = os.path.join(H.SOURCE_DIR, 'build-demo')
    # An earlier demo run leaves its directory configured: then only compile.
    configured = os.path.exists(os.path.join(demo_dir, 'build.ninja'))
    if not configured:
        assert meson[0] == 'setup %s %s' % (demo_dir, H.SOURCE_DIR), meson
    assert meson[-1] == 'compile -C %s platform-launcherd platformctl' % demo_dir, meson
    assert not any(tool == 'apt-get' for tool, _ in calls)
    # -C chooses another one.
    (tmp_path / 'again').mkdir()
    p, calls = run_demo(tmp_path / 'again', '--no-run', '--no-deps', '-C', str(tmp_path / 'elsewhere'))
    assert p.returncode == 0, p
    assert [args for tool, args in calls if tool == 'meson'][0] == 'setup %s %s' % (tmp_path / 'elsewhere',
                                                                                   H.SOURCE_DIR)
