# SPDX-License-Identifier: Apache-2.0
"""pytest fixtures for the real-component integration suite (see README.md).

Each test gets its own Harness: temp dir, private system bus, polkitd and daemon,
all tracked by pid and cleaned up at teardown even on failure. Fixtures:

  harness       Harness (workdir, procs); nothing started
  bus           PrivateBus, started (real system policy + project dbus/ policy)
  polkit        Polkit: real polkitd with staged actions/rules (root, else skip)
  mock_polkit   MockPolkit: python-dbusmock polkitd template (delays, hangs)
  daemon_binary path of platform-launcherd; skips the test if not built
  daemon        Daemon: platform-launcherd on bus + real polkit (skips if not built)
  hostnamed     Hostnamed: /lib/systemd/systemd-hostnamed, /etc read-only
  daemon_config dict written as the daemon's config.json (override in a test
                module or with @pytest.mark.parametrize('daemon_config', ...,
                indirect=True))

A module where every test was skipped exits 77 so meson reports SKIP.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def require_root(what='this test'):
    if not H.is_root():
        pytest.skip('%s needs root (polkitd switches user, mount namespaces); run as root' % what)


def require_daemon():
    if not os.path.exists(H.daemon_binary()):
        pytest.skip('platform-launcherd not built: %s missing' % H.daemon_binary())


@pytest.fixture
def harness():
    h = H.Harness()
    try:
        yield h
    finally:
        problems = h.cleanup()
    if problems:
        pytest.fail('teardown: ' + '\n'.join(problems), pytrace=False)


@pytest.fixture
def bus(harness):
    return harness.start_bus()


@pytest.fixture
def polkit(bus, harness):
    require_root('real polkitd')
    return harness.start_polkit('real')


@pytest.fixture
def mock_polkit(bus, harness):
    return harness.start_polkit('mock')


@pytest.fixture
def daemon_config(request):
    return getattr(request, 'param', None) or {'env': {}}


@pytest.fixture
def daemon_binary():
    require_daemon()
    return H.daemon_binary()


@pytest.fixture
def daemon(daemon_binary, bus, polkit, harness, daemon_config):
    return harness.daemon(config=daemon_config)


@pytest.fixture
def hostnamed(bus, harness):
    require_root('hostnamed in a read-only mount namespace')
    if not os.path.exists(H.HOSTNAMED):
        pytest.skip('%s not installed' % H.HOSTNAMED)
    return harness.hostnamed()


# --- exit 77 when everything was skipped, so meson counts the file as SKIP ---
_outcomes = {'passed': 0, 'failed': 0, 'skipped': 0}


def pytest_runtest_logreport(report):
    if report.when == 'call' or report.outcome != 'passed':
        if report.outcome in _outcomes:
            _outcomes[report.outcome] += 1


def pytest_sessionfinish(session, exitstatus):
    if exitstatus == 0 and _outcomes['skipped'] and not _outcomes['passed'] and not _outcomes['failed']:
        session.exitstatus = 77
