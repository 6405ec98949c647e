#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: the launcher's settings, changed only where they differ."""

import json
import re

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r'''
module: platform_launcher_settings
short_description: Set platform-launcher settings through platformctl
description:
  - Reads the settings in force with C(platformctl --json config show) and runs
    C(platformctl config set NAME VALUE) only for those that differ.
  - Times (names ending in C(USec)) take an integer of microseconds or a string with
    a unit as platformctl does (C(us), C(ms), C(s), C(min), C(h), C(d); a plain number
    is seconds) and are compared as microseconds. Booleans take YAML booleans. Lists
    (C(UpdaterRestartUnits), C(UpdaterBuildCommands), ...) take YAML lists.
  - Supports check mode (nothing is set) and diff mode (one line per changed setting).
options:
  settings:
    description: Setting name (as C(config show) names it, e.g. C(PollIntervalUSec)) to value.
    type: dict
    required: true
  platformctl:
    description: The platformctl to run.
    type: path
    default: /usr/bin/platformctl
'''

RETURN = r'''
changed_settings:
  description: Names of the settings that differed (and were set unless in check mode).
  type: list
  elements: str
  returned: always
'''

UNITS = {'us': 1, 'ms': 1000, 's': 1000000, 'min': 60000000, 'h': 3600000000, 'd': 86400000000, '': 1000000}
DURATION = re.compile(r'^([0-9]+)(us|ms|s|min|h|d|)$')


def parse_usec(name, value):
    """A time as platformctl takes it (src/shared/duration.c) -> microseconds."""
    if isinstance(value, bool):
        raise ValueError('%s: a time is expected, not a boolean' % name)
    if isinstance(value, int):
        if value < 0:
            raise ValueError('%s: a time cannot be negative' % name)
        return value
    m = DURATION.match(str(value).strip())
    if not m:
        raise ValueError("%s: invalid time %r: use e.g. 30s, 500ms, 5min, 1h, 1d, or microseconds" % (name, value))
    return int(m.group(1)) * UNITS[m.group(2)]


def parse_bool(name, value):
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ('yes', 'true', 'on', '1'):
        return True
    if s in ('no', 'false', 'off', '0'):
        return False
    raise ValueError('%s: a boolean is expected' % name)


def parse_list(name, value, have):
    """A list of strings, or of lists of strings (a list of commands) when the
    setting is one: decided by the setting's name in doubt (empty lists)."""
    if not isinstance(value, list):
        raise ValueError('%s: a list is expected' % name)
    nested = name in ('UpdaterBuildCommands', 'UpdaterRestartCommands') or any(isinstance(x, list) for x in have)
    for x in value:
        if nested and not (isinstance(x, list) and all(isinstance(y, str) for y in x)):
            raise ValueError('%s: a list of commands, each a list of strings, is expected' % name)
        if not nested and not isinstance(x, str):
            raise ValueError('%s: a list of strings is expected' % name)
    return value


class Ctl:
    def __init__(self, module):
        self.module = module
        self.path = module.params['platformctl']

    def run(self, *args, change=False):
        # A change: --yes (never a [y/N] question, even where ssh gave the
        # module a terminal), and -- before the arguments (a value may start with -).
        argv = [self.path, '--no-ask-password'] + (['--yes', '--'] if change else []) + list(args)
        rc, out, err = self.module.run_command(argv, environ_update={'LC_ALL': 'C.UTF-8', 'SYSTEMD_COLORS': '0'})
        if rc != 0:
            hint = ' (is platform-launcher.service running?)' if rc == 69 else ''
            self.module.fail_json(msg='platformctl %s failed (exit %d)%s: %s' % (
                ' '.join(args[:3]), rc, hint, err.strip() or out.strip()), rc=rc)
        return out

    def json(self, *args):
        out = self.run('--json', *args)
        try:
            return json.loads(out)
        except ValueError:
            self.module.fail_json(msg='platformctl --json %s printed no JSON: %s' % (' '.join(args), out[:200]))


# What config show lists beside the settings: the launcher's, not to be set.
READ_ONLY = ('EnvKeys', 'RequiredEnv', 'MissingEnv', 'ConfigPath', 'ConfigError')


def current_settings(ctl):
    """Setting name -> value in force, every setting by the name config set takes."""
    cfg = ctl.json('config', 'show').get('Config', {})
    return {k: v for k, v in cfg.items() if k not in READ_ONLY}


def show(v):
    return json.dumps(v) if not isinstance(v, str) else v


def main():
    module = AnsibleModule(
        argument_spec=dict(
            settings=dict(type='dict', required=True),
            platformctl=dict(type='path', default='/usr/bin/platformctl'),
        ),
        supports_check_mode=True,
    )
    ctl = Ctl(module)
    cur = current_settings(ctl)
    todo = []     # (name, current, desired, argv)
    for name in sorted(module.params['settings']):
        want = module.params['settings'][name]
        if name not in cur:
            module.fail_json(msg='%s: not a setting platformctl shows (known: %s)' % (
                name, ', '.join(sorted(cur))))
        have = cur[name]
        try:
            if isinstance(have, bool):
                want = parse_bool(name, want)
                value = 'yes' if want else 'no'
            elif isinstance(have, int):
                want = parse_usec(name, want)
                value = '%dus' % want
            elif isinstance(have, str):
                if want is None or isinstance(want, (dict, list, bool)):
                    raise ValueError('%s: a string is expected' % name)
                want = str(want)
                value = want
            elif isinstance(have, list):
                want = parse_list(name, want, have)
                value = json.dumps(want)
            else:
                raise ValueError('%s: platformctl shows it as %s; cannot compare' % (name, type(have).__name__))
        except ValueError as e:
            module.fail_json(msg=str(e))
        argv = ['config', 'set', name, value]
        if have != want:
            todo.append((name, have, want, argv))

    diff = {'before': ''.join('%s = %s\n' % (n, show(h)) for n, h, _, _ in todo),
            'after': ''.join('%s = %s\n' % (n, show(w)) for n, _, w, _ in todo)}
    changed = [n for n, _, _, _ in todo]
    if todo and not module.check_mode:
        for name, _, _, argv in todo:
            ctl.run(*argv, change=True)
        now = current_settings(ctl)
        for name, _, want, _ in todo:
            if now.get(name) != want:
                module.warn('%s is %s in the launcher after setting %s: put that in the inventory, or every run '
                            'reports a change' % (name, show(now.get(name)), show(want)))
    module.exit_json(changed=bool(todo), changed_settings=changed, diff=diff)


if __name__ == '__main__':
    main()
