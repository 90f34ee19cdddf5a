#!/usr/bin/env bats
# Hostile files written by a sandbox (issue 11): every reader refuses them
# with exit 5 and one line naming what is wrong, and never reads past what
# the file holds. The files come from the unit test's builders
# (test-formats --write KIND FILE); the parsers' details are tested there.

load ../helpers

setup() {
	T=$(mktemp -d)
	W="$UBLK_TEST_BIN/test-formats"
}

teardown() {
	rm -rf "$T"
}

@test "--inspect: a device size near 2^64 (wrapped frame count) is refused" {
	"$W" --write huge-dev "$T/huge.diff"
	run_mustfail 5 "device size 18446744073709547520 is larger than the supported maximum 17592186044416" \
		"$B/ublk-export-diff" --inspect "$T/huge.diff"
}

@test "--inspect: an extent count larger than the file is refused" {
	"$W" --write count-past-file "$T/count.diff"
	run_mustfail 5 "extent count 256 does not fit the file" "$B/ublk-export-diff" --inspect "$T/count.diff"
}

@test "--inspect: sparse tables are refused at their first entry, not allocated" {
	"$W" --write sparse-table "$T/sparse.diff"
	run_mustfail 5 "extent 0 (block 0, 0 blocks, kind 0) is invalid" \
		"$B/ublk-export-diff" --inspect "$T/sparse.diff"
	"$W" --write sparse-frames "$T/frames.diff"
	run_mustfail 5 "frame 0 (offset 0, 0 bytes) is invalid: empty" \
		"$B/ublk-export-diff" --inspect "$T/frames.diff"
}

@test "--inspect: overlapping v3 entries are refused, not half accepted" {
	"$W" --write v3-overlap "$T/v3.data"
	run_mustfail 5 "entries 0 and 1 overlap at block 4" "$B/ublk-export-diff" --inspect "$T/v3.data.header"
}

@test "--cache export: a map claiming a device near 2^64 bytes is refused" {
	"$W" --write map-huge-dev "$T/cache"
	run_mustfail 5 "device size 18446744073709547520 is not a non-zero multiple of 4096 up to" \
		"$B/ublk-export-diff" --cache "$T/cache" -o "$T/out.diff"
	[ ! -e "$T/out.diff" ]
}

@test "a FIFO in place of a diff or a cache map is refused, not waited on" {
	mkfifo "$T/fifo.diff"
	run_mustfail 5 "$T/fifo.diff: not a regular file" timeout 20 "$B/ublk-export-diff" --inspect "$T/fifo.diff"
	: >"$T/cache"
	mkfifo "$T/cache.map"
	run_mustfail 5 "$T/cache.map: not a regular file" timeout 20 "$B/ublk-export-diff" --cache "$T/cache" -o "$T/out.diff"
}

@test "a cache map that is a symbolic link is refused, never followed" {
	"$W" --write map-huge-dev "$T/real"
	: >"$T/cache"
	ln -s "$T/real.map" "$T/cache.map"
	run_mustfail 5 "$T/cache.map: a symbolic link: a cache's map is never followed" \
		"$B/ublk-export-diff" --cache "$T/cache" -o "$T/out.diff"
	[ ! -e "$T/out.diff" ]
	truncate -s 1M "$T/base"
	run_mustfail 5 "$T/cache.map: a symbolic link" \
		"$B/ublk-export-diff" --flatten --base "$T/base" --cache "$T/cache" -o "$T/out.img"
	[ ! -e "$T/out.img" ]
}
