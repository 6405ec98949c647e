# SPDX-License-Identifier: Apache-2.0
"""bash and zsh completion for platformctl: the candidates a user gets."""
import os
import subprocess

import pytest

import harness as H
from launcher import RUST_CONFIG

BASH_COMPLETION = os.path.join(H.SOURCE_DIR, 'completion', 'platformctl.bash')
ZSH_COMPLETION = os.path.join(H.SOURCE_DIR, 'completion', '_platformctl')
BASH_COMPLETION_LIB = '/usr/share/bash-completion/bash_completion'
CTL_DIR = os.path.join(H.BUILD_DIR, 'src', 'ctl')


@pytest.fixture
def daemon_config():
    return RUST_CONFIG


def complete(line, env=None, with_lib=True, command='platformctl'):
    """Candidates bash offers for `line` (the cursor at its end), as readline would ask."""
    words = line.split(' ')
    script = '''
        %s
        source %s
        COMP_WORDS=(%s)
        COMP_CWORD=%d
        COMP_LINE=%s
        COMP_POINT=${#COMP_LINE}
        _platformctl %s "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%%s\\n' "${COMPREPLY[@]}"
    ''' % ('source %s' % BASH_COMPLETION_LIB if with_lib else '', BASH_COMPLETION,
           ' '.join("'%s'" % w for w in words), len(words) - 1, "'%s'" % line, command)
    e = dict(env or os.environ)
    e['PATH'] = CTL_DIR + ':' + e.get('PATH', '/usr/bin:/bin')
    p = subprocess.run(['bash', '--norc', '--noprofile', '-c', script], capture_output=True, text=True,
                       env=e, timeout=30)
    assert p.returncode == 0, p.stderr
    return sorted(w for w in p.stdout.split('\n') if w)


@pytest.mark.parametrize('with_lib', [True, False], ids=['bash-completion', 'plain-bash'])
def test_bash_verbs_and_options(with_lib):
    if with_lib and not os.path.exists(BASH_COMPLETION_LIB):
        pytest.skip('bash-completion is not installed')
    assert complete('platformctl ', with_lib=with_lib) == ['config', 'monitor', 'status', 'updater', 'vm']
    assert complete('platformctl updater ', with_lib=with_lib) == ['apply', 'check', 'disable', 'enable', 'history',
                                                                  'rollback', 'status']
    assert complete('platformctl vm h', with_lib=with_lib) == ['history']
    assert complete('platformctl updater apply --', with_lib=with_lib)[:2] == ['--dry-run', '--force']
    assert '--dry-run' not in complete('platformctl updater check --', with_lib=with_lib)
    assert complete('platformctl co', with_lib=with_lib) == ['config']
    assert complete('platformctl vm st', with_lib=with_lib) == ['start', 'status', 'stop']
    assert complete('platformctl config set-', with_lib=with_lib) == ['set-env', 'set-vmm-url']
    # Options anywhere; the verb's own options only where they apply.
    assert '--force' in complete('platformctl vm update --', with_lib=with_lib)
    assert '--force' not in complete('platformctl vm stop --', with_lib=with_lib)
    assert complete('platformctl --json vm logs --channel s', with_lib=with_lib) == ['serial', 'stderr', 'stdout']
    assert complete('platformctl --no-block vm re', with_lib=with_lib) == ['restart']
    assert complete('platformctl config set Poll', with_lib=with_lib) == ['PollIntervalUSec']
    assert complete('platformctl config set Ad', with_lib=with_lib) == ['AdoptPolicy']
    assert complete('platformctl config set UpdateStrategy ', with_lib=with_lib) == ['in-place', 'recreate']
    assert complete('platformctl --no-', with_lib=with_lib) == ['--no-ask-password', '--no-block', '--no-pager']


def test_bash_env_keys_from_the_launcher(daemon, bus):
    """Env key names come from the running launcher (names only)."""
    assert complete('platformctl config get-env ', env=bus.env()) == ['HOTKEY_PASSPHRASE', 'VALIDATOR_BASE_URL']
    assert complete('platformctl config remove-env VAL', env=bus.env()) == ['VALIDATOR_BASE_URL']
    # The Rust launcher's words under its own name.
    assert complete('platform config ', env=bus.env(), command='platform') == [
        'get-env', 'list-env', 'remove-env', 'set-env', 'set-passphrase', 'set-vmm-url', 'show']
    assert complete('platform config get-env HOT', env=bus.env(), command='platform') == ['HOTKEY_PASSPHRASE']


def test_bash_new_options_and_values():
    assert complete('platformctl config set UpdaterAutoUpdate ') == ['no', 'yes']
    assert complete('platformctl config set AdoptPolicy ') == ['keep', 'redeploy']
    assert complete('platformctl config set UpdaterRe') == ['UpdaterRemote', 'UpdaterRepository', 'UpdaterRestartCommands',
                                                            'UpdaterRestartUnits']
    assert '--allow-empty' in complete('platformctl config set-env KEY --')
    assert '--allow-empty' not in complete('platformctl config get-env KEY --')
    assert '--arg' in complete('platformctl config set UpdaterRestartUnits --')
    assert '--yes' in complete('platformctl vm restart --')
    assert '--force' in complete('platformctl updater apply --')
    # After --arg comes its value, not a setting name.
    assert complete('platformctl config set UpdaterRestartUnits --arg ') == []


def test_bash_platform_offers_only_its_own_words():
    assert complete('platform ', command='platform') == ['config']
    opts = complete('platform config set-passphrase --', command='platform')
    assert '--allow-empty' in opts and '--yes' in opts, opts
    for other in ('--force', '--channel', '--follow', '--dry-run', '--arg', '--no-pager'):
        assert other not in opts, (other, opts)
    assert '--allow-empty' not in complete('platform config show --', command='platform')


def test_bash_env_keys_without_a_launcher_is_quiet(bus):
    assert complete('platformctl config get-env ', env=bus.env()) == []


def test_zsh_completion_parses_and_offers_verbs(tmp_path):
    if subprocess.run(['sh', '-c', 'command -v zsh'], capture_output=True).returncode != 0:
        pytest.skip('zsh is not installed')
    p = subprocess.run(['zsh', '-n', ZSH_COMPLETION], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    # Drive the function the way compsys would: _describe/_values stubbed to print their candidates.
    script = '''
        _describe() { print -l -- ${(P)${@[-1]}}; }
        _values() { shift; print -l -- "$@"; }
        _arguments() { state=command; }
        _call_program() { shift; "$@"; }
        source %s
        words=(%s); CURRENT=%d; service=%s
        _platformctl
    '''
    for service, words, current, expected in (
            ('platformctl', ['vm', ''], 2, 'status:Show the VM state and properties'),
            ('platformctl', ['config', ''], 2, 'set-vmm-url:Set the VMM URL the VM uses'),
            ('platformctl', [''], 1, 'monitor:Print signals and state changes as they happen'),
            ('platformctl', ['updater', ''], 2, 'rollback:Return to the previous good commit'),
            ('platformctl', ['vm', ''], 2, 'history:What was done to the VM and who asked'),
            ('platformctl', ['config', 'set', ''], 3, 'UpdaterBuildCommands'),
            ('platformctl', ['config', 'set', 'UpdaterAutoUpdate', ''], 4, 'yes'),
            ('platform', [''], 1, "config:The Rust launcher's config commands"),
            ('platform', ['config', ''], 2, 'set-passphrase:Set HOTKEY_PASSPHRASE')):
        p = subprocess.run(['zsh', '-f', '-c', script % (ZSH_COMPLETION, ' '.join("'%s'" % w for w in words),
                                                          current, service)],
                           capture_output=True, text=True, timeout=30)
        assert expected in p.stdout.splitlines(), (service, words, p.stdout, p.stderr)
    # platform offers only its own verbs.
    p = subprocess.run(['zsh', '-f', '-c', script % (ZSH_COMPLETION, "'config' ''", 2, 'platform')],
                       capture_output=True, text=True, timeout=30)
    assert not any(line.startswith(('set:', 'reload:')) for line in p.stdout.splitlines()), p.stdout
