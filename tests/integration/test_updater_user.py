# SPDX-License-Identifier: Apache-2.0
"""The Updater runs nobody's code as root (issue 15, item 1), with the fork
back end (the daemon's default where systemd is not the service manager):
every git invocation, build, restart and health command of a repository
owned by an ordinary user runs as that user. A core.fsmonitor line, an
uploadpack of the remote and a committed build script each write `id -u`:
it is the owner's uid, never 0. UpdaterUser refusals (root on someone else's
repository, no such user) at SetSettings and for a config file; the lock file
opened safely; relative commands resolved against the repository and a
command that cannot be found refused at SetSettings (issue 16, item 3)."""
import grp
import os
import pwd
import signal
import stat
import subprocess
import time

import pytest

import harness as H
from updater_world import World, git, updater, prop, wait_prop, updater_signals

INVALID_ARGS = 'org.freedesktop.DBus.Error.InvalidArgs'
FAILED = 'org.platform.Launcher1.Error.Failed'


def plant_uid_probes(world):
    """fsmonitor and uploadpack in the clone's .git/config, a build script line:
    each appends `id -u` to a file of its own in world.dir."""
    d = world.dir
    for name, text in (
            ('fsmonitor.sh', '#!/bin/sh\nid -u >> %s/uid-fsmonitor\nexit 1\n' % d),
            ('uploadpack.sh', '#!/bin/sh\nid -u >> %s/uid-uploadpack\nexec git-upload-pack "$@"\n' % d)):
        path = os.path.join(d, name)
        with open(path, 'w') as f:
            f.write(text)
        os.chmod(path, 0o755)
    world.as_owner('config', 'core.fsmonitor', os.path.join(d, 'fsmonitor.sh'))
    world.as_owner('config', 'remote.origin.uploadpack', os.path.join(d, 'uploadpack.sh'))
    world.build_extra = 'id -u >> %s/uid-build' % d


def uids(world, what):
    path = os.path.join(world.dir, 'uid-' + what)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [int(x) for x in f.read().split()]


def check_ran_as_owner(world):
    for what in ('fsmonitor', 'uploadpack', 'build'):
        got = uids(world, what)
        assert got, '%s never ran' % what
        assert set(got) == {world.uid}, '%s ran as %r, not as the owner %d' % (what, got, world.uid)
        assert 0 not in got


@pytest.fixture
def world(harness, bus, polkit, daemon_binary):
    return World(harness, owner='daemon')


def test_every_command_runs_as_the_repository_owner(harness, world):
    plant_uid_probes(world)
    new = world.release('2')
    d = harness.daemon(config=world.config())
    assert prop(d, 'User') == ''   # the owner of the repository's top directory
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result == (world.first, new), r
    assert world.actions() == ['build 2', 'restart 2']
    check_ran_as_owner(world)
    # git trusted the repository because its owner ran it: no safe.directory anywhere
    assert 'safe.directory' not in d.log_text()


def test_set_settings_refuses_root_and_unknown_users(harness, world):
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = d.call('SetSettings', 'a{sv}', [{'UpdaterUser': ['s', 'root']}])
    assert not r.ok and r.error_name == INVALID_ARGS, r
    assert "'UpdaterUser'" in r.error_message and 'root' in r.error_message, r
    assert world.work in r.error_message and 'daemon (uid 1)' in r.error_message, r
    r = d.call('SetSettings', 'a{sv}', [{'UpdaterUser': ['s', 'no-such-user']}])
    assert not r.ok and r.error_name == INVALID_ARGS and 'no-such-user' in r.error_message, r
    r = d.call('SetSettings', 'a{sv}', [{'UpdaterUser': ['s', '-x']}])
    assert not r.ok and r.error_name == INVALID_ARGS, r
    # another ordinary user: git would refuse the repository at every update
    r = d.call('SetSettings', 'a{sv}', [{'UpdaterUser': ['s', 'nobody']}])
    assert not r.ok and r.error_name == INVALID_ARGS, r
    assert "UpdaterUser 'nobody' does not own %s (owned by daemon (uid 1))" % world.work in r.error_message, r
    assert 'updater_user' not in d.read_config()
    # the owner itself, by name
    r = d.call('SetSettings', 'a{sv}', [{'UpdaterUser': ['s', 'daemon']}])
    assert r.ok, r
    assert prop(d, 'User') == 'daemon' and d.read_config()['updater_user'] == 'daemon'
    # nobody may not even ask (polkit comes before the file system is looked at)
    r = d.call('SetSettings', 'a{sv}', [{'UpdaterUser': ['s', 'no-such-user']}], user='nobody')
    assert not r.ok and r.error_name != INVALID_ARGS, r


def test_root_on_someone_elses_repository_in_the_file_runs_nothing(harness, world):
    plant_uid_probes(world)
    world.release('2')
    d = harness.daemon(config=world.config(updater_user='root'))
    wait_prop(d, 'State', lambda v: v == 'failed')
    err = d.get('ConfigError')
    assert 'root' in err and world.work in err and 'daemon (uid 1)' in err, err
    assert prop(d, 'LastError') == err
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED and 'root' in r.error_message, r
    r = updater(d, 'Check')
    assert not r.ok and r.error_name == FAILED, r
    # nothing ran: not even git to read HEAD
    assert prop(d, 'CurrentCommit') == ''
    for what in ('fsmonitor', 'uploadpack', 'build'):
        assert uids(world, what) == [], what
    assert world.head() == world.first
    # fixed through the bus: the error goes, the updater runs (as the owner)
    with d.bus.collect(sender=H.DAEMON_NAME, path=H.DAEMON_PATH, member='PropertiesChanged') as sc:
        r = d.call('SetSettings', 'a{sv}', [{'UpdaterUser': ['s', '']}])
        assert r.ok, r
        sc.wait_for(lambda s: s.args[0] == H.CONFIG_IFACE and 'ConfigError' in s.args[1])
    assert d.get('ConfigError') == '' and prop(d, 'State') == 'idle' and prop(d, 'LastError') == ''
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok, r
    check_ran_as_owner(world)


def test_a_chown_after_the_settings_is_caught_before_anything_runs(harness, world):
    """Root's own repository with UpdaterUser=root is fine; given to another user
    later, the next transaction refuses before it runs anything."""
    world.chown('root')
    d = harness.daemon(config=world.config(updater_user='root'))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    world.release('2')
    world.chown('daemon')
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED and 'root' in r.error_message, r
    assert prop(d, 'State') == 'failed' and 'daemon (uid 1)' in d.get('ConfigError')
    assert world.head() == world.first and world.actions() == []


def test_lock_file_opened_safely(harness, world):
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    world.release('2')
    lock = os.path.join(world.work, '.git', 'platform-launcher-update.lock')
    # made by the repository's user when missing, never by root
    r = updater(d, 'Apply', 'a{sv}', [{'dry-run': ['b', True]}])
    assert r.ok, r
    st = os.lstat(lock)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == world.uid
    # a symlink to a file of root's: refused, not followed
    os.unlink(lock)
    os.symlink('/etc/passwd', lock)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and 'symbolic link' in r.error_message and lock in r.error_message, r
    # a FIFO: refused at once (opened without blocking)
    os.unlink(lock)
    os.mkfifo(lock)
    t0 = time.monotonic()
    r = updater(d, 'Apply', 'a{sv}', [{}], timeout=10)
    assert not r.ok and 'a FIFO' in r.error_message, r
    assert time.monotonic() - t0 < 5
    os.unlink(lock)
    assert world.head() == world.first


def test_relative_commands_and_missing_ones(harness, world):
    """A relative argv[0] is the repository's file; a command that cannot be
    found is refused at SetSettings, naming it and where it was looked for."""
    d = harness.daemon(config=world.config(updater_build_commands=[['./build.sh']],
                                           updater_health_command=['./health.sh']))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    for key, value, shown, where in (
            ('UpdaterBuildCommands', ['aas', [['./missing.sh']]], './missing.sh', os.path.join(world.work, 'missing.sh')),
            ('UpdaterRestartCommands', ['aas', [['scripts/x', 'a']]], 'scripts/x', os.path.join(world.work, 'scripts/x')),
            ('UpdaterHealthCommand', ['as', ['no-such-program-here']], 'no-such-program-here', '/usr/local/bin'),
            ('UpdaterBuildCommands', ['aas', [['/nonexistent/tool']]], '/nonexistent/tool', '/nonexistent/tool')):
        r = d.call('SetSettings', 'a{sv}', [{key: value}])
        assert not r.ok and r.error_name == INVALID_ARGS, r
        assert key in r.error_message and shown in r.error_message and where in r.error_message, r.error_message
    # a command that was fine stays fine when another setting changes
    assert d.call('SetSettings', 'a{sv}', [{'UpdaterIntervalUSec': ['t', 60000000]}]).ok
    new = world.release('2')
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok and r.result == (world.first, new), r
    assert world.actions() == ['build 2', 'restart 2']


def test_default_user_for_a_root_owned_repository_is_root(harness, bus, polkit, daemon_binary):
    """The existing layout (root's repository) keeps working: it runs as root."""
    world = World(harness)
    world.build_extra = 'id -u >> %s/uid-build' % world.dir
    new = world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    assert updater(d, 'Apply', 'a{sv}', [{}]).result == (world.first, new)
    with open(os.path.join(world.dir, 'uid-build')) as f:
        assert f.read().split() == ['0']
    assert pwd.getpwuid(os.stat(world.work).st_uid).pw_name == 'root'


# A daemon started from root's shell (--step-runner=fork, or a container run
# with -t) has that shell's terminal as its controlling terminal. This wrapper
# gives it one: a pty whose output goes to a file (what the operator would see).
TTY_WRAPPER = r'''
import fcntl, os, sys, termios
master, slave = os.openpty()
try:
    os.setsid()
except OSError:
    pass   # already a session leader
fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
if os.fork() == 0:
    os.close(slave)
    with open(sys.argv[1], 'ab', buffering=0) as f:
        while True:
            try:
                b = os.read(master, 4096)
            except OSError:
                break
            if not b:
                break
            f.write(b)
    os._exit(0)
os.close(master)
os.set_inheritable(slave, True)   # the terminal stays open while the daemon runs
os.execv(sys.argv[2], sys.argv[2:])
'''


def test_commands_cannot_reach_the_terminal_the_daemon_was_started_from(harness, world, daemon_binary):
    """The owner's build script writes to /dev/tty and pushes "id" into the
    terminal's input (TIOCSTI): on root's shell that line would run as root
    once the daemon exits. The commands run in their own session, without a
    controlling terminal: both fail, and the terminal shows nothing of them."""
    out = world.dir
    world.build_extra = (
        'echo INJECTED-BY-BUILD > /dev/tty && echo wrote >> %s/tty; '
        'python3 -c "import fcntl, os, termios; fd = os.open(\'/dev/tty\', os.O_RDWR); '
        '[fcntl.ioctl(fd, termios.TIOCSTI, bytes([c])) for c in b\'id\\n\']" 2>/dev/null && echo pushed >> %s/tty; '
        'echo tried >> %s/tty' % (out, out, out))
    world.release('2')
    wrapper = os.path.join(harness.workdir, 'tty-wrapper.py')
    with open(wrapper, 'w') as f:
        f.write(TTY_WRAPPER)
    screen = os.path.join(harness.workdir, 'terminal.out')
    d = harness.daemon(config=world.config(), start=False, args=['--step-runner=fork'])
    argv = d.argv
    d.argv = lambda: ['/usr/bin/python3', wrapper, screen, daemon_binary] + argv()[1:]
    d.start()
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert r.ok, r
    with open(os.path.join(out, 'tty')) as f:
        assert f.read().split() == ['tried']
    with open(screen, 'rb') as f:
        seen = f.read()
    assert b'INJECTED' not in seen and b'id' not in seen, seen


def _share_with_group(path, group='daemon'):
    """What "git init --shared=group" and a chgrp give: root's files, the group may write."""
    gid = grp.getgrnam(group).gr_gid
    for root, dirs, files in os.walk(path):
        for n in [root] + [os.path.join(root, x) for x in dirs + files]:
            os.lchown(n, 0, gid)
            os.chmod(n, stat.S_IMODE(os.lstat(n).st_mode) | 0o060)


def test_root_runs_nothing_in_a_repository_someone_else_can_write(harness, bus, polkit, daemon_binary):
    """Root's repository, shared with a group (git init --shared=group): a
    member writes core.fsmonitor into .git/config. Root would run it; the
    Updater refuses root there instead (ConfigError, nothing run) and says why."""
    world = World(harness)                        # root's
    os.chmod(harness.workdir, 0o755)             # the group member can reach it
    _share_with_group(os.path.join(world.work, '.git'))
    fsmonitor = os.path.join(world.dir, 'fsmonitor.sh')
    with open(fsmonitor, 'w') as f:
        f.write('#!/bin/sh\nid -u >> %s/uid-fsmonitor\nexit 1\n' % world.dir)
    os.chmod(fsmonitor, 0o755)
    config = os.path.join(world.work, '.git', 'config')
    subprocess.run(H.as_user_argv('daemon', ['sh', '-c', 'printf "[core]\\n\\tfsmonitor = %s\\n" >> %s'
                                             % (fsmonitor, config)]), check=True)
    world.release('2')
    d = harness.daemon(config=world.config())
    wait_prop(d, 'State', lambda v: v == 'failed')
    err = d.get('ConfigError')
    assert 'as root (the owner of %s)' % world.work in err, err
    assert os.path.join(world.work, '.git') + ' is writable by group' in err, err
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED, r
    # and as a setting: refused by name
    r = d.call('SetSettings', 'a{sv}', [{'UpdaterUser': ['s', 'root']}])
    assert not r.ok and r.error_name == INVALID_ARGS and 'writable by group' in r.error_message, r
    assert uids(world, 'fsmonitor') == []
    assert world.head() == world.first
    # made root's alone again (the fsmonitor line removed by root): it runs, as root
    subprocess.run(['git', 'config', '--file', config, '--unset', 'core.fsmonitor'], check=True)
    for root, dirs, files in os.walk(world.work):
        for n in [root] + [os.path.join(root, x) for x in dirs + files]:
            os.chmod(n, stat.S_IMODE(os.lstat(n).st_mode) & ~0o020)
    d.send_signal(signal.SIGHUP)
    wait_prop(d, 'State', lambda v: v == 'idle')
    assert updater(d, 'Apply', 'a{sv}', [{}]).ok


def test_root_runs_nothing_in_a_repository_whose_directory_someone_else_can_replace(
        harness, bus, polkit, daemon_binary):
    """Root's repository in a directory of another user: they can rename it
    away between the check and git's next run and put their own in its place
    (a .git/config of theirs, run as root). Refused, naming that directory."""
    world = World(harness)                        # root's
    pw = pwd.getpwnam('daemon')
    os.chown(world.dir, pw.pw_uid, pw.pw_gid)     # the directory the repository is in
    d = harness.daemon(config=world.config())
    wait_prop(d, 'State', lambda v: v == 'failed')
    err = d.get('ConfigError')
    assert 'root' in err and ('%s is owned by uid %d' % (world.dir, pw.pw_uid)) in err, err
    r = updater(d, 'Check')
    assert not r.ok and r.error_name == FAILED, r
    assert prop(d, 'CurrentCommit') == ''    # not even git rev-parse ran
    os.chown(world.dir, 0, 0)
    d.send_signal(signal.SIGHUP)
    wait_prop(d, 'State', lambda v: v == 'idle')
    assert d.get('ConfigError') == ''
    assert updater(d, 'Check').ok
    assert prop(d, 'CurrentCommit') == world.first


def test_root_runs_no_program_someone_else_can_change(harness, bus, polkit, daemon_binary):
    """Root's repository, but a build command that is a script in a directory
    another user owns: they could change it between the check and the run.
    Root does not run it; the failure names the directory."""
    world = World(harness)                        # root's
    os.chmod(harness.workdir, 0o755)
    theirs = os.path.join(harness.workdir, 'theirs')
    os.mkdir(theirs)
    script = os.path.join(theirs, 'build.sh')
    with open(script, 'w') as f:
        f.write('#!/bin/sh\nid -u >> %s/uid-theirs\n' % world.dir)
    os.chmod(script, 0o755)
    pw = pwd.getpwnam('daemon')
    os.chown(theirs, pw.pw_uid, pw.pw_gid)
    world.release('2')
    d = harness.daemon(config=world.config(updater_build_commands=[[script]]))
    wait_prop(d, 'CurrentCommit', lambda v: v == world.first)
    r = updater(d, 'Apply', 'a{sv}', [{}])
    assert not r.ok and r.error_name == FAILED, r
    assert 'it would run as root, but %s is owned by uid %d' % (theirs, pw.pw_uid) in r.error_message, r
    assert uids(world, 'theirs') == []
    # root's own program in root's own directory runs (as root)
    os.chown(theirs, 0, 0)
    wait_prop(d, 'State', lambda v: v in ('idle', 'failed'))
    r = updater(d, 'Apply', 'a{sv}', [{'force': ['b', True]}])
    assert r.ok and uids(world, 'theirs') and set(uids(world, 'theirs')) == {0}, (r, uids(world, 'theirs'))
