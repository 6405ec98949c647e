# SPDX-License-Identifier: Apache-2.0
"""Only a trusted KMS gets to encrypt the secrets (issue 18, item 4;
dbus-api.md). The VMM forwards GetAppEnvEncryptPubKey to the KMS and
verifies nothing; the KMS signs the key (dstack kms/src/crypto.rs). With
Config.TrustedKmsSigners set, the signer must be one of them; with it empty
the signer is pinned on first use. A key that fails blocks the VM, sends no
env anywhere and leaves the old VM as it is."""
import json
import os
import sys

import pytest

import harness as H
from vmenv import vm_env, BLOCKED, SECRET  # noqa: F401

sys.path.insert(0, os.path.join(H.SOURCE_DIR, 'tests', 'sim'))
import kmscrypto  # noqa: E402

OTHER_KEY = kmscrypto.public_key(int('33' * 32, 16)).hex()
BLOCKED_PREFIX = 'KMS public key for app '
NOT_TRUSTED = 'not signed by a trusted signer'


def signer(env):
    return env.vmm.config()['kms_signer_public_key']


def state(env):
    with open(os.path.join(env.daemon.state_dir, 'vm.json')) as f:
        return json.load(f)


def new_compose(env, tag):
    env.api.patch_doc(compose_content='services:\n  v:\n    image: validator:%s\n' % tag)
    return env.expected_hash()


def env_writes(env, seq):
    """VMM writes that could carry an env (or touch the old VM)."""
    return [m for _, m in env.writes_since(seq)]


def assert_blocked_keeps_the_old_vm(env, old, seq, why):
    """The update fails Blocked, the VM is `blocked` with the reason, nothing
    was written at the VMM and the old VM runs as it did."""
    r = env.update()
    assert not r.ok and r.error_name == BLOCKED, r
    assert NOT_TRUSTED in r.error_message and why in r.error_message, r.error_message
    env.wait_prop('State', 'blocked')
    reason = env.get('StateReason')
    assert reason.startswith(BLOCKED_PREFIX) and NOT_TRUSTED in reason and why in reason, reason
    assert env_writes(env, seq) == []
    assert env.calls_since(seq, ('GetAppEnvEncryptPubKey',))
    vm = env.the_vm()
    assert vm['id'] == old['id'] and vm['status'] == 'running' and vm['boot_count'] == old['boot_count']
    assert env.get('Id') == old['id']
    return reason


def test_first_use_pins_the_signer_and_reports_it(vm_env):
    env = vm_env()
    s = signer(env)
    assert env.get('KmsSigner') == s
    st = state(env)
    assert st['kms_signer'] == s and st['kms_signer_pinned'] == s
    assert 'Pinning KMS signer %s' % s in env.daemon.log_text()
    # the same KMS later: fine, and still reported
    new_compose(env, 'b')
    assert env.update().ok
    assert env.get('KmsSigner') == s
    # the pin survives a restart
    env.restart_daemon()
    env.wait_vm_object()
    assert env.get('KmsSigner') == s and state(env)['kms_signer_pinned'] == s


def test_a_different_signer_after_the_pin_blocks_until_trusted(vm_env):
    env = vm_env()
    old = env.the_vm()
    pinned = signer(env)
    env.vmm.config(kms_signer_key='44' * 32)        # another KMS answers now
    new_signer = signer(env)
    new_compose(env, 'c')
    seq = env.last_seq()
    reason = assert_blocked_keeps_the_old_vm(env, old, seq, 'pinned on first use')
    assert new_signer in reason and pinned in reason
    assert env.get('KmsSigner') == pinned
    # the operator trusts it: deployed, under that signer
    mark = env.w.mark()
    r = env.config_call('SetSettings', 'a{sv}', [{'TrustedKmsSigners': ['as', [new_signer]]}])
    assert r.ok, r
    env.w.wait_for(lambda s: s.member == 'PropertiesChanged' and 'TrustedKmsSigners' in s.args[1], since=mark)
    assert env.config_get('TrustedKmsSigners') == [new_signer]
    mark = env.w.mark()
    assert env.update().ok
    env.wait_deployed()
    assert env.get('KmsSigner') == new_signer
    changed = [s.args[1]['KmsSigner'] for s in env.w.since(mark, 'PropertiesChanged')
               if s.args[0] == 'org.platform.Launcher1.Vm' and 'KmsSigner' in s.args[1]]
    assert changed == [new_signer], changed
    assert state(env)['kms_signer_pinned'] == pinned     # the pin is for the empty list


def test_trusted_signers_set_refuses_every_other_key(vm_env):
    env = vm_env(deploy=False, extra_config={'trusted_kms_signers': [OTHER_KEY]})
    env.wait_prop('State', 'blocked')
    reason = env.get('StateReason')
    assert reason.startswith(BLOCKED_PREFIX) and NOT_TRUSTED in reason and 'not in TrustedKmsSigners' in reason
    assert signer(env) in reason
    assert env.vmm.calls('GetAppEnvEncryptPubKey') and not env.vmm.calls('CreateVm')
    assert env.vmm.vms() == []
    assert env.get('KmsSigner') == ''
    env.daemon.assert_not_logged(SECRET)


@pytest.mark.parametrize('case', ['untrusted-signer', 'unsigned', 'malformed-v1', 'truncated-v1', 'stale',
                                  'future', 'bad-v1-good-legacy'])
def test_an_unverified_key_gets_no_env_and_the_old_vm_stays(vm_env, case):
    trusted = [kmscrypto.public_key(kmscrypto.private_from_seed('platform-launcher-sim')).hex()]
    env = vm_env(extra_config={'trusted_kms_signers': trusted, 'kms_signature_max_age_usec': 300 * 10**6})
    old = env.the_vm()
    assert env.get('KmsSigner') == trusted[0]
    new_compose(env, case)
    sim, why = {
        'untrusted-signer': ({'kms_bad_signature': True}, 'not in TrustedKmsSigners'),
        'unsigned': ({'kms_reply': 'unsigned'}, 'unsigned'),
        'malformed-v1': ({'kms_signature_v1_override': 'xyz'}, 'not 65 bytes of hex'),
        'truncated-v1': ({'kms_signature_v1_override': 'ab' * 64}, 'not 65 bytes of hex'),
        'stale': ({'kms_timestamp_offset': -1000}, 'KmsSignatureMaxAgeUSec allows 300 s'),
        'future': ({'kms_timestamp_offset': 600}, 'in the future'),
        'bad-v1-good-legacy': ({'kms_signature_v1_override': '00' * 65}, 'signature_v1 does not verify'),
    }[case]
    env.vmm.config(**sim)
    seq = env.last_seq()
    assert_blocked_keeps_the_old_vm(env, old, seq, why)
    assert env.get('KmsSigner') == trusted[0]
    env.daemon.assert_not_logged(SECRET)
    # the KMS put right: the next check deploys
    env.vmm.config(kms_bad_signature=False, kms_reply='full', kms_signature_v1_override=None,
                   kms_timestamp_offset=0)
    assert env.update().ok
    env.wait_deployed()


def test_unsigned_key_with_no_list_and_no_pin_is_accepted_with_a_warning(vm_env):
    env = vm_env(vmm_opts={'kms_reply': 'unsigned'})
    assert env.get('KmsSigner') == ''
    assert 'is unsigned' in env.daemon.log_text()
    st = state(env)
    assert st['kms_signer'] == '' and st['kms_signer_pinned'] == ''
    # a signed key later pins its signer
    env.vmm.config(kms_reply='full')
    new_compose(env, 'signed')
    assert env.update().ok
    assert env.get('KmsSigner') == signer(env) == state(env)['kms_signer_pinned']
    # and then an unsigned one is refused: stripping the signatures does not get past the pin
    old = env.the_vm()
    env.vmm.config(kms_reply='unsigned')
    new_compose(env, 'stripped')
    assert_blocked_keeps_the_old_vm(env, old, env.last_seq(), 'unsigned')


def test_legacy_signature_alone_is_verified(vm_env):
    """A KMS older than signature_v1 (a ≥0.5.6 VMM answers timestamp 0 and
    signature_v1 ""): the legacy signature is checked, with a warning."""
    s = kmscrypto.public_key(kmscrypto.private_from_seed('platform-launcher-sim')).hex()
    env = vm_env(vmm_opts={'kms_reply': 'legacy'}, extra_config={'trusted_kms_signers': [s]})
    assert env.get('KmsSigner') == s
    assert 'carries only a legacy signature' in env.daemon.log_text()


def test_settings_are_validated_and_persisted(vm_env):
    env = vm_env()
    for bad in (['02' + '00' * 32], ['04' + '11' * 32], ['xyz'], [OTHER_KEY[:-2]]):
        r = env.config_call('SetSettings', 'a{sv}', [{'TrustedKmsSigners': ['as', bad]}])
        assert not r.ok and r.error_name == 'org.freedesktop.DBus.Error.InvalidArgs', r
        assert 'TrustedKmsSigners' in r.error_message and 'k256_pubkey' in r.error_message, r.error_message
    r = env.config_call('SetSettings', 'a{sv}', [{'KmsSignatureMaxAgeUSec': ['t', 31 * 24 * 3600 * 10**6]}])
    assert not r.ok and r.error_name == 'org.freedesktop.DBus.Error.InvalidArgs', r
    assert env.config_get('TrustedKmsSigners') == [] and env.config_get('KmsSignatureMaxAgeUSec') == 0
    r = env.config_call('SetSettings', 'a{sv}', [{'TrustedKmsSigners': ['as', ['0x' + OTHER_KEY.upper()]],
                                                  'KmsSignatureMaxAgeUSec': ['t', 300 * 10**6]}])
    assert r.ok, r
    doc = env.daemon.read_config()
    assert doc['trusted_kms_signers'] == ['0x' + OTHER_KEY.upper()]
    assert doc['kms_signature_max_age_usec'] == 300 * 10**6
    assert env.config_get('KmsSignatureMaxAgeUSec') == 300 * 10**6


def test_platformctl_sets_and_shows_the_trusted_signers(vm_env):
    import subprocess
    ctl = os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platformctl')
    env = vm_env()

    def run(*args):
        return subprocess.run([ctl] + list(args), env=env.bus.env(), stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=30)
    p = run('config', 'set', 'TrustedKmsSigners', json.dumps([signer(env), OTHER_KEY]))
    assert p.returncode == 0, p
    assert env.config_get('TrustedKmsSigners') == [signer(env), OTHER_KEY]
    p = run('config', 'set', 'TrustedKmsSigners', '["02"]')
    assert p.returncode != 0 and 'k256_pubkey' in p.stderr, p
    p = run('config', 'set', 'KmsSignatureMaxAgeUSec', '5min')
    assert p.returncode == 0, p
    assert env.config_get('KmsSignatureMaxAgeUSec') == 300 * 10**6
    p = run('config', 'show')
    assert p.returncode == 0 and OTHER_KEY in p.stdout and 'KmsSignatureMaxAgeUSec' in p.stdout, p.stdout
