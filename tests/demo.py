#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Run platform-launcherd for real and show it working, the way an operator would.

A private system bus with the project's bus policy, the real polkitd with the
project's .policy (in a private mount namespace, nothing on the host changes),
the real daemon, and platformctl as root and as `nobody`. Everything started is
stopped at the end. Needs root (polkitd). Usage: tests/demo.py [-C BUILDDIR]
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'integration'))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-C', dest='builddir', default=os.path.join(HERE, '..', 'build'))
    opts = ap.parse_args()
    os.environ['PLATFORM_BUILD_DIR'] = os.path.abspath(opts.builddir)
    import harness as H  # reads PLATFORM_BUILD_DIR

    if not H.is_root():
        sys.exit('demo: run as root (polkitd switches users and needs a private mount namespace)')
    ctl_bin = os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platformctl')

    h = H.Harness(prefix='platform-demo-')
    try:
        bus = h.start_bus()
        polkit = h.start_polkit('real')
        # The Rust launcher's config file, read as it is.
        daemon = h.daemon(config={'dstack_vmm_url': 'http://10.0.2.2:10300/',
                                  'env': {'VALIDATOR_BASE_URL': 'https://validator.example'}})

        def step(title, argv, user=None, stdin=None):
            who = 'nobody' if user else 'root'
            print('\n\033[1m# %s\033[0m\n%s$ %s' % (title, who, ' '.join(argv)), flush=True)
            p = subprocess.run(H.as_user_argv(user, argv), env=bus.env(), input=stdin, text=True,
                               capture_output=True, timeout=30)
            sys.stdout.write(p.stdout)
            sys.stdout.write(p.stderr)
            if p.returncode:
                print('(exit status %d)' % p.returncode)

        ctl = [ctl_bin, '--no-ask-password']
        print('Private system bus: %s' % bus.address)
        print('polkitd: real, with polkit/org.platform.launcher1.policy staged')
        print('platform-launcherd: pid %d, config %s' % (daemon.proc.pid, daemon.config_path))
        step('The launcher as an operator sees it', ctl + ['status'])
        step('Set the hotkey passphrase from stdin (never on the command line)',
             ctl + ['config', 'set-env', 'HOTKEY_PASSPHRASE'], stdin='correct horse battery staple\n')
        step('Poll every 10 seconds', ctl + ['config', 'set', 'PollIntervalUSec', '10s'])
        step('Only names of secrets are shown', ctl + ['config', 'list-env'])
        step('An unprivileged user may look ...', ctl + ['config', 'show'], user='nobody')
        step('... but polkit says no to changes', ctl + ['config', 'set-env', 'X', 'y'], user='nobody')
        polkit.allow('org.platform.launcher1.configure', user='nobody')
        print('\n# (a polkit rule now grants org.platform.launcher1.configure to nobody)')
        step('Now the same call is allowed', ctl + ['config', 'set-env', 'X', 'y'], user='nobody')
        step('Everything is on the bus for busctl and Cockpit too',
             ['busctl', 'get-property', H.DAEMON_NAME, H.DAEMON_PATH, H.CONFIG_IFACE, 'EnvKeys'])
        step('The file on disk (0600): Rust keys kept, new keys beside them', ['ls', '-l', daemon.config_path])
        step('The launcher after the changes', ctl + ['status'])
        secret_leaked = 'correct horse' in daemon.log_text()
        print('\nDaemon log (secrets never appear in it: %s):' % ('LEAKED' if secret_leaked else 'checked'))
        sys.stdout.write(''.join('  ' + line for line in daemon.log_text().splitlines(True)))
        return 1 if secret_leaked else 0
    finally:
        problems = h.cleanup()
        for p in problems:
            print('cleanup: %s' % p, file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
