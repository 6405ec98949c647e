# SPDX-License-Identifier: Apache-2.0
"""The daemon's env key rules are dstack's (issue 18, item 3): a key is a full
match of ^[A-Za-z_][A-Za-z0-9_]*$, so no trailing newline (dstack-util
parse_env_file.rs uses a Rust regex, whose `$` is the end of the text), and a
key the compose does not list in allowed_envs is never sent, so it is not
held to the guest's rules (the guest skips it before any rule)."""
import json

import pytest

from launcher import RUST_CONFIG, INVALID_ARGS, file_state, assert_no_secret_logged
from vmenv import vm_env, SECRET  # noqa: F401


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


@pytest.mark.parametrize('key', ['KEY\n', 'KEY\r\n', '\nKEY', 'KEY\nOTHER'],
                         ids=['trailing-lf', 'trailing-crlf', 'leading-lf', 'inner-lf'])
def test_set_env_refuses_a_newline_in_the_key(daemon, key):
    before = file_state(daemon.config_path)
    r = daemon.call('SetEnv', 'ss', [key, SECRET + 'v'])
    assert not r.ok and r.error_name == INVALID_ARGS and 'Invalid env key' in r.error_message, r
    assert file_state(daemon.config_path) == before
    assert_no_secret_logged(daemon)


def test_config_file_key_with_a_trailing_newline_is_refused(bus, polkit, harness, daemon_binary):
    d = harness.daemon(config=json.dumps({'env': {'GOOD': SECRET + 'g', 'BAD\n': SECRET + 'b'}}))
    err = d.get('ConfigError')
    assert err and 'env' in err, err
    assert_no_secret_logged(d)


def test_an_unlisted_local_key_is_neither_sent_nor_checked(vm_env):
    """A local key outside allowed_envs with the largest value the store takes
    is not sent and does not count toward the guest's limits: the VM gets the
    listed keys."""
    big = SECRET + 'x' * (128 * 1024 - len(SECRET))
    env = vm_env(local_env={'HOTKEY_PASSPHRASE': SECRET + 'hk', 'UNLISTED_BIG': big,
                            'UNLISTED_2': big, 'UNLISTED_3': big, 'UNLISTED_4': big})
    vm = env.assert_converged()
    assert 'UNLISTED_BIG' not in vm['env'] and vm['env_dropped'] == []
    [create] = env.vmm.calls('CreateVm')
    assert set(env.sent_env(create)) == set(env.expected_env())
