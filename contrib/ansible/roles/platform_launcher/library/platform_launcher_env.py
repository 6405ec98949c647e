#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: the launcher's env values (secrets), set through stdin."""

import json
import re

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r'''
module: platform_launcher_env
short_description: Set platform-launcher env values (secrets) through platformctl
description:
  - Compares each value with the one the launcher holds (C(platformctl config get-env KEY),
    so it runs as root or with the read-secrets polkit action) and sets only those that
    differ with C(platformctl config set-env KEY), the value on stdin: never on a command
    line, never in the module's result. Keys in I(absent) are removed if set.
  - C(set-env) follows the VM operation the change starts to its end (the VM is replaced
    with the new env) unless I(follow) is false.
  - Supports check mode (nothing is set) and diff mode (key names only, never values).
options:
  env:
    description: KEY to value, e.g. from Ansible Vault. Values must be strings.
    type: dict
    default: {}
  absent:
    description: Keys to remove.
    type: list
    elements: str
    default: []
  follow:
    description: Wait for the VM operation each change starts (platformctl without --no-block).
    type: bool
    default: true
  platformctl:
    description: The platformctl to run.
    type: path
    default: /usr/bin/platformctl
'''

RETURN = r'''
changed_keys:
  description: Keys set or removed (or that would be, in check mode). Never values.
  type: list
  elements: str
  returned: always
'''

KEY = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


def main():
    module = AnsibleModule(
        argument_spec=dict(
            env=dict(type='dict', default={}, no_log=True),
            absent=dict(type='list', elements='str', default=[]),
            follow=dict(type='bool', default=True),
            platformctl=dict(type='path', default='/usr/bin/platformctl'),
        ),
        supports_check_mode=True,
    )
    env, absent = module.params['env'], module.params['absent']
    base = [module.params['platformctl'], '--no-ask-password']
    environ = {'LC_ALL': 'C.UTF-8', 'SYSTEMD_COLORS': '0'}

    def ctl(args, what, data=None):
        rc, out, err = module.run_command(base + args, data=data, binary_data=False, environ_update=environ)
        if rc != 0:
            hint = ' (is platform-launcher.service running?)' if rc == 69 else ''
            # platformctl never prints a value in an error; the key is not secret.
            module.fail_json(msg='platformctl config %s failed (exit %d)%s: %s' % (what, rc, hint, err.strip()),
                             rc=rc)
        return out

    for key in list(env) + list(absent):
        if not KEY.match(key):
            module.fail_json(msg='%r: an env key is letters, digits and _, not starting with a digit' % key)
    both = sorted(set(env) & set(absent))
    if both:
        module.fail_json(msg='keys both in env and absent: %s' % ', '.join(both))
    for key, value in env.items():
        if not isinstance(value, str):
            module.fail_json(msg='%s: the value must be a string (quote it in YAML)' % key)

    try:
        keys = set(json.loads(ctl(['--json', 'config', 'list-env'], 'list-env')))
    except ValueError:
        module.fail_json(msg='platformctl --json config list-env printed no JSON')

    to_set = []
    for key in sorted(env):
        if key in keys:
            held = ctl(['config', 'get-env', key], 'get-env ' + key)
            # get-env prints the value and one newline.
            if (held[:-1] if held.endswith('\n') else held) == env[key]:
                continue
        to_set.append(key)
    to_remove = [k for k in sorted(absent) if k in keys]

    before = ''.join('%s: (set)\n' % k for k in to_set if k in keys) + ''.join('%s: (set)\n' % k for k in to_remove)
    after = ''.join('%s: (%s)\n' % (k, 'new value' if k in keys else 'set') for k in to_set)
    if not module.check_mode:
        # --yes: never a [y/N] question, even where ssh gave the module a terminal.
        follow = ['--yes'] + ([] if module.params['follow'] else ['--no-block'])
        for key in to_set:
            allow_empty = ['--allow-empty'] if env[key] == '' else []
            ctl(follow + ['config', 'set-env'] + allow_empty + [key], 'set-env ' + key, data=env[key])
        for key in to_remove:
            ctl(follow + ['config', 'remove-env', key], 'remove-env ' + key)
    module.exit_json(changed=bool(to_set or to_remove), changed_keys=to_set + to_remove,
                     diff={'before': before, 'after': after})


if __name__ == '__main__':
    main()
