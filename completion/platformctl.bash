# SPDX-License-Identifier: Apache-2.0
# bash completion for platformctl (and its "platform" alias)

__platformctl_settings='ApiUrl VmmUrl GuestVmmUrl PollIntervalUSec StopTimeoutUSec UpdateStrategy AdoptPolicy MetricsPath
UpdaterRepository UpdaterUser UpdaterRemote UpdaterBranch UpdaterIntervalUSec UpdaterRoundLockFile UpdaterRoundLockMaxAgeUSec
UpdaterValidationApiUrl UpdaterApiUnreachable UpdaterBuildCommands UpdaterRestartUnits UpdaterRestartCommands
UpdaterHealthCommand UpdaterHealthUrl UpdaterHealthTimeoutUSec UpdaterCommandTimeoutUSec UpdaterAllowedSignersFile
UpdaterAutoUpdate TrustedKmsSigners KmsSignatureMaxAgeUSec CapacityVcpu CapacityMemoryMiB
CapacityDiskGiB ReservedMemoryMiB ResourceIntervalUSec'

# Env keys from the running launcher; names only, never values.
__platformctl_env_keys() {
        platformctl --no-ask-password -q config list-env 2>/dev/null
}

_platformctl() {
        local cur prev words cword
        if declare -F _init_completion >/dev/null; then
                _init_completion -n = || return
        else
                cur=${COMP_WORDS[COMP_CWORD]}
                prev=${COMP_WORDS[COMP_CWORD-1]}
                words=("${COMP_WORDS[@]}")
                cword=$COMP_CWORD
        fi

        local opts='-h --help --version --json --no-pager --no-ask-password --no-block -q --quiet -H --host -y --yes'
        local -A verbs=(
                [vm]='status plan update start stop restart logs history'
                [updater]='status check apply rollback enable disable history'
                [config]='show list-env set-env get-env remove-env set-vmm-url set reload'
        )

        case $prev in
                -H|--host)
                        COMPREPLY=($(compgen -A hostname -- "$cur"))
                        return ;;
                --channel)
                        COMPREPLY=($(compgen -W 'serial stdout stderr' -- "$cur"))
                        return ;;
                -n|--lines|--arg)
                        return ;;
        esac

        # The words that are not options (nor an option's argument), in order.
        local -a args=()
        local i w skip=
        for ((i = 1; i < cword; i++)); do
                w=${words[i]}
                if [[ -n $skip ]]; then skip=; continue; fi
                case $w in
                        -H|--host|--channel|-n|--lines|--arg) skip=1 ;;
                        -*) ;;
                        *) args+=("$w") ;;
                esac
        done

        if [[ $cur == -* && ${words[0]##*/} == platform ]]; then
                opts='-h --help --version --json --no-ask-password --no-block -q --quiet -H --host -y --yes'
                [[ ${args[1]} == @(set-env|set-passphrase) ]] && opts+=' --allow-empty'
                COMPREPLY=($(compgen -W "$opts" -- "$cur"))
                return
        fi
        if [[ $cur == -* ]]; then
                case "${args[0]} ${args[1]}" in
                        'vm update') opts+=' --force' ;;
                        'vm logs') opts+=' -f --follow -a --all -n --lines --channel' ;;
                        'vm history'|'updater history') opts+=' -n --lines' ;;
                        'updater apply') opts+=' --dry-run --force' ;;
                        'config set-env') opts+=' --allow-empty' ;;
                        'config set') opts+=' --arg' ;;
                esac
                COMPREPLY=($(compgen -W "$opts" -- "$cur"))
                return
        fi

        local group=${args[0]}
        if [[ ${words[0]##*/} == platform ]]; then
                # The Rust launcher's words: "platform config ..."
                case ${#args[@]} in
                        0) COMPREPLY=($(compgen -W 'config' -- "$cur")) ;;
                        1) COMPREPLY=($(compgen -W 'show set-env get-env list-env remove-env set-vmm-url set-passphrase' -- "$cur")) ;;
                        2) [[ ${args[1]} == @(get-env|remove-env|set-env) ]] &&
                                COMPREPLY=($(compgen -W "$(__platformctl_env_keys)" -- "$cur")) ;;
                esac
                return
        fi

        case ${#args[@]} in
                0)
                        COMPREPLY=($(compgen -W 'status monitor vm config updater' -- "$cur")) ;;
                1)
                        [[ -n ${verbs[$group]} ]] && COMPREPLY=($(compgen -W "${verbs[$group]}" -- "$cur")) ;;
                2)
                        if [[ $group == config ]]; then
                                case ${args[1]} in
                                        get-env|remove-env|set-env)
                                                COMPREPLY=($(compgen -W "$(__platformctl_env_keys)" -- "$cur")) ;;
                                        set)
                                                COMPREPLY=($(compgen -W "$__platformctl_settings" -- "$cur")) ;;
                                esac
                        fi ;;
                3)
                        if [[ $group == config && ${args[1]} == set ]]; then
                                case ${args[2]} in
                                        UpdateStrategy) COMPREPLY=($(compgen -W 'recreate in-place' -- "$cur")) ;;
                                        AdoptPolicy) COMPREPLY=($(compgen -W 'keep redeploy' -- "$cur")) ;;
                                        UpdaterApiUnreachable) COMPREPLY=($(compgen -W 'busy idle' -- "$cur")) ;;
                                        UpdaterAutoUpdate) COMPREPLY=($(compgen -W 'yes no' -- "$cur")) ;;
                                esac
                        fi ;;
        esac
}

complete -F _platformctl platformctl platform
