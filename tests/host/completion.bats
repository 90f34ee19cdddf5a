#!/usr/bin/env bats
# The bash completion (completions/ublk-tools.bash), driven as bash drives
# it: options anywhere, ublk-pool's command wherever it is, its columns.

load ../helpers

setup() {
	source "$BATS_TEST_DIRNAME/../../completions/ublk-tools.bash"
	PATH=$B:$PATH
}

# complete WORD...: what the completion offers for the last word
complete_words() {
	COMP_WORDS=("$@")
	COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
	COMPREPLY=()
	_ublk_tools
	echo "${COMPREPLY[*]}"
}

@test "bash completion: options anywhere, ublk-pool's command and columns" {
	[ "$(complete_words ublk-pool li)" = list ]
	[ "$(complete_words ublk-pool --json l)" = list ]
	[ "$(complete_words ublk-pool "")" = "list status reclaim watch shutdown metrics save-trace trace-merge trace-show" ]
	[ "$(complete_words ublk-pool list -o DEVICE,SI)" = DEVICE,SIZE ]
	[ "$(complete_words ublk-pool list --output PRO)" = PROBLEM ]
	[ "$(complete_words ublk-pool list --ra)" = --raw ]
	[ "$(complete_words ublk-del 3 --fo)" = --force ]
	[ "$(complete_words ublk-export-diff sb-17 --liv)" = --live ]
	[ "$(complete_words ublk-add --base img --i)" = "--inject --id --insecure" ]
	# only the options of the command given
	[ "$(complete_words ublk-pool list --re)" = "" ]
	[ "$(complete_words ublk-pool reclaim --re)" = --recover ]
	[ "$(complete_words ublk-pool metrics --t)" = --textfile ]
}

@test "bash completion: trace-merge takes -o FILE and trace files, trace-show no -o" {
	T=$BATS_TEST_TMPDIR
	touch "$T/a.trace" "$T/b.trace"
	[ "$(complete_words ublk-pool tr)" = "trace-merge trace-show" ]
	[ "$(complete_words ublk-pool trace-merge --o)" = --output ]
	[ "$(complete_words ublk-pool trace-show --o)" = "" ]
	[ "$(complete_words ublk-pool trace-show --j)" = --json ]
	[ "$(complete_words ublk-pool trace-show --st)" = "" ]
	[ "$(complete_words ublk-pool list --st)" = --state-dir ]
	# a file, not columns
	[ "$(complete_words ublk-pool trace-merge -o "$T/a")" = "$T/a.trace" ]
	[ "$(complete_words ublk-pool trace-merge -o "$T/m.trace" "$T/b")" = "$T/b.trace" ]
	[ "$(complete_words ublk-pool list -o DEVICE,SI)" = DEVICE,SIZE ]
}

@test "bash completion: --inspect's FILE is optional; values that are no file offer no file" {
	cd "$BATS_TEST_TMPDIR"
	touch some.diff
	[ "$(complete_words ublk-export-diff --inspect so)" = some.diff ]
	[ "$(complete_words ublk-export-diff --inspect --e2)" = "--e2b --e2b-file" ]
	[ "$(complete_words ublk-export-diff --inspect --e2b /srv --e2b-f)" = --e2b-file ]
	for opt in --name --id --max-devices; do
		[ "$(complete_words ublk-add --base some.diff "$opt" "")" = "" ]
	done
	[ "$(complete_words ublk-serve --secrets-fd "")" = "" ]
	[ "$(complete_words ublk-serve --owner-nonce "")" = "" ]
}

@test "bash completion: ublk-serve --recover offers only the options that go with it" {
	[ "$(complete_words ublk-serve --b)" = "--base --build" ]
	[ "$(complete_words ublk-serve --recover 5 --b)" = "" ]
	[ "$(complete_words ublk-serve --recover=5 --t)" = "--timeout" ]
	[ "$(complete_words ublk-serve --recov 5 --b)" = "" ]
	[ "$(complete_words ublk-serve --recov 5 --st)" = "--state-dir" ]
}

@test "the zsh completion parses" {
	zsh -n "$BATS_TEST_DIRNAME/../../completions/_ublk-tools"
}

@test "zsh completion, driven in a pseudo-terminal: options anywhere, only those the command takes" {
	run "$BATS_TEST_DIRNAME/zsh-complete.zsh" "$BATS_TEST_DIRNAME/../../completions" "$BATS_TEST_TMPDIR" \
		'ublk-del 3 --fo' 'ublk-export-diff sb-17 --liv' 'ublk-export-diff --inspect --e2' \
		'ublk-serve --rec' 'ublk-serve --base x --rec' 'ublk-serve --recover 3 --qu' \
		'ublk-pool reclaim --re' 'ublk-pool list --re' 'ublk-pool -vt 5 reclaim --re' \
		'ublk-pool trace-show --st' 'ublk-pool metrics --st'
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 22 ]
	[ "${lines[1]}" = --force ]
	[ "${lines[3]}" = --live ]
	[ "${lines[5]}" = "--e2b --e2b-file" ]
	[ "${lines[7]}" = "--record-access --record-for --record-limit --recover" ]
	# ublk-serve refuses --recover with a device option, and those with it
	[ "${lines[9]}" = "--record-access --record-for --record-limit" ]
	[ "${lines[11]}" = "(none)" ]
	[ "${lines[13]}" = --recover ]
	[ "${lines[15]}" = "(none)" ]
	# short options together, the last one's value the next word: 5 is no command
	[ "${lines[17]}" = --recover ]
	# trace-show reads no state directory
	[ "${lines[19]}" = "(none)" ]
	[ "${lines[21]}" = --state-dir ]
}

@test "bash completion offers device ids as they are typed" {
	# the glob of /dev/ublkb* is the one thing to fake: the helper runs over a list
	_ublk_cmd=ublk-del
	devs_under_test() { printf '%s\n' /dev/ublkb12 /dev/ublkb3; }
	eval "$(declare -f _ublk_tools_devices | sed 's|for dev in /dev/ublkb\*;|for dev in $(devs_under_test);|')"
	declare -f _ublk_tools_devices | grep -q devs_under_test
	COMPREPLY=()
	_ublk_tools_devices 1
	[ "${COMPREPLY[*]}" = 12 ]
	COMPREPLY=()
	_ublk_tools_devices /dev/ublkb
	[ "${COMPREPLY[*]}" = "/dev/ublkb12 /dev/ublkb3" ]
	COMPREPLY=()
	_ublk_tools_devices "" /dev/ublkb3
	[ "${COMPREPLY[*]}" = "/dev/ublkb12" ]
}
