# SPDX-License-Identifier: Apache-2.0
"""Authorization of every Vm method through the real polkitd: nobody is
denied and nothing reaches the VMM; a rule grants; the detail vm_name lets a
rule decide per VM; root is allowed without asking (dbus-api.md "polkit")."""
from vmenv import vm_env, MANAGE_VM, READ_LOGS, VM_NAME, denied  # noqa: F401

# (method, signature, args, action); Start runs last on a stopped VM.
METHODS = [
    ('Update', 'a{sv}', [{}], MANAGE_VM),
    ('Update', 'a{sv}', [{'force': ['b', True]}], MANAGE_VM),
    ('Restart', None, None, MANAGE_VM),
    ('GetLogs', 'su', ['serial', 10], READ_LOGS),
    ('Stop', None, None, MANAGE_VM),
    ('Start', None, None, MANAGE_VM),
]


def test_nobody_denied_everywhere(vm_env):
    env = vm_env()
    vm = env.the_vm()
    seq, mark = env.last_seq(), env.w.mark()
    before = env.props()
    bad = []
    # FollowLogs answers with a file descriptor: denied here, allowed in test_vm_logs_follow.py.
    for method, sig, args, _ in METHODS + [('FollowLogs', 'su', ['serial', 10], READ_LOGS)]:
        r = env.vm_call(method, sig, args, user='nobody')
        if not denied(r):
            bad.append((method, r))
    assert bad == [], bad
    assert env.writes_since(seq) == []
    assert env.calls_since(seq, ('logs',)) == [], 'logs read for a denied caller'
    after = env.the_vm()
    assert (after['id'], after['status'], after['boot_count']) == (vm['id'], 'running', vm['boot_count'])
    assert env.w.vm_signals(mark, 'VmUpdated') == []
    now = env.props()
    for k in ('Id', 'State', 'ComposeHash', 'UpdateCount', 'RestartCount'):
        assert now[k] == before[k], k
    # Open to everyone: property reads and Plan.
    r = env.bus.get_all('org.platform.Launcher1', '/org/platform/Launcher1/vm/validator_5fvm',
                        'org.platform.Launcher1.Vm', user='nobody')
    assert r.ok and r.result['Name'] == VM_NAME, r
    assert env.vm_call('Plan', user='nobody').ok


def test_nobody_allowed_by_rule(vm_env):
    env = vm_env()
    env.polkit.allow(MANAGE_VM, user='nobody')
    env.polkit.allow(READ_LOGS, user='nobody')
    for method, sig, args, _ in METHODS:
        r = env.vm_call(method, sig, args, user='nobody')
        assert r.ok, (method, r)
        if method == 'GetLogs':
            assert 'boot done' in r.result[0], r.result
        if method == 'Stop':
            env.wait_prop('State', 'stopped')
            assert env.the_vm()['status'] == 'stopped'
    env.wait_prop('State', 'running')
    env.assert_converged()


def test_rule_on_vm_name_detail(vm_env):
    env = vm_env()
    rule = '''polkit.addRule(function(action, subject) {
    if (action.id == "%s" && action.lookup("vm_name") == "%%s")
        return polkit.Result.YES;
});''' % MANAGE_VM
    env.polkit.add_rule('50-vm-name', rule % 'some_other_vm')
    seq = env.last_seq()
    assert denied(env.vm_call('Restart', user='nobody'))
    assert env.writes_since(seq) == []
    env.polkit.add_rule('50-vm-name', rule % VM_NAME)
    r = env.vm_call('Restart', user='nobody')
    assert r.ok, r
    assert 'StartVm' in [m for _, m in env.writes_since(seq)]
    # The rule covers manage-vm only.
    assert denied(env.vm_call('GetLogs', 'su', ['serial', 10], user='nobody'))


def test_root_allowed(vm_env):
    env = vm_env()
    for method, sig, args, _ in METHODS:
        r = env.vm_call(method, sig, args)
        assert r.ok, (method, r)
    env.wait_prop('State', 'running')
    env.assert_converged()
