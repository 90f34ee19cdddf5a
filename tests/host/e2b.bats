#!/usr/bin/env bats
# E2B build headers (docs/e2b.md, issue 12): every layout 1-5 read and
# validated as strictly as E2B does, against golden headers built by hand
# from E2B's format (tests/e2b/make-golden.py), not with our writer; and
# `ublk-export-diff --inspect` telling what a header says.

load ../helpers

G=$BATS_TEST_DIRNAME/../e2b/golden

setup() {
	T=$(mktemp -d)
}

teardown() {
	rm -rf "$T"
}

@test "E2B header reader: golden headers parse to their model or are refused with their message" {
	run "$UBLK_TEST_BIN/test-e2b" "$G"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" passed, 0 failed" ]]
}

@test "the golden headers are exactly what make-golden.py writes" {
	python3 "$BATS_TEST_DIRNAME/../e2b/make-golden.py" "$T/golden"
	diff -r "$G" "$T/golden"
}

@test "--inspect of a V3 header: what it maps, not verified" {
	run "$B/ublk-export-diff" --inspect "$G/chain-gen2.header"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"E2B header $G/chain-gen2.header"* ]]
	[[ "$output" == *"version 3 (layout 3), block size 4096, size 65536"* ]]
	[[ "$output" == *"build c0000000-0000-4000-8000-000000000003, generation 2"* ]]
	[[ "$output" == *"base (root) build a0000000-0000-4000-8000-000000000001"* ]]
	[[ "$output" == *"a0000000-0000-4000-8000-000000000001 (root): 3 ranges, 36864 bytes"* ]]
	[[ "$output" == *"b0000000-0000-4000-8000-000000000002: 1 ranges, 8192 bytes"* ]]
	[[ "$output" == *"c0000000-0000-4000-8000-000000000003 (this build): 1 ranges, 16384 bytes"* ]]
	[[ "$output" == *"nil (zeros): 1 ranges, 4096 bytes"* ]]
	[[ "$output" == *"verified: no (a header alone has no data to check)"* ]]
}

@test "--inspect --json of V4 and V5 headers: the same builds, frames and ranges" {
	for v in 4 5; do
		"$B/ublk-export-diff" --inspect "$G/v$v.header" --json >"$T/v$v.json"
		jq -e ".version == $v and .layout == $v and .block_size == 4096 and .size == 65536 and
			.generation == 2 and .verified == false and .incomplete == false and
			.build_id == \"c0000000-0000-4000-8000-000000000003\" and
			.base_build_id == \"a0000000-0000-4000-8000-000000000001\" and
			(.ranges | length) == 6 and .nil_ranges == 1 and .nil_bytes == 4096" "$T/v$v.json"
		jq -e '.builds[] | select(.build_id == "c0000000-0000-4000-8000-000000000003") |
			.self and .ranges == 1 and .bytes == 16384 and .codec == "lz4" and .frames == 2 and
			.size == 16384 and (.sha256 | length) == 64' "$T/v$v.json"
		jq -e '.ranges[4] | .offset == 49152 and .length == 4096 and .build_id == null' "$T/v$v.json"
	done
	diff <(jq -S 'del(.path, .version, .layout)' "$T/v4.json") <(jq -S 'del(.path, .version, .layout)' "$T/v5.json")
}

@test "--inspect: an empty mapping is the build's own data (V1-V4), zeros in V5; memfile block size" {
	"$B/ublk-export-diff" --inspect "$G/chain-gen0.header" --json >"$T/g0.json"
	jq -e '.implicit_mapping and (.ranges | length) == 1 and
		.ranges[0].build_id == "a0000000-0000-4000-8000-000000000001" and .ranges[0].length == 65536' "$T/g0.json"
	"$B/ublk-export-diff" --inspect "$G/v5-empty.header" --json >"$T/e5.json"
	jq -e '.implicit_mapping and .nil_bytes == 65536 and .ranges[0].build_id == null' "$T/e5.json"
	"$B/ublk-export-diff" --inspect "$G/v5-memfile.header" --json >"$T/m.json"
	jq -e '.block_size == 2097152 and .size == 4194304 and (.ranges | length) == 201' "$T/m.json"
	run "$B/ublk-export-diff" --inspect "$G/v4-incomplete.header"
	[ "$status" -eq 0 ]
	[[ "$output" == *"flags: incomplete (the build's upload was not finalized)"* ]]
}

@test "--inspect: malformed E2B headers exit 5 naming the first bad entry" {
	run_mustfail 5 "entry 1: offset 8192, expected 16384 (entries must be contiguous; this overlaps entry 0)" \
		"$B/ublk-export-diff" --inspect "$G/bad-overlap.header"
	run_mustfail 5 "entry 1: offset 12288, expected 8192 (entries must be contiguous; a gap after entry 0)" \
		"$B/ublk-export-diff" --inspect "$G/bad-gap.header"
	run_mustfail 5 "version 6 (layout 6): not an E2B header version this tool reads (1 to 5)" \
		"$B/ublk-export-diff" --inspect "$G/bad-version6.header"
	run_mustfail 5 "the LZ4 frame starting at byte 69 is corrupt" \
		"$B/ublk-export-diff" --inspect "$G/bad-lz4-content-checksum.header"
	run_mustfail 5 "V5 mapping: entry 4: build index 3 out of range (3 builds)" \
		"$B/ublk-export-diff" --inspect "$G/bad-v5-build-index.header"
	run_mustfail 5 "are not all in its frame table" \
		"$B/ublk-export-diff" --inspect "$G/bad-frames-gap.header"
	run_mustfail 5 "wraps past 2^64" "$B/ublk-export-diff" --inspect "$G/bad-wrap.header"
	# nothing on stdout: nothing is partly accepted
	code=0
	"$B/ublk-export-diff" --inspect "$G/bad-short-cover.header" --json >"$T/out" 2>/dev/null || code=$?
	[ "$code" -eq 5 ]
	[ ! -s "$T/out" ]
}

@test "--inspect of our own v3 export: a v3 layer, said not to be a complete E2B build" {
	# a layer's header lists only its own ranges (docs/diff-format.md, Interop):
	# here blocks 4-5 of a 16-block device, data in the file beside it
	python3 - "$T/layer.header" <<'EOF'
import struct, sys, uuid
me = uuid.UUID("e0000000-0000-4000-8000-000000000005").bytes
parent = uuid.UUID("a0000000-0000-4000-8000-000000000001").bytes
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<QQQQ16s16s", 3, 4096, 65536, 1, me, parent))
    f.write(struct.pack("<QQ16sQ", 16384, 8192, me, 0))
EOF
	head -c 8192 /dev/zero >"$T/layer"
	run "$B/ublk-export-diff" --inspect "$T/layer.header"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"not a complete E2B build: entry 0: offset 16384, expected 0"* ]]
	[[ "$output" == *"verified: no"* ]]
	"$B/ublk-export-diff" --inspect "$T/layer.header" --json >"$T/layer.json"
	jq -e '.e2b_valid == false and .verified == false and .layer == "v3"' "$T/layer.json"
}
