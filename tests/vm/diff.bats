#!/usr/bin/env bats
# Diff export and layered images, through real devices.

load lib

setup() { vm_setup; }
teardown() { vm_teardown; }

dev_sum() { sha256sum <"$1" | cut -d' ' -f1; }

@test "chain base -> diff1 -> diff2 -> diff3: each stack reads exactly what the device had" {
	make_image "$T/base" 32
	base_sum=$(dev_sum "$T/base")
	layers=()
	for gen in 1 2 3; do
		args=(--base "$T/base")
		for l in "${layers[@]}"; do args+=(--layer "$l"); done
		dev=$("$B/ublk-add" "${args[@]}" --cache "$T/cache$gen" --name "gen$gen")
		# the stack below reads as the previous generation
		[ "$gen" -eq 1 ] || [ "$(dev_sum "$dev")" = "$want" ]
		# change some blocks: random data, zeros (stored as zero), a discard
		dd if=/dev/urandom of="$dev" bs=4k seek=$((gen * 100)) count=$((gen * 50)) oflag=direct status=none
		dd if=/dev/urandom of="$dev" bs=1M seek=$((gen * 5)) count=1 oflag=direct status=none
		dd if=/dev/zero of="$dev" bs=4k seek=$((gen * 1000 + 7)) count=3 oflag=direct status=none
		blkdiscard -o $(( (gen * 2000) * 4096 )) -l $((64 * 4096)) "$dev"
		want=$(dev_sum "$dev")
		zopt=(); [ "$gen" -ne 2 ] || zopt=(--zstd --level 19)
		run "$B/ublk-export-diff" "${zopt[@]}" --json -o "$T/d$gen.diff" "gen$gen"
		echo "$output"
		[ "$status" -eq 0 ]
		[ "$(jq -r .generation <<<"$output")" = "$gen" ]
		[ "$(jq -r .cache_removed <<<"$output")" = true ]
		[ "$(jq -r .zero_blocks <<<"$output")" -ge 67 ]
		# device and cache are gone
		[ ! -e "$T/cache$gen" ]
		[ ! -e "$T/cache$gen.map" ]
		assert_none_left
		layers+=("$T/d$gen.diff")
		# a read-only device over base + chain has exactly the exported bytes
		args=(--base "$T/base")
		for l in "${layers[@]}"; do args+=(--layer "$l"); done
		ro=$("$B/ublk-add" "${args[@]}" --read-only)
		[ "$(dev_sum "$ro")" = "$want" ]
		"$B/ublk-del" "$ro"
	done
	[ "$(dev_sum "$T/base")" = "$base_sum" ]
	# flatten gives the same bytes as a plain image
	"$B/ublk-export-diff" --flatten --base "$T/base" --layer "$T/d1.diff" --layer "$T/d2.diff" \
		--layer "$T/d3.diff" -o "$T/flat.img"
	[ "$(dev_sum "$T/flat.img")" = "$want" ]
}

@test "inspect: header, zero extents from discards, checksums; --json parses" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=4k seek=10 count=5 oflag=direct status=none
	blkdiscard -o $((100 * 4096)) -l $((20 * 4096)) "$dev"
	"$B/ublk-export-diff" --zstd -o "$T/d.diff" "$dev"
	run "$B/ublk-export-diff" --inspect "$T/d.diff" --json
	[ "$status" -eq 0 ]
	j=$output
	[ "$(jq -r .verified <<<"$j")" = true ]
	[ "$(jq -r .zstd <<<"$j")" = true ]
	[ "$(jq -c '[.extent_list[] | select(.kind == "data")]' <<<"$j")" = '[{"start":10,"count":5,"kind":"data"}]' ]
	[ "$(jq -c '[.extent_list[] | select(.kind == "zero")]' <<<"$j")" = '[{"start":100,"count":20,"kind":"zero"}]' ]
	run "$B/ublk-export-diff" --inspect "$T/d.diff"
	[ "$status" -eq 0 ]
	[[ "$output" == *"checksums: ok"* ]]
	[[ "$output" == *"2 extents: 5 data blocks, 20 zero blocks"* ]]
}

@test "a zstd diff's frames are decompressed once per host: devices over it read them from the chunk cache" {
	make_image "$T/base" 16
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	# 8 MiB of text: frames that compress
	seq 1 2000000 | head -c 8M >"$T/text"
	dd if="$T/text" of="$dev" bs=1M seek=4 oflag=direct status=none
	"$B/ublk-export-diff" --zstd -o "$T/d.diff" "$dev"
	frames=$("$B/ublk-export-diff" --inspect "$T/d.diff" --json | jq .frames)
	[ "$frames" -eq 8 ]
	cp "$T/base" "$T/want"
	dd if="$T/text" of="$T/want" bs=1M seek=4 conv=notrunc status=none
	one=$("$B/ublk-add" --base "$T/base" --layer "$T/d.diff" --read-only)
	cmp "$T/want" "$one"
	chunks() { find "$UBLK_CHUNK_CACHE" -mindepth 2 -maxdepth 2 -name '[0-9]*' -type f | wc -l; }
	[ "$(chunks)" -eq 8 ]
	[ "$(find "$UBLK_CHUNK_CACHE" -mindepth 1 -maxdepth 1 -type d | wc -l)" -eq 1 ]
	grep -qx "diff-frames file [0-9]*:[0-9]* [0-9.]* $(stat -c %s "$T/d.diff")" \
		"$UBLK_CHUNK_CACHE"/*/key
	# a second device over the same file shares them: the same files, not stored again
	inodes=$(stat -c %i "$UBLK_CHUNK_CACHE"/*/[0-9]* | sort | tr '\n' ' ')
	two=$("$B/ublk-add" --base "$T/base" --layer "$T/d.diff" --read-only)
	fio --name=r --filename="$two" --ioengine=io_uring --direct=1 --rw=randread --bs=4k \
		--offset=4M --size=8M --io_size=4M --iodepth=16 --output="$T/fio.out"
	cmp "$T/want" "$two"
	# read in large pieces, kept frames are read in place: mapped
	dd if="$two" of="$T/two" bs=1M iflag=direct status=none
	cmp "$T/want" "$T/two"
	[ "$(mapped_chunks "$two")" -gt 0 ]
	[ "$(chunks)" -eq 8 ]
	[ "$(stat -c %i "$UBLK_CHUNK_CACHE"/*/[0-9]* | sort | tr '\n' ' ')" = "$inodes" ]
	"$B/ublk-del" "$one"
	"$B/ublk-del" "$two"
	# --no-frame-cache keeps none
	rm -rf "$UBLK_CHUNK_CACHE"
	three=$("$B/ublk-add" --base "$T/base" --layer "$T/d.diff" --read-only --no-frame-cache)
	cmp "$T/want" "$three"
	"$B/ublk-del" "$three"
	[ ! -e "$UBLK_CHUNK_CACHE" ] || [ "$(chunks)" -eq 0 ]
	assert_none_left
}

@test "corrupted, truncated, foreign and misplaced diffs are refused with a clear error" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=1M count=2 oflag=direct status=none
	"$B/ublk-export-diff" -o "$T/d1.diff" "$dev"
	dev=$("$B/ublk-add" --base "$T/base" --layer "$T/d1.diff" --cache "$T/cache2")
	dd if=/dev/urandom of="$dev" bs=4k count=3 oflag=direct status=none
	"$B/ublk-export-diff" -o "$T/d2.diff" "$dev"

	# a flipped byte in the data: header fine, the frame checksum catches it
	cp "$T/d1.diff" "$T/bad.diff"
	flip_byte "$T/bad.diff" $((8192 + 100))
	run_mustfail 5 "frame 0: its checksum does not match" stderr_of "$B/ublk-export-diff" --inspect "$T/bad.diff"
	run sh -c '"$0" --inspect "$1" --json 2>/dev/null' "$B/ublk-export-diff" "$T/bad.diff"
	[ "$status" -eq 5 ]
	[ "$(jq -c '[.verified, .bad_frame]' <<<"$output")" = "[false,0]" ]
	[ "$("$B/ublk-export-diff" --inspect --json "$T/d1.diff" | jq -c '[.verified, .bad_frame]')" = "[true,null]" ]
	# reading that block through a device fails with EIO, other blocks are fine
	dev=$("$B/ublk-add" --base "$T/base" --layer "$T/bad.diff" --read-only)
	run dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
	[ "$status" -ne 0 ]
	dd if="$dev" of=/dev/null bs=4k skip=1000 count=1 iflag=direct status=none
	"$B/ublk-del" "$dev"
	# damaged header
	cp "$T/d1.diff" "$T/bad.diff"
	flip_byte "$T/bad.diff" 20
	run_mustfail 5 "header checksum mismatch" "$B/ublk-add" --base "$T/base" --layer "$T/bad.diff" --read-only
	# truncated
	head -c -100 "$T/d1.diff" >"$T/bad.diff"
	run_mustfail 5 "footer missing or damaged (truncated file?)" "$B/ublk-export-diff" --inspect "$T/bad.diff"
	# not a diff
	run_mustfail 5 "not a ublk-tools diff (bad magic)" "$B/ublk-export-diff" --inspect "$T/base"
	# wrong block size (header rewritten with a valid checksum)
	python3 - "$T/d1.diff" "$T/bad.diff" <<'PY'
import struct, sys
d = bytearray(open(sys.argv[1], 'rb').read())
d[12:16] = struct.pack('<I', 512)
import zlib
def crc32c(b):
    c = 0xffffffff
    for x in b:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0x82f63b78 if c & 1 else c >> 1
    return c ^ 0xffffffff
d[124:128] = struct.pack('<I', crc32c(bytes(d[:124])))
open(sys.argv[2], 'wb').write(d)
PY
	run_mustfail 5 "block size 512, expected 4096" "$B/ublk-export-diff" --inspect "$T/bad.diff"
	# wrong parent: d2 directly over the base
	run_mustfail 5 "its parent is" "$B/ublk-add" --base "$T/base" --layer "$T/d2.diff" --read-only
	# wrong order
	run_mustfail 5 "layers must be given base first" \
		"$B/ublk-add" --base "$T/base" --layer "$T/d2.diff" --layer "$T/d1.diff" --read-only
	assert_none_left
}

@test "export with a holder open times out and leaves everything as it was" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=4k count=10 oflag=direct status=none
	before=$(dev_sum "$dev")
	exec 7<"$dev"
	start=$(date +%s%N)
	run_mustfail 8 "still in use after 1000 ms: pid $$" \
		"$B/ublk-export-diff" --timeout 1 -o "$T/d.diff" "$dev"
	# its own deadline, not the default 10 s (with room for a loaded host)
	[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 9000 ]
	exec 7<&-
	[ ! -e "$T/d.diff" ]
	# no temporary (.d.diff.HEX.tmp) either
	[ "$(ls -A "$T" | grep -c '^\.d\.diff\..*\.tmp$')" -eq 0 ]
	[ -e "$T/cache" ]
	[ -e "$T/cache.map" ]
	[ "$(dev_sum "$dev")" = "$before" ]
	# and a retry works, keeping the cache when asked
	"$B/ublk-export-diff" --keep -o "$T/d.diff" "$dev"
	[ -e "$T/cache" ]
	assert_none_left
	# the kept cache of a stopped device exports the same diff content
	"$B/ublk-export-diff" --cache "$T/cache" -o "$T/d2.diff"
	a=$("$B/ublk-export-diff" --inspect "$T/d.diff" --json)
	b=$("$B/ublk-export-diff" --inspect "$T/d2.diff" --json)
	[ "$(jq -c .extent_list <<<"$a")" = "$(jq -c .extent_list <<<"$b")" ]
	[ "$(jq '.extent_list | length' <<<"$a")" -gt 0 ]
}

@test "an output that cannot be written is refused before the device is touched" {
	make_image "$T/base" 16
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=1M count=8 oflag=direct status=none
	want=$(sha256sum <"$dev")
	run_mustfail 2 "$T/nope/x.diff: folder $T/nope does not exist; nothing was changed" \
		"$B/ublk-export-diff" -o "$T/nope/x.diff" "$dev"
	run_mustfail 2 "$T: is a folder: give a file name; nothing was changed" \
		"$B/ublk-export-diff" -o "$T" "$dev"
	run_mustfail 2 "/dev/null: is a character device, which the output would replace rather than write to: give the name of a regular file, or a new one; nothing was changed" \
		"$B/ublk-export-diff" -o /dev/null "$dev"
	[ -c /dev/null ]
	ln -s "$T/elsewhere" "$T/v3.data.header"
	run_mustfail 2 "$T/v3.data.header: is a symbolic link" \
		"$B/ublk-export-diff" --format v3 -o "$T/v3.data" "$dev"
	[ ! -e "$T/v3.data" ]
	[ ! -e "$T/elsewhere" ]
	mkdir "$T/small"
	mount -t tmpfs -o size=1M tmpfs "$T/small"
	run_mustfail 1 "MiB free in $T/small, the output may need up to" \
		"$B/ublk-export-diff" -o "$T/small/x.diff" "$dev"
	umount "$T/small"
	# nor a file the device reads, as its state entry names them
	run_mustfail 2 "$T/base: is the base image ($T/base), which it would replace: give another file; nothing was changed" \
		"$B/ublk-export-diff" -o "$T/base" "$dev"
	run_mustfail 2 "$T/cache.map: is the cache's map ($T/cache.map), which it would replace" \
		"$B/ublk-export-diff" -o "$T/cache.map" "$dev"
	# a live export checks the same, before it holds any write
	run_mustfail 2 "$T/base: is the base image ($T/base), which it would replace: give another file; nothing was changed" \
		"$B/ublk-export-diff" --live -o "$T/base" "$dev"
	run_mustfail 2 "$T/v3.data.header: is a symbolic link" \
		"$B/ublk-export-diff" --live --format v3 -o "$T/v3.data" "$dev"
	# nor standard output that would append
	echo hello >"$T/app.diff"
	run bash -c '"$1" "$2" >>"$3"' _ "$B/ublk-export-diff" "$dev" "$T/app.diff"
	[ "$status" -eq 2 ]
	[[ "$output" == *"standard output is a file that is not empty, or open for appending (>>)"*"nothing was changed" ]]
	# the device is as it was, and exports once the output is right
	[ "$(sha256sum <"$dev")" = "$want" ]
	"$B/ublk-export-diff" -o "$T/d.diff" "$dev"
	[ ! -e "$dev" ]
	"$B/ublk-export-diff" --inspect "$T/d.diff" >/dev/null
}

@test "an export to a pipe keeps the cache: the reader may not have stored the diff" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=1M count=2 oflag=direct status=none
	want=$(sha256sum <"$dev")
	run bash -c '"$1" --zstd "$2" | cat >"$3"' _ "$B/ublk-export-diff" "$dev" "$T/p.diff"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"the diff went to standard output, which is no file (a pipe, socket or device), so nothing says it is stored: the cache is kept at $T/cache; remove it and $T/cache.map once the diff is safe"* ]]
	[ ! -e "$dev" ]
	[ -f "$T/cache" ]
	[ -f "$T/cache.map" ]
	# the piped diff and the kept cache hold the same device
	ro=$("$B/ublk-add" --base "$T/base" --layer "$T/p.diff" --read-only)
	[ "$(sha256sum <"$ro")" = "$want" ]
	"$B/ublk-del" "$ro"
	"$B/ublk-export-diff" --cache "$T/cache" -o "$T/c.diff"
	ro=$("$B/ublk-add" --base "$T/base" --layer "$T/c.diff" --read-only)
	[ "$(sha256sum <"$ro")" = "$want" ]
	"$B/ublk-del" "$ro"
	# to a file, the cache goes
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache2")
	run "$B/ublk-export-diff" --json -o "$T/f.diff" "$dev"
	[ "$status" -eq 0 ]
	[ "$(jq -r .cache_removed <<<"$output")" = true ]
	[ ! -e "$T/cache2" ]
}

@test "export of a running device's cache by file is refused" {
	make_image "$T/base" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	run_mustfail 8 "cache is in use by a running server" \
		"$B/ublk-export-diff" --cache "$T/cache" -o "$T/d.diff"
	"$B/ublk-del" "$dev"
}

@test "--live export while writes run is a consistent point in time; the device keeps going" {
	make_image "$T/base" 16
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --name live1)
	head -c $((16 << 20)) /dev/zero | tr '\0' 'A' >"$T/A"
	dd if="$T/A" of="$dev" bs=1M oflag=direct status=none
	# one block at a time, in order: any consistent point is "B up to k, A after"
	# the writer is past block 1024 when the export starts, and waits at
	# block 3072 until it has ended: the export overlaps writes in flight
	python3 - "$dev" "$T" <<'PY' &
import mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
buf.write(b'B' * 4096)
for i in range(4096):
    if i == 1024:
        open(sys.argv[2] + '/started', 'w').close()
    if i == 3072:
        end = time.monotonic() + 300
        while not os.path.exists(sys.argv[2] + '/exported') and time.monotonic() < end:
            time.sleep(0.01)
    os.pwrite(fd, buf, i * 4096)
os.close(fd)
PY
	writer=$!
	wait_until 60 '[ -e "$T/started" ]'
	run "$B/ublk-export-diff" --live --json -o "$T/live.diff" live1
	: >"$T/exported"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(jq -r .cache_removed <<<"$output")" = false ]
	wait "$writer"
	# the device kept running and took every write
	cmp <(head -c $((16 << 20)) /dev/zero | tr '\0' 'B') "$dev"
	ro=$("$B/ublk-add" --base "$T/base" --layer "$T/live.diff" --read-only)
	python3 - "$ro" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
blocks = [data[i:i + 4096] for i in range(0, len(data), 4096)]
kinds = ['B' if b == b'B' * 4096 else 'A' if b == b'A' * 4096 else '?' for b in blocks]
k = kinds.index('A') if 'A' in kinds else len(kinds)
assert '?' not in kinds, "a torn block"
assert all(x == 'B' for x in kinds[:k]) and all(x == 'A' for x in kinds[k:]), "not a prefix"
print("consistent at block", k, "of", len(kinds))
assert 0 < k < len(kinds), "export did not overlap the writes"
PY
	"$B/ublk-del" "$ro" live1
	[ -e "$T/cache" ]
}

@test "--live export of a mounted ext4 under fio gives a filesystem that fscks clean" {
	truncate -s 256M "$T/base"
	mkfs.ext4 -q -F -b 4096 "$T/base"
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --queues 2)
	mkdir "$T/mnt"
	mount "$dev" "$T/mnt"
	fio --name=w --directory="$T/mnt" --ioengine=io_uring --rw=randwrite --bs=4k --size=64M \
		--iodepth=16 --time_based --runtime=15 --fsync=32 --output="$T/fio.out" &
	fio_pid=$!
	# fio is writing files in the filesystem
	wait_until 60 '[ -n "$(find "$T/mnt" -name "w.*" -size +1M)" ]'
	"$B/ublk-export-diff" --live -o "$T/live.diff" "$dev"
	wait "$fio_pid"
	umount "$T/mnt"
	"$B/ublk-del" "$dev"
	# the point-in-time image, with a scratch cache for the journal replay
	snap=$("$B/ublk-add" --base "$T/base" --layer "$T/live.diff" --cache "$T/scratch")
	# replay the journal only, as a mount would; then it must check clean
	run fsck.ext4 -y -E journal_only "$snap"
	[ "$status" -le 1 ]
	run fsck.ext4 -fn "$snap"
	echo "$output"
	[ "$status" -eq 0 ]
	"$B/ublk-del" "$snap"
}

@test "v3 interop: packed data + mapping header export, accepted as a layer" {
	make_image "$T/base" 16
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=4k seek=3 count=40 oflag=direct status=none
	dd if=/dev/zero of="$dev" bs=4k seek=100 count=8 oflag=direct status=none
	want=$(dev_sum "$dev")
	"$B/ublk-export-diff" --format v3 -o "$T/v3.data" "$dev"
	# packed data holds exactly the 40 changed blocks; 64 + 40 bytes per range
	[ "$(stat -c %s "$T/v3.data")" -eq $((40 * 4096)) ]
	[ "$(stat -c %s "$T/v3.data.header")" -eq $((64 + 2 * 40)) ]
	[ "$(head -c 8 "$T/v3.data.header" | od -An -tu8 | tr -d ' ')" = 3 ]
	ro=$("$B/ublk-add" --base "$T/base" --layer "$T/v3.data.header" --read-only)
	[ "$(dev_sum "$ro")" = "$want" ]
	"$B/ublk-del" "$ro"
	# our diffs stack over a v3 layer
	dev=$("$B/ublk-add" --base "$T/base" --layer "$T/v3.data.header" --cache "$T/cache2")
	dd if=/dev/urandom of="$dev" bs=4k seek=5 count=2 oflag=direct status=none
	want=$(dev_sum "$dev")
	"$B/ublk-export-diff" -o "$T/d2.diff" "$dev"
	ro=$("$B/ublk-add" --base "$T/base" --layer "$T/v3.data.header" --layer "$T/d2.diff" --read-only)
	[ "$(dev_sum "$ro")" = "$want" ]
	"$B/ublk-del" "$ro"
	# a damaged header is refused
	head -c 100 "$T/v3.data.header" >"$T/bad.data.header"
	cp "$T/v3.data" "$T/bad.data"
	run_mustfail 5 "v3 header size 100 is not 64 + 40 x entries" \
		"$B/ublk-add" --base "$T/base" --layer "$T/bad.data.header" --read-only
	assert_none_left
}

@test "--live export slower than its hold deadline is discarded, not passed off as a snapshot" {
	make_image "$T/base" 64
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=1M count=64 oflag=direct status=none
	run_mustfail 7 "discarded it: retry with a longer --timeout" \
		"$B/ublk-export-diff" --live --zstd --timeout 0.2 -o "$T/live.diff" "$dev"
	[ ! -e "$T/live.diff" ]
	# writes were resumed: the device still takes them
	dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct status=none
	"$B/ublk-export-diff" --live --timeout 30 -o "$T/live.diff" "$dev"
	"$B/ublk-export-diff" --inspect "$T/live.diff" >/dev/null
	"$B/ublk-del" "$dev"
}

# held_write_setup: a device over a cache ($dev, its socket $ctl, the
# client $client) whose writes a client holds as ublk-export-diff --live
# does, for up to 10 minutes ($holder, printing to $T/hold.out), and a
# write held meanwhile ($writer)
held_write_setup() {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	ctl=$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/ctl
	client=$BATS_TEST_DIRNAME/helpers/ctl-client.py
	timeout 300 python3 "$client" "$ctl" "freeze 600000" --hold >"$T/hold.out" 3>&- &
	holder=$!
	BG=$holder
	wait_until 60 "grep -qx frozen '$T/hold.out'"
	timeout 300 dd if=/dev/urandom of="$dev" bs=4k count=1 seek=3 oflag=direct status=none 3>&- &
	writer=$!
	BG="$BG $writer"
	wait_until 60 "[ \$(dev_writes_in_flight $dev) -gt 0 ]"
}

@test "a live export's hold stops nothing else: heartbeat, other clients, stopping the server" {
	held_write_setup
	# the statistics (the heartbeat ublk-pool watch reads) go on, each
	# period, unasked (no SIGUSR1, which would wake the loop)
	entry=$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}
	ino=$(stats_inode "$entry")
	wait_until 30 "[ \"\$(stats_inode '$entry')\" != '$ino' ]"
	ino=$(stats_inode "$entry")
	wait_until 30 "[ \"\$(stats_inode '$entry')\" != '$ino' ]"
	# a client that says nothing holds up nobody, a second export is told why not
	python3 -c 'import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print("connected", flush=True)
time.sleep(600)' "$ctl" >"$T/silent.out" 3>&- &
	silent=$!
	BG="$BG $silent"
	wait_until 60 "grep -q connected '$T/silent.out'"
	run timeout 60 python3 "$client" "$ctl" "freeze 1000"
	[ "$status" -eq 0 ]
	[[ "$output" == "error busy: another live export holds this device's writes" ]]
	# stopping the server ends the hold at once: the held write completes,
	# the client is told, the device goes
	kill -TERM "$(cat "$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/pid")"
	wait "$writer"
	wait "$holder"
	[ "$(tail -n 1 "$T/hold.out")" = expired ]
	wait_until 60 "[ ! -e $dev ]"
	kill "$silent"
	wait "$silent" || true
	BG=
}

@test "a live export's freeze whose sync is slow holds up nothing else: heartbeat, other clients" {
	make_image "$T/base" 8
	# the cache on ext4 over a device whose every write takes 3 s: its sync
	# takes several times that
	truncate -s 64M "$T/disk.img"
	mkfs.ext4 -q -b 4096 "$T/disk.img"   # the device's blocks are 4 KiB
	slow=$("$B/ublk-add" --base "$T/disk.img" --inject delay-write=3000)
	mkdir "$T/mnt"
	mount "$slow" "$T/mnt"
	# making the cache syncs it: slow too
	dev=$("$B/ublk-add" --timeout 120 --base "$T/base" --cache "$T/mnt/cache")
	dd if=/dev/urandom of="$dev" bs=1M count=4 oflag=direct status=none
	entry=$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}
	ctl=$entry/ctl
	client=$BATS_TEST_DIRNAME/helpers/ctl-client.py
	timeout 300 python3 "$client" "$ctl" "freeze 120000" --hold >"$T/hold.out" 3>&- &
	holder=$!
	BG=$holder
	# the hold is announced at the request, before the sync ends
	wait_until 30 "grep -q '\"held_until_ms\": *[1-9]' '$entry/stats'"
	[ ! -s "$T/hold.out" ]
	# the statistics go on each period while the sync runs
	ino=$(stats_inode "$entry")
	wait_until 30 "[ \"\$(stats_inode '$entry')\" != '$ino' ]"
	ino=$(stats_inode "$entry")
	wait_until 30 "[ \"\$(stats_inode '$entry')\" != '$ino' ]"
	run timeout 60 python3 "$client" "$ctl" "freeze 1000"
	[ "$status" -eq 0 ]
	[[ "$output" == "error busy: another live export holds this device's writes" ]]
	# still syncing: each step above came while it ran
	[ ! -s "$T/hold.out" ]
	wait_until 120 "grep -qx frozen '$T/hold.out'"
	kill "$holder"
	wait "$holder" || true
	BG=
	# an export whose sync outlasts its hold: exit 7, saying what to do
	dd if=/dev/urandom of="$dev" bs=1M count=4 oflag=direct status=none
	run_mustfail 7 "server did not freeze: expired: the hold (--timeout) ended before its cache was durable" \
		"$B/ublk-export-diff" --live --timeout 1 -o "$T/x.diff" "$dev"
	[ ! -e "$T/x.diff" ]
	# its cache's last sync is slow too
	"$B/ublk-del" --timeout 120 "$dev"
	umount "$T/mnt"
	"$B/ublk-del" "$slow"
	assert_none_left
}

@test "ublk-del of a device whose writes a live export holds: the hold ends, the device goes in time" {
	held_write_setup
	# --force: the writer has it open; the stop must not wait out the hold
	run timeout 120 "$B/ublk-del" --force --timeout 30 "$dev"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" != *"killed it"* ]]
	[ ! -e "$dev" ]
	wait "$holder"
	[ "$(tail -n 1 "$T/hold.out")" = expired ]
	# the held write was let go: it completed or failed, it did not hang
	# (until its timeout 300 killed it)
	wait_until 60 '! kill -0 "$writer" 2>/dev/null'
	code=0
	wait "$writer" || code=$?
	[ "$code" -ne 124 ]
	BG=
	assert_none_left
}

@test "layers without a cache make a read-only device" {
	make_image "$T/base" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=4k count=2 oflag=direct status=none
	"$B/ublk-export-diff" -o "$T/d.diff" "$dev"
	dev=$("$B/ublk-add" --base "$T/base" --layer "$T/d.diff")
	[ "$(blockdev --getro "$dev")" = 1 ]
	"$B/ublk-del" "$dev"
}
