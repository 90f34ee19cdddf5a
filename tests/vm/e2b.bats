#!/usr/bin/env bats
# E2B builds through real devices: serve a build from a storage root,
# export the next build, serve that, through three generations; every
# build we write is also read back by tests/e2b/e2b_ref.py, a reader that
# shares no code with ours.

load lib

setup() {
	vm_setup
	REF=$BATS_TEST_DIRNAME/../e2b/e2b_ref.py
	ROOT_ID=a0a0a0a0-0000-4000-8000-00000000e2b0
	export UBLK_CHUNK_CACHE=$T/chunks
}
teardown() {
	nginx_stop
	vm_teardown
}

dev_sum() { sha256sum <"$1" | cut -d' ' -f1; }

# change_blocks DEV GEN: random data, a zeroed range, a discard
change_blocks() {
	local dev=$1 gen=$2
	dd if=/dev/urandom of="$dev" bs=4k seek=$((gen * 300)) count=$((gen * 40)) oflag=direct status=none
	dd if=/dev/urandom of="$dev" bs=1M seek=$((gen * 3)) count=1 oflag=direct status=none
	dd if=/dev/zero of="$dev" bs=4k seek=$((gen * 1000 + 7)) count=3 oflag=direct status=none
	blkdiscard -o $(( (gen * 1500) * 4096 )) -l $((64 * 4096)) "$dev"
}

# chain STORAGE OUTROOT HOW...: template, then three generations, each
# exported with the options of one HOW word (layout:codec), served again
# and read back by the reference reader from OUTROOT.
chain() {
	local storage=$1 outroot=$2
	shift 2
	local parent=$ROOT_ID gen=0 how layout codec dev want out new fields
	for how in "$@"; do
		gen=$((gen + 1))
		layout=${how%%:*} codec=${how#*:}
		dev=$("$B/ublk-add" --e2b "$storage" --build "$parent" --cache "$T/cache$gen" --name "g$gen")
		# the device reads exactly what the parent build holds, and says which build it is
		[ "$(dev_sum "$dev")" = "$want_prev" ]
		[ "$("$B/ublk-pool" list --json | jq -r '.devices[] | select(.name == "g'$gen'") | .build')" = "$parent" ]
		change_blocks "$dev" "$gen"
		want=$(dev_sum "$dev")
		copt=(); [ "$codec" = none ] || copt=(--compress "$codec" --frame-size 256K)
		run "$B/ublk-export-diff" --format e2b --output "$outroot" --header-version "$layout" \
			"${copt[@]}" --json "g$gen"
		echo "$output"
		[ "$status" -eq 0 ]
		# one jq a document: each costs a third of a second in the VM
		fields=($(jq -r '[.build_id, .generation, .base_build_id] | @tsv' <<<"$output"))
		new=${fields[0]}
		[ "${fields[1]}" = "$gen" ]
		[ "${fields[2]}" = "$ROOT_ID" ]
		assert_none_left
		[ ! -e "$T/cache$gen" ]
		# the platform's rules and read path, independently
		out=$("$REF" describe "$outroot" "$new")
		fields=($(jq -r '[.layout, .generation, .base_build_id, .build_id] | @tsv' <<<"$out"))
		[ "${fields[0]}" = "$layout" ]
		[ "${fields[1]}" = "$gen" ]
		[ "${fields[2]}" = "$ROOT_ID" ]
		[ "${fields[3]}" = "$new" ]
		"$REF" flatten "$outroot" "$new" "$T/ref.img"
		[ "$(dev_sum "$T/ref.img")" = "$want" ]
		rm -f "$T/ref.img"
		want_prev=$want parent=$new
		# our own read path, as a device
		dev=$("$B/ublk-add" --e2b "$storage" --build "$new" --read-only)
		[ "$(dev_sum "$dev")" = "$want" ]
		"$B/ublk-del" "$dev"
	done
	last=$parent
}

@test "E2B chain on a local root: V3 template -> V3, V4+zstd, V5+lz4 builds, byte-identical" {
	make_image "$T/img" 24
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 3
	want_prev=$(dev_sum "$T/img")
	chain "$T/root" "$T/root" 3:none 4:zstd 5:lz4
	# --flatten and --inspect over the last build name all three generations
	"$B/ublk-export-diff" --flatten --e2b "$T/root" --build "$last" -o "$T/flat.img"
	[ "$(dev_sum "$T/flat.img")" = "$want_prev" ]
	run "$B/ublk-export-diff" --inspect --e2b "$T/root" --build "$last" --json
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(jq -r .generation <<<"$output")" = 3 ]
	# layout 3 records no checksum: those builds cannot be verified, so the chain is not
	[ "$(jq -r .verified <<<"$output")" = false ]
	# the compressed ones (zstd, lz4) were: their frames and checksums
	[ "$(jq '[.builds[] | select(.codec == "zstd" or .codec == "lz4") | select(.data == "sha256")] | length' <<<"$output")" -eq 2 ]
	assert_none_left
}

@test "E2B chain on an HTTP root: compressed template, three generations served remotely" {
	mkdir -p "$T/www/root"
	nginx_run "$(cat <<CONF
	access_log $T/nginx/access.log;
	server { listen 127.0.0.1:18090; root $T/www; }
CONF
)"
	make_image "$T/img" 24
	"$REF" template "$T/www/root" "$T/img" "$ROOT_ID" --layout 4 --codec zstd --frame-size 1048576
	want_prev=$(dev_sum "$T/img")
	chain "http://127.0.0.1:18090/root" "$T/www/root" 4:lz4 5:zstd 4:none
	# only the frames a read needs are fetched: one block of a fresh chunk cache
	dev=$("$B/ublk-add" --e2b "http://127.0.0.1:18090/root" --build "$last" --read-only \
		--chunk-cache "$T/chunks2" --chunk-size 64K)
	before=$(grep -c ' 206 ' "$T/nginx/access.log")
	dd if="$dev" of=/dev/null bs=4k skip=1 count=1 iflag=direct status=none
	after=$(grep -c ' 206 ' "$T/nginx/access.log")
	[ $((after - before)) -le 24 ]
	"$B/ublk-del" "$dev"
}

@test "E2B on a slow HTTP root: a fetch does not stall the reads its queue has cached" {
	mkdir -p "$T/www/root"
	nginx_run "$(cat <<CONF
	access_log off;
	# slow past the files' first bytes: a window of 16 s for the reads below
	map \$http_range \$rate { "~^bytes=0-" 0; default 4k; }
	server { listen 127.0.0.1:18090; root $T/www; limit_rate \$rate; }
CONF
)"
	make_image "$T/img" 8
	"$REF" template "$T/www/root" "$T/img" "$ROOT_ID" --layout 4 --codec none
	dev=$("$B/ublk-add" --e2b "http://127.0.0.1:18090/root" --build "$ROOT_ID" --read-only \
		--chunk-size 64K --readahead 0 --queues 1 --timeout 120)
	# the first 64 KiB into the chunk cache
	dd if="$dev" of=/dev/null bs=4k count=16 iflag=direct status=none
	# a read of another chunk: 64 KiB at 4 KiB/s
	dd if="$dev" of="$T/slow" bs=4k skip=1000 count=1 iflag=direct status=none &
	slow=$!
	wait_until 30 '[ "$(dev_reads_in_flight "$dev")" -ge 1 ]'
	# meanwhile 48 reads of the cached chunk, one at a time, on the same queue
	python3 - "$dev" <<'PY'
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
for i in range(48):
    assert os.preadv(fd, [buf], 4096 * (i % 16)) == 4096
PY
	kill -0 "$slow"
	[ "$(dev_reads_in_flight "$dev")" -eq 1 ]
	wait "$slow"
	cmp "$T/slow" <(dd if="$T/img" bs=4k skip=1000 count=1 status=none)
	"$B/ublk-del" "$dev"
}

@test "E2B: an ext4 filesystem survives template -> build -> build, fsck clean" {
	truncate -s 64M "$T/img"
	mkfs.ext4 -q -F -b 4096 "$T/img"
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 4 --codec lz4
	parent=$ROOT_ID
	for gen in 1 2; do
		dev=$("$B/ublk-add" --e2b "$T/root" --build "$parent" --cache "$T/cache$gen")
		mkdir -p "$T/mnt"
		mount "$dev" "$T/mnt"
		dd if=/dev/urandom of="$T/mnt/file$gen" bs=1M count=3 status=none
		[ "$gen" -eq 1 ] || rm "$T/mnt/file1"
		sha256sum "$T/mnt/file$gen" | cut -d' ' -f1 >"$T/sum$gen"
		umount "$T/mnt"
		parent=$("$B/ublk-export-diff" --format e2b --output "$T/root" --compress zstd --level 1 --json "$dev" | jq -r .build_id)
	done
	dev=$("$B/ublk-add" --e2b "$T/root" --build "$parent" --read-only)
	fsck.ext4 -fn "$dev"
	mount -o ro "$dev" "$T/mnt"
	[ ! -e "$T/mnt/file1" ]
	[ "$(sha256sum "$T/mnt/file2" | cut -d' ' -f1)" = "$(cat "$T/sum2")" ]
	umount "$T/mnt"
	"$B/ublk-del" "$dev"
}

@test "E2B: a build the header names but the root lacks is an error listing every missing id" {
	make_image "$T/img" 16
	"$REF" template "$T/root" "$T/img" "$ROOT_ID"
	dev=$("$B/ublk-add" --e2b "$T/root" --build "$ROOT_ID" --cache "$T/cache")
	change_blocks "$dev" 1
	g1=$("$B/ublk-export-diff" --format e2b --output "$T/root" --json "$dev" | jq -r .build_id)
	dev=$("$B/ublk-add" --e2b "$T/root" --build "$g1" --cache "$T/cache")
	change_blocks "$dev" 2
	g2=$("$B/ublk-export-diff" --format e2b --output "$T/root" --json "$dev" | jq -r .build_id)
	mv "$T/root/$g1" "$T/g1.away"
	mv "$T/root/$ROOT_ID/rootfs.ext4" "$T/root.away"
	run_mustfail 5 "$g1" "$B/ublk-add" --e2b "$T/root" --build "$g2" --read-only
	[[ "$output" == *"$ROOT_ID"* ]]
	run_mustfail 5 "$g1" "$B/ublk-export-diff" --flatten --e2b "$T/root" --build "$g2" -o "$T/flat"
	[ ! -e "$T/flat" ]
	assert_none_left
	# the header of a missing build itself
	run_mustfail 5 "$g1" "$B/ublk-add" --e2b "$T/root" --build "$g1" --read-only
}

@test "E2B: a corrupted compressed frame fails the reads of its range only" {
	make_image "$T/img" 8
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 5 --codec zstd --frame-size 1048576
	data=$T/root/$ROOT_ID/rootfs.ext4.zstd
	# flip a byte in the middle of the second frame
	off=$(( $(stat -c %s "$data") * 3 / 16 ))
	flip_byte "$data" "$off"
	dev=$("$B/ublk-add" --e2b "$T/root" --build "$ROOT_ID" --read-only)
	run dd if="$dev" of=/dev/null bs=1M skip=1 count=1 iflag=direct status=none
	[ "$status" -ne 0 ]
	cmp <(dd if="$dev" bs=1M count=1 iflag=direct status=none) <(head -c 1M "$T/img")
	run "$B/ublk-export-diff" --inspect --e2b "$T/root" --build "$ROOT_ID" --json
	[ "$status" -eq 5 ]
	"$B/ublk-del" "$dev"
}

@test "E2B: a compressed build's frames are decompressed once per host: devices over it read them from the chunk cache" {
	make_image "$T/img" 8
	"$REF" template "$T/root" "$T/img" "$ROOT_ID" --layout 4 --codec zstd --frame-size 1048576
	one=$("$B/ublk-add" --e2b "$T/root" --build "$ROOT_ID" --read-only)
	cmp "$T/img" "$one"
	chunks() { find "$UBLK_CHUNK_CACHE" -mindepth 2 -maxdepth 2 -name '[0-9]*' -type f | wc -l; }
	[ "$(chunks)" -eq 8 ]
	[ "$(find "$UBLK_CHUNK_CACHE" -mindepth 1 -maxdepth 1 -type d | wc -l)" -eq 1 ]
	data=$T/root/$ROOT_ID/rootfs.ext4.zstd
	grep -qx "e2b-frames file [0-9]*:[0-9]* [0-9.]* $(stat -c %s "$data")" "$UBLK_CHUNK_CACHE"/*/key
	grep -qx "build $ROOT_ID" "$UBLK_CHUNK_CACHE"/*/key
	# a second device over the same build shares them: the same files, not stored again
	inodes=$(stat -c %i "$UBLK_CHUNK_CACHE"/*/[0-9]* | sort | tr '\n' ' ')
	two=$("$B/ublk-add" --e2b "$T/root" --build "$ROOT_ID" --read-only)
	fio --name=r --filename="$two" --ioengine=io_uring --direct=1 --rw=randread --bs=4k \
		--size=8M --io_size=4M --iodepth=16 --output="$T/fio.out"
	cmp "$T/img" "$two"
	# read in large pieces, kept frames are read in place: mapped
	dd if="$two" of="$T/two" bs=1M iflag=direct status=none
	cmp "$T/img" "$T/two"
	[ "$(mapped_chunks "$two")" -gt 0 ]
	[ "$(chunks)" -eq 8 ]
	[ "$(stat -c %i "$UBLK_CHUNK_CACHE"/*/[0-9]* | sort | tr '\n' ' ')" = "$inodes" ]
	"$B/ublk-del" "$one"
	"$B/ublk-del" "$two"
	# --flatten reads each frame once: it keeps none; nor does a device
	# given --no-frame-cache
	rm -rf "$UBLK_CHUNK_CACHE"
	"$B/ublk-export-diff" --flatten --e2b "$T/root" --build "$ROOT_ID" -o "$T/flat"
	cmp "$T/img" "$T/flat"
	dev=$("$B/ublk-add" --e2b "$T/root" --build "$ROOT_ID" --read-only --no-frame-cache)
	cmp "$T/img" "$dev"
	"$B/ublk-del" "$dev"
	[ ! -e "$UBLK_CHUNK_CACHE" ] || [ "$(chunks)" -eq 0 ]
	assert_none_left
}

@test "E2B: export refuses a build id that exists, and keeps the device" {
	make_image "$T/img" 8
	"$REF" template "$T/root" "$T/img" "$ROOT_ID"
	dev=$("$B/ublk-add" --e2b "$T/root" --build "$ROOT_ID" --cache "$T/cache" --name e1)
	dd if=/dev/urandom of="$dev" bs=4k count=4 oflag=direct status=none
	run_mustfail 2 "--build-id $ROOT_ID: already a build of the parent's chain" \
		"$B/ublk-export-diff" --format e2b --build-id "$ROOT_ID" --keep e1
	# nothing changed: the device still runs, the template is intact
	[ -b "$dev" ]
	cmp "$T/img" "$T/root/$ROOT_ID/rootfs.ext4"
	# the data of a build cut short, without its header: refused before the device stops
	local cut=b1b1b1b1-0000-4000-8000-00000000e2b1
	mkdir "$T/root/$cut"
	echo theirs >"$T/root/$cut/rootfs.ext4.zstd"
	run_mustfail 1 "$T/root/$cut/rootfs.ext4.zstd: is there without its header" \
		"$B/ublk-export-diff" --format e2b --build-id "$cut" e1
	[ -b "$dev" ]
	[ "$(cat "$T/root/$cut/rootfs.ext4.zstd")" = theirs ]
	# a --layer between the build and the cache: refused before the device stops
	"$B/ublk-export-diff" --live -o "$T/l.diff" e1
	dev2=$("$B/ublk-add" --e2b "$T/root" --build "$ROOT_ID" --layer "$T/l.diff" --cache "$T/cache2" --name e2)
	run_mustfail 5 "has a --layer between its E2B build and its cache" \
		"$B/ublk-export-diff" --format e2b --build-id b2b2b2b2-0000-4000-8000-00000000e2b2 e2
	[ -b "$dev2" ]
	[ ! -e "$T/root/b2b2b2b2-0000-4000-8000-00000000e2b2" ]
	"$B/ublk-del" e1 e2
}

@test "E2B on an HTTP root: a recorded access trace is replayed into the chunk cache" {
	mkdir -p "$T/www/root"
	nginx_run "$(cat <<CONF
	access_log $T/nginx/access.log;
	server { listen 127.0.0.1:18090; root $T/www; }
CONF
)"
	make_image "$T/img" 8
	"$REF" template "$T/www/root" "$T/img" "$ROOT_ID" --layout 4 --codec zstd --frame-size 262144
	e2b=(--e2b "http://127.0.0.1:18090/root" --build "$ROOT_ID" --read-only --chunk-size 64K --readahead 0)
	dev=$("$B/ublk-add" "${e2b[@]}" --record-access "$T/trace")
	for b in 100 1500 700; do
		cmp <(dd if="$dev" bs=4k skip=$b count=1 iflag=direct status=none) \
			<(dd if="$T/img" bs=4k skip=$b count=1 status=none)
	done
	"$B/ublk-del" "$dev"
	grep -q '^image 0 e2b [0-9a-f]\{64\} ' "$T/trace"
	[ "$(grep -c ' r$' "$T/trace")" -ge 3 ]
	# a cold start: the trace's chunks come before the reads ask
	rm -rf "$T/chunks"
	dev=$("$B/ublk-add" "${e2b[@]}" --prefetch-trace "$T/trace")
	n=$(stat_of "$dev" .remote.trace_chunks)
	wait_until 120 '[ "$(stat_of "$dev" .remote.trace_chunks_done)" -eq "$n" ]'
	before=$(grep -c ' 206 ' "$T/nginx/access.log")
	for b in 100 1500 700; do
		cmp <(dd if="$dev" bs=4k skip=$b count=1 iflag=direct status=none) \
			<(dd if="$T/img" bs=4k skip=$b count=1 status=none)
	done
	[ "$(grep -c ' 206 ' "$T/nginx/access.log")" -eq "$before" ]
	[ "$(stat_of "$dev" .remote.trace_hits)" -ge 3 ]
	"$B/ublk-del" "$dev"
}
