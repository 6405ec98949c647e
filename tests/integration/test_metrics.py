# SPDX-License-Identifier: Apache-2.0
"""Prometheus metrics in node_exporter's textfile-collector format, through the
real daemon on the simulators: the file appears at MetricsPath, parses as the
text exposition format, is replaced atomically, and follows a deploy."""
import os
import re
import shutil
import stat
import subprocess
import time

import pytest

import harness as H  # noqa: F401
from vmenv import vm_env, SEC  # noqa: F401 (fixture; puts tests/sim on the path)
import simlib  # noqa: E402

METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_prometheus(text):
    """The text exposition format (version 0.0.4), strictly: HELP and TYPE
    once per family and before its samples, every sample of a declared family,
    label values escaped, values floats. Returns {(name, frozenset(labels)): value}
    and {family: type}."""
    assert text.endswith('\n'), 'the last line must end with a newline'
    samples, types, helps, seen_sample = {}, {}, set(), set()
    for n, line in enumerate(text.split('\n')[:-1], 1):
        assert line.strip() == line and line, 'line %d: empty or padded: %r' % (n, line)
        if line.startswith('# HELP '):
            name = line.split(' ')[2]
            assert name not in helps and name not in seen_sample, 'line %d: HELP after samples or twice' % n
            helps.add(name)
            continue
        if line.startswith('# TYPE '):
            _, _, name, typ = line.split(' ')
            assert typ in ('counter', 'gauge', 'untyped', 'histogram', 'summary'), line
            assert name not in types and name not in seen_sample, 'line %d: TYPE after samples or twice' % n
            types[name] = typ
            continue
        assert not line.startswith('#'), 'line %d: unknown comment %r' % (n, line)
        m = METRIC_LINE.match(line)
        assert m, 'line %d: not a sample: %r' % (n, line)
        name, _, body, value = m.groups()
        labels = {}
        if body:
            pos = 0
            while pos < len(body):
                lm = LABEL.match(body, pos)
                assert lm, 'line %d: bad labels %r' % (n, body)
                labels[lm.group(1)] = re.sub(r'\\(.)', lambda e: {'n': '\n'}.get(e.group(1), e.group(1)),
                                             lm.group(2))
                pos = lm.end()
        assert name in types, 'line %d: sample of an undeclared family %s' % (n, name)
        if types[name] == 'counter':
            assert name.endswith('_total'), name
        key = (name, frozenset(labels.items()))
        assert key not in samples, 'line %d: duplicate sample' % n
        samples[key] = float(value)
        seen_sample.add(name)
    return samples, types


PROMTOOL = shutil.which('promtool')  # Debian package prometheus (tests/packages.txt)


def promtool_check(path):
    """Prometheus's own checker and linter of the text format: `promtool check
    metrics` reads the exposition from stdin, exits non-zero on a problem."""
    if not PROMTOOL:
        pytest.skip('promtool not installed (Debian package prometheus)')
    with open(path, 'rb') as f:
        p = subprocess.run([PROMTOOL, 'check', 'metrics'], stdin=f, capture_output=True, timeout=30)
    assert p.returncode == 0, (p.stdout + p.stderr).decode(errors='replace')


def read_metrics(path, timeout=15, cond=None):
    """Waits until the file exists (and cond(samples) holds), then parses it."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            with open(path) as f:
                last = f.read()
            samples, types = parse_prometheus(last)
            if cond is None or cond(samples):
                return samples, types
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError('metrics at %s not as expected within %ss; last:\n%s' % (path, timeout, last))
        time.sleep(0.1)


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def test_parser_rejects_what_prometheus_rejects():
    good = '# HELP a_total x\n# TYPE a_total counter\na_total{vm="v\\"1"} 3\n'
    samples, _ = parse_prometheus(good)
    assert value(samples, 'a_total', vm='v"1') == 3
    for bad in ('a_total 3\n', '# TYPE a_total counter\na_total 3', '# TYPE a_total counter\na_total{vm=v} 3\n',
                '# TYPE a gauge\na 1\n# TYPE a gauge\n', '# TYPE a gauge\na x\n'):
        with pytest.raises((AssertionError, ValueError)):
            parse_prometheus(bad)


def test_metrics_file_follows_a_deploy(vm_env, harness):
    d = os.path.join(harness.workdir, 'textfile')
    path = os.path.join(d, 'platform-launcher.prom')
    env = vm_env(extra_config={'metrics_path': path})
    assert env.config_get('MetricsPath') == path

    samples, types = read_metrics(path, cond=lambda s: s.get(
        ('platform_launcher_vm_state', frozenset({'vm': 'validator_vm', 'state': 'running'}.items()))) == 1)
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o644
    # Atomic replacement leaves nothing else in the directory (node_exporter reads *.prom only anyway).
    assert os.listdir(d) == ['platform-launcher.prom']
    for state in ('pending', 'blocked', 'creating', 'starting', 'updating', 'stopping', 'stopped', 'failed'):
        assert value(samples, 'platform_launcher_vm_state', vm='validator_vm', state=state) == 0
    assert types['platform_launcher_vm_state'] == 'gauge'
    assert types['platform_launcher_deploys_total'] == 'counter'
    deploys = value(samples, 'platform_launcher_deploys_total')
    updates = value(samples, 'platform_launcher_vm_updates_total', vm='validator_vm')
    assert deploys == 1 and updates >= 1
    assert value(samples, 'platform_launcher_deploy_failures_total') == 0
    assert value(samples, 'platform_launcher_vm_restarts_total', vm='validator_vm') == 0
    assert value(samples, 'platform_launcher_vm_blocked', vm='validator_vm') == 0
    check = value(samples, 'platform_launcher_vm_last_check_timestamp_seconds', vm='validator_vm')
    assert abs(check - env.get('LastCheckTimestamp') / SEC) < 0.001
    assert abs(check - time.time()) < 60
    assert 0 <= value(samples, 'platform_launcher_vm_last_check_age_seconds', vm='validator_vm') < 60
    assert value(samples, 'platform_launcher_vm_last_update_timestamp_seconds', vm='validator_vm') > 0
    good = value(samples, 'platform_launcher_vm_last_successful_check_timestamp_seconds', vm='validator_vm')
    assert abs(good - env.get('LastSuccessfulCheckTimestamp') / SEC) < 0.001 and good > 0
    assert value(samples, 'platform_launcher_vm_vmm_unreachable', vm='validator_vm') == 0
    # The Updater's section is there too, disabled without a repository.
    assert value(samples, 'platform_launcher_updater_state', state='disabled') == 1
    assert value(samples, 'platform_launcher_updater_state', state='idle') == 0
    promtool_check(path)

    # A new spec: one more deploy, reflected in the file.
    env.api.patch_doc(compose_content='services:\n  validator:\n    image: example/validator:metrics\n')
    assert env.update().ok
    samples, _ = read_metrics(path, cond=lambda s: s.get(('platform_launcher_deploys_total', frozenset())) == 2)
    assert value(samples, 'platform_launcher_vm_updates_total', vm='validator_vm') == updates + 1
    assert value(samples, 'platform_launcher_vm_state', vm='validator_vm', state='running') == 1


def test_vmm_errors_and_failed_deploys_are_counted(vm_env, harness):
    path = os.path.join(harness.workdir, 'platform-launcher.prom')
    env = vm_env(extra_config={'metrics_path': path})
    read_metrics(path)
    r = env.config_call('SetSettings', 'a{sv}', [{'VmmUrl': ['s', 'http://127.0.0.1:1']}])
    assert r.ok, r
    env.api.patch_doc(compose_content='services:\n  validator:\n    image: example/validator:unreachable\n')
    assert not env.update().ok
    samples, _ = read_metrics(path, cond=lambda s: s.get(('platform_launcher_vmm_errors_total', frozenset()), 0) >= 1)
    assert value(samples, 'platform_launcher_vm_last_error', vm='validator_vm') == 1
    assert value(samples, 'platform_launcher_api_errors_total') == 0


def test_off_by_default_and_path_changes_at_run_time(vm_env, harness):
    env = vm_env()
    assert env.config_get('MetricsPath') == ''
    first = os.path.join(harness.workdir, 'm1', 'launcher.prom')
    second = os.path.join(harness.workdir, 'm2', 'launcher.prom')
    r = env.config_call('SetSettings', 'a{sv}', [{'MetricsPath': ['s', first]}])
    assert r.ok, r
    read_metrics(first)
    r = env.config_call('SetSettings', 'a{sv}', [{'MetricsPath': ['s', second]}])
    assert r.ok, r
    read_metrics(second)
    # The old file goes: its numbers would go stale in the collector.
    simlib.wait_until(lambda: not os.path.exists(first), 15, 'the old metrics file to be removed', interval=0.1)
    assert env.daemon.read_config()['metrics_path'] == second
    r = env.config_call('SetSettings', 'a{sv}', [{'MetricsPath': ['s', '']}])
    assert r.ok, r
    simlib.wait_until(lambda: not os.path.exists(second), 15, 'metrics off: the file removed', interval=0.1)


@pytest.mark.parametrize('bad', ['relative/launcher.prom', '/var/lib/x/launcher.txt', '/var/lib/../x.prom'])
def test_bad_metrics_path_is_refused_naming_the_setting(vm_env, bad):
    env = vm_env(deploy=False)
    r = env.config_call('SetSettings', 'a{sv}', [{'MetricsPath': ['s', bad]}])
    assert r.error_name == 'org.freedesktop.DBus.Error.InvalidArgs', r
    assert 'MetricsPath' in r.error_message and '.prom' in r.error_message, r
    assert env.config_get('MetricsPath') == ''


def test_updater_metrics_reach_the_file(harness, bus, polkit, daemon_binary):
    """The Updater's section (README, Metrics): its state, the deployed
    commit, an update found by a check; promtool accepts the file."""
    from updater_world import World, updater
    world = World(harness)
    path = os.path.join(harness.workdir, 'updater.prom')
    d = harness.daemon(config=world.config(metrics_path=path))

    def has(name, n=None, **labels):
        return lambda s: s.get((name, frozenset(labels.items()))) == n if n is not None else \
            (name, frozenset(labels.items())) in s
    samples, types = read_metrics(path, cond=lambda s: has('platform_launcher_updater_state', 1, state='idle')(s)
                                  and has('platform_launcher_updater_commit_info', commit=world.first)(s))
    assert types['platform_launcher_updater_state'] == 'gauge'
    assert value(samples, 'platform_launcher_updater_state', state='disabled') == 0
    assert value(samples, 'platform_launcher_updater_update_available') == 0
    assert value(samples, 'platform_launcher_updater_quarantined') == 0
    promtool_check(path)

    new = world.release('2')
    r = updater(d, 'Check')
    assert r.ok and r.result == (True, new), r
    samples, _ = read_metrics(path, cond=has('platform_launcher_updater_update_available', 1))
    assert value(samples, 'platform_launcher_updater_last_check_timestamp_seconds') > 0
    assert value(samples, 'platform_launcher_updater_commit_info', commit=world.first) == 1
    promtool_check(path)
