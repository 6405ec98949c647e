#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Run platform-launcherd for real and show it working, the way an operator would.

A private system bus with the project's bus policy, the real polkitd with the
project's .policy (in a private mount namespace, nothing on the host changes),
the bundled dstack VMM and Platform API simulators (tests/sim), the real daemon,
and platformctl/busctl as root and as `nobody`: the VM is created, then updated
when the simulated API changes its compose, with the signals shown as they
arrive. Everything started is stopped at the end. Needs root (polkitd).
Usage: tests/demo.py [-C BUILDDIR]
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'integration'))
sys.path.insert(0, os.path.join(HERE, 'sim'))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('-C', dest='builddir', default=os.path.join(HERE, '..', 'build'))
    opts = ap.parse_args()
    os.environ['PLATFORM_BUILD_DIR'] = os.path.abspath(opts.builddir)
    import harness as H  # reads PLATFORM_BUILD_DIR
    import simlib

    if not H.is_root():
        sys.exit('demo: run as root (polkitd switches users and needs a private mount namespace)')
    ctl_bin = os.path.join(H.BUILD_DIR, 'src', 'ctl', 'platformctl')

    h = H.Harness(prefix='platform-demo-')
    sims = []
    try:
        bus = h.start_bus()
        polkit = h.start_polkit('real')
        vmm = simlib.start_vmm(h.workdir, shutdown_seconds=1.0)
        api = simlib.start_api(h.workdir)
        sims += [vmm, api]
        api.patch_doc(required_env=['HOTKEY_PASSPHRASE'])
        # The Rust launcher's config file, read as it is, plus where the simulators listen.
        daemon = h.daemon(config={'dstack_vmm_url': 'http://10.0.2.2:10300/',
                                  'env': {'VALIDATOR_BASE_URL': 'https://validator.example'},
                                  'api_url': api.url + '/config/compose/validator_vm',
                                  'vmm_url': vmm.url,
                                  'poll_interval_usec': 2000000,
                                  'stop_timeout_usec': 5000000,
                                  # the simulated VMs are larger than a laptop
                                  'capacity_vcpu': 1024, 'capacity_memory_mib': 1 << 30})
        vm_path = H.DAEMON_PATH + '/vm/validator_5fvm'
        monitor = subprocess.Popen(['busctl', 'monitor', '--match',
                                    "type='signal',interface='org.platform.Launcher1.Vm'"],
                                   env=bus.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        def step(title, argv, user=None, stdin=None):
            who = 'nobody' if user else 'root'
            print('\n\033[1m# %s\033[0m\n%s$ %s' % (title, who, ' '.join(argv)), flush=True)
            # Never the demo's own terminal: a command shown runs as a script would, unasked.
            p = subprocess.run(H.as_user_argv(user, argv), env=bus.env(), input='' if stdin is None else stdin,
                               text=True, capture_output=True, timeout=30)
            sys.stdout.write(p.stdout)
            sys.stdout.write(p.stderr)
            if p.returncode:
                print('(exit status %d)' % p.returncode)

        ctl = [ctl_bin, '--no-ask-password']
        print('Private system bus: %s' % bus.address)
        print('polkitd: real, with polkit/org.platform.launcher1.policy staged')
        print('dstack VMM simulator: %s   Platform API simulator: %s' % (vmm.url, api.url))
        print('platform-launcherd: pid %d, config %s' % (daemon.proc.pid, daemon.config_path))

        def vm_state():
            return bus.get_property(H.DAEMON_NAME, vm_path, 'org.platform.Launcher1.Vm', 'State').result

        def wait_for(cond, what, timeout=30):
            simlib.wait_until(cond, timeout=timeout, what=what)

        step('The launcher as an operator sees it: the API requires HOTKEY_PASSPHRASE, so the VM waits',
             ctl + ['status'])
        step('Set the hotkey passphrase from stdin (never on the command line): the VM is created at once',
             ctl + ['config', 'set-env', 'HOTKEY_PASSPHRASE'], stdin='correct horse battery staple\n')
        wait_for(lambda: vm_state() == 'running' and vmm.vms(), 'the VM to run')
        step('The VM runs; the env the guest decrypted (shown by the simulator, keys only)',
             ['sh', '-c', 'echo; true'])
        for v in vmm.vms():
            print('  VMM: %s %s env keys: %s' % (v['id'], v['status'], ' '.join(sorted(v.get('env', {})))))
        step('Status', ctl + ['status'])
        step('The Platform API publishes a new compose ...', ['true'])
        api.patch_doc(compose_content='services:\n  app:\n    image: "nginx:1.27"\n')
        old_hash = bus.get_property(H.DAEMON_NAME, vm_path, 'org.platform.Launcher1.Vm', 'ComposeHash').result
        wait_for(lambda: bus.get_property(H.DAEMON_NAME, vm_path, 'org.platform.Launcher1.Vm',
                                          'ComposeHash').result not in ('', old_hash)
                 and vm_state() == 'running', 'the VM to be updated')
        print('... and at the next poll the launcher replaces the VM (graceful ShutdownVm, RemoveVm, CreateVm):')
        calls = [c['method'] for c in vmm.calls() if c['method'] not in ('Status', 'GetInfo')]
        print('  VMM writes, in order: %s' % ' '.join(calls))
        step('Plan: nothing left to do', ['busctl', 'call', H.DAEMON_NAME, vm_path, 'org.platform.Launcher1.Vm', 'Plan'])
        step('Poll every 10 seconds', ctl + ['config', 'set', 'PollIntervalUSec', '10s'])
        step('An unprivileged user may look ...', ctl + ['config', 'list-env'], user='nobody')
        step('... but polkit says no to changes', ctl + ['config', 'set-env', 'X', 'y'], user='nobody')
        polkit.allow('org.platform.launcher1.configure', user='nobody')
        print('\n# (a polkit rule now grants org.platform.launcher1.configure to nobody)')
        step('Now the same call is allowed', ctl + ['config', 'set-env', 'X', 'y'], user='nobody')
        step('The file on disk (0600): Rust keys kept, new keys beside them', ['ls', '-l', daemon.config_path])
        step('The launcher after the changes', ctl + ['status'])

        # ---- The Updater: a git deployment kept on its release branch (issue 8) ----
        import json
        import updater_world
        world = updater_world.World(h)
        lock = os.path.join(world.dir, 'round.lock')
        with open(lock, 'w') as f:
            json.dump({'pid': os.getpid(), 'round': 42}, f)
        good = world.release('2')
        cfg = world.config(updater_round_lock_file=lock)
        settings = {'UpdaterRepository': ['s', cfg['updater_repository']],
                    'UpdaterBuildCommands': ['aas', cfg['updater_build_commands']],
                    'UpdaterRestartCommands': ['aas', cfg['updater_restart_commands']],
                    'UpdaterHealthCommand': ['as', cfg['updater_health_command']],
                    'UpdaterHealthTimeoutUSec': ['t', cfg['updater_health_timeout_usec']],
                    'UpdaterRoundLockFile': ['s', lock]}
        umon = subprocess.Popen([ctl_bin, 'monitor'], env=bus.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        umon.stderr.readline()   # the banner: its matches are in place
        r = daemon.call('SetSettings', 'a{sv}', [settings])
        print('\n# The Updater now keeps %s on origin/release (SetSettings: %s)' % (
            world.work, 'ok' if r.ok else r))
        step('A validation round holds its lockfile: a new release is deferred, nothing is touched',
             ctl + ['updater', 'apply'])
        step('Status shows why, problems first', ctl + ['status'])
        os.unlink(lock)
        step('The round ended (lockfile gone): the update applies (build, restart, health check)',
             ctl + ['updater', 'apply'])
        bad = world.release('3', health='bad')
        step('A bad release: its health check fails, so it is rolled back and quarantined',
             ctl + ['updater', 'apply'])
        step('The deployment is back on the good commit', ctl + ['updater', 'status'])
        print('  git HEAD: %s (good %s, quarantined %s)' % (world.head()[:12], good[:12], bad[:12]))
        umon.terminate()
        print('\n\033[1m# Updater signals seen by platformctl monitor\033[0m')
        for line in umon.communicate(timeout=5)[0].splitlines():
            if ' Update' in line and 'updater' in line:
                print('  ' + line)

        monitor.terminate()
        out = monitor.communicate(timeout=5)[0]
        print('\n\033[1m# Signals seen on the bus (busctl monitor)\033[0m')
        for block in out.split('\n\n'):
            if 'Member=VmUpdated' in block or 'Member=UpdateFailed' in block:
                member = 'VmUpdated' if 'Member=VmUpdated' in block else 'UpdateFailed'
                args = [line.strip().split(' ', 1)[1].strip('";') for line in block.splitlines()
                        if line.strip().startswith('STRING')]
                print('  %s(%s)' % (member, ', '.join(args)))
        secret_leaked = 'correct horse' in daemon.log_text()
        print('\nDaemon log (secrets never appear in it: %s):' % ('LEAKED' if secret_leaked else 'checked'))
        sys.stdout.write(''.join('  ' + line for line in daemon.log_text().splitlines(True)))
        return 1 if secret_leaked else 0
    finally:
        for sim in sims:
            sim.stop()
        problems = h.cleanup()
        for p in problems:
            print('cleanup: %s' % p, file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
