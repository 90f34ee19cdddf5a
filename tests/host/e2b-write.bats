#!/usr/bin/env bats
# Writing E2B builds (docs/e2b.md, Writing a build): `ublk-export-diff
# --cache FILE --format e2b` on the host, no kernel: the cache is made by
# test-e2b-write --make-cache as a stopped device's would be, over a build
# that tests/e2b/e2b_ref.py (an independent writer and reader) made; what
# we write is read back by e2b_ref.py and by our own --flatten.

load ../helpers

REF=$BATS_TEST_DIRNAME/../e2b/e2b_ref.py
G=$BATS_TEST_DIRNAME/../e2b/golden
ROOT_ID=a0000000-0000-4000-8000-00000000000a
GEN1=b0000000-0000-4000-8000-00000000000b
GEN2=c0000000-0000-4000-8000-00000000000c
GEN3=d0000000-0000-4000-8000-00000000000d

setup() {
	T=$(mktemp -d)
	mkdir "$T/root"
	head -c 65536 /dev/urandom >"$T/img"
}

teardown() {
	rm -rf "$T"
}

# The image IN with blocks written as test-e2b-write --make-cache writes
# them (BLOCK, or BLOCK:z for a discard) into OUT.
apply_writes() {
	/usr/bin/python3 - "$@" <<'EOF'
import struct, sys
src, dst, blocks = sys.argv[1], sys.argv[2], sys.argv[3:]
img = bytearray(open(src, "rb").read())
for b in blocks:
    n = int(b.split(":")[0])
    if b.endswith(":z"):
        data = bytes(4096)
    else:
        v = (n * 0x9E3779B97F4A7C15) & (2**64 - 1)
        data = b"".join(struct.pack("<Q", v ^ (k // 64)) for k in range(0, 4096, 8))
    img[n * 4096:(n + 1) * 4096] = data
open(dst, "wb").write(img)
EOF
}

# traced OPTION... -- CMD...: CMD under strace -f; the sanitizer build's leak check cannot
# run under ptrace
traced() {
	local opts=()
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" strace -f "${opts[@]}" "$@"
}

# cache NAME PARENT GENERATION BLOCK...: a stopped device's cache over PARENT
cache() {
	local c=$1
	shift
	rm -f "$T/$c" "$T/$c".*
	"$UBLK_TEST_BIN/test-e2b-write" --make-cache "$T/$c" 65536 "$@"
}

# check_build ID EXPECTED: both readers give the expected image
check_build() {
	"$REF" flatten "$T/root" "$1" "$T/ref.img"
	cmp "$T/ref.img" "$2"
	"$B/ublk-export-diff" --flatten --e2b "$T/root" --build "$1" -o "$T/our.img"
	cmp "$T/our.img" "$2"
}

@test "e2b writer library: merge, normalize, layouts 1-5, frames, golden headers rewritten" {
	run "$UBLK_TEST_BIN/test-e2b-write" "$G"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" passed, 0 failed" ]]
}

@test "--format e2b over the golden V3 chain: generation 2, root base kept, merged mapping" {
	local p=b0000000-0000-4000-8000-000000000002
	mkdir "$T/root/$p"
	cp "$G/chain-gen1.header" "$T/root/$p/rootfs.ext4.header"
	cache c "$p" 1 1 2 5 7:z
	run "$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$p" --build-id "$GEN2"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$output" = "$GEN2" ]
	[ "$(stat -c %s "$T/root/$GEN2/rootfs.ext4")" -eq 12288 ]
	run "$B/ublk-export-diff" --inspect "$T/root/$GEN2/rootfs.ext4.header"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"version 3 (layout 3), block size 4096, size 65536"* ]]
	[[ "$output" == *"build $GEN2, generation 2"* ]]
	[[ "$output" == *"base (root) build a0000000-0000-4000-8000-000000000001"* ]]
	[[ "$output" == *"            4096 +8192           $GEN2 @0"* ]]
	[[ "$output" == *"           20480 +4096           $GEN2 @8192"* ]]
	[[ "$output" == *"           28672 +4096           nil @0"* ]]
	[[ "$output" == *"           32768 +32768          a0000000-0000-4000-8000-000000000001 @32768"* ]]
}

@test "three generations over a V3 template: plain, zstd (V4), lz4 as V5; both readers agree" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 3
	cache c "$ROOT_ID" 0 1 2 5 7:z 15
	run "$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
		--build-id "$GEN1" --json
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *'"build_id":"'$GEN1'"'* ]]
	[[ "$output" == *'"base_build_id":"'$ROOT_ID'"'* ]]
	[[ "$output" == *'"generation":1,"header_version":3,"compression":"none"'* ]]
	[[ "$output" == *'"data_bytes":16384,"compressed_bytes":16384'* ]]
	[[ "$output" == *'"path":"'$T/root/$GEN1/rootfs.ext4.header'"'* ]]
	apply_writes "$T/img" "$T/g1" 1 2 5 7:z 15
	check_build "$GEN1" "$T/g1"

	cache c "$GEN1" 1 2 3 4 9 15:z
	run "$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$GEN1" \
		--build-id "$GEN2" --compress zstd --frame-size 8K --json
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *'"generation":2,"header_version":4,"compression":"zstd","frame_size":8192,"frames":2'* ]]
	[ -f "$T/root/$GEN2/rootfs.ext4.zstd" ]
	apply_writes "$T/g1" "$T/g2" 2 3 4 9 15:z
	check_build "$GEN2" "$T/g2"

	cache c "$GEN2" 2 0 2 7 8 9 10 11 12 13 14
	run "$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$GEN2" \
		--build-id "$GEN3" --compress lz4 --header-version 5 --json
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *'"generation":3,"header_version":5,"compression":"lz4","frame_size":2097152,"frames":1'* ]]
	[[ "$output" == *'"base_build_id":"'$ROOT_ID'"'* ]]
	apply_writes "$T/g2" "$T/g3" 0 2 7 8 9 10 11 12 13 14
	check_build "$GEN3" "$T/g3"
	run "$REF" describe "$T/root" "$GEN3"
	echo "$output"
	[[ "$output" == *'"layout": 5'* ]]
	[[ "$output" == *'"generation": 3'* ]]
}

@test "a whole-device overwrite over a compressed V5 template, and a child that only discards" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 5 --codec lz4 --frame-size 16384
	cache c "$ROOT_ID" 0 $(seq 0 15)
	"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN1"
	apply_writes "$T/img" "$T/g1" $(seq 0 15)
	check_build "$GEN1" "$T/g1"
	run "$REF" describe "$T/root" "$GEN1"
	[[ "$output" == *'"entries": [[0, 65536, "'$GEN1'", 0]]'* ]]
	# no data: an empty plain data file, even when asked to compress
	cache c "$GEN1" 1 3:z
	"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$GEN1" --build-id "$GEN2" --compress zstd
	[ -f "$T/root/$GEN2/rootfs.ext4" ]
	[ ! -s "$T/root/$GEN2/rootfs.ext4" ]
	apply_writes "$T/g1" "$T/g2" 3:z
	check_build "$GEN2" "$T/g2"
}

@test "--format e2b refusals: existing build, parent or size mismatch, V3 with --compress" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 3
	cache c "$ROOT_ID" 0 1
	"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN1"
	cp "$T/root/$GEN1/rootfs.ext4.header" "$T/before"
	run_mustfail 1 "build $GEN1 already exists under $T/root" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN1"
	cmp "$T/before" "$T/root/$GEN1/rootfs.ext4.header"
	# the cache was made over another layer
	cache d "$GEN2" 0 1
	run_mustfail 5 "the cache was made over layer $GEN2, not over build $ROOT_ID" \
		"$B/ublk-export-diff" --cache "$T/d" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN3"
	[ ! -e "$T/root/$GEN3" ]
	# a device of another size
	rm -f "$T/d" "$T/d".*
	"$UBLK_TEST_BIN/test-e2b-write" --make-cache "$T/d" 131072 "$ROOT_ID" 0 1
	run_mustfail 5 "the cache's device has 131072 bytes, build $ROOT_ID 65536" \
		"$B/ublk-export-diff" --cache "$T/d" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN3"
	[ ! -e "$T/root/$GEN3" ]
	run_mustfail 2 "--header-version 3 has no frame tables: --compress needs 4 or 5" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
		--header-version 3 --compress zstd
	run_mustfail 2 "--format e2b compresses with --compress zstd|lz4, not --zstd" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --zstd --e2b "$T/root" --build "$ROOT_ID"
	run_mustfail 2 "--format e2b --cache FILE needs its parent build: --e2b ROOT --build ID" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b
	run_mustfail 2 "the parent's storage root is a URL: give --output ROOT" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b http://127.0.0.1:9/r --build "$ROOT_ID"
	run_mustfail 2 "--build-id, --header-version and --compress go with --format e2b" \
		"$B/ublk-export-diff" --cache "$T/c" -o "$T/x.diff" --compress lz4
	run_mustfail 2 "--build-id 'C0000000-0000-4000-8000-00000000000C': expected 8-4-4-4-12 lowercase hex" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
		--build-id C0000000-0000-4000-8000-00000000000C
	# the nil id names no build: refused before anything is read or written
	run_mustfail 2 "--build-id '00000000-0000-0000-0000-000000000000': expected 8-4-4-4-12 lowercase hex, as E2B prints build ids, not all zeros" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
		--build-id 00000000-0000-0000-0000-000000000000
	[ ! -e "$T/root/00000000-0000-0000-0000-000000000000" ]
	run_mustfail 5 "the parent build: " \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$GEN3"
	mkdir "$T/out"
	run_mustfail 2 "--build-id $ROOT_ID: already a build of the parent's chain" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
		--build-id "$ROOT_ID" --output "$T/out"
	[ -z "$(ls -A "$T/out")" ]
	# into the parent's own root (the default): the same, not "already exists"
	run_mustfail 2 "--build-id $ROOT_ID: already a build of the parent's chain" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
		--build-id "$ROOT_ID"
}

@test "--format e2b: layouts 1-3 over a compressed chain are refused before anything is written" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 4 --codec zstd
	cache c "$ROOT_ID" 0 3
	for v in 1 2 3; do
		run_mustfail 2 "--header-version $v has no frame tables, and build $ROOT_ID of the parent's chain is compressed: the child needs 4 or 5" \
			"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
			--build-id "$GEN1" --header-version "$v"
		[ ! -e "$T/root/$GEN1" ]
	done
	# layout 4 keeps the frame table: both readers read the child
	"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
		--build-id "$GEN1" --header-version 4
	apply_writes "$T/img" "$T/want.img" 3
	check_build "$GEN1" "$T/want.img"
}

@test "--format e2b: a symlinked build folder is never written through; failures leave nothing" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 4
	cache c "$ROOT_ID" 0 1 2
	mkdir "$T/elsewhere"
	ln -s "$T/elsewhere" "$T/root/$GEN1"
	run_mustfail 1 "$T/root/$GEN1: not a folder (a symlink?): refusing to write a build through it" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN1"
	[ -z "$(ls -A "$T/elsewhere")" ]
	# a refused export removes the folder it made
	cache d "$GEN3" 0 1
	run_mustfail 5 "the cache was made over layer" \
		"$B/ublk-export-diff" --cache "$T/d" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN2"
	[ ! -e "$T/root/$GEN2" ]
	# the umask applies as for every export output; --output puts it elsewhere
	mkdir "$T/out"
	(umask 077 && "$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
		--build-id "$GEN2" --output "$T/out" --compress zstd)
	[ "$(stat -c %a "$T/out/$GEN2")" = 700 ]
	[ "$(stat -c %a "$T/out/$GEN2/rootfs.ext4.header")" = 600 ]
	[ "$(stat -c %a "$T/out/$GEN2/rootfs.ext4.zstd")" = 600 ]
	[ "$(ls -A "$T/out/$GEN2" | wc -l)" -eq 2 ]
	[ ! -e "$T/root/$GEN2" ]
}

@test "--format e2b: a data file there without its header is left alone; a failed folder sync says the build is published" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 3
	cache c "$ROOT_ID" 0 1
	# another export of the id, between naming its data and its header
	mkdir "$T/root/$GEN1"
	echo theirs >"$T/root/$GEN1/rootfs.ext4"
	run_mustfail 1 "rootfs.ext4: is there without its header (another export of this build id running, or one a crash cut short): left as it is" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN1"
	[ "$(cat "$T/root/$GEN1/rootfs.ext4")" = theirs ]
	[ "$(ls -A "$T/root/$GEN1")" = rootfs.ext4 ]
	# fsyncs: the header's bytes, the data, the folder once the data is
	# named (which fails: nothing is published, the data's name taken back)
	run_mustfail 1 "$T/root/$GEN2: syncing its folder after naming the data: Input/output error" \
		traced -o /dev/null -e trace=fsync -e inject=fsync:error=EIO:when=3 -- \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN2"
	[ -z "$(ls -A "$T/root/$GEN2")" ]
	# then the folder once the header is named, which fails
	run_mustfail 1 "$T/root/$GEN2: build published, but syncing its folder failed (Input/output error)" \
		traced -o /dev/null -e trace=fsync -e inject=fsync:error=EIO:when=4 -- \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN2"
	apply_writes "$T/img" "$T/want" 1
	check_build "$GEN2" "$T/want"
}

@test "--format e2b: an export ended by SIGTERM leaves no file and not the folder it made" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 4
	cache c "$ROOT_ID" 0 1 2
	# its first fsync held 5 s, the signal sent meanwhile
	traced -o /dev/null -e trace=fsync -e inject=fsync:delay_enter=5000000:when=1 -- \
		sh -c 'echo $$ >"$0/export.pid" && exec "$@"' "$T" \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" \
		--build-id "$GEN1" --compress zstd &
	tracer=$!
	wait_until 30 '[ -d "$T/root/$GEN1" ] && [ -s "$T/export.pid" ]'
	kill -TERM "$(cat "$T/export.pid")"
	rc=0
	wait "$tracer" || rc=$?
	[ "$rc" -eq 143 ]
	[ ! -e "$T/root/$GEN1" ]
	[ "$(ls -A "$T/root")" = "$ROOT_ID" ]
	# a folder such an export left (an older version, SIGKILL) is taken
	# as it is, and the root synced once the build is in it
	mkdir "$T/root/$GEN1"
	run traced -o "$T/trace" -e trace=fsync -- \
		"$B/ublk-export-diff" --cache "$T/c" --format e2b --e2b "$T/root" --build "$ROOT_ID" --build-id "$GEN1"
	[ "$status" -eq 0 ]
	[ "$(grep -c '^[0-9]* *fsync(' "$T/trace")" -eq 5 ]
	apply_writes "$T/img" "$T/want" 1 2
	check_build "$GEN1" "$T/want"
}

@test "--format v3 over an older pair: the old header goes first, so a pair cut short has none" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 3
	cache c "$ROOT_ID" 0 1
	cache d "$ROOT_ID" 0 2
	"$B/ublk-export-diff" --cache "$T/c" --format v3 -o "$T/out.v3"
	apply_writes "$T/img" "$T/want" 1
	"$B/ublk-export-diff" --flatten --base "$T/img" --layer "$T/out.v3.header" -o "$T/flat"
	cmp "$T/flat" "$T/want"
	# fsyncs: the folder after the old header's removal, then the new data, which fails
	run_mustfail 1 "Input/output error" \
		traced -o /dev/null -e trace=fsync -e inject=fsync:error=EIO:when=2 -- \
		"$B/ublk-export-diff" --cache "$T/d" --format v3 -o "$T/out.v3"
	[ ! -e "$T/out.v3.header" ]
	run_mustfail 5 "out.v3.header" \
		"$B/ublk-export-diff" --flatten --base "$T/img" --layer "$T/out.v3.header" -o "$T/flat2"
	"$B/ublk-export-diff" --cache "$T/d" --format v3 -o "$T/out.v3"
	apply_writes "$T/img" "$T/want" 2
	"$B/ublk-export-diff" --flatten --base "$T/img" --layer "$T/out.v3.header" -o "$T/flat"
	cmp "$T/flat" "$T/want"
}

@test "an export to standard output redirected to a file syncs it, and its folder, before it ends" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 3
	cache c "$ROOT_ID" 0 1
	traced -o "$T/trace" -e trace=fsync,openat -- "$B/ublk-export-diff" --cache "$T/c" >"$T/out.diff"
	grep -q '^[0-9]* *fsync(1) *= 0$' "$T/trace"
	# the name the shell made: its folder opened after that fsync, and synced
	dirfd=$(sed -n '/fsync(1) /,$p' "$T/trace" | grep -F "openat(AT_FDCWD, \"$T\", O_RDONLY|O_CLOEXEC|O_DIRECTORY)" |
		sed 's/.* = //' | head -n 1)
	[ -n "$dirfd" ]
	grep -q "^[0-9]* *fsync($dirfd) *= 0$" "$T/trace"
	run "$B/ublk-export-diff" --inspect "$T/out.diff"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"1 extents: 1 data blocks, 0 zero blocks"* ]]
	[[ "$output" == *"checksums: ok"* ]]
}

@test "standard output: a file open for appending or not empty is refused; a reader that goes away or a full disk is a named write error" {
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 3
	cache c "$ROOT_ID" 0 1 2 3
	echo hello >"$T/app.diff"
	# bats' run takes standard output: each redirection is the tool's own
	run bash -c '"$1" --cache "$2" >>"$3"' _ "$B/ublk-export-diff" "$T/c" "$T/app.diff"
	[ "$status" -eq 2 ]
	[[ "$output" == *"standard output is a file that is not empty, or open for appending (>>): the output must start at its first byte; redirect it with > or give --output FILE"* ]]
	[ "$(cat "$T/app.diff")" = hello ]
	# the same for --flatten
	run bash -c '"$1" --flatten --e2b "$2" --build "$3" >>"$4"' _ "$B/ublk-export-diff" "$T/root" \
		"$ROOT_ID" "$T/app.diff"
	[ "$status" -eq 2 ]
	[[ "$output" == *"standard output is a file that is not empty"* ]]
	[ "$(cat "$T/app.diff")" = hello ]
	# an empty file opened for appending is refused too: O_APPEND ignores offsets
	: >"$T/empty.diff"
	run bash -c '"$1" --cache "$2" >>"$3"' _ "$B/ublk-export-diff" "$T/c" "$T/empty.diff"
	[ "$status" -eq 2 ]
	[ ! -s "$T/empty.diff" ]
	# > to a new file is fine
	"$B/ublk-export-diff" --cache "$T/c" >"$T/new.diff"
	"$B/ublk-export-diff" --inspect "$T/new.diff" >/dev/null
	# a reader that stops early: a write error, not a silent death by
	# SIGPIPE (1 MiB: more than a pipe holds)
	"$UBLK_TEST_BIN/test-e2b-write" --make-cache "$T/big" 1048576 "$ROOT_ID" 0 $(seq 0 255)
	run bash -c '"$1" --cache "$2" | head -c 10 >/dev/null; echo "rc=${PIPESTATUS[0]}"' _ \
		"$B/ublk-export-diff" "$T/big"
	echo "$output"
	[[ "$output" == *"$T/big to standard output: "*"Broken pipe"* ]]
	[[ "$output" == *"rc=1" ]]
	# a full disk names the output, not the cache alone
	run bash -c '"$1" --cache "$2" >/dev/full' _ "$B/ublk-export-diff" "$T/c"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"$T/c to standard output: "*"No space left on device"* ]]
}
