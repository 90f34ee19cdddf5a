#!/usr/bin/env bats
# The rootfs data path: copy-on-write cache over a read-only base,
# multi-queue, async IO, teardown that never hangs.

load lib

setup() { vm_setup; }
teardown() { vm_teardown; }

sum() { sha256sum <"$1" | cut -d' ' -f1; }

@test "fio crc32c verify randwrite, 2 queues, depth 64, over an overlay; base unchanged" {
	make_image "$T/base" 64
	base_sum=$(sum "$T/base")
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --queues 2 --depth 64)
	fio --name=verify --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite \
		--bs=4k --iodepth=64 --numjobs=2 --size=32M --offset_increment=32M \
		--verify=crc32c --verify_fatal=1 --group_reporting --output="$T/fio.out"
	grep -q "err= 0" "$T/fio.out"
	"$B/ublk-del" "$dev"
	[ "$(sum "$T/base")" = "$base_sum" ]
	# the cache holds the writes; the base was opened read-only
	[ -s "$T/cache.map" ]
}

@test "ext4 on an overlay survives del and re-add over the same cache" {
	truncate -s 128M "$T/base"
	# 4 KiB filesystem blocks: the device's logical block size is 4096
	mkfs.ext4 -q -F -b 4096 "$T/base"
	base_sum=$(sum "$T/base")
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	mkdir "$T/mnt"
	mount "$dev" "$T/mnt"
	for i in 1 2 3; do make_image "$T/mnt/f$i" 3; done
	(cd "$T/mnt" && sha256sum f* >"$T/sums")
	sync
	umount "$T/mnt"
	"$B/ublk-del" "$dev"
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	fsck.ext4 -fn "$dev"
	mount "$dev" "$T/mnt"
	(cd "$T/mnt" && sha256sum -c --quiet "$T/sums")
	umount "$T/mnt"
	"$B/ublk-del" "$dev"
	[ "$(sum "$T/base")" = "$base_sum" ]
}

@test "a kept cache is refused over its base written in place or replaced, and served over the same bytes copied with their time" {
	make_image "$T/base" 8
	cp -p "$T/base" "$T/base.v1"
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	head -c 4096 /dev/urandom >"$T/block"
	dd if="$T/block" of="$dev" bs=4k seek=3 oflag=direct conv=fsync status=none
	"$B/ublk-del" "$dev"
	cp "$T/cache.map" "$T/map.before"
	# written in place: its time moves on
	dd if=/dev/urandom of="$T/base" bs=4k seek=100 count=1 conv=notrunc status=none
	run "$B/ublk-add" --base "$T/base" --cache "$T/cache"
	echo "$output"
	[ "$status" -eq 5 ]
	[[ "$output" == *"$T/cache: cache was made over another version of its base (it recorded file=8388608 "* ]]
	[[ "$output" == *"remove the cache ($T/cache and $T/cache.map) to start a new one"* ]]
	assert_none_left
	cmp "$T/cache.map" "$T/map.before"
	# its first bytes back, but replaced under its name by a copy with a time of its own
	cp "$T/base.v1" "$T/base.new"
	mv "$T/base.new" "$T/base"
	run "$B/ublk-add" --base "$T/base" --cache "$T/cache" --read-only
	echo "$output"
	[ "$status" -eq 5 ]
	[[ "$output" == *"cache was made over another version of its base"* ]]
	assert_none_left
	# the same bytes with their time (cp -p): the cache is served, its write in place
	cp -p "$T/base.v1" "$T/base"
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	cp "$T/base.v1" "$T/want"
	dd if="$T/block" of="$T/want" bs=4k seek=3 conv=notrunc status=none
	cmp "$T/want" "$dev"
	"$B/ublk-del" "$dev"
}

@test "discard reads zero and gives the cache's space back" {
	make_image "$T/base" 32
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=1M count=16 oflag=direct status=none
	sync
	before=$(stat -c %b "$T/cache")
	[ "$before" -ge $((16 * 2048)) ]
	blkdiscard -o $((4 << 20)) -l $((8 << 20)) "$dev"
	cmp -n $((8 << 20)) /dev/zero <(dd if="$dev" bs=1M skip=4 count=8 iflag=direct status=none)
	after=$(stat -c %b "$T/cache")
	[ "$after" -le $((before - 8 * 2048)) ]
	# blocks outside the range keep their data, blocks past it the base's
	cmp <(dd if="$T/base" bs=1M skip=16 count=16 status=none) \
		<(dd if="$dev" bs=1M skip=16 count=16 iflag=direct status=none)
	# all-zero writes are stored as zero state, not data
	dd if=/dev/zero of="$dev" bs=1M count=2 oflag=direct status=none
	[ "$(stat -c %b "$T/cache")" -le $((after - 2 * 2048)) ]
	"$B/ublk-del" "$dev"
}

@test "a cache on a file system that cannot punch holes (ramfs) takes discards and writes of zeros" {
	make_image "$T/base" 32
	mkdir "$T/rfs"
	mount -t ramfs none "$T/rfs"
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/rfs/cache")
	dd if=/dev/urandom of="$dev" bs=1M count=16 oflag=direct status=none
	cp "$dev" "$T/want"
	blkdiscard -o $((4 << 20)) -l $((4 << 20)) "$dev"
	dd if=/dev/zero of="$dev" bs=1M seek=8 count=2 oflag=direct status=none
	blkdiscard -z -o $((10 << 20)) -l $((2 << 20)) "$dev"
	dd if=/dev/zero of="$T/want" bs=1M seek=4 count=8 conv=notrunc status=none
	cmp "$T/want" "$dev"
	"$B/ublk-del" "$dev"
	# what the device said it wrote is there after a restart too
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/rfs/cache")
	cmp "$T/want" "$dev"
	"$B/ublk-del" "$dev"
}

@test "a cache whose disk fails its sync: the flush fails, and the log says why and what follows" {
	make_image "$T/base" 32
	# ext4 over a loop device whose file, on a 16 MiB tmpfs, cannot grow
	# past it: the cache's data is taken into the page cache, and its
	# writeback fails
	mkdir "$T/small" "$T/mnt"
	mount -t tmpfs -o size=16M tmpfs "$T/small"
	truncate -s 128M "$T/small/disk.img"
	mkfs.ext4 -q -E lazy_itable_init=1,lazy_journal_init=1 "$T/small/disk.img"
	loop=$(losetup --find --show "$T/small/disk.img")
	mount "$loop" "$T/mnt"
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/mnt/cache")
	id=${dev#/dev/ublkb}
	dd if=/dev/urandom of="$dev" bs=1M count=32 oflag=direct status=none
	run dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct conv=fsync status=none
	echo "$output"
	[ "$status" -ne 0 ]
	grep "cache $T/mnt/cache: syncing its data file: " "$UBLK_STATE_DIR/ublkb$id/log"
	grep -q "every later flush fails: stop the device and check the disk" "$UBLK_STATE_DIR/ublkb$id/log"
	# and so it does, without a second message
	run dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct conv=fsync status=none
	[ "$status" -ne 0 ]
	[ "$(grep -c 'syncing its data file' "$UBLK_STATE_DIR/ublkb$id/log")" -eq 1 ]
	"$B/ublk-del" --force --timeout 30 "$dev"
	umount "$T/mnt"
	losetup -d "$loop"
	umount "$T/small"
	assert_none_left
}

@test "--size larger than the base reads zeros past it" {
	make_image "$T/base" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --size 16M)
	[ "$(blockdev --getsize64 "$dev")" -eq $((16 << 20)) ]
	cmp -n $((4 << 20)) "$T/base" "$dev"
	cmp -n $((12 << 20)) /dev/zero <(dd if="$dev" bs=1M skip=4 status=none)
	"$B/ublk-del" "$dev"
	run_mustfail 2 "without --cache the size can only grow a --read-only device" \
		"$B/ublk-add" --base "$T/base" --size 16M
	assert_none_left
}

@test "a cache in use by another device is refused, nothing left behind" {
	make_image "$T/base" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	run_mustfail 8 "cache is in use by another server" "$B/ublk-add" --base "$T/base" --cache "$T/cache"
	[ "$(ls /sys/class/ublk-char | wc -l)" -eq 1 ]
	"$B/ublk-del" "$dev"
	truncate -s 8M "$T/other"
	run_mustfail 5 "cache was made over a 4194304-byte base, this base has 8388608 bytes" \
		"$B/ublk-add" --base "$T/other" --cache "$T/cache"
	assert_none_left
}

@test "read-only overlay rejects writes" {
	make_image "$T/base" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=4k count=4 oflag=direct status=none
	"$B/ublk-del" "$dev"
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --read-only)
	run dd if=/dev/zero of="$dev" bs=4k count=1 oflag=direct status=none
	[ "$status" -ne 0 ]
	"$B/ublk-del" "$dev"
}

@test "8 devices at once, each with its own data" {
	make_image "$T/base" 8
	for i in 1 2 3 4 5 6 7 8; do
		devs[$i]=$("$B/ublk-add" --base "$T/base" --cache "$T/cache$i")
		make_image "$T/data$i" 1
		dd if="$T/data$i" of="${devs[$i]}" bs=1M seek=$((i - 1)) oflag=direct status=none
	done
	[ "$(ls /sys/class/ublk-char | wc -l)" -eq 8 ]
	for i in 1 2 3 4 5 6 7 8; do
		cmp "$T/data$i" <(dd if="${devs[$i]}" bs=1M skip=$((i - 1)) count=1 iflag=direct status=none)
		# the other blocks are the shared base's
		[ "$i" -eq 1 ] || cmp -n $((1 << 20)) "$T/base" "${devs[$i]}"
	done
	"$B/ublk-del" --all
	assert_none_left
}

@test "del while fio runs ends within its deadline; fio gets errors, not a hang" {
	make_image "$T/base" 32
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --queues 2)
	fio --name=busy --filename="$dev" --ioengine=io_uring --direct=1 --rw=randrw --bs=4k \
		--iodepth=32 --time_based --runtime=120 --output="$T/fio.out" &
	fio_pid=$!
	wait_until 60 '[ "$(dev_ios "$dev")" -ge 1000 ]'
	start=$(date +%s%N)
	run "$B/ublk-del" --force --timeout 5 "$dev"
	elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
	echo "del: status $status after $elapsed ms: $output"
	[ "$status" -eq 0 ]
	[ "$elapsed" -lt 8000 ]
	wait_until 30 '! kill -0 "$fio_pid" 2>/dev/null'
	run wait "$fio_pid"
	[ "$status" -ne 0 ]
	assert_none_left
}

# make soak runs 300 (UBLK_ADD_DEL_CYCLES); a leak shows after the first
@test "add/del cycles leave no device, process or state, nor an fd in the watch that sees them" {
	make_image "$T/base" 4
	# the long-lived process among the tools: a leak would add up there
	"$B/ublk-pool" watch --interval 0.1 2>"$T/watch.err" &
	watch=$!
	BG=$watch
	watch_fds() { ls "/proc/$watch/fd" | wc -l; }
	for i in 1 2 3; do
		dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
		"$B/ublk-del" "$dev"
	done
	# its count between passes: the least of ten looks over half a second
	fds_before=$(for i in $(seq 10); do watch_fds; sleep 0.05; done | sort -n | head -1)
	for i in $(seq "${UBLK_ADD_DEL_CYCLES:-30}"); do
		dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
		"$B/ublk-del" "$dev"
	done
	assert_none_left
	wait_until 30 '[ "$(watch_fds)" -le "$fds_before" ]'
	kill "$watch"
	wait_until 30 '! kill -0 "$watch" 2>/dev/null'
	run wait "$watch"
	[ "$status" -eq 0 ]
	# it said what it watches, and nothing else: the devices were not its
	run grep -v "watching the devices of" "$T/watch.err"
	[ "$status" -eq 1 ]
}

@test "a delayed read does not stall the other requests of its queue" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --queues 1 \
		--inject delay-read=15000@1M-1028K)
	start=$(date +%s%N)
	dd if="$dev" of="$T/slow" bs=4k skip=256 count=1 iflag=direct status=none &
	slow=$!
	# the slow read is in the queue before the others start
	wait_until 30 '[ "$(dev_reads_in_flight "$dev")" -ge 1 ]'
	# 100 other reads, one at a time, on the same (only) queue while the slow one is held
	dd if="$dev" of=/dev/null bs=4k skip=300 count=100 iflag=direct status=none
	fast_ms=$(( ($(date +%s%N) - start) / 1000000 ))
	# ... end before it: it is still held, by the server and in the kernel
	kill -0 "$slow"
	[ "$(dev_reads_in_flight "$dev")" -eq 1 ]
	wait "$slow"
	slow_ms=$(( ($(date +%s%N) - start) / 1000000 ))
	echo "fast reads done at $fast_ms ms, slow read at $slow_ms ms"
	[ "$slow_ms" -ge 15000 ]
	cmp "$T/slow" <(dd if="$T/base" bs=4k skip=256 count=1 status=none)
	"$B/ublk-del" "$dev"
}

@test "statistics in the state entry" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	dd if="$dev" of=/dev/null bs=4k count=100 iflag=direct status=none
	dd if=/dev/urandom of="$dev" bs=4k count=10 oflag=direct status=none
	sync
	s="$UBLK_STATE_DIR/ublkb$id/stats"
	# the server writes its statistics once a second
	wait_until 30 '[ "$(jq .latency_us.count "$s" 2>/dev/null)" -ge 110 ]'
	jq . "$s"
	[ "$(jq .reads "$s")" -ge 100 ]
	[ "$(jq .writes "$s")" -ge 10 ]
	[ "$(jq .bytes_written "$s")" -ge 40960 ]
	[ "$(jq .errors "$s")" -eq 0 ]
	[ "$(jq .latency_us.count "$s")" -ge 110 ]
	"$B/ublk-del" "$dev"
}

@test "latencies in the statistics: a held read counts its whole wait, the reads around it do not" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --inject delay-read=400@4M-4100K)
	udevadm settle --timeout 30 2>/dev/null || true
	dd if="$dev" of=/dev/null bs=4k count=200 iflag=direct status=none
	dd if="$dev" of=/dev/null bs=4k skip=1024 count=1 iflag=direct status=none
	s=$(stat_of "$dev" .latency_us)
	echo "$s"
	[ "$(jq .count <<<"$s")" -ge 201 ]
	[ "$(jq .max <<<"$s")" -ge 400000 ]
	[ "$(jq .max <<<"$s")" -lt 60000000 ]
	# the median request took under 262 ms (a log2 bucket's bound)
	[ "$(jq .p50_max <<<"$s")" -le 262144 ]
	[ "$(jq .avg <<<"$s")" -gt 0 ]
	"$B/ublk-del" "$dev"
}
