#!/usr/bin/env bats
# Access traces (docs/access-trace.md) through ublk-pool trace-merge and
# trace-show. The traces are written here as the spec describes them
# (printf, and the end line from a CRC-32C computed in Python), not by our
# writer, so the reader is checked against the spec. The parser's details
# and the merge's arithmetic are in the unit test (tests/unit/test-trace.c).

load ../helpers

setup() {
	T=$(mktemp -d)
	ID0=$(printf 'a%.0s' {1..64})
	ID1=$(printf '%s' 0123456789abcdef{,,,})
	# three starts of the same two images; image 1 has 4 chunks
	trace "$T/a.trace" 1000 a "0 0 0 r" "5 0 1 r" "9 0 2 w" "9 1 3 r" "12 0 3 r"
	trace "$T/b.trace" 3000 b "1 0 1 r" "3 0 0 r" "8 1 3 r" "8 0 2 r" "20 0 7 r"
	trace "$T/c.trace" 2000 c "2 0 0 w" "4 0 2 w" "30 0 9 r"
}

teardown() {
	rm -rf "$T"
}

# seal FILE: append the end line: the count of the lines after the start
# line and the CRC-32C (Castagnoli, reflected, initial value and final XOR
# ffffffff: check value e3069283) of every byte of FILE.
seal() {
	python3 - "$1" <<'EOF'
import sys
def crc32c(data):
    c = 0xffffffff
    for byte in data:
        c ^= byte
        for _ in range(8):
            c = (c >> 1) ^ 0x82f63b78 if c & 1 else c >> 1
    return c ^ 0xffffffff
assert crc32c(b"123456789") == 0xe3069283
text = open(sys.argv[1], "rb").read()
count = len(text.split(b"\nstart ", 1)[1].splitlines()) - 1
open(sys.argv[1], "ab").write(b"end %d %08x\n" % (count, crc32c(text)))
EOF
}

# trace FILE START LABEL [ENTRY...]: a sealed trace of two images (1 MiB
# and 256 KiB in 64 KiB chunks); IMAGE1_SIZE changes the second's size.
trace() {
	local f=$1 start=$2 label=$3
	shift 3
	{
		printf 'ublk-access-trace 1\n'
		printf 'image 0 base %s 1048576 65536\n' "$ID0"
		printf 'image 1 layer %s %s 65536\n' "$ID1" "${IMAGE1_SIZE:-262144}"
		printf 'start %s %s\n' "$start" "$label"
		if [ $# -gt 0 ]; then printf '%s\n' "$@"; fi
	} >"$f"
	seal "$f"
}

@test "access trace unit tests" {
	run "$UBLK_TEST_BIN/test-trace"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" 0 failed" ]]
}

@test "access log unit tests: what a stack records, its windows, a stale trace refused" {
	run "$UBLK_TEST_BIN/test-access"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" 0 failed" ]]
}

@test "trace-merge: the chunks in at least half of the traces, at their median time, newest start" {
	run "$B/ublk-pool" trace-merge -o "$T/merged.trace" "$T/a.trace" "$T/b.trace" "$T/c.trace"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "merged 3 traces: 4 chunks (of 7 seen) -> $T/merged.trace" ]
	trace "$T/want" 3000 merged "1 0 1 r" "2 0 0 r" "8 0 2 w" "8 1 3 r"
	diff "$T/want" "$T/merged.trace"
	[ "$(tail -n 1 "$T/merged.trace")" = "end 4 647ffd8f" ]
	[ "$(stat -c %a "$T/merged.trace")" = 644 ]
	# the same as JSON
	run "$B/ublk-pool" trace-merge --json -o "$T/again.trace" "$T/a.trace" "$T/b.trace" "$T/c.trace"
	[ "$status" -eq 0 ]
	[ "$(jq -c . <<<"$output")" = "{\"traces\":3,\"chunks\":4,\"seen\":7,\"output\":\"$T/again.trace\"}" ]
	cmp "$T/merged.trace" "$T/again.trace"
	# one trace: itself, relabelled
	run "$B/ublk-pool" trace-merge -o "$T/one.trace" "$T/a.trace"
	[ "$output" = "merged 1 trace: 5 chunks (of 5 seen) -> $T/one.trace" ]
	[ "$(sed -n 4p "$T/one.trace")" = "start 1000 merged" ]
}

@test "trace-merge: a corrupt or cut trace is refused, naming the file and the line" {
	sed 's/^5 0 1 r$/5 0 1 w/' "$T/a.trace" >"$T/bad.trace"
	run_mustfail 5 "ublk-pool: $T/bad.trace: line 10: checksum " \
		"$B/ublk-pool" trace-merge -o "$T/out.trace" "$T/b.trace" "$T/bad.trace"
	[[ "$output" == *"the trace was damaged or edited" ]]
	[ ! -e "$T/out.trace" ]
	head -c -1 "$T/a.trace" >"$T/cut.trace"
	run_mustfail 5 "$T/cut.trace: line 10: no newline at its end: the trace was cut short" \
		"$B/ublk-pool" trace-merge -o "$T/out.trace" "$T/cut.trace"
	head -n 9 "$T/a.trace" >"$T/cut.trace"
	run_mustfail 5 "$T/cut.trace: the file ends after line 9 without its end line" \
		"$B/ublk-pool" trace-show "$T/cut.trace"
	IMAGE1_SIZE=262144 trace "$T/past.trace" 5 x "0 1 4 r"
	run_mustfail 5 "$T/past.trace: line 5: chunk 4 is past image 1's 4 chunks" \
		"$B/ublk-pool" trace-merge -o "$T/out.trace" "$T/a.trace" "$T/past.trace"
	run_mustfail 5 "$T/none.trace: No such file or directory" \
		"$B/ublk-pool" trace-merge -o "$T/out.trace" "$T/none.trace"
	[ ! -e "$T/out.trace" ]
	# an output that cannot be: a usage error before any work, not bad input
	run_mustfail 2 "$T/nodir/out.trace: folder $T/nodir does not exist" \
		"$B/ublk-pool" trace-merge -o "$T/nodir/out.trace" "$T/a.trace"
}

@test "trace-merge: traces of other images are refused" {
	IMAGE1_SIZE=524288 trace "$T/other.trace" 4000 d "1 0 1 r"
	run_mustfail 5 "$T/other.trace: not a trace of the images of $T/a.trace: image 1: size 524288 against 262144" \
		"$B/ublk-pool" trace-merge -o "$T/out.trace" "$T/a.trace" "$T/b.trace" "$T/other.trace"
	[ ! -e "$T/out.trace" ]
}

@test "trace-merge: -o refuses a symlink or device, never writes through it; an input symlink is refused" {
	echo keep >"$T/target"
	ln -s "$T/target" "$T/out.trace"
	run_mustfail 2 "$T/out.trace: is a symbolic link, which the output would replace rather than write through" \
		"$B/ublk-pool" trace-merge -o "$T/out.trace" "$T/a.trace" "$T/b.trace"
	[ "$(cat "$T/target")" = keep ]
	[ -L "$T/out.trace" ]
	mknod "$T/null" c 1 3
	run_mustfail 2 "$T/null: is a character device" "$B/ublk-pool" trace-merge -o "$T/null" "$T/a.trace" "$T/b.trace"
	[ -c "$T/null" ]
	rm "$T/out.trace"
	run "$B/ublk-pool" trace-merge -o "$T/out.trace" "$T/a.trace" "$T/b.trace"
	[ "$status" -eq 0 ]
	[ "$(head -n 1 "$T/out.trace")" = "ublk-access-trace 1" ]
	ln -s "$T/a.trace" "$T/link.trace"
	run_mustfail 5 "$T/link.trace: a symbolic link: not followed" \
		"$B/ublk-pool" trace-show "$T/link.trace"
	mkfifo "$T/fifo.trace"
	run_mustfail 5 "$T/fifo.trace: not a regular file" timeout 20 "$B/ublk-pool" trace-show "$T/fifo.trace"
}

@test "trace-show: images, start, label, entries; no root and no state directory needed" {
	chmod 755 "$T"
	chmod 644 "$T/a.trace"
	run as_nobody env UBLK_STATE_DIR="$T/nostate" "$B/ublk-pool" trace-show --json "$T/a.trace"
	echo "$output"
	[ "$status" -eq 0 ]
	[ ! -e "$T/nostate" ]
	[ "$(jq -c '[.version, .start_ms, .label, .entries, .writes, .span_ms]' <<<"$output")" = '[1,1000,"a",5,1,12]' ]
	[ "$(jq -c '.images[1] | [.role, .size, .chunk_size, .chunks, .entries]' <<<"$output")" = '["layer",262144,65536,4,1]' ]
	[ "$(jq -r '.images[0].identity' <<<"$output")" = "$ID0" ]
	run "$B/ublk-pool" trace-show "$T/a.trace"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "$T/a.trace: access trace format 1, label a, started 1970-01-01 00:00:01.000 UTC" ]
	[ "${lines[3]}" = "5 entries (1 written) in the first 12 ms" ]
}

@test "trace commands: usage errors and --help" {
	run "$B/ublk-pool" --help
	[ "$status" -eq 0 ]
	[[ "$output" == *"trace-merge -o OUT TRACE..."* ]]
	[[ "$output" == *"5 bad trace"* ]]
	run_mustfail 2 "trace-merge needs -o OUT" "$B/ublk-pool" trace-merge "$T/a.trace"
	run_mustfail 2 "trace-merge needs one or more TRACE files" "$B/ublk-pool" trace-merge -o "$T/out.trace"
	run_mustfail 2 "trace-show takes one TRACE" "$B/ublk-pool" trace-show "$T/a.trace" "$T/b.trace"
	run_mustfail 2 "--timeout does nothing with trace-merge" \
		"$B/ublk-pool" trace-merge -t 3 -o "$T/out.trace" "$T/a.trace"
	run_mustfail 2 "--output does nothing with trace-show (it goes with list, status, trace-merge)" \
		"$B/ublk-pool" trace-show -o "$T/out.trace" "$T/a.trace"
	[ ! -e "$T/out.trace" ]
}

@test "trace device options: what goes with what, and their ranges" {
	run_mustfail 2 "--record-for and --record-limit go with --record-access FILE" \
		"$B/ublk-add" --base "$T/img" --record-for 5
	run_mustfail 2 "--prefetch-connections goes with --prefetch-trace TRACE" \
		"$B/ublk-add" --base "$T/img" --prefetch-connections 2
	for n in 0 33 2x; do
		run_mustfail 2 "--prefetch-connections '$n': expected 1 to 32" \
			"$B/ublk-serve" --base "$T/img" --prefetch-trace "$T/a.trace" --prefetch-connections "$n"
	done
}
