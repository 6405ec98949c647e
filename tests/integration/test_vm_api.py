# SPDX-License-Identifier: Apache-2.0
"""VM reconciler against a bad Platform API: invalid documents and outages
leave the running VM alone and are reported (updater.md step 1, dstack.md §5:
"refuse, keeping the running VM, rather than guess")."""
import json
import time

import pytest

from vmenv import vm_env, BLOCKED, API_UNAVAILABLE, DOC_PATH  # noqa: F401
import harness as H


def example_with(**patch):
    """The API simulator's example document with top-level / provisioning / vm_parameters keys replaced."""
    import api_sim
    d = json.loads(json.dumps(api_sim.EXAMPLE_DOC))
    for k, v in patch.items():
        if k in ('vm_parameters', 'manifest_defaults'):
            d['provisioning'][k].update(v)
        elif k == 'env_keys':
            d['provisioning']['env_keys'] = v
        else:
            d[k] = v
    return json.dumps(d, indent=2).encode()


INVALID_DOCS = [
    ('truncated-json', b'{"vm_type": "validator_vm", "compose_content": "serv'),
    ('empty-body', b''),
    ('not-an-object', b'["validator_vm"]'),
    ('compose-not-a-string', example_with(compose_content=42)),
    ('no-provisioning', example_with(provisioning=None)),
    ('vcpu-zero', example_with(vm_parameters={'vcpu': 0})),
    ('memory-negative', example_with(vm_parameters={'memory': -16384})),
    ('vcpu-as-string', example_with(vm_parameters={'vcpu': '16'})),
    ('port-protocol', example_with(vm_parameters={'ports': [{'protocol': 'sctp', 'host_port': 1, 'vm_port': 1,
                                                             'host_address': ''}]})),
    ('required-env-bad-key', example_with(required_env=['BAD-KEY'])),
    ('manifest-version-string', example_with(manifest_defaults={'manifest_version': '2'})),
]


def assert_untouched(env, vm, seq, mark):
    assert env.writes_since(seq) == [], env.writes_since(seq)
    now = env.the_vm()
    assert (now['id'], now['status'], now['boot_count']) == (vm['id'], 'running', vm['boot_count'])
    assert env.w.vm_signals(mark, 'VmUpdated') == []


@pytest.mark.parametrize('name,doc', INVALID_DOCS, ids=[c[0] for c in INVALID_DOCS])
def test_invalid_document_leaves_vm_alone(vm_env, name, doc):
    env = vm_env()
    vm = env.the_vm()
    h = env.get('ComposeHash')
    seq, mark = env.last_seq(), env.w.mark()
    env.api.set_doc(doc)
    r = env.update()
    assert not r.ok and r.error_name == BLOCKED, r
    assert env.get('State') == 'blocked'
    assert env.get('StateReason') != ''
    assert env.get('ComposeHash') == h
    assert_untouched(env, vm, seq, mark)
    # The good document again: running, and still nothing replaced.
    env.api.patch_doc()
    r = env.update()
    assert r.ok, r
    env.wait_prop('State', 'running')
    assert_untouched(env, vm, seq, mark)
    env.assert_converged(h)


OUTAGES = [
    ('http500', lambda api: api.fault(DOC_PATH, 'http500', times=0, message='sim: internal error')),
    ('http503', lambda api: api.control('status', {'status': 503})),
    ('drop', lambda api: api.fault(DOC_PATH, 'drop', times=0)),
    ('malformed', lambda api: api.fault(DOC_PATH, 'malformed', times=0)),
    ('hang', lambda api: api.fault(DOC_PATH, 'hang', times=0, seconds=3)),
]


@pytest.mark.parametrize('name,inject', OUTAGES, ids=[c[0] for c in OUTAGES])
def test_api_outage_leaves_vm_alone(vm_env, name, inject):
    env = vm_env()
    vm = env.the_vm()
    h = env.get('ComposeHash')
    seq, mark = env.last_seq(), env.w.mark()
    inject(env.api)
    call = env.update_async()
    if name == 'hang':
        # While the fetch hangs the daemon keeps serving.
        env.api.wait_calls(DOC_PATH, count=1, state='blocked', timeout=10)
        t0 = time.monotonic()
        assert env.get('State') == 'running'
        assert env.daemon.get('ApiUrl').endswith(DOC_PATH)
        assert time.monotonic() - t0 < 1.0
    r = call.wait()
    if name == 'malformed':
        # A 200 with a truncated body: an outage or an invalid document,
        # the contract does not say which; either way nothing is touched.
        assert not r.ok and r.error_name in (BLOCKED, API_UNAVAILABLE), r
    else:
        assert not r.ok and r.error_name == API_UNAVAILABLE, r
    assert env.get('LastError') != ''
    assert env.get('ComposeHash') == h
    assert env.get('State') in (('running',) if name != 'malformed' else ('running', 'blocked'))
    assert_untouched(env, vm, seq, mark)
    # Back to normal: nothing replaced.
    env.api.clear_faults()
    env.api.control('status', {'status': 200})
    r = env.update()
    assert r.ok, r
    env.wait_prop('State', 'running')
    assert_untouched(env, vm, seq, mark)


def test_api_unreachable_at_start_keeps_deployed_vm(vm_env):
    """The daemon restarts while the API is down: it adopts what the state
    store and the VMM say and touches nothing."""
    env = vm_env()
    vm = env.the_vm()
    seq, mark = env.last_seq(), env.w.mark()
    env.daemon.stop()
    env.bus.wait_for_name(H.DAEMON_NAME, gone=True)
    env.api.control('status', {'status': 503})
    env.start_daemon()
    # No spec yet in this run: "pending" is what the contract calls that;
    # "running" (from the state store) would do as well.
    env.wait_prop('LastError', lambda v: v != '')
    assert env.get('State') in ('pending', 'running')
    r = env.update()
    assert not r.ok and r.error_name == API_UNAVAILABLE, r
    assert env.get('LastError') != ''
    assert env.get('Id') == vm['id']
    assert_untouched(env, vm, seq, mark)
