#!/usr/bin/env bats
# The tools' command-line contract on a host without ublk: help, version,
# and every failure that can be detected before touching the kernel.

load ../helpers
bats_require_minimum_version 1.5.0

setup() {
	# This host has no ublk: point the tools at a node that exists so the
	# checks after "is there ublk" run. The kernel is exercised in tests/vm.
	export UBLK_CONTROL_PATH=/dev/null
	T=$(mktemp -d)
	truncate -s 1M "$T/img"
	chmod 644 "$T/img"
	chmod 755 "$T"
}

teardown() {
	# the stand-in servers (sleep 600) of a test that failed early
	kill $(jobs -p) 2>/dev/null || true
	# a mount that never answers: rm would wait on it for ever
	[ -z "${hung_mount:-}" ] || umount -l "$hung_mount" 2>/dev/null || true
	rm -rf "$T"
}

@test "every tool has --help, --version and --long-options" {
	for tool in ublk-add ublk-serve ublk-del ublk-export-diff ublk-pool; do
		run "$B/$tool" --help
		[ "$status" -eq 0 ]
		[[ "${lines[0]}" == "Usage: $tool "* ]]
		[[ "$output" == *"--help"* ]]
		[[ "$output" == *"Exit codes:"* ]]
		run "$B/$tool" --version
		[ "$status" -eq 0 ]
		[[ "$output" =~ ^$tool\ [0-9]+\.[0-9]+\.[0-9]+$ ]]
		run "$B/$tool" --long-options
		[ "$status" -eq 0 ]
		[[ "$output" == *"--timeout="* ]]
	done
}

@test "unknown option is a usage error" {
	for tool in ublk-add ublk-serve ublk-del ublk-export-diff ublk-pool; do
		run_mustfail 2 "unknown option '--bogus'; see '$tool --help'" "$B/$tool" --bogus
		run_mustfail 2 "unknown option '--bogus'; see '$tool --help'" "$B/$tool" --bogus=1
		run_mustfail 2 "unknown option '-Z'" "$B/$tool" -Z
		# the completions' --long-options is no option to abbreviate
		run_mustfail 2 "unknown option '--long'" "$B/$tool" --long
		run_mustfail 2 "option '--help' takes no argument" "$B/$tool" --help=x
		run_mustfail 2 "option '--ver' is ambiguous (--verbose, --version)" "$B/$tool" --ver
	done
	# before, "--l" was --long-options, and the device was not deleted (exit 0)
	run_mustfail 2 "unknown option '--l'" "$B/ublk-del" --l 5
	run_mustfail 2 "option '--json' takes no argument" "$B/ublk-add" --json=1
	run_mustfail 2 "option '--all' takes no argument" "$B/ublk-del" --all=1
	run_mustfail 2 "option '--pref' is ambiguous (--prefetch, --prefetch-trace, --prefetch-connections)" \
		"$B/ublk-add" --pref x
	# an abbreviated --inspect without FILE inspects the build, as spelled out
	id=01234567-89ab-cdef-0123-456789abcdef
	run_mustfail 5 "build(s) not found under $T/none: $id" \
		"$B/ublk-export-diff" --insp --e2b "$T/none" --build "$id"
}

@test "an empty path is a usage error naming the option, not the working directory" {
	run_mustfail 2 "--cache: expected FILE, not an empty string" "$B/ublk-add" --base "$T/img" --cache ''
	run_mustfail 2 "--base: expected FILE, not an empty string" "$B/ublk-add" --base ''
	run_mustfail 2 "--layer: expected DIFF, not an empty string" "$B/ublk-add" --base "$T/img" --layer ''
	run_mustfail 2 "--record-access: expected FILE, not an empty string" \
		"$B/ublk-add" --base "$T/img" --record-access ''
	run_mustfail 2 "--cache: expected FILE, not an empty string" "$B/ublk-export-diff" --cache ''
	run_mustfail 2 "--output: expected FILE (- for stdout), not an empty string" \
		"$B/ublk-export-diff" --flatten --base "$T/img" -o ''
	# before, it wrote /ublk.prom (relative to the root)
	cd "$T"
	run_mustfail 2 "--textfile: expected DIR, not an empty string" "$B/ublk-pool" metrics --textfile ''
	run_mustfail 2 "trace-merge -o '-': expected a file name" "$B/ublk-pool" trace-merge -o - "$T/x"
}

@test "option values are checked strictly" {
	run_mustfail 2 "--base FILE is required" "$B/ublk-add"
	run_mustfail 2 "--queues '0': expected 1 to 32" "$B/ublk-add" --base "$T/img" --queues 0
	run_mustfail 2 "--depth '12x': expected 1 to 1024" "$B/ublk-add" --base "$T/img" --depth 12x
	run_mustfail 2 "--timeout '-1'" "$B/ublk-add" --base "$T/img" --timeout -1
	# seconds are decimal: no hex, no exponent; a fraction may stand alone
	run_mustfail 2 "--timeout '0x10'" "$B/ublk-del" --timeout 0x10 --all
	run_mustfail 2 "--timeout '1e3'" "$B/ublk-del" --timeout 1e3 --all
	run_mustfail 2 "--max-devices '2000000': expected a number from 1 to 1048576" \
		"$B/ublk-add" --base "$T/img" --max-devices 2000000
	run_mustfail 2 "needs an argument" "$B/ublk-add" --base
	run_mustfail 2 "unexpected argument 'extra'" "$B/ublk-add" --base "$T/img" extra
	run_mustfail 2 "no device given" "$B/ublk-del"
	run_mustfail 6 "'foo' is neither a ublk device (/dev/ublkbN or N) nor the name of one" "$B/ublk-del" foo
	run_mustfail 2 "--name '9lives': expected 1-64 of" "$B/ublk-add" --base "$T/img" --name 9lives
	run_mustfail 2 "--size '5000': expected a non-zero multiple of 4096" "$B/ublk-add" --base "$T/img" --size 5000
	run_mustfail 2 "--state-dir 'rel': expected an absolute path" "$B/ublk-del" --state-dir rel 0
	run_mustfail 2 "--all takes no device" "$B/ublk-del" --all 3
}

@test "missing image" {
	run_mustfail 5 "$T/nope: cannot open for reading and writing: No such file or directory" \
		"$B/ublk-add" --base "$T/nope"
	run_mustfail 5 "cannot open for reading: No such file" "$B/ublk-add" --read-only --base "$T/nope"
}

@test "unreadable image: its permissions, exit 4" {
	chmod 000 "$T/img"
	run_mustfail 4 "$T/img: cannot open for reading: Permission denied" \
		root_without_dac "$B/ublk-add" --read-only --base "$T/img"
}

@test "image that is a directory" {
	run_mustfail 5 "$T: not a regular file or block device" "$B/ublk-add" --read-only --base "$T"
}

@test "image size not a multiple of 4096" {
	truncate -s 5000 "$T/odd"
	run_mustfail 5 "size 5000 is not a non-zero multiple of 4096 bytes" "$B/ublk-add" --base "$T/odd"
	: >"$T/empty"
	run_mustfail 5 "size 0 is not a non-zero multiple" "$B/ublk-add" --base "$T/empty"
}

@test "kernel without ublk" {
	export UBLK_CONTROL_PATH=$T/no-ublk-control
	run_mustfail 3 "no ublk support in this kernel: load ublk_drv" "$B/ublk-add" --base "$T/img"
	run_mustfail 3 "no ublk support in this kernel" "$B/ublk-serve" --base "$T/img"
	run_mustfail 3 "no ublk support in this kernel" "$B/ublk-del" 0
	# nothing was left behind
	[ -z "$(pgrep -x ublk-serve)" ]
}

@test "not root" {
	run_mustfail 4 "permission denied: ublk devices need root" as_nobody "$B/ublk-add" --base "$T/img"
}

@test "layer stack unit tests" {
	run "$UBLK_TEST_BIN/test-layers"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" 0 failed" ]]
}

@test "diff format and diff layer unit tests" {
	run "$UBLK_TEST_BIN/test-diff"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" 0 failed" ]]
}

@test "export and flatten unit tests" {
	run "$UBLK_TEST_BIN/test-export"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" 0 failed" ]]
}

@test "--flatten skips the holes of a sparse base in a file, writes them as zeros to a pipe" {
	truncate -s 64M "$T/sparse"
	printf 'data' | dd of="$T/sparse" bs=1 seek=$((5 << 20)) conv=notrunc status=none
	head -c 1M /dev/urandom | dd of="$T/sparse" bs=1M seek=40 conv=notrunc status=none
	"$B/ublk-export-diff" --flatten --base "$T/sparse" -o "$T/flat.img"
	cmp "$T/flat.img" "$T/sparse"
	# 1 MiB and one 4 KiB block of data: nothing else allocated
	[ "$(du -k "$T/flat.img" | cut -f1)" -le 1040 ]
	"$B/ublk-export-diff" --flatten --base "$T/sparse" -o - >"$T/stream.img"
	cmp "$T/stream.img" "$T/sparse"
	# the exporter's status too, not only cmp's
	set -o pipefail
	"$B/ublk-export-diff" --flatten --base "$T/sparse" -o - | cmp - "$T/sparse"
}

@test "--progress where standard error is no terminal: plain lines, no redrawing, the last at 100%" {
	truncate -s 64M "$T/sparse"
	"$B/ublk-export-diff" --flatten --progress --base "$T/sparse" -o "$T/flat.img" 2>"$T/err"
	cat -A "$T/err"
	[ "$(tr -cd '\r\033' <"$T/err" | wc -c)" -eq 0 ]
	[[ "$(tail -n 1 "$T/err")" == "flatten: 100%  64.0 MiB of 64.0 MiB"* ]]
	[ "$(grep -c '^flatten: ' "$T/err")" -eq "$(wc -l <"$T/err")" ]
}

@test "an output that is one of the files it is made from, or that the device reads, is refused" {
	: >"$T/c"
	: >"$T/c.map"
	run_mustfail 2 "$T/c: is the cache ($T/c), which it would replace" \
		"$B/ublk-export-diff" --cache "$T/c" -o "$T/c"
	run_mustfail 2 "$T/c.map: is the cache's map ($T/c.map)" "$B/ublk-export-diff" --cache "$T/c" -o "$T/c.map"
	run_mustfail 2 "$T/c.map: is the cache's map" \
		"$B/ublk-export-diff" --cache "$T/c" --format v3 -o "$T/c.map"
	ln "$T/img" "$T/img.link"
	run_mustfail 2 "$T/img.link: is the base image ($T/img)" \
		"$B/ublk-export-diff" --flatten --base "$T/img" -o "$T/img.link"
	run_mustfail 2 "$T/img: is the base image" "$B/ublk-add" --base "$T/img" --record-access "$T/img"
	cmp "$T/img" <(head -c 1M /dev/zero)
	# files not made yet: the cache and its map a first start makes
	run_mustfail 2 "$T/./newc: is the cache ($T/newc)" \
		"$B/ublk-add" --base "$T/img" --cache "$T/newc" --record-access "$T/./newc"
	run_mustfail 2 "is the cache's map" \
		"$B/ublk-add" --base "$T/img" --cache "$T/newc" --record-access "$T/newc.map"
	# the data file of a v3 layer D.header is D; a build's files in a local E2B root
	run_mustfail 2 "$T/d: is a --layer's v3 data file ($T/d)" \
		"$B/ublk-export-diff" --flatten --base "$T/img" --layer "$T/d.header" -o "$T/d"
	mkdir -p "$T/root/a0000000-0000-4000-8000-000000000001"
	run_mustfail 2 "is in a build's folder of the E2B storage root $T/root" \
		"$B/ublk-export-diff" --flatten --e2b "$T/root" --build a0000000-0000-4000-8000-000000000001 \
		-o "$T/root/a0000000-0000-4000-8000-000000000001/rootfs.ext4"
	# a read-only stack makes no cache: a missing one is refused, not created
	run_mustfail 5 "$T/none: no such cache" \
		"$B/ublk-export-diff" --flatten --base "$T/img" --cache "$T/none" -o "$T/flat"
	[ ! -e "$T/none" ]
	[ ! -e "$T/none.map" ]
	[ ! -e "$T/flat" ]
}

@test "a start that fails leaves an existing --record-access trace as it was" {
	cp "$BATS_TEST_DIRNAME/../fuzz/corpus/trace/example" "$T/good.trace"
	run "$B/ublk-add" --base "$T/img" --record-access "$T/good.trace" --timeout 5 --state-dir "$T/state"
	# (a failure of the add, which reaches the kernel this host lacks; not a
	# sanitizer's report, which make check-host makes exit 86)
	[ "$status" -eq 1 ]
	cmp "$T/good.trace" "$BATS_TEST_DIRNAME/../fuzz/corpus/trace/example"
}

@test "a report that cannot be written is a failure: a full disk is no success" {
	tr=$BATS_TEST_DIRNAME/../fuzz/corpus/trace/example
	# (a report larger than stdio's buffer failed in an earlier write)
	run_mustfail 1 "writing the output to standard output: a write failed" \
		bash -c '"$1" trace-show --json "$2" >/dev/full' _ "$B/ublk-pool" "$tr"
	run_mustfail 1 "writing the output to standard output: " \
		bash -c '"$1" list --json --state-dir "$2/state" >/dev/full' _ "$B/ublk-pool" "$T"
	for tool in ublk-add ublk-serve ublk-del ublk-export-diff ublk-pool; do
		run_mustfail 1 "writing the output to standard output: " \
			bash -c '"$1" --help >/dev/full' _ "$B/$tool"
	done
}

@test "--record-access into a folder that is not there is refused before anything starts" {
	run_mustfail 2 "$T/none/t.trace: folder $T/none does not exist" \
		"$B/ublk-add" --base "$T/img" --record-access "$T/none/t.trace" --state-dir "$T/state"
	[ ! -e "$T/state" ]
}

@test "a URL where a local file is needed is refused, shown without its credentials" {
	url='http://alice:s3cr3t@127.0.0.1:1/img?sig=TOPSECRET'
	for cmd in "ublk-pool trace-show $url" "ublk-pool trace-merge -o $T/m.trace $url" \
		"ublk-pool trace-merge -o $url $BATS_TEST_DIRNAME/../fuzz/corpus/trace/example" "ublk-export-diff --cache $url -o $T/x" \
		"ublk-export-diff --cache $T/c -o $url" "ublk-add --base $T/img --cache $url" \
		"ublk-add --base $T/img --record-access $url"; do
		run $B/$cmd
		echo "$cmd: $status: $output"
		[ "$status" -ne 0 ]
		[[ "$output" == *"http://127.0.0.1:1/img?...: a URL, where a local "* ]]
		[[ "$output" != *s3cr3t* ]]
		[[ "$output" != *TOPSECRET* ]]
	done
}

@test "UBLK_POOL_MAX that is no number is refused, not taken for no limit" {
	for bad in abc -1 10x 0 2000000; do
		run_mustfail 2 "UBLK_POOL_MAX '$bad': expected a number from 1 to 1048576 (unset: no limit)" \
			env UBLK_POOL_MAX="$bad" UBLK_STATE_DIR="$T/state" "$B/ublk-add" --base "$T/img"
	done
	# said first, before the image is checked or anything is made
	run_mustfail 2 "UBLK_POOL_MAX 'abc'" \
		env UBLK_POOL_MAX=abc UBLK_STATE_DIR="$T/state" "$B/ublk-add" --base "$T/none"
	[ ! -e "$T/state" ]
}

@test "ublk-serve --ready-fd and --secrets-fd say which descriptors they take" {
	run_mustfail 2 "--ready-fd '1': expected an open descriptor from 3 to 1024" \
		"$B/ublk-serve" --base "$T/img" --ready-fd 1
	run_mustfail 2 "--secrets-fd '0': expected an open descriptor from 3 to 1024" \
		"$B/ublk-serve" --base "$T/img" --secrets-fd 0
}

@test "--flatten over a damaged diff frame: exit 5, the diff and its frame named, no output" {
	truncate -s 524288 "$T/base"
	cp "$BATS_TEST_DIRNAME/../fuzz/corpus/diff/raw-4k-frames" "$T/d.diff"
	"$B/ublk-export-diff" --flatten --base "$T/base" --layer "$T/d.diff" -o "$T/ok.img"
	# one byte of the first frame (after the header and the extent table)
	printf '\xff' | dd of="$T/d.diff" bs=1 seek=8202 conv=notrunc status=none
	run "$B/ublk-export-diff" --flatten --base "$T/base" --layer "$T/d.diff" -o "$T/bad.img"
	[ "$status" -eq 5 ]
	[ "${lines[0]}" = "ublk-export-diff: $T/d.diff: frame 0 (bytes 8192..12288): its checksum does not match: the diff is damaged" ]
	[ "${lines[1]}" = "ublk-export-diff: reading offset 12288 of the image: Input/output error" ]
	[ ! -e "$T/bad.img" ]
}

@test "messages name what the user gave: a missing cache, a textfile that is no folder, a state directory too long" {
	run_mustfail 5 "$T/none: no such cache (neither it nor its map $T/none.map exists)" \
		"$B/ublk-export-diff" --cache "$T/none" -o "$T/x.diff"
	run_mustfail 1 "--textfile $T/img: not a folder" "$B/ublk-pool" metrics --state-dir "$T/state" --textfile "$T/img"
	run_mustfail 1 "--textfile $T/none: no such folder" "$B/ublk-pool" metrics --state-dir "$T/state" --textfile "$T/none"
	run_mustfail 5 "--layer $T/none.diff: " "$B/ublk-add" --base "$T/img" --layer "$T/none.diff" --state-dir "$T/state"
	run_mustfail 2 "expected an absolute path of at most 1024 bytes" \
		"$B/ublk-pool" list --state-dir "/$(head -c 1100 /dev/zero | tr '\0' a)"
}

@test "a relative UBLK_STATE_DIR is a usage error of every tool that reads the state directory; --state-dir replaces it" {
	local want="UBLK_STATE_DIR 'rel': expected an absolute path of at most 1024 bytes (or give --state-dir DIR)"
	run_mustfail 2 "$want" env UBLK_STATE_DIR=rel "$B/ublk-add" --base "$T/img"
	run_mustfail 2 "$want" env UBLK_STATE_DIR=rel "$B/ublk-serve" --base "$T/img"
	run_mustfail 2 "$want" env UBLK_STATE_DIR=rel "$B/ublk-del" 3
	run_mustfail 2 "$want" env UBLK_STATE_DIR=rel "$B/ublk-pool" list
	run_mustfail 2 "$want" env UBLK_STATE_DIR=rel "$B/ublk-export-diff" -o "$T/x.diff" 3
	run_mustfail 2 "$want" env UBLK_STATE_DIR=rel "$B/ublk-export-diff" --format e2b -o "$T/root" 3
	# what reads no state directory is not refused for it
	env UBLK_STATE_DIR=rel "$B/ublk-export-diff" --flatten --base "$T/img" -o "$T/flat.img"
	cmp "$T/img" "$T/flat.img"
	run env UBLK_STATE_DIR=rel "$B/ublk-pool" trace-show "$T/img"
	[ "$status" -eq 5 ]
	[[ "$output" != *UBLK_STATE_DIR* ]]
	run env UBLK_STATE_DIR=rel "$B/ublk-pool" list --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[[ "$output" != *UBLK_STATE_DIR* ]]
}

@test "ublk-export-diff refuses bad combinations" {
	run_mustfail 2 "no device given" "$B/ublk-export-diff" -o "$T/x"
	run_mustfail 2 "give a device or --cache, not both" "$B/ublk-export-diff" --cache "$T/c" -o "$T/x" 3
	run_mustfail 2 "--live exports a running device, not --cache" "$B/ublk-export-diff" --live --cache "$T/c" -o "$T/x"
	run_mustfail 2 "--flatten needs --base" "$B/ublk-export-diff" --flatten -o "$T/x"
	run_mustfail 2 "--flatten writes no diff: --live, --keep" "$B/ublk-export-diff" --flatten --live --base "$T/img" -o "$T/x"
	run_mustfail 2 "--inspect writes no diff" "$B/ublk-export-diff" --inspect "$T/img" --zstd
	run_mustfail 2 "--inspect prints its report on stdout" "$B/ublk-export-diff" --inspect "$T/img" -o "$T/x"
	run_mustfail 2 "--live keeps the device and its cache" "$B/ublk-export-diff" --live --keep -o "$T/x" 3
	run_mustfail 2 "--frame-size '5000'" "$B/ublk-export-diff" --frame-size 5000 -o "$T/x" 1
	run_mustfail 2 "--format v3 has no frames: --frame-size does nothing with it" \
		"$B/ublk-export-diff" --format v3 --frame-size 64K -o "$T/x" --cache "$T/c"
	run_mustfail 2 "--frame-size is that of --compress's frames: an uncompressed build has none" \
		"$B/ublk-export-diff" --format e2b --frame-size 64K --cache "$T/c" --e2b "$T" --build b0000000-0000-4000-8000-00000000000b
	run_mustfail 2 "--level '20': expected 1 to 19" "$B/ublk-export-diff" --zstd --level 20 -o "$T/x" 1
	run_mustfail 2 "--level '0': expected 1 to 19" "$B/ublk-export-diff" --zstd --level 0 -o "$T/x" 1
	run_mustfail 2 "--level is zstd's: give --zstd, or --format e2b --compress zstd" "$B/ublk-export-diff" --level 9 -o "$T/x" 1
	run_mustfail 2 "--level is zstd's" "$B/ublk-export-diff" --format e2b --compress lz4 --level 9 -o "$T/x" 1
	run_mustfail 2 "--flatten writes no diff: --live, --keep, --zstd, --level" "$B/ublk-export-diff" --flatten --level 3 --base "$T/img" -o "$T/x"
	run_mustfail 5 "not a ublk-tools diff (bad magic)" "$B/ublk-export-diff" --inspect "$T/img"
	run_mustfail 5 "too short to be a diff" "$B/ublk-export-diff" --inspect /dev/null
}

@test "ublk-pool commands and their errors" {
	run_mustfail 2 "no command given (list, status, reclaim, watch, shutdown, metrics, save-trace, trace-merge, trace-show)" "$B/ublk-pool"
	run_mustfail 2 "unknown command 'frobnicate'" "$B/ublk-pool" frobnicate
	run_mustfail 2 "unexpected argument 'extra'" "$B/ublk-pool" reclaim extra
	run_mustfail 6 "'extra' is neither a ublk device" "$B/ublk-pool" list extra
	run_mustfail 2 "--check takes one device" "$B/ublk-pool" list --check
	run_mustfail 2 "-o: unknown column 'sizes' (known: DEVICE ID NAME" "$B/ublk-pool" list -o device,sizes
	run_mustfail 4 "reclaim needs root" as_nobody "$B/ublk-pool" reclaim
	run_mustfail 4 "watch needs root" as_nobody "$B/ublk-pool" watch
	run_mustfail 2 "--interval '0': expected seconds, 0.01 to 3600" "$B/ublk-pool" watch --interval 0
	run_mustfail 2 "--hang-timeout goes with list --check or --json: the table shows no hang" \
		"$B/ublk-pool" list --hang-timeout 5
	run_mustfail 2 "--hang-timeout goes with status --json: the table shows no hang" \
		"$B/ublk-pool" status --hang-timeout 5
	run_mustfail 2 "--hang-timeout goes with reclaim --recover (or watch)" "$B/ublk-pool" reclaim --hang-timeout 5
	# no devices on this host: an empty list, in both forms
	run "$B/ublk-pool" list --json --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[ "$(jq '.devices | length' <<<"$output")" -eq 0 ]
}

@test "ublk-pool list and status: a cache on storage that does not answer is left out after 2 s" {
	# a FUSE mount whose server never answers: a stat under it waits
	[ -c /dev/fuse ] || skip "no /dev/fuse on this host"
	hung_mount=$T/hung
	mkdir "$hung_mount"
	exec {fuse}<>/dev/fuse
	# -i: no mount.fuse helper, which would take the source for a program
	mount -i -t fuse -o "fd=$fuse,rootmode=40000,user_id=0,group_id=0" ublk-test-hung "$hung_mount"
	mkdir -m 700 "$T/state"
	for id in 4 5 6; do
		mkdir -m 700 "$T/state/ublkb$id"
		echo 2 >"$T/state/ublkb$id/version"
	done
	head -c 65536 /dev/urandom >"$T/c4"
	printf 'base=%s\ncache=%s\n' "$T/img" "$T/c4" >"$T/state/ublkb4/config"
	printf 'base=%s\ncache=%s\n' "$T/img" "$hung_mount/c5" >"$T/state/ublkb5/config"
	printf 'base=%s\ncache=%s\n' "$T/img" "$T/c4" >"$T/state/ublkb6/config"
	run --separate-stderr timeout 60 "$B/ublk-pool" status --json --state-dir "$T/state"
	echo "$output$stderr"
	[ "$status" -eq 0 ]
	[ "$(jq '.devices[0].cache_bytes' <<<"$output")" -ge 65536 ]
	[ "$(jq '.devices[1].cache_bytes' <<<"$output")" = null ]
	[ "$(jq '.devices[2].cache_bytes' <<<"$output")" = null ]
	[[ "$stderr" == *"ublkb5: its cache $hung_mount/c5 did not answer (stat) within 2 s: its size is left out, and those of the devices after it"* ]]
	run --separate-stderr timeout 60 "$B/ublk-pool" list -o device,cache-used --state-dir "$T/state"
	[ "$status" -eq 0 ]
	echo "$output"
	grep -Eq '^/dev/ublkb4 +64K$' <<<"$output"
	grep -Eq '^/dev/ublkb5 +-$' <<<"$output"
	grep -Eq '^/dev/ublkb6 +-$' <<<"$output"
	[[ "$stderr" == *"ublkb5: its cache $hung_mount/c5 did not answer"* ]]
	# the stat left waiting holds no pipe of the caller's
	run timeout 60 bash -c '"$0" list --state-dir "$1" 2>/dev/null | cat' "$B/ublk-pool" "$T/state"
	[ "$status" -eq 0 ]
	[[ "$output" == *"/dev/ublkb6"* ]]
	# watch, reclaim and metrics never look at the caches
	run --separate-stderr timeout 60 "$B/ublk-pool" metrics --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[ -z "$stderr" ]
	umount -l "$hung_mount"
	exec {fuse}>&-
	hung_mount=
}

@test "shutdown removes the entries of dead servers, not of one still running" {
	for id in 4 5 6; do
		mkdir -m 700 -p "$T/state/ublkb$id"
		echo 2 >"$T/state/ublkb$id/version"
		echo base=/x >"$T/state/ublkb$id/config"
		echo stopping >"$T/state/ublkb$id/state"
	done
	# a server keeps its entry open (its lock) for life
	sleep 600 3<"$T/state/ublkb5" &
	live=$!
	# a process that took a dead server's pid does not
	sleep 600 &
	other=$!
	echo 999999 >"$T/state/ublkb4/pid"
	echo "$live" >"$T/state/ublkb5/pid"
	echo "$other" >"$T/state/ublkb6/pid"
	run "$B/ublk-pool" shutdown --json --state-dir "$T/state"
	kill "$live" "$other"
	wait "$live" "$other" || true
	[ "$status" -eq 0 ]
	[ "$output" = '{"stopped":[]}' ]
	[ ! -e "$T/state/ublkb4" ]
	[ -e "$T/state/ublkb5/config" ]
	[ ! -e "$T/state/ublkb6" ]
}

@test "a server whose fds ublk-pool may not look at (fewer capabilities) still counts as running" {
	mkdir -m 700 -p "$T/state/ublkb5"
	echo 2 >"$T/state/ublkb5/version"
	echo base=/x >"$T/state/ublkb5/config"
	echo stopping >"$T/state/ublkb5/state"
	sleep 600 3<"$T/state/ublkb5" &
	live=$!
	echo "$live" >"$T/state/ublkb5/pid"
	# without CAP_SYS_PTRACE, and lacking one the server has, the server's
	# fds are listed but cannot be looked at: whether it has the entry
	# open cannot be told, and its pid stands
	run capsh --drop=cap_sys_ptrace,cap_net_admin -- -c '"$1" shutdown --json --state-dir "$2"' \
		_ "$B/ublk-pool" "$T/state"
	kill "$live"
	wait "$live" || true
	echo "$output"
	[ "$status" -eq 0 ]
	[ -e "$T/state/ublkb5/config" ]
}

@test "ublk-serve --recover: what goes with it, and a device nobody knows" {
	run_mustfail 2 "--recover takes the device's options from its state entry" \
		"$B/ublk-serve" --recover 3 --base "$T/img"
	# no ublk is said before the device is looked at, by every tool
	run_mustfail 3 "no ublk support" env UBLK_CONTROL_PATH="$T/none" "$B/ublk-serve" --recover nosuch
	run_mustfail 3 "no ublk support" env UBLK_CONTROL_PATH="$T/none" "$B/ublk-export-diff" nosuch -o "$T/x"
	run_mustfail 3 "no ublk support" env UBLK_CONTROL_PATH="$T/none" "$B/ublk-export-diff" --live nosuch -o "$T/x"
	run_mustfail 3 "no ublk support" env UBLK_CONTROL_PATH="$T/none" "$B/ublk-del" nosuch
	run_mustfail 6 "'nosuch' is neither a ublk device" "$B/ublk-serve" --recover nosuch --state-dir "$T/state"
	run_mustfail 6 "'nosuch' is neither a ublk device" "$B/ublk-del" nosuch --state-dir "$T/state"
	# a device the kernel does not have is not sent to ublk-del
	run_mustfail 6 "ublkb7: no such device" "$B/ublk-serve" --recover /dev/ublkb7 --state-dir "$T/state"
}

@test "a user who may not read the state directory gets an error, not an empty pool" {
	mkdir -m 700 "$T/state"
	run_mustfail 4 "state directory $T/state: Permission denied" as_nobody "$B/ublk-pool" list --state-dir "$T/state"
	run_mustfail 4 "state directory $T/state: Permission denied" as_nobody "$B/ublk-pool" metrics --state-dir "$T/state"
	# not "no such device" (6), which a script takes for "already deleted"
	run_mustfail 4 "state directory $T/state: Permission denied" as_nobody "$B/ublk-del" sb-17 --state-dir "$T/state"
	run_mustfail 4 "state directory $T/state: Permission denied" \
		as_nobody "$B/ublk-export-diff" -o "$T/d.diff" sb-17 --state-dir "$T/state"
	run_mustfail 4 "state directory $T/state: Permission denied" as_nobody "$B/ublk-pool" save-trace 3 --state-dir "$T/state"
	# root's list of the same folder is the empty pool
	run "$B/ublk-pool" list --json --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[ "$output" = '{"devices":[]}' ]
}

@test "options go anywhere, once; options that do nothing in a command are refused" {
	run "$B/ublk-pool" --json list --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[ "$(jq -c . <<<"$output")" = '{"devices":[]}' ]
	run "$B/ublk-pool" -j list --state-dir "$T/state"
	[ "$status" -eq 0 ]
	run_mustfail 3 "no ublk support" env UBLK_CONTROL_PATH="$T/none" "$B/ublk-del" 3 --force
	run_mustfail 2 "--timeout given more than once" "$B/ublk-del" --timeout 1 3 --timeout 2
	run_mustfail 2 "--cache given more than once" "$B/ublk-add" --base "$T/img" --cache a --cache b
	run_mustfail 3 "no ublk support" env UBLK_CONTROL_PATH="$T/none" "$B/ublk-add" --base "$T/img" \
		--layer "$T/img" --layer "$T/img"
	run_mustfail 5 "$T/d1: No such file" "$B/ublk-export-diff" --flatten --base "$T/img" --layer "$T/d1" --layer "$T/d2" \
		-o "$T/flat"
	run_mustfail 2 "--recover does nothing with list (it goes with reclaim)" "$B/ublk-pool" list --recover
	run_mustfail 2 "--interval does nothing with status (it goes with watch)" "$B/ublk-pool" --interval 2 status
	run_mustfail 2 "--timeout does nothing with metrics" "$B/ublk-pool" metrics --timeout 3
	run_mustfail 2 "--state-dir does nothing with trace-show" "$B/ublk-pool" trace-show --state-dir /tmp x.trace
	run_mustfail 2 "--textfile does nothing with list (it goes with metrics)" "$B/ublk-pool" list --textfile "$T"
	run_mustfail 2 "--hang-timeout goes with reclaim --recover (or watch)" "$B/ublk-pool" reclaim --hang-timeout 5
}

@test "every --help fits 80 columns" {
	for tool in ublk-add ublk-serve ublk-del ublk-export-diff ublk-pool; do
		run "$B/$tool" --help
		[ "$status" -eq 0 ]
		long=$(awk 'length > 80 || / $/' <<<"$output")
		[ -z "$long" ] || { echo "$tool: $long"; false; }
	done
}

@test "exit codes agree: exitcodes.h, docs/exit-codes.md, every --help and man page" {
	top=$BATS_TEST_DIRNAME/../..
	run python3 "$top/tests/check-exit-codes.py" "$top" "$B"
	echo "$output"
	[ "$status" -eq 0 ]
	# the check fails when one place says another thing
	mkdir -p "$T/top/common/util" "$T/top/docs"
	cp "$top/common/util/exitcodes.h" "$T/top/common/util/"
	cp "$top/docs/exit-codes.md" "$T/top/docs/"
	cp -r "$top/man" "$T/top/"
	sed -i 's/^\.B 8$/.B 9/' "$T/top/man/ublk-del.8"
	run python3 "$top/tests/check-exit-codes.py" "$T/top" "$B"
	[ "$status" -eq 1 ]
	[[ "$output" == *"man/ublk-del.8 EXIT STATUS: codes exitcodes.h does not have: [9]"* ]]
	[[ "$output" == *"ublk-del: --help says [0, 1, 2, 3, 4, 6, 7, 8], its man page [0, 1, 2, 3, 4, 6, 7, 9]"* ]]
}

@test "every long option of every tool is documented in its man page" {
	top=$BATS_TEST_DIRNAME/../..
	for tool in ublk-add ublk-serve ublk-del ublk-export-diff ublk-pool; do
		for opt in $("$B/$tool" --long-options | sed 's/=$//'); do
			grep -q -- "${opt//-/\\\\-}" "$top/man/$tool.8" ||
				{ echo "$tool: $opt is not in man/$tool.8" >&2; return 1; }
		done
	done
}

@test "the zsh completion offers every long option of every tool" {
	top=$BATS_TEST_DIRNAME/../..
	for tool in ublk-add ublk-serve ublk-del ublk-export-diff ublk-pool; do
		for opt in $("$B/$tool" --long-options | sed 's/=$//'); do
			case $opt in --help | --version) continue ;; esac
			grep -q -e "$opt[=[]" -e ",$opt[=[}]" -e "}$opt" "$top/completions/_ublk-tools" ||
				{ echo "$tool: $opt is not in completions/_ublk-tools" >&2; return 1; }
		done
	done
}

@test "a name several entries share resolves to the one whose server runs, not a stale one" {
	for id in 3 7 40 41; do
		mkdir -m 700 -p "$T/state/ublkb$id"
		echo 2 >"$T/state/ublkb$id/version"
		printf '%s\n' base=/x name=sb-17 >"$T/state/ublkb$id/config"
		echo live >"$T/state/ublkb$id/state"
		echo 999999 >"$T/state/ublkb$id/pid"
	done
	# the server of 40, with its entry open; 3's pid taken by another process
	sleep 600 3<"$T/state/ublkb40" &
	live=$!
	sleep 600 &
	other=$!
	echo "$live" >"$T/state/ublkb40/pid"
	echo "$other" >"$T/state/ublkb3/pid"
	touch "$T/ublk-control"
	run env UBLK_CONTROL_PATH="$T/ublk-control" "$B/ublk-pool" list -n -o id --state-dir "$T/state" sb-17
	kill "$live" "$other"
	wait "$live" "$other" || true
	[ "$status" -eq 0 ]
	[ "$output" = 40 ]
	# none runs: the lowest id
	run env UBLK_CONTROL_PATH="$T/ublk-control" "$B/ublk-pool" list -n -o id --state-dir "$T/state" sb-17
	[ "$status" -eq 0 ]
	[ "$output" = 3 ]
}

@test "ublk-pool list: columns, no headings, raw values, JSON of an entry" {
	mkdir -m 700 -p "$T/state/ublkb4"
	echo 2 >"$T/state/ublkb4/version"
	printf '%s\n' device_size=8589934592 'base=/srv/my image.img' layer=/a.diff layer=/b.diff \
		cache=/var/c.cache name=sb-4 read_only=1 queues=2 depth=64 >"$T/state/ublkb4/config"
	echo live >"$T/state/ublkb4/state"
	run "$B/ublk-pool" list -n -o id,name,size,ro,layers,queues,depth --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[ "$output" = "4 sb-4 8G 1 2 2 64" ]
	run "$B/ublk-pool" list --raw -o device,base,problem --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "DEVICE BASE PROBLEM" ]
	[ "${lines[1]}" = '/dev/ublkb4 /srv/my\x20image.img stale\x20state:\x20the\x20kernel\x20has\x20no\x20such\x20device' ]
	# the default columns, aligned under their names
	run "$B/ublk-pool" list --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[[ "${lines[0]}" == "DEVICE      KERNEL STATE PID UP SIZE RO NAME BASE              PROBLEM" ]]
	run "$B/ublk-pool" list --json --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[ "$(jq -c '.devices[0] | [.id, .size, .read_only, .layers, .queues, .depth, .name]' <<<"$output")" = \
		'[4,8589934592,true,["/a.diff","/b.diff"],2,64,"sb-4"]' ]
	# what is not known is null: no kernel device, no pid; an entry without config or state
	[ "$(jq -c '.devices[0] | [.kernel_state, .pid]' <<<"$output")" = '[null,null]' ]
	mkdir -m 700 "$T/state/ublkb5"
	echo 2 >"$T/state/ublkb5/version"
	run "$B/ublk-pool" list --json --state-dir "$T/state"
	[ "$status" -eq 0 ]
	[ "$(jq -c '.devices[1] | [.id, .state, .pid, .size, .read_only, .queues, .depth, .cache_bytes]' <<<"$output")" = \
		'[5,null,null,null,null,null,null,null]' ]
	run_mustfail 2 "--json goes without -o, -n and --raw" "$B/ublk-pool" list --json -n --state-dir "$T/state"
}
