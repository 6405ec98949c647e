# SPDX-License-Identifier: Apache-2.0
"""The audit history through the bus: Vm.GetHistory and Vm.HistoryAdded after a
deploy, a failed update and an operator Stop; who asked (uid and command from
the sender's credentials); the bound; persistence across a restart; no secret
in any entry; the audit lines in the log (dbus/org.platform.Launcher1.Vm.xml,
GetHistory). The Updater's entries: test_updater_history.py."""
import json
import os
import signal

import harness as H
from vmenv import vm_env, VM_NAME, SECRET, BUSY, denied  # noqa: F401
import simlib  # noqa: E402  (tests/sim, on the path once vmenv is imported)

NEW_COMPOSE = 'services:\n  app:\n    image: "nginx:1.27"\n'
FIELDS = ('timestamp', 'kind', 'action', 'trigger', 'from', 'to', 'result', 'reason', 'duration')
ROOT_TRIGGER = 'uid 0 (python3)'  # this process, as the bus and /proc report it


def history(env, limit=0, user=None):
    r = env.vm_call('GetHistory', 'u', [limit], user=user)
    assert r.ok, r
    return [dict(zip(FIELDS, e)) for e in r.result[0]]


def added(env, mark):
    return [dict(zip(FIELDS, a)) for a in env.w.vm_signals(mark, 'HistoryAdded')]


def history_file(env):
    with open(os.path.join(env.daemon.state_dir, 'history.json')) as f:
        return json.load(f)


def test_first_deploy_is_recorded(vm_env):
    env = vm_env()
    h = history(env)
    assert len(h) == 1, h
    [e] = h
    assert (e['kind'], e['action'], e['trigger'], e['result'], e['reason']) == ('vm', 'deploy', 'poll', 'ok', '')
    assert e['from'] == '' and e['to'] == env.get('ComposeHash')
    assert e['timestamp'] >= env.get('LastUpdateTimestamp') > 0
    assert 0 < e['duration'] < 15 * 10**6, e
    # The signal carries the same entry.
    assert added(env, 0) == h
    # Stored in the state directory.
    stored = history_file(env)['entries']
    assert [(s['action'], s['to'], s['subject']) for s in stored] == [('deploy', e['to'], VM_NAME)]


def test_failed_update_then_deploy_by_operator(vm_env):
    env = vm_env()
    old_hash = env.get('ComposeHash')
    env.vmm.fault('GetComposeHash', 'error', times=0, message='sim: injected GetComposeHash failure')
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    new_hash = env.expected_hash()
    mark = env.w.mark()
    r = env.update()
    assert not r.ok, r
    failed = history(env, 1)[0]
    assert (failed['action'], failed['result'], failed['trigger']) == ('deploy', 'failed', ROOT_TRIGGER), failed
    assert failed['from'] == old_hash and failed['to'] == new_hash
    assert 'GetComposeHash' in failed['reason'] or 'compose hash' in failed['reason'], failed
    assert failed['duration'] > 0
    # Recorded once: the failed Update is that deploy entry, not a second one.
    assert [e['action'] for e in added(env, mark)] == ['deploy']

    env.vmm.clear_faults()
    mark = env.w.mark()
    assert env.update().ok
    h = history(env)
    assert [(e['action'], e['result']) for e in h] == [('deploy', 'ok'), ('deploy', 'failed'), ('deploy', 'ok')]
    assert (h[0]['from'], h[0]['to'], h[0]['trigger']) == (old_hash, new_hash, ROOT_TRIGGER)
    assert [e['to'] for e in added(env, mark)] == [new_hash]
    # An Update with nothing to do changed nothing: no entry, no signal.
    mark = env.w.mark()
    assert env.update().ok
    assert env.update(force=False).ok
    assert history(env) == h
    assert added(env, mark) == []


def test_operator_stop_and_start(vm_env):
    env = vm_env()
    hash_ = env.get('ComposeHash')
    # Denied: nothing happens, nothing is recorded; reading is open to anyone.
    r = env.vm_call('Stop', user='nobody')
    assert denied(r), r
    assert [e['action'] for e in history(env, user='nobody')] == ['deploy']

    mark = env.w.mark()
    r = env.vm_call('Stop')
    assert r.ok, r
    # The entry went out before the reply.
    [sig] = added(env, mark)
    e = history(env, 1)[0]
    assert e == sig
    assert (e['action'], e['result'], e['trigger'], e['from'], e['to']) == ('stop', 'ok', ROOT_TRIGGER, hash_, hash_)
    assert e['duration'] > 0

    assert env.vm_call('Start').ok
    assert [x['action'] for x in history(env)] == ['start', 'stop', 'deploy']
    # A second Start is recorded with how it ended (a refusal with its reason).
    r = env.vm_call('Start')
    e = history(env, 1)[0]
    assert (e['action'], e['result']) == ('start', 'ok' if r.ok else 'failed'), (e, r)
    assert e['reason'] == ('' if r.ok else r.error_message)
    # The audit log names the caller and the VM.
    log = env.daemon.log_text()
    assert "Audit: uid 0 (python3, pid %d) asked to stop VM '%s'." % (os.getpid(), VM_NAME) in log, log[-2000:]
    assert "asked to start VM '%s'" % VM_NAME in log


def test_bound_and_persisted_across_restart(vm_env):
    env = vm_env(daemon=False)
    # 205 entries written by an earlier run: the oldest 5 are dropped on load.
    old = [{'timestamp_usec': 1000 + i, 'kind': 'vm', 'subject': VM_NAME, 'action': 'restart',
            'trigger': 'uid 0 (platformctl)', 'from': 'h%d' % i, 'to': 'h%d' % i, 'result': 'ok', 'reason': '',
            'duration_usec': i} for i in range(205)]
    os.makedirs(env.daemon.state_dir, exist_ok=True)
    with open(os.path.join(env.daemon.state_dir, 'history.json'), 'w') as f:
        json.dump({'version': 1, 'entries': old}, f)
    env.start_daemon()
    env.wait_vm_object()
    env.wait_deployed()
    h = history(env)
    assert len(h) == 200
    assert h[0]['action'] == 'deploy'
    assert h[-1]['from'] == 'h6'      # h0..h5 dropped: 205 + 1 - 200
    assert h[1]['from'] == 'h204'
    assert [e['from'] for e in history(env, 3)] == [h[0]['from'], 'h204', 'h203']
    assert len(history_file(env)['entries']) == 200

    env.restart_daemon()
    env.wait_vm_object()
    assert history(env) == h


def test_corrupt_history_is_moved_aside(vm_env):
    env = vm_env(daemon=False)
    os.makedirs(env.daemon.state_dir, exist_ok=True)
    path = os.path.join(env.daemon.state_dir, 'history.json')
    with open(path, 'w') as f:
        f.write('{"entries": [ not json')
    env.start_daemon()
    env.wait_vm_object()
    env.wait_deployed()
    assert [e['action'] for e in history(env)] == ['deploy']
    assert os.path.exists(path + '.corrupt')
    assert 'history starts empty' in env.daemon.log_text()


def test_no_secret_in_history_or_audit(vm_env):
    env = vm_env()
    secret = SECRET + 'new hotkey words'
    mark = env.w.mark()
    r = env.config_call('SetEnv', 'ss', ['HOTKEY_PASSPHRASE', secret])
    assert r.ok, r
    env.local_env['HOTKEY_PASSPHRASE'] = secret
    # The changed secret reaches the VM: a deploy, recorded.
    env.w.wait_signal('VmUpdated', since=mark)
    env.w.wait_signal('HistoryAdded', since=mark)
    r = env.config_call('SetSettings', 'a{sv}', [{'StopTimeoutUSec': ['t', 2 * 10**6]}])
    assert r.ok, r
    restart = []
    # The settings change starts a check: Restart is Busy until it ends.
    simlib.wait_until(lambda: restart.append(env.vm_call('Restart')) or restart[-1].error_name != BUSY,
                      timeout=15, what='Restart not Busy')
    assert restart[-1].ok, restart[-1]
    r = env.config_call('GetEnv', 's', ['HOTKEY_PASSPHRASE'])
    assert r.ok, r
    mark = env.w.mark()
    r = env.config_call('RemoveEnv', 's', ['VALIDATOR_BASE_URL'])
    assert r.ok, r
    env.w.wait_signal('HistoryAdded', since=mark)  # the VM follows the change
    h = history(env)
    assert len(h) >= 3, h
    text = json.dumps(h) + json.dumps(added(env, 0))
    with open(os.path.join(env.daemon.state_dir, 'history.json')) as f:
        text += f.read()
    assert SECRET not in text
    assert 'hotkey words' not in text
    log = env.daemon.log_text()
    who = 'uid 0 (python3, pid %d)' % os.getpid()
    for line in ("set env value 'HOTKEY_PASSPHRASE'", "removed env value 'VALIDATOR_BASE_URL'",
                 "read env value 'HOTKEY_PASSPHRASE'", "changed settings 'StopTimeoutUSec'",
                 "asked to restart VM '%s'" % VM_NAME):
        assert 'Audit: %s %s.' % (who, line) in log, line
    # vm_env's teardown checks the whole log for SECRET.


def test_platformctl_vm_history(vm_env):
    from ctl_helpers import ctl
    env = vm_env()
    hash_ = env.get('ComposeHash')
    assert env.vm_call('Stop').ok
    p = ctl(env.bus, 'vm', 'history')
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ['TIME', 'ACTION', 'RESULT', 'FROM', 'TO', 'TOOK', 'TRIGGER'], lines
    assert lines[1].split()[2:5] == ['stop', 'ok', hash_[:12]] and lines[1].endswith(ROOT_TRIGGER), lines
    assert lines[2].split()[2:5] == ['deploy', 'ok', '-'] and lines[2].endswith(' poll'), lines
    assert len(lines) == 3
    p = ctl(env.bus, 'vm', 'history', '-n', '1', '--json')
    assert p.returncode == 0, p.stderr
    [e] = json.loads(p.stdout)
    assert e == dict(zip(('Timestamp', 'Kind', 'Action', 'Trigger', 'From', 'To', 'Result', 'Reason',
                          'DurationUSec'), history(env, 1)[0].values()))
    assert (e['Action'], e['Trigger'], e['From']) == ('stop', ROOT_TRIGGER, hash_)
    p = ctl(env.bus, 'vm', 'history', '--channel', 'serial')
    assert p.returncode == 64 and "--channel to 'vm logs' only" in p.stderr, p.stderr


def test_changes_that_replace_the_vm_record_who_made_them(vm_env):
    """SetEnv, RemoveEnv and SetSettings are answered before the VM follows;
    the deploy they cause is recorded under whoever made the change, not
    "poll"; the next deploy the launcher makes by itself is "poll" again."""
    env = vm_env()

    def deploy_after(change, trigger):
        mark = env.w.mark()
        change()
        env.w.wait_signal('VmUpdated', since=mark)
        sig = env.w.wait_signal('HistoryAdded', since=mark)
        e = dict(zip(FIELDS, sig))
        assert (e['action'], e['result']) == ('deploy', 'ok'), e
        assert trigger(e['trigger']), e
        assert history(env, 1)[0] == e
        return e

    deploy_after(lambda: env.set_env('HOTKEY_PASSPHRASE', SECRET + 'changed words'),
                 lambda t: t == ROOT_TRIGGER)
    env.polkit.allow('org.platform.launcher1.configure')
    deploy_after(lambda: env.config_call('RemoveEnv', 's', ['VALIDATOR_BASE_URL'], user='nobody'),
                 lambda t: t.startswith('uid 65534 ('))
    env.local_env.pop('VALIDATOR_BASE_URL')
    deploy_after(lambda: env.config_call('SetSettings', 'a{sv}', [{'GuestVmmUrl': ['s', 'http://10.0.2.2:10301/']}]),
                 lambda t: t == ROOT_TRIGGER)
    # The API changes and the launcher looks by itself (SIGHUP re-reads the file: nobody's call).
    env.api.patch_doc(compose_content=NEW_COMPOSE)
    deploy_after(lambda: env.daemon.send_signal(signal.SIGHUP), lambda t: t == 'poll')
    log = env.daemon.log_text()
    assert "Audit: uid 0 (python3, pid %d) set env value 'HOTKEY_PASSPHRASE'." % os.getpid() in log
