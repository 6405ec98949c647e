# SPDX-License-Identifier: Apache-2.0
"""MetricsPath is written by root into a directory an operator names (issue 15
D7). A directory another user could swap something into — writable by group
or others (sticky or not), owned by someone else, or reached through a
symbolic link anywhere on the path — is refused at SetSettings (InvalidArgs
naming it, told to authorized callers only); in a config file already in force
it is reported once and never written. The file is written under a temporary
name created with O_EXCL|O_NOFOLLOW in the directory opened component by
component without following links, then renamed over the old one."""
import os
import stat

import pytest

import harness as H  # noqa: F401
from vmenv import vm_env  # noqa: F401
from test_metrics import read_metrics
import simlib  # noqa: E402 (tests/sim is on the path once vmenv is imported)

INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'
NOBODY = 65534


def set_metrics_path(env, path):
    return env.config_call('SetSettings', 'a{sv}', [{'MetricsPath': ['s', path]}])


def mkdir(path, mode=0o755, uid=None):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def bad_dirs(w):
    """(name, MetricsPath, what the refusal names) for directories someone else could swap."""
    real = mkdir(os.path.join(w, 'real'))
    os.symlink(real, os.path.join(w, 'link'))
    mkdir(os.path.join(real, 'below'))
    return [
        ('other-writable', os.path.join(mkdir(os.path.join(w, 'ow'), 0o777), 'launcher.prom'),
         'writable by group or others (mode 0777)'),
        ('group-writable', os.path.join(mkdir(os.path.join(w, 'gw'), 0o775), 'launcher.prom'),
         'writable by group or others (mode 0775)'),
        ('sticky-other-writable', os.path.join(mkdir(os.path.join(w, 'st'), 0o1777), 'launcher.prom'),
         'writable by group or others (mode 1777)'),
        ('foreign-owner', os.path.join(mkdir(os.path.join(w, 'fo'), 0o755, NOBODY), 'launcher.prom'),
         'owned by uid 65534'),
        ('symlink', os.path.join(w, 'link', 'launcher.prom'), os.path.join(w, 'link') + ' is a symbolic link'),
        ('symlink-above', os.path.join(w, 'link', 'below', 'launcher.prom'),
         os.path.join(w, 'link') + ' is a symbolic link'),
    ]


CASES = ['other-writable', 'group-writable', 'sticky-other-writable', 'foreign-owner', 'symlink', 'symlink-above']


@pytest.mark.parametrize('case', CASES)
def test_unsafe_directory_is_refused_at_set_settings(vm_env, harness, case):
    env = vm_env(deploy=False)
    w = mkdir(os.path.join(harness.workdir, 'm'))
    _, path, says = [b for b in bad_dirs(w) if b[0] == case][0]
    r = set_metrics_path(env, path)
    assert not r.ok and r.error_name == INVALID_ARGS, r
    assert 'MetricsPath' in r.error_message and says in r.error_message, r.error_message
    assert env.config_get('MetricsPath') == ''
    assert not os.path.exists(path)
    assert 'metrics_path' not in env.daemon.read_config()


def test_refusal_is_for_authorized_callers_only(vm_env, harness):
    """Which directory is whose is not told to a caller polkit turns away."""
    env = vm_env(deploy=False)
    w = mkdir(os.path.join(harness.workdir, 'm'))
    path = os.path.join(mkdir(os.path.join(w, 'fo'), 0o755, NOBODY), 'launcher.prom')
    r = env.config_call('SetSettings', 'a{sv}', [{'MetricsPath': ['s', path]}], user='nobody')
    assert not r.ok and r.error_name != INVALID_ARGS and 'uid' not in r.error_message, r


def test_existing_config_with_unsafe_directory_is_reported_and_not_written(vm_env, harness):
    w = mkdir(os.path.join(harness.workdir, 'm'))
    shared = mkdir(os.path.join(w, 'shared'), 0o777)
    victim = mkdir(os.path.join(w, 'victim'))
    path = os.path.join(shared, 'textfile', 'launcher.prom')
    # Another user was first: the directory the daemon would create is a link to theirs to choose.
    os.symlink(victim, os.path.join(shared, 'textfile'))
    os.lchown(os.path.join(shared, 'textfile'), NOBODY, NOBODY)
    env = vm_env(extra_config={'metrics_path': path})
    assert env.config_get('MetricsPath') == path
    env.wait_prop('State', 'running')

    def reported():
        return 'Not writing the metrics file %s' % path in env.daemon.log_text()
    simlib.wait_until(reported, 15, 'the refusal in the log', interval=0.05)
    log = env.daemon.log_text()
    assert os.path.join(shared, 'textfile') + ' is a symbolic link' in log, log[-2000:]
    assert log.count('Not writing the metrics file') == 1  # once, not at every refresh
    assert os.listdir(victim) == []
    assert os.path.islink(os.path.join(shared, 'textfile'))


def test_debian_layout_is_accepted(vm_env, harness):
    """Debian's prometheus-node-exporter: /var/lib/prometheus is prometheus',
    node-exporter/ below it root's 0755. Whatever the owner of a directory on
    the way puts in place of a component is a link or their own directory:
    refused when written."""
    env = vm_env()
    w = mkdir(os.path.join(harness.workdir, 'm'))
    prom = mkdir(os.path.join(w, 'prometheus'), 0o755, NOBODY)
    path = os.path.join(mkdir(os.path.join(prom, 'node-exporter')), 'launcher.prom')
    r = set_metrics_path(env, path)
    assert r.ok, r
    read_metrics(path)
    # Their own directory in its place: not written into.
    os.rename(os.path.join(prom, 'node-exporter'), os.path.join(prom, 'old'))
    mkdir(os.path.join(prom, 'node-exporter'), 0o755, NOBODY)
    env.api.patch_doc(compose_content='services:\n  validator:\n    image: example/validator:swap\n')
    assert env.update().ok
    simlib.wait_until(lambda: 'Not writing the metrics file %s' % path in env.daemon.log_text(), 15,
                      'the refusal in the log', interval=0.05)
    assert os.listdir(os.path.join(prom, 'node-exporter')) == []


def test_safe_directories_are_written_atomically(vm_env, harness):
    env = vm_env()
    w = mkdir(os.path.join(harness.workdir, 'm'))
    # a sticky world-writable directory on the way (/tmp-like) is fine; so is one not there yet
    sticky = mkdir(os.path.join(w, 'tmp'), 0o1777)
    path = os.path.join(sticky, 'textfile', 'launcher.prom')
    r = set_metrics_path(env, path)
    assert r.ok, r
    read_metrics(path)
    d = os.path.dirname(path)
    st = os.stat(d)
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o755
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(d) == ['launcher.prom']
    # A link planted at the file's own name is replaced, never followed.
    victim = os.path.join(w, 'victim.txt')
    with open(victim, 'w') as f:
        f.write('untouched\n')
    os.unlink(path)
    os.symlink(victim, path)
    env.api.patch_doc(compose_content='services:\n  validator:\n    image: example/validator:metrics2\n')
    assert env.update().ok
    simlib.wait_until(lambda: not os.path.islink(path), 15, 'the link replaced by the metrics file', interval=0.05)
    read_metrics(path, cond=lambda s: s.get(('platform_launcher_deploys_total', frozenset())) == 2)
    with open(victim) as f:
        assert f.read() == 'untouched\n'
