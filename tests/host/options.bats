#!/usr/bin/env bats
# Option values that must be refused before anything runs, the state
# entry's config as recovery reads it, and credentials that must not reach
# a command line (issue 11: findings 6, 10, 11, 13). No ublk needed: the
# control node is missing, so a value that gets past the checks ends in
# exit status 3, one that is refused in 2. Tools say 3 before they look at
# a device operand; to get there, tests make a control node of a plain
# file (fake_control), and what gets past then fails at the first control
# command (GET_DEV_INFO).

load ../helpers

setup() {
	export UBLK_CONTROL_PATH=$BATS_TEST_TMPDIR/no-ublk-control
	unset UBLK_HTTP_AUTH
	T=$(mktemp -d)
	truncate -s 1M "$T/img"
	mkdir -m 700 "$T/state"
}

teardown() {
	rm -rf "$T"
}

@test "a name that reads as a device, or is no name, is refused" {
	run_mustfail 2 "--name 'ublkb3': it reads as a device" "$B/ublk-add" --base "$T/img" --name ublkb3
	run_mustfail 2 "--name 'ublkc12': it reads as a device" "$B/ublk-add" --base "$T/img" --name ublkc12
	run_mustfail 2 "--name 'ublkb3': it reads as a device" "$B/ublk-serve" --base "$T/img" --name ublkb3
	run_mustfail 2 "--name '': expected 1-64 of" "$B/ublk-add" --base "$T/img" --name ''
	run_mustfail 2 "--name 'a/b': expected 1-64 of" "$B/ublk-add" --base "$T/img" --name a/b
	run_mustfail 2 "--name '-x': expected 1-64 of" "$B/ublk-add" --base "$T/img" --name=-x
	run_mustfail 2 "expected 1-64 of" "$B/ublk-add" --base "$T/img" --name "$(printf 'a%.0s' {1..65})"
	# names that are fine get past the checks
	run_mustfail 3 "no ublk support" "$B/ublk-add" --base "$T/img" --name ublkb3x
	run_mustfail 3 "no ublk support" "$B/ublk-add" --base "$T/img" --name "$(printf 'a%.0s' {1..64})"
}

@test "control characters in paths, names, URLs and specs are refused" {
	nl=$'\n'
	run_mustfail 2 "--cache: a control character (byte 0x0a at offset" \
		"$B/ublk-add" --base "$T/img" --cache "$T/c${nl}serve_arg=--base"
	run_mustfail 2 "--base: a control character (byte 0x0a" "$B/ublk-add" --base "$T/img${nl}x"
	run_mustfail 2 "--layer: a control character (byte 0x09" "$B/ublk-add" --base "$T/img" --layer "$T/d"$'\t'
	run_mustfail 2 "--name: a control character (byte 0x0d" "$B/ublk-add" --base "$T/img" --name $'ab\r'
	run_mustfail 2 "--inject: a control character (byte 0x7f" "$B/ublk-add" --base "$T/img" --inject $'delay-read=1\x7f'
	run_mustfail 2 "--chunk-cache: a control character" "$B/ublk-add" --base "$T/img" --chunk-cache "$T/x${nl}"
	run_mustfail 2 "--auth-file: a control character" "$B/ublk-serve" --base "$T/img" --auth-file "$T/x${nl}"
	run_mustfail 2 "--state-dir: a control character" "$B/ublk-del" --state-dir "$T/s${nl}" 0
	run_mustfail 2 "--cache: a control character" "$B/ublk-export-diff" --cache "$T/c${nl}" -o "$T/x"
	# kept in the device's config, so checked as an option is
	run_mustfail 2 "UBLK_CHUNK_CACHE: a control character (byte 0x0a at offset" \
		env UBLK_CHUNK_CACHE="$T/x${nl}cache=/etc/shadow" "$B/ublk-add" --base "$T/img"
	run_mustfail 2 "UBLK_CHUNK_CACHE: longer than 8192 bytes" \
		env UBLK_CHUNK_CACHE="/$(printf 'x%.0s' $(seq 9000))" "$B/ublk-add" --base "$T/img"
	export UBLK_HTTP_AUTH=$'Bearer x\r\nX-Evil: 1'
	run_mustfail 2 "UBLK_HTTP_AUTH holds a control character" "$B/ublk-add" --base "$T/img"
}

@test "timeouts out of range are refused, not wrapped" {
	run_mustfail 2 "--timeout '4294967.346': expected seconds, more than 0 and at most 86400" \
		"$B/ublk-add" --base "$T/img" --timeout 4294967.346
	run_mustfail 2 "--timeout '2592000': expected seconds" "$B/ublk-add" --base "$T/img" --timeout 2592000
	run_mustfail 2 "--timeout '86400.001'" "$B/ublk-serve" --base "$T/img" --timeout 86400.001
	run_mustfail 2 "--timeout '2592000'" "$B/ublk-del" --timeout 2592000 0
	run_mustfail 2 "--timeout '0'" "$B/ublk-add" --base "$T/img" --timeout 0
	run_mustfail 2 "--http-timeout '3601': expected seconds, more than 0 and at most 3600" \
		"$B/ublk-add" --base "$T/img" --http-timeout 3601
	run_mustfail 2 "--http-retries '11': expected 0 to 10" "$B/ublk-add" --base "$T/img" --http-retries 11
	# the limits themselves are fine
	run_mustfail 3 "no ublk support" "$B/ublk-add" --base "$T/img" --timeout 86400
	run_mustfail 3 "no ublk support" "$B/ublk-add" --base "$T/img" --http-timeout 3600 --http-retries 10
}

fake_control() {
	touch "$T/ublk-control"
	export UBLK_CONTROL_PATH=$T/ublk-control
}

# A state entry as a server writes it: config lines given, then files.
make_entry() {
	mkdir -m 700 "$T/state/ublkb5"
	echo 1 >"$T/state/ublkb5/version"
	printf '%s\n' "$@" >"$T/state/ublkb5/config"
}

@test "ublk-del '' does not find an unnamed device" {
	make_entry "base=$T/img" name= serve_arg=--base "serve_arg=$T/img"
	run_mustfail 3 "no ublk support" "$B/ublk-del" --state-dir "$T/state" ''
	fake_control
	run_mustfail 6 "'' is neither a ublk device" "$B/ublk-del" --state-dir "$T/state" ''
	run_mustfail 6 "'(control characters)' is neither a ublk device" "$B/ublk-del" --state-dir "$T/state" $'a\nb'
}

@test "ublk-serve --recover refuses a malformed config" {
	fake_control
	make_entry "base=$T/img" serve_arg=--base "serve_arg=$T/img" garbage-without-equals
	run_mustfail 1 "ublkb5: line 4 of $T/state/ublkb5/config is malformed" \
		"$B/ublk-serve" --recover 5 --state-dir "$T/state"
	printf 'serve_arg=--base\nserve_arg=%s\x01\n' "$T/img" >"$T/state/ublkb5/config"
	run_mustfail 1 "line 2 of $T/state/ublkb5/config is malformed" \
		"$B/ublk-serve" --recover 5 --state-dir "$T/state"
	# cut short: no final newline
	printf 'serve_arg=--base\nserve_arg=%s' "$T/img" >"$T/state/ublkb5/config"
	run_mustfail 1 "line 2 of $T/state/ublkb5/config is malformed" \
		"$B/ublk-serve" --recover 5 --state-dir "$T/state"
	# a well-formed one gets past it
	printf 'serve_arg=--base\nserve_arg=%s\n' "$T/img" >"$T/state/ublkb5/config"
	run_mustfail 1 "ublkb5: GET_DEV_INFO" "$B/ublk-serve" --recover 5 --state-dir "$T/state"
}

@test "ublk-serve --recover reads config format 2, checks each option, and refuses a newer format" {
	fake_control
	make_entry device_size=4096 "base=$T/img" read_only=1 queues=2 timeout=5.000 later_key=ignored
	echo 2 >"$T/state/ublkb5/version"
	run_mustfail 1 "ublkb5: GET_DEV_INFO" "$B/ublk-serve" --recover 5 --state-dir "$T/state"
	# values go through the options' own checks, and the key is named
	make_entry2() { rm -r "$T/state/ublkb5"; make_entry "$@"; echo 2 >"$T/state/ublkb5/version"; }
	make_entry2 "base=$T/img" queues=99
	run_mustfail 1 "$T/state/ublkb5/config: 'queues' is not understood (--queues '99': expected 1 to 32): refused" \
		"$B/ublk-serve" --recover 5 --state-dir "$T/state"
	make_entry2 "base=$T/img" read_only=yes
	run_mustfail 1 "config: 'read_only' is not understood" "$B/ublk-serve" --recover 5 --state-dir "$T/state"
	make_entry2 queues=1
	run_mustfail 1 "the saved configuration names no base" "$B/ublk-serve" --recover 5 --state-dir "$T/state"
	# format 1: an option without its value
	rm -r "$T/state/ublkb5"
	make_entry "base=$T/img" serve_arg=--base
	run_mustfail 1 "config: 'base' is not understood" "$B/ublk-serve" --recover 5 --state-dir "$T/state"
	# format 1 of the first versions, without serve_arg lines: said so
	rm -r "$T/state/ublkb5"
	make_entry "base=$T/img" name= size=4096
	run_mustfail 1 "ublkb5: the state entry has no serve_arg lines (made by an older version?)" \
		"$B/ublk-serve" --recover 5 --state-dir "$T/state"
	# an entry a later version wrote is left alone
	make_entry2 "base=$T/img"
	echo 3 >"$T/state/ublkb5/version"
	run_mustfail 1 "ublkb5: the state entry has format 3; this version knows 2 and older" \
		"$B/ublk-serve" --recover 5 --state-dir "$T/state"
}

@test "ublk-serve --recover takes credentials from a private secret file only" {
	fake_control
	url='http://127.0.0.1:1/img.raw?...'
	make_entry serve_arg=--base "serve_arg=$url"
	printf 'base=http://127.0.0.1:1/img.raw?X-Amz-Signature=secret\n' >"$T/state/ublkb5/secret"
	chmod 644 "$T/state/ublkb5/secret"
	run_mustfail 1 "secret: not a regular file of uid 0 with mode 0600: refused" \
		"$B/ublk-serve" --recover 5 --state-dir "$T/state"
	chmod 600 "$T/state/ublkb5/secret"
	mv "$T/state/ublkb5/secret" "$T/elsewhere"
	ln -s "$T/elsewhere" "$T/state/ublkb5/secret"
	run_mustfail 1 "secret: Too many levels of symbolic links" \
		"$B/ublk-serve" --recover 5 --state-dir "$T/state"
	rm "$T/state/ublkb5/secret"
	umask 077
	printf 'base=http://other.invalid/img.raw?X-Amz-Signature=secret\n' >"$T/state/ublkb5/secret"
	run_mustfail 1 "belong to another URL than $url" "$B/ublk-serve" --recover 5 --state-dir "$T/state"
	printf 'base=http://127.0.0.1:1/img.raw?X-Amz-Signature=secret\nauth=Bearer tok\n' \
		>"$T/state/ublkb5/secret"
	# accepted: the server goes on to the image, and names it without credentials
	run_mustfail 5 "$url: range 0-0" "$B/ublk-serve" --recover 5 --state-dir "$T/state"
	[[ "$output" != *secret* ]]
}

# A stand-in for ublk-serve that records what it was given and fails.
make_fake_serve() {
	cat >"$T/fake-serve" <<-EOF
	#!/bin/bash
	printf '%s\n' "\$@" >"$T/argv"
	cat /proc/\$\$/cmdline | tr '\0' '\n' >"$T/cmdline"
	cat /proc/\$\$/environ | tr '\0' '\n' >"$T/environ"
	cat <&4 >"$T/fd4" 2>/dev/null
	echo "error 1 fake server" >&3
	EOF
	chmod +x "$T/fake-serve"
}

@test "ublk-add passes credentials on an fd, never on the server's command line" {
	make_fake_serve
	export UBLK_CONTROL_PATH=/dev/null UBLK_SERVE=$T/fake-serve
	export UBLK_HTTP_AUTH='Bearer envtoken'
	url='http://user:pass@example.invalid/img.raw?X-Amz-Signature=sigsecret'
	run_mustfail 1 "fake server" "$B/ublk-add" --state-dir "$T/state" --base "$url" \
		--layer 'http://example.invalid/d.diff?sig=layersecret' --timeout 5
	for f in argv cmdline environ; do
		run grep -e user:pass -e sigsecret -e layersecret -e envtoken "$T/$f"
		[ "$status" -eq 1 ]
	done
	grep -qx -- 'http://example.invalid/img.raw?...' "$T/argv"
	grep -qx -- '--secrets-fd' "$T/argv"
	# the cookie's random half, for finding a device whose id it was not told
	grep -A1 -x -- '--owner-nonce' "$T/argv" | tail -n 1 | grep -qx '[0-9a-f]\{8\}'
	grep -qx "base=$url" "$T/fd4"
	grep -qx 'layer.0=http://example.invalid/d.diff?sig=layersecret' "$T/fd4"
	grep -qx 'auth=Bearer envtoken' "$T/fd4"
}

@test "the server ublk-add starts keeps none of its caller's fds: stdio is /dev/null, 3 the ready pipe" {
	cat >"$T/fake-serve" <<-EOF
	#!/bin/bash
	# (ls lists the shell's fds: its own redirection is in its own process;
	# a pipe would be the shell's too while it starts the pipeline)
	ls -l /proc/\$\$/fd >"$T/fds.ls"
	awk 'NF > 9 { print \$9, \$11 }' "$T/fds.ls" >"$T/fds"
	echo "error 1 fake server" >&3
	EOF
	chmod +x "$T/fake-serve"
	truncate -s 1M "$T/img"
	# a lock a script holds on 9, a pipe on 7 and as standard output
	run_mustfail 1 "fake server" bash -c 'set -o pipefail; exec 9>"$1/lock" 7> >(cat >/dev/null); flock 9;
		UBLK_CONTROL_PATH=/dev/null UBLK_SERVE="$1/fake-serve" "$2/ublk-add" --state-dir "$1/state" \
			--base "$1/img" --timeout 5 | cat' _ "$T" "$B"
	cat "$T/fds"
	[ "$(grep -c '^[012] /dev/null$' "$T/fds")" -eq 3 ]
	grep -q '^3 pipe:' "$T/fds"
	# 255 is the stand-in's script: nothing else
	[ -z "$(grep -v -e '^[0123] ' -e '^255 ' "$T/fds")" ]
}

@test "a server that ends saying nothing: ublk-add says how it ended" {
	truncate -s 1M "$T/img"
	printf '#!/bin/bash\nexit 2\n' >"$T/usage-serve"
	printf '#!/bin/bash\nkill -SEGV $$\n' >"$T/crash-serve"
	chmod +x "$T/usage-serve" "$T/crash-serve"
	run_mustfail 1 "server $T/usage-serve exited with status 2 (usage) before the device was live: is it the ublk-serve of this version (UBLK_SERVE)?" \
		env UBLK_CONTROL_PATH=/dev/null UBLK_SERVE="$T/usage-serve" "$B/ublk-add" --state-dir "$T/state" \
		--base "$T/img" --timeout 5
	run_mustfail 1 "server $T/crash-serve was killed by signal 11 (Segmentation fault) before the device was live" \
		env UBLK_CONTROL_PATH=/dev/null UBLK_SERVE="$T/crash-serve" "$B/ublk-add" --state-dir "$T/state" \
		--base "$T/img" --timeout 5
}

@test "ublk-serve --secrets-fd: credentials must match the command line" {
	printf 'base=http://u:p@example.invalid/img.raw\n' >"$T/s"
	run_mustfail 2 "--secrets-fd: the credentials given for --base belong to another URL" \
		"$B/ublk-serve" --base http://example.invalid/other.raw --secrets-fd 5 5<"$T/s"
	run_mustfail 3 "no ublk support" "$B/ublk-serve" --base http://example.invalid/img.raw --secrets-fd 5 5<"$T/s"
	run_mustfail 2 "--recover takes the device's options" \
		"$B/ublk-serve" --recover 5 --secrets-fd 5 5<"$T/s"
}

@test "ublk-serve --owner-nonce: a hexadecimal number from 1 to ffffffff, not with --recover" {
	for bad in 0 00000000 123456789 0x12 12g -1 ''; do
		run_mustfail 2 "--owner-nonce '$bad': expected a hexadecimal number from 1 to ffffffff" \
			"$B/ublk-serve" --base /dev/null --owner-nonce "$bad"
	done
	run_mustfail 2 "--recover takes the device's options" "$B/ublk-serve" --recover 5 --owner-nonce 1f
}

@test "config encoder and decoder unit tests" {
	run "$UBLK_TEST_BIN/test-parse"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" 0 failed" ]]
}
