#!/usr/bin/env bats
# Reading E2B builds from a storage root (docs/e2b.md, Serving a build):
# --flatten and --inspect over --e2b ROOT --build ID, on stores written by
# test-e2b-store from the format by hand (a V3 chain, zstd and lz4 frames
# under V4 headers), and what is refused.

load ../helpers

setup() {
	T=$(mktemp -d)
	"$UBLK_TEST_BIN/test-e2b-store" make "$T"
	S=$T/store
	while read -r name id; do
		eval "ID_$name=$id"
	done <"$T/ids"
}

teardown() {
	rm -rf "$T"
}

@test "E2B store reader: unit tests (chains, zstd and lz4 frames, refusals)" {
	run "$UBLK_TEST_BIN/test-e2b-store"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" passed, 0 failed"* ]]
}

@test "--flatten of every generation of a chain (V3, zstd, lz4, V4) is the device, byte for byte" {
	for n in A B C D E; do
		eval "id=\$ID_$n"
		"$B/ublk-export-diff" --flatten --e2b "$S" --build "$id" -o "$T/flat-$n.img"
		cmp "$T/flat-$n.img" "$T/expect-$n.img"
	done
}

@test "--flatten --e2b-file memfile reads the memfile artifact" {
	"$B/ublk-export-diff" --flatten --e2b "$S" --build "$ID_mem" --e2b-file memfile -o "$T/mem.img"
	cmp "$T/mem.img" "$T/expect-mem.img"
}

@test "--flatten of a build whose size is not whole pages writes exactly its size" {
	run "$B/ublk-export-diff" --flatten --e2b "$T/odd" --build "$ID_odd" -o "$T/odd.img" --json
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e '.bytes == 10000' <<<"$output"
	[ "$(stat -c %s "$T/odd.img")" -eq 10000 ]
	cmp "$T/odd.img" "$T/expect-odd.img"
}

@test "--flatten writes the last bytes of a size past whole pages even when the rest is zeros" {
	"$B/ublk-export-diff" --flatten --e2b "$T/tail" --build "$ID_tail" -o "$T/tail.img"
	[ "$(stat -c %s "$T/tail.img")" -eq 8197 ]
	cmp "$T/tail.img" "$T/expect-tail.img"
}

@test "a build whose size is not whole pages cannot take a --cache (nor be a device)" {
	run_mustfail 5 "is not a multiple of 4096 bytes" \
		"$B/ublk-export-diff" --flatten --e2b "$T/odd" --build "$ID_odd" --cache "$T/c" -o "$T/x.img"
	[ ! -e "$T/x.img" ]
}

@test "--flatten with a --cache over an E2B build reads through it to the build" {
	# a stopped device's cache over the build (generation 3) with blocks 1
	# and 5 discarded: those read zeros from the cache, the rest the build
	"$UBLK_TEST_BIN/test-e2b-write" --make-cache "$T/c" "$(stat -c %s "$T/expect-D.img")" "$ID_D" 3 1:z 5:z
	"$B/ublk-export-diff" --flatten --e2b "$S" --build "$ID_D" --cache "$T/c" -o "$T/d.img"
	cp "$T/expect-D.img" "$T/want.img"
	dd if=/dev/zero of="$T/want.img" bs=4096 seek=1 count=1 conv=notrunc status=none
	dd if=/dev/zero of="$T/want.img" bs=4096 seek=5 count=1 conv=notrunc status=none
	cmp "$T/d.img" "$T/want.img"
}

@test "--inspect --e2b --build: compressed builds checked by SHA-256, verified" {
	run "$B/ublk-export-diff" --inspect --e2b "$S" --build "$ID_D" --json
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e ".build_id == \"$ID_D\" and .generation == 3 and .layout == 4" <<<"$output"
	jq -e "[.builds[] | select(.build_id == \"$ID_C\" or .build_id == \"$ID_D\") | .data] == [\"sha256\", \"sha256\"]" <<<"$output"
	# A and B are uncompressed without SHA-256: nothing could be checked
	jq -e "[.builds[] | select(.build_id == \"$ID_A\" or .build_id == \"$ID_B\") | .data] == [\"unchecked\", \"unchecked\"]" <<<"$output"
	jq -e '.verified == false' <<<"$output"
}

@test "--inspect --e2b of a build whose every build is checkable: verified" {
	run "$B/ublk-export-diff" --inspect --e2b "$S" --build "$ID_mem" --e2b-file memfile
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"data: SHA-256 matches (131072 bytes, every frame decompressed)"* ]]
	[[ "$output" == *"verified: yes"* ]]
	run "$B/ublk-export-diff" --e2b "$S" --build "$ID_mem" --e2b-file memfile --json --inspect
	[ "$status" -eq 0 ]
	jq -e '.verified == true and .builds[0].data == "sha256" and .builds[0].frames_checked == 4' <<<"$output"
}

@test "--inspect --e2b: a corrupt frame is bad data, exit 5, naming build and frame" {
	f=$S/$ID_C/rootfs.ext4.zstd
	flip_byte "$f" 200
	run "$B/ublk-export-diff" --inspect --e2b "$S" --build "$ID_D"
	echo "$output"
	[ "$status" -eq 5 ]
	[[ "$output" == *"data: BAD: build $ID_C: frame 0"* ]]
	[[ "$output" == *"verified: no"* ]]
	run "$B/ublk-export-diff" --flatten --e2b "$S" --build "$ID_C" -o "$T/c.img"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"build $ID_C: frame 0"* ]]
	[ ! -e "$T/c.img" ]
}

@test "missing builds: every one named, exit 5, nothing written" {
	mv "$S/$ID_A/rootfs.ext4" "$T/a.moved"
	mv "$S/$ID_C/rootfs.ext4.zstd" "$T/c.moved"
	run_mustfail 5 "build(s) not found under $S: $ID_A, $ID_C (no rootfs.ext4 data files)" \
		"$B/ublk-export-diff" --flatten --e2b "$S" --build "$ID_E" -o "$T/e.img"
	[ ! -e "$T/e.img" ]
	run_mustfail 5 "build(s) not found under $S: $ID_A, $ID_C" \
		"$B/ublk-export-diff" --inspect --e2b "$S" --build "$ID_E"
	run_mustfail 5 "build(s) not found under $S: a9999999-0000-4000-8000-000000000000" \
		"$B/ublk-export-diff" --flatten --e2b "$S" --build a9999999-0000-4000-8000-000000000000 -o "$T/x.img"
}

@test "a data file shorter than the ranges read from it is refused at open" {
	truncate -s 8192 "$S/$ID_B/rootfs.ext4"
	run_mustfail 5 "build $ID_B: the range at offset" \
		"$B/ublk-export-diff" --flatten --e2b "$S" --build "$ID_E" -o "$T/e.img"
}

@test "a header under another build's folder is refused" {
	cp "$S/$ID_B/rootfs.ext4.header" "$S/$ID_C/rootfs.ext4.header"
	run_mustfail 5 "the header is of build $ID_B, not $ID_C" \
		"$B/ublk-export-diff" --flatten --e2b "$S" --build "$ID_C" -o "$T/c.img"
}

@test "an E2B build header given as --layer is refused: use --e2b ROOT --build ID" {
	truncate -s 256K "$T/base.img"
	run_mustfail 5 "an E2B build header (layout 4, build $ID_D): serve the build with --e2b ROOT --build $ID_D" \
		"$B/ublk-export-diff" --flatten --base "$T/base.img" --layer "$S/$ID_D/rootfs.ext4.header" -o "$T/x.img"
	run_mustfail 5 "serve the build with --e2b ROOT --build $ID_B" \
		"$B/ublk-export-diff" --flatten --base "$T/base.img" --layer "$S/$ID_B/rootfs.ext4.header" -o "$T/x.img"
	G=$BATS_TEST_DIRNAME/../e2b/golden
	run_mustfail 5 "an E2B build header (layout 1" \
		"$B/ublk-export-diff" --flatten --base "$T/base.img" --layer "$G/v1.header" -o "$T/x.img"
}

@test "E2B options: usage errors exit 2" {
	run_mustfail 2 "--e2b replaces --base" \
		"$B/ublk-export-diff" --flatten --base "$T/x" --e2b "$S" --build "$ID_A" -o "$T/x.img"
	run_mustfail 2 "--build 'A0000000-0000-4000-8000-000000000001': expected a build id" \
		"$B/ublk-export-diff" --flatten --e2b "$S" --build A0000000-0000-4000-8000-000000000001 -o "$T/x.img"
	run_mustfail 2 "--build '../x': expected a build id" \
		"$B/ublk-export-diff" --flatten --e2b "$S" --build ../x -o "$T/x.img"
	run_mustfail 2 "--e2b-file 'rootfs.ext4.header': expected rootfs.ext4 or memfile" \
		"$B/ublk-export-diff" --flatten --e2b "$S" --build "$ID_A" --e2b-file rootfs.ext4.header -o "$T/x.img"
	run_mustfail 2 "--e2b ROOT needs --build ID" \
		"$B/ublk-export-diff" --flatten --e2b "$S" -o "$T/x.img"
	run_mustfail 2 "--build and --e2b-file go with --e2b ROOT" \
		"$B/ublk-export-diff" --flatten --base "$T/x" --build "$ID_A" -o "$T/x.img"
	run_mustfail 2 "--inspect without FILE needs --e2b ROOT --build ID" \
		"$B/ublk-export-diff" --inspect --e2b "$S"
	# an empty FILE is a mistake, not the build
	run_mustfail 2 "--inspect: FILE is empty" "$B/ublk-export-diff" --inspect '' --e2b "$S" --build "$ID_A"
	run_mustfail 2 "--inspect: FILE is empty" "$B/ublk-export-diff" --inspect= --e2b "$S" --build "$ID_A"
	run_mustfail 2 "--inspect FILE takes only --json" \
		"$B/ublk-export-diff" --inspect "$S/$ID_A/rootfs.ext4.header" --e2b "$S" --build "$ID_A"
	run_mustfail 2 "--inspect FILE takes only --json" \
		"$B/ublk-export-diff" --inspect "$S/$ID_A/rootfs.ext4.header" --layer "$T/x"
	run_mustfail 2 "--e2b: a storage root URL cannot have a query string" \
		"$B/ublk-export-diff" --flatten --e2b "http://127.0.0.1:9/x?sig=1" --build "$ID_A" -o "$T/x.img"
	for tool in ublk-add ublk-serve; do
		run_mustfail 2 "--e2b replaces --base" "$B/$tool" --base "$T/x" --e2b "$S" --build "$ID_A"
		run_mustfail 2 "--e2b ROOT needs --build ID" "$B/$tool" --e2b "$S"
		run_mustfail 2 "--base FILE is required (or --e2b ROOT --build ID)" "$B/$tool"
	done
}
