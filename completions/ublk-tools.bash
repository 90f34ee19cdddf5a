# bash completion for ublk-add, ublk-serve, ublk-del, ublk-export-diff, ublk-pool  -*- shell-script -*-
#
# One script for the five tools. It is installed once per tool name in
# bash-completion's completions directory and registers itself for all of
# them, whichever name it is loaded under; it also works sourced directly,
# without bash-completion. The option names are not listed here: they come
# from the tool itself (`TOOL --long-options` prints one per line, with a
# trailing "=" when the option takes an argument), so the completion
# follows the tool it completes.

# Run the tool the user typed ($1) with the remaining arguments.
_ublk_tools_run()
{
    local cmd=$1
    shift
    [[ $cmd == "~/"* ]] && cmd=$HOME/${cmd#"~/"}
    LC_ALL=C command "$cmd" "$@" 2>/dev/null </dev/null
}

# The helpers below read these arrays of _ublk_tools (dynamic scope):
#   _ublk_long  long options, without "="     _ublk_arg  those taking an argument
#   _ublk_short "-X --name" pairs, filled on first use from the tool's --help

# Does long option $1 take an argument?
_ublk_tools_takes_arg()
{
    local a
    for a in "${_ublk_arg[@]}"; do
        [[ $a == "$1" ]] && return 0
    done
    return 1
}

# Print the full name of long option $1, which may be abbreviated (getopt
# accepts any unambiguous prefix); $1 itself if it matches none or several.
_ublk_tools_full()
{
    local a match= n=0
    for a in "${_ublk_long[@]}"; do
        [[ $a == "$1" ]] && { printf '%s' "$a"; return; }
        [[ $a == "$1"* ]] && { match=$a; n=$((n + 1)); }
    done
    if ((n == 1)); then printf '%s' "$match"; else printf '%s' "$1"; fi
}

# Fill _ublk_short from the tool's --help, once. Call it directly, not in
# $(...), so that the result stays.
_ublk_tools_load_short()
{
    local line
    ((_ublk_short_loaded)) && return
    _ublk_short_loaded=1
    while IFS= read -r line; do
        [[ $line =~ ^[[:space:]]+(-[[:alnum:]]),[[:space:]]+(--[[:alnum:]-]+) ]] &&
            _ublk_short+=("${BASH_REMATCH[1]} ${BASH_REMATCH[2]}")
    done < <(_ublk_tools_run "$_ublk_cmd" --help)
}

# Print the long name of short option $1 (e.g. -b), if it has one.
_ublk_tools_short_to_long()
{
    local line
    for line in "${_ublk_short[@]}"; do
        [[ ${line%% *} == "$1" ]] && { printf '%s' "${line#* }"; return; }
    done
}

# Is long option $1 one after which the tool takes no device operand?
# (ublk-del --all; ublk-export-diff --cache, --inspect, --flatten)
_ublk_tools_no_device_opt()
{
    case $1 in
        --all | --cache | --inspect | --flatten) return 0 ;;
    esac
    return 1
}

# Parse a word of short options ($1, e.g. -rb) as getopt does: the rest of
# the word after the first option that takes an argument is its argument;
# if that option is the word's last letter, the next word is. Sets o to the
# long name of that option in the latter case (else empty), and nodev=1 if
# the word holds an option that rules out a device operand (-a, -c).
_ublk_tools_short_word()
{
    local w=$1 k l
    o=
    for ((k = 1; k < ${#w}; k++)); do
        l=$(_ublk_tools_short_to_long "-${w:k:1}")
        _ublk_tools_no_device_opt "$l" && nodev=1
        if [[ $l ]] && _ublk_tools_takes_arg "$l"; then
            ((k == ${#w} - 1)) && o=$l
            return
        fi
    done
}

# Does ublk-pool command $1 take option $2? (ublk-pool refuses an option
# that does nothing in its command; the same table as cmd/ublk-pool.c.)
_ublk_tools_pool_takes()
{
    local cmds
    case $2 in
        --json) cmds="list status reclaim watch shutdown trace-merge trace-show" ;;
        --output) cmds="list status trace-merge" ;;
        --noheadings | --raw) cmds="list status" ;;
        --check) cmds="list" ;;
        --recover) cmds="reclaim" ;;
        --caches) cmds="reclaim watch" ;;
        --hang-timeout) cmds="list status reclaim watch" ;;
        --interval) cmds="watch" ;;
        --timeout) cmds="reclaim watch shutdown save-trace" ;;
        --textfile) cmds="metrics" ;;
        --grace) cmds="list status reclaim watch metrics" ;;
        --state-dir) cmds="list status reclaim watch shutdown metrics save-trace" ;;
        *) return 0 ;;
    esac
    [[ " $cmds " == *" $1 "* ]]
}

# Add to COMPREPLY file names (directory names if $2 is "dirs") matching $1.
_ublk_tools_files()
{
    local cur=$1 what=${2-}
    if declare -F _filedir >/dev/null; then
        # bash-completion: handles quoting, "~" and spaces; reads $cur
        if [[ $what == dirs ]]; then _filedir -d; else _filedir; fi
        return
    fi
    local IFS=$'\n'
    compopt -o filenames 2>/dev/null
    if [[ $what == dirs ]]; then
        COMPREPLY+=($(compgen -d -- "$cur"))
    else
        COMPREPLY+=($(compgen -f -- "$cur"))
    fi
}

# Complete $1 as the value of long option $2.
_ublk_tools_value()
{
    local cur=$1
    case $2 in
        --output)
            if [[ $tool == ublk-pool* && $pool_cmd != trace-merge ]]; then   # columns, comma-separated
                local done=${cur%"${cur##*,}"}
                COMPREPLY+=($(compgen -P "$done" -W "DEVICE ID NAME KERNEL STATE PID UP SIZE RO QUEUES DEPTH LAYERS CACHE CACHE-USED BASE READS WRITES ERRORS PREFETCH PREFETCH-HITS PROBLEM" -- "${cur##*,}"))
            else
                _ublk_tools_files "$cur"
            fi ;;
        --base | --cache | --inspect | --layer | --auth-file | --record-access | --prefetch-trace) _ublk_tools_files "$cur" ;;
        --state-dir | --chunk-cache | --textfile | --e2b | --cgroup) _ublk_tools_files "$cur" dirs ;;
        --e2b-file) COMPREPLY+=($(compgen -W "rootfs.ext4 memfile" -- "$cur")) ;;
        --build | --build-id) ;;                           # an E2B build id
        --format) COMPREPLY+=($(compgen -W "diff v3 e2b" -- "$cur")) ;;
        --compress) COMPREPLY+=($(compgen -W "zstd lz4" -- "$cur")) ;;
        --header-version) COMPREPLY+=($(compgen -W "1 2 3 4 5" -- "$cur")) ;;
        --level) COMPREPLY+=($(compgen -W "$(seq 1 19)" -- "$cur")) ;;
        --recover) _ublk_tools_devices "$cur" ;;          # ublk-serve --recover DEV
        --queues | --depth | --timeout | --ready-fd | --size | --inject | --frame-size) ;;  # nothing to offer
        --name | --id | --max-devices | --secrets-fd | --owner-nonce) ;;
        --chunk-size | --chunk-cache-limit | --http-timeout | --http-retries | --readahead | --prefetch-connections) ;;
        --record-for | --record-limit) ;;
        --interval | --grace | --hang-timeout) ;;
        *) _ublk_tools_files "$cur" ;;                    # an option new to this script
    esac
}

# Add to COMPREPLY the ublk devices (/dev/ublkbN, not partitions) and the
# names given to them (ublk-add --name) that start with $1 and are not
# among the other arguments.
_ublk_tools_devices()
{
    local cur=$1 dev w seen pool=${_ublk_cmd%ublk-*}ublk-pool
    shift
    for dev in /dev/ublkb*; do
        [[ $dev =~ ^/dev/ublkb[0-9]+$ ]] || continue
        seen=
        for w in "$@"; do
            [[ $w == "$dev" || $w == "${dev#/dev/ublkb}" || $w == "${dev#/dev/}" ]] && seen=1
        done
        [[ $seen ]] && continue
        [[ $dev == "$cur"* ]] && COMPREPLY+=("$dev")
        # its id, when an id is being typed
        [[ $cur =~ ^[0-9]+$ && ${dev#/dev/ublkb} == "$cur"* ]] && COMPREPLY+=("${dev#/dev/ublkb}")
    done
    [[ $cur == /* ]] && return
    while IFS= read -r dev; do
        [[ $dev != - && $dev == "$cur"* ]] || continue
        seen=
        for w in "$@"; do [[ $w == "$dev" ]] && seen=1; done
        [[ $seen ]] || COMPREPLY+=("$dev")
    done < <(_ublk_tools_run "$pool" list -n -o name)
}

_ublk_tools()
{
    local _ublk_cmd=${COMP_WORDS[0]}
    local tool=${_ublk_cmd##*/}
    local cword=$COMP_CWORD
    local cur=${COMP_WORDS[cword]-}
    local -a words=("${COMP_WORDS[@]:0:cword}")   # the words before the current one
    local -a _ublk_long=() _ublk_arg=() _ublk_short=() names=()
    local _ublk_short_loaded=0
    local o word i operands= given= nodev= recovering=

    COMPREPLY=()

    while IFS= read -r o; do
        [[ $o == --?* ]] || continue
        _ublk_long+=("${o%=}")
        [[ $o == *= ]] && _ublk_arg+=("${o%=}")
    done < <(_ublk_tools_run "$_ublk_cmd" --long-options)

    local pool_cmd=

    # --opt=VALUE, "=" being a word break (the default): the words end in
    # "--opt" "=" and cur is "=" or the value typed so far.
    if [[ $cur == "=" && ${words[cword - 1]-} == --?* ]]; then
        cur=
        _ublk_tools_value "" "$(_ublk_tools_full "${words[cword - 1]}")"
        return 0
    fi
    if [[ ${words[cword - 1]-} == "=" && ${words[cword - 2]-} == --?* ]]; then
        _ublk_tools_value "$cur" "$(_ublk_tools_full "${words[cword - 2]}")"
        return 0
    fi
    # --opt=VALUE in one word ("=" removed from COMP_WORDBREAKS).
    if [[ $cur == --?*=* ]]; then
        local prefix=${cur%%=*}=
        cur=${cur#*=}
        _ublk_tools_value "$cur" "$(_ublk_tools_full "${prefix%=}")"
        for i in "${!COMPREPLY[@]}"; do
            COMPREPLY[i]=$prefix${COMPREPLY[i]}
        done
        return 0
    fi

    # Walk the earlier words: is the current one the argument of an option,
    # or are we past the options? (Options and operands mix, as getopt
    # permutes them; only "--" ends the options. ublk-pool's first operand
    # is its command.)
    for ((i = 1; i < cword; i++)); do
        word=${words[i]}
        if [[ $word == "--" ]]; then
            operands=1
            break
        elif [[ $word == --?*=* ]]; then
            o=$(_ublk_tools_full "${word%%=*}")
            _ublk_tools_no_device_opt "$o" && nodev=1
            [[ $o == --recover ]] && recovering=1
            continue
        elif [[ $word == --?* ]]; then
            o=$(_ublk_tools_full "$word")
            _ublk_tools_no_device_opt "$o" && nodev=1
            [[ $o == --recover ]] && recovering=1
            [[ ${words[i + 1]-} == "=" ]] && { i=$((i + 2)); continue; }
            _ublk_tools_takes_arg "$o" || continue
            # --inspect's FILE is optional: a word starting with "-" after it is an option
            [[ $o == --inspect && ${words[i + 1]-$cur} == -* ]] && continue
        elif [[ $word == -?* ]]; then
            _ublk_tools_load_short
            _ublk_tools_short_word "$word"
            [[ $o ]] || continue
        elif [[ $tool == ublk-pool* && ! $pool_cmd ]]; then
            pool_cmd=$word
            continue
        else
            given=1
            continue
        fi
        # option $o takes the next word as its argument
        if ((i + 1 == cword)); then
            _ublk_tools_value "$cur" "$o"
            return 0
        fi
        i=$((i + 1))
    done

    if [[ $tool == ublk-pool* && ! $pool_cmd && $cur != -* ]]; then
        COMPREPLY=($(compgen -W "list status reclaim watch shutdown metrics save-trace trace-merge trace-show" -- "$cur"))
        return 0
    fi
    if [[ ! $operands && $cur == -* ]]; then
        for o in "${_ublk_long[@]}"; do
            [[ $o == "$cur"* ]] || continue
            [[ $tool == ublk-pool* && $pool_cmd ]] && ! _ublk_tools_pool_takes "$pool_cmd" "$o" && continue
            # a recovery takes the device's options from its state entry
            if [[ $tool == ublk-serve* && $recovering ]]; then
                case $o in
                    --state-dir | --verbose | --timeout | --ready-fd | --help | --version) ;;
                    *) continue ;;
                esac
            fi
            names+=("$o")
        done
        COMPREPLY=("${names[@]}")
        return 0
    fi

    case $tool in
        ublk-del* | ublk-export-diff*)
            if [[ $nodev ]]; then
                # --all, --cache, --inspect, --flatten: no device; ublk-export-diff
                # then still wants options (--output, --base, ...)
                [[ $tool == ublk-export-diff* && ! $operands && -z $cur ]] &&
                    COMPREPLY=("${_ublk_long[@]}")
                return 0
            fi
            # ublk-export-diff exports one device at a time
            [[ $tool == ublk-export-diff* && $given ]] && return 0
            _ublk_tools_devices "$cur" "${words[@]:1}"
            # nothing typed and no device to offer: show the options
            if [[ ! $operands && -z $cur && ${#COMPREPLY[@]} -eq 0 ]]; then
                COMPREPLY=("${_ublk_long[@]}")
            fi
            ;;
        ublk-pool*)
            # list, status and save-trace take devices, trace-merge and trace-show trace files
            [[ $pool_cmd == list || $pool_cmd == status || $pool_cmd == save-trace ]] &&
                _ublk_tools_devices "$cur" "${words[@]:1}"
            [[ $pool_cmd == trace-* ]] && _ublk_tools_files "$cur"
            ;;
        *)
            # ublk-add and ublk-serve take no operands, only options
            [[ ! $operands && -z $cur ]] && COMPREPLY=("${_ublk_long[@]}")
            ;;
    esac
    return 0
}

complete -F _ublk_tools ublk-add ublk-serve ublk-del ublk-export-diff ublk-pool

# ex: filetype=sh
