#!/usr/bin/env bats
# One device end to end, on the real ublk driver.

load lib

setup() { vm_setup; }
teardown() {
	vm_teardown
	# the --cgroup test's groups, left by a failure once their servers are gone
	rmdir /sys/fs/cgroup/ublk-test-caller /sys/fs/cgroup/ublk-test-servers 2>/dev/null || true
}

# An ext4 on a new device over a 64 MiB file, mounted on $T/mnt: sets dev and id.
ext4_mounted() {
	truncate -s 64M "$T/img"
	dev=$("$B/ublk-add" --base "$T/img")
	id=${dev#/dev/ublkb}
	mkfs.ext4 -q -F "$dev"
	mkdir "$T/mnt"
	mount "$dev" "$T/mnt"
}

@test "device serves the image: sha256 of the device equals the file" {
	make_image "$T/img" 64
	run "$B/ublk-add" --base "$T/img"
	[ "$status" -eq 0 ]
	dev=$output
	[[ "$dev" =~ ^/dev/ublkb[0-9]+$ ]]
	[ -b "$dev" ]
	[ "$(blockdev --getss "$dev")" -eq 4096 ]
	[ "$(blockdev --getsize64 "$dev")" -eq $((64 << 20)) ]
	[ "$(sha256sum <"$dev" | cut -d' ' -f1)" = "$(sha256sum <"$T/img" | cut -d' ' -f1)" ]
	id=${dev#/dev/ublkb}
	[ "$(cat "$UBLK_STATE_DIR/ublkb$id/state")" = live ]
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -0 "$pid"
	run "$B/ublk-del" "$dev"
	[ "$status" -eq 0 ]
	assert_gone "$id" "$pid"
}

# thread_flags PID: "TID COMM FLAGS" for each thread of PID (FLAGS: the
# 9th field of its stat, after the comm, which may hold spaces)
thread_flags() {
	local t
	for t in /proc/"$1"/task/*; do
		echo "${t##*/} $(cat "$t/comm") $(sed 's/.*) //' "$t/stat" | cut -d' ' -f7)"
	done
}

@test "a server and its every thread are marked as in the IO path (PR_SET_IO_FLUSHER); without CAP_SYS_RESOURCE it says so and serves" {
	make_image "$T/img" 16
	dev=$("$B/ublk-add" --base "$T/img" --cache "$T/cache" --queues 2)
	id=${dev#/dev/ublkb}
	dd if=/dev/urandom of="$dev" bs=64k count=16 oflag=direct status=none
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	thread_flags "$pid" >"$T/flags"
	cat "$T/flags" >&2
	# the main thread and two queue threads at least
	[ "$(wc -l <"$T/flags")" -ge 3 ]
	# PF_MEMALLOC_NOIO 0x80000 and PF_LOCAL_THROTTLE 0x100000 on each
	awk '{ if (int($NF / 524288) % 4 != 3) { print "not marked: " $0; bad = 1 } } END { exit bad }' "$T/flags" >&2
	run grep -q "PR_SET_IO_FLUSHER" "$UBLK_STATE_DIR/ublkb$id/log"
	[ "$status" -eq 1 ]
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"

	# a server without the capability still serves, and its log says what it lacks
	dev=$(capsh --drop=cap_sys_resource -- -c 'exec "$0" --base "$1" --read-only' "$B/ublk-add" "$T/img")
	id=${dev#/dev/ublkb}
	grep -q "ublkb$id: the server is not marked as in the device's IO path (PR_SET_IO_FLUSHER: Operation not permitted; it needs CAP_SYS_RESOURCE)" "$UBLK_STATE_DIR/ublkb$id/log"
	cmp "$dev" "$T/img"
	"$B/ublk-del" "$dev"
	assert_gone "$id"
}

@test "O_DIRECT writes at several offsets read back equal" {
	make_image "$T/img" 16
	dev=$("$B/ublk-add" --base "$T/img")
	make_image "$T/pattern" 1
	for off in 0 4096 65536 1052672 $(( (16 << 20) - 8192 )); do
		dd if="$T/pattern" of="$dev" bs=4096 count=2 seek=$((off / 4096)) oflag=direct conv=notrunc status=none
		cmp -n 8192 "$T/pattern" <(dd if="$dev" bs=4096 count=2 skip=$((off / 4096)) iflag=direct status=none)
	done
	# a large write spanning many requests
	dd if="$T/pattern" of="$dev" bs=1M count=1 seek=5 oflag=direct status=none
	cmp "$T/pattern" <(dd if="$dev" bs=1M count=1 skip=5 iflag=direct status=none)
	"$B/ublk-del" "$dev"
	# and they reached the file
	cmp -n 8192 "$T/pattern" <(dd if="$T/img" bs=4096 count=2 skip=1 status=none)
	cmp "$T/pattern" <(dd if="$T/img" bs=1M count=1 skip=5 status=none)
}

@test "a writable base on a file system that punches no holes (ramfs): no discard offered, a zero-out is written as zeros" {
	mkdir "$T/ram"
	mount -t ramfs ramfs "$T/ram"
	make_image "$T/ram/img" 16
	cp "$T/ram/img" "$T/orig"
	dev=$("$B/ublk-add" --base "$T/ram/img")
	[ "$(cat "/sys/block/${dev#/dev/}/queue/discard_max_bytes")" -eq 0 ]
	[ "$(cat "/sys/block/${dev#/dev/}/queue/write_zeroes_max_bytes")" -eq 0 ]
	run blkdiscard -o 4096 -l 65536 "$dev"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *"not supported"* ]]
	# the kernel zeroes with writes where the device has no write-zeroes
	blkdiscard -z -o $((1 << 20)) -l $((2 << 20)) "$dev"
	"$B/ublk-del" "$dev"
	head -c $((1 << 20)) "$T/orig" >"$T/want"
	head -c $((2 << 20)) /dev/zero >>"$T/want"
	tail -c +$(((3 << 20) + 1)) "$T/orig" >>"$T/want"
	cmp "$T/want" "$T/ram/img"
	# where holes can be punched, both are offered
	truncate -s 16M "$T/img"
	dev=$("$B/ublk-add" --base "$T/img")
	[ "$(cat "/sys/block/${dev#/dev/}/queue/discard_max_bytes")" -gt 0 ]
	[ "$(cat "/sys/block/${dev#/dev/}/queue/write_zeroes_max_bytes")" -gt 0 ]
	blkdiscard -o 4096 -l 65536 "$dev"
}

@test "ext4: mkfs, mount, write files, umount, fsck clean" {
	truncate -s 128M "$T/img"
	dev=$("$B/ublk-add" --base "$T/img" --queues 2)
	mkfs.ext4 -q -F "$dev"
	mkdir "$T/mnt"
	mount "$dev" "$T/mnt"
	for i in 1 2 3 4; do make_image "$T/mnt/file$i" 4; done
	(cd "$T/mnt" && sha256sum file* >"$T/sums")
	umount "$T/mnt"
	mount "$dev" "$T/mnt"
	(cd "$T/mnt" && sha256sum -c --quiet "$T/sums")
	umount "$T/mnt"
	fsck.ext4 -fn "$dev"
	"$B/ublk-del" "$dev"
	# the file itself holds the filesystem
	fsck.ext4 -fn "$T/img"
}

@test "two devices at once serve their own images" {
	make_image "$T/a" 8
	make_image "$T/b" 16
	a=$("$B/ublk-add" --base "$T/a")
	b=$("$B/ublk-add" --base "$T/b")
	[ "$a" != "$b" ]
	cmp "$a" "$T/a"
	cmp "$b" "$T/b"
	"$B/ublk-del" "$a" "$b"
	assert_gone "${a#/dev/ublkb}"
	assert_gone "${b#/dev/ublkb}"
	assert_none_left
}

@test "add --json describes the device" {
	make_image "$T/img" 4
	run "$B/ublk-add" --base "$T/img" --json --queues 2 --depth 64
	[ "$status" -eq 0 ]
	json=$output
	id=$(jq -r .id <<<"$json")
	[ "$(jq -r .path <<<"$json")" = "/dev/ublkb$id" ]
	[ "$(jq -r .base <<<"$json")" = "$T/img" ]
	[ "$(jq -r .queues <<<"$json")" = 2 ]
	[ "$(jq -r .depth <<<"$json")" = 64 ]
	[ "$(jq -c .layers <<<"$json")" = "[]" ]
	[ "$(jq -r .pid <<<"$json")" = "$(cat "$UBLK_STATE_DIR/ublkb$id/pid")" ]
	"$B/ublk-del" "$id"
	assert_gone "$id"
}

@test "read-only device rejects writes and leaves the image alone" {
	make_image "$T/img" 4
	sum=$(sha256sum <"$T/img")
	dev=$("$B/ublk-add" --base "$T/img" --read-only)
	[ "$(blockdev --getro "$dev")" = 1 ]
	run dd if=/dev/zero of="$dev" bs=4096 count=1 oflag=direct status=none
	[ "$status" -ne 0 ]
	cmp "$dev" "$T/img"
	"$B/ublk-del" "$dev"
	[ "$(sha256sum <"$T/img")" = "$sum" ]
}

@test "ublk-serve in the foreground: prints the device, stops on SIGTERM" {
	make_image "$T/img" 4
	"$B/ublk-serve" --base "$T/img" >"$T/out" 2>"$T/err" &
	pid=$!
	wait_until 30 '[ -s "$T/out" ]'
	dev=$(cat "$T/out")
	[[ "$dev" =~ ^/dev/ublkb[0-9]+$ ]]
	cmp "$dev" "$T/img"
	kill -TERM "$pid"
	wait "$pid"
	assert_gone "${dev#/dev/ublkb}" "$pid"
}

@test "unknown device" {
	run_mustfail 6 "ublkb4242: no such device" "$B/ublk-del" 4242
	run_mustfail 6 "no such device" "$B/ublk-del" /dev/ublkb4243
}

@test "not root" {
	make_image "$T/img" 4
	chmod 755 "$T"
	chmod 644 "$T/img"
	run_mustfail 4 "permission denied: ublk devices need root" as_nobody "$B/ublk-add" --base "$T/img"
	run_mustfail 4 "permission denied" as_nobody "$B/ublk-del" 0
	assert_none_left
}

@test "bad images fail before any device is made" {
	truncate -s 5000 "$T/odd"
	run_mustfail 5 "not a non-zero multiple of 4096" "$B/ublk-add" --base "$T/odd"
	run_mustfail 5 "No such file" "$B/ublk-add" --base "$T/missing"
	assert_none_left
}

@test "del of a device held open names the holder and fails at the deadline" {
	make_image "$T/img" 4
	dev=$("$B/ublk-add" --base "$T/img")
	exec 7<"$dev"
	start=$(date +%s%N)
	run_mustfail 8 "still in use after 1000 ms: pid $$ (" "$B/ublk-del" --timeout 1 "$dev"
	elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
	# its own deadline, not the default 10 s (with room for a loaded host)
	[ "$elapsed" -lt 9000 ]
	exec 7<&-
	# a holder's name is the sandbox's choice: no control byte reaches the message
	mkfifo "$T/fifo"
	(exec 7<"$dev"; printf '\033[2K\rOK' >"/proc/$BASHPID/comm"; echo >"$T/named"
	 read -r -t 60 _ <>"$T/fifo") &
	BG=$!
	wait_until 30 "[ -e $T/named ]"
	run_mustfail 8 "still in use after 1000 ms: pid $BG (?[2K?OK)" "$B/ublk-del" --timeout 1 "$dev"
	kill "$BG"
	wait "$BG" || true
	BG=
	# device untouched and still served
	cmp "$dev" "$T/img"
	"$B/ublk-del" "$dev"
	assert_gone "${dev#/dev/ublkb}"
}

@test "del of a device mounted in another mount namespace names the mount and fails at the deadline" {
	truncate -s 64M "$T/img"
	dev=$("$B/ublk-add" --base "$T/img")
	mkfs.ext4 -q -F "$dev"
	mkdir "$T/mnt" "$T/top"
	# mounted where this shell cannot see it, by a process with no fd of the
	# device: a bind mount of a folder five levels of 255 spaces deep, whose
	# line in the mount table is longer than 4 KiB (a space is "\040" there)
	deep=$(printf '/%255s' '' '' '' '' '')
	unshare -m --propagation private sh -c \
		'mount "$1" "$2" && mkdir -p "$2$5" && mount --bind "$2$5" "$3" && umount "$2" && echo >"$4" && exec sleep 120' \
		sh "$dev" "$T/top" "$T/mnt" "$T/mounted" "$deep" </dev/null >"$T/ns.log" 2>&1 3>&- &
	holder=$!
	BG=$holder
	wait_until 30 "[ -e '$T/mounted' ]" || { cat "$T/ns.log"; false; }
	run grep -q "^$dev " /proc/mounts
	[ "$status" -eq 1 ]
	run_mustfail 8 "still in use after 1000 ms: mounted on $T/mnt (mount namespace of pid $holder (sleep))" \
		"$B/ublk-del" --timeout 1 "$dev"
	# the file system was never cut off: it unmounts clean with its holder
	[ -e "/proc/$holder/ns/mnt" ]
	kill "$holder"
	wait "$holder" || true
	BG=
	"$B/ublk-del" "$dev"
	assert_gone "${dev#/dev/ublkb}"
	e2fsck -fn "$T/img"
}

@test "del of a device whose file system was unmounted lazily with a file still open waits for it" {
	ext4_mounted
	exec 8>"$T/mnt/file"
	umount -l "$T/mnt"
	run grep -q "^$dev " /proc/mounts
	[ "$status" -eq 1 ]
	run_mustfail 8 "still in use after 1000 ms: a file system on it still in use, mounted where no process sees it (/sys/fs/ext4/ublkb$id: " \
		"$B/ublk-del" --timeout 1 "$dev"
	echo written >&8
	exec 8>&-
	"$B/ublk-del" "$dev"
	assert_gone "$id"
	e2fsck -fn "$T/img"
	[ "$(debugfs -R 'cat /file' "$T/img" 2>/dev/null)" = written ]
}

@test "del --force of a mounted device: where the kernel keeps it until the umount, the message says so" {
	ext4_mounted
	run "$B/ublk-del" --force --timeout 1 "$dev"
	echo "$output"
	if [ "$(kernel_num)" -ge 609 ]; then
		# DEL_DEV_ASYNC (6.9 and later): deleted now, freed with the mount
		[ "$status" -eq 0 ]
		[ ! -e "/sys/class/ublk-char/ublkc$id" ]
		[ ! -e "$UBLK_STATE_DIR/ublkb$id" ]
	else
		# DEL_DEV waits for the disk's last holder, past the deadline (its
		# server's too: ublk-del says it killed it)
		[ "$status" -eq 8 ]
		[[ "$output" == *"ublk-del: ublkb$id: stopped, but the kernel deletes it only once its last holder lets go: mounted on $T/mnt; unmount"* ]]
	fi
	umount "$T/mnt"
	wait_until 30 "[ ! -e /sys/class/ublk-char/ublkc$id ] && [ ! -e /sys/block/ublkb$id ]"
	"$B/ublk-pool" reclaim
	assert_gone "$id"
}

@test "del: another device's mount or open node is not a holder; the device's own, under any name, is" {
	truncate -s 64M "$T/a"
	truncate -s 64M "$T/b"
	# b has an MBR with one Linux partition: 4096-byte sectors 256 to 4351
	printf '\x83' | dd of="$T/b" bs=1 seek=450 conv=notrunc status=none
	printf '\x00\x01\x00\x00\x00\x10\x00\x00' | dd of="$T/b" bs=1 seek=454 conv=notrunc status=none
	printf '\x55\xaa' | dd of="$T/b" bs=1 seek=510 conv=notrunc status=none
	a=$("$B/ublk-add" --base "$T/a")
	b=$("$B/ublk-add" --base "$T/b")
	wait_until 30 "[ -b '${b}p1' ]"
	mkfs.ext4 -q -F "${b}p1"
	mkdir "$T/mnt"
	mount "${b}p1" "$T/mnt"
	# block devices share a major (259) and number their minors in turn
	[ "$(stat -c %t "$a")" = "$(stat -c %t "$b")" ]
	"$B/ublk-del" --timeout 5 "$a"
	assert_gone "${a#/dev/ublkb}"
	# a node of another name (a container's /dev), held open
	mknod "$T/node" b "$((0x$(stat -c %t "$b")))" "$((0x$(stat -c %T "$b")))"
	exec 7<"$T/node"
	run_mustfail 8 "still in use after 1000 ms: mounted on $T/mnt, " "$B/ublk-del" --timeout 1 "$b"
	[[ "$output" == *"pid $$ ("* ]]
	exec 7<&-
	umount "$T/mnt"
	"$B/ublk-del" "$b"
	assert_gone "${b#/dev/ublkb}"
}

@test "ublk-add killed before its device is live: the server deletes the device nobody knows of" {
	make_image "$T/img" 4
	# the kernel's first read (the partition scan) takes 2 s: start-up is slow
	"$B/ublk-add" --base "$T/img" --inject delay-read=2000@0-4K --timeout 30 >"$T/out" 2>&1 &
	adder=$!
	wait_until 30 '[ -n "$(ls "$UBLK_STATE_DIR" 2>/dev/null | grep ublkb)" ]'
	id=$(ls "$UBLK_STATE_DIR" | grep ublkb | head -1)
	id=${id#ublkb}
	wait_until 30 "[ -s '$UBLK_STATE_DIR/ublkb$id/pid' ]"
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -9 "$adder"
	wait "$adder" || true
	[ ! -s "$T/out" ]
	wait_until 30 "! kill -0 $pid 2>/dev/null"
	assert_gone "$id" "$pid"
}

@test "a device ublk-add cannot tell of (its output fails) is deleted again: exit 1" {
	make_image "$T/img" 4
	for json in "" --json; do
		run_mustfail 1 "writing it to standard output: No space left on device; deleted it again" \
			bash -c '"$1" --base "$2" $3 >/dev/full' _ "$B/ublk-add" "$T/img" "$json"
		assert_none_left
	done
}

@test "a server killed at ublk-add's deadline before it told its device's id: ublk-add finds the device by its cookie and deletes it" {
	make_image "$T/img" 4
	# the server's open of /dev/ublkc9, after ADD_DEV and before its id
	# line, stopped: ublk-add's deadline (twice --timeout) kills it there
	run_mustfail 7 "server not live after" strace -f -qq -o /dev/null -P /dev/ublkc9 \
		-e trace=openat -e inject=openat:signal=SIGSTOP \
		"$B/ublk-add" --base "$T/img" --id 9 --timeout 1
	assert_gone 9
	[ -z "$(pgrep -x ublk-serve)" ]
}

@test "a server stopped while its backend holds a read serves it first; no add of the host waits meanwhile" {
	make_image "$T/img" 8
	make_image "$T/img2" 4
	dev=$("$B/ublk-add" --base "$T/img" --inject delay-read=20000@1M-1028K --timeout 2)
	id=${dev#/dev/ublkb}
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	(set +e; dd if="$dev" of="$T/read" bs=4k skip=256 count=1 iflag=direct status=none
	 echo $? >"$T/read.rc") &
	BG=$!
	wait_until 30 '[ "$(dev_reads_in_flight "$dev")" -ge 1 ]'
	kill -TERM "$pid"
	# the stop outlasts --timeout: it waits for the read, the queues serving it
	wait_until 30 "grep -q 'ublkb$id: the stop waits for requests the backend holds' $UBLK_STATE_DIR/ublkb$id/log"
	# meanwhile no DEL_DEV holds the control device: another device comes and goes
	dev2=$("$B/ublk-add" --base "$T/img2" --timeout 10)
	cmp "$T/img2" "$dev2"
	"$B/ublk-del" "$dev2"
	# the read is served whole once the backend lets it go (6.1 failed it,
	# 6.12 left it and the server's exit waiting for ever); then the device goes
	wait_until 90 '[ -e "$T/read.rc" ]'
	[ "$(cat "$T/read.rc")" = 0 ]
	cmp "$T/read" <(dd if="$T/img" bs=4k skip=256 count=1 status=none)
	wait_until 60 "! kill -0 $pid 2>/dev/null"
	assert_gone "$id"
	BG=
}

@test "del of a device whose server was killed, and whose server's pid another process took since: that one is left alone" {
	make_image "$T/img" 4
	dev=$("$B/ublk-add" --base "$T/img")
	id=${dev#/dev/ublkb}
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -9 "$pid"
	run "$B/ublk-del" --timeout 5 "$dev"
	[ "$status" -eq 0 ]
	assert_gone "$id" "$pid"

	dev=$("$B/ublk-add" --base "$T/img")
	id=${dev#/dev/ublkb}
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -9 "$pid"
	wait_until 30 "[ ! -e /proc/$pid ]"
	# another process takes the server's pid, as on a busy host
	"$B/tests/pid-taker" "$pid" sleep 120 </dev/null >/dev/null 2>&1 3>&-
	run "$B/ublk-del" --timeout 3 "$dev"
	[ "$status" -eq 0 ]
	assert_gone "$id"
	kill -0 "$pid"
	kill "$pid"
}

@test "del --all: a device over another ublk device goes first, and lets go of it" {
	make_image "$T/img" 4
	lower=$("$B/ublk-add" --base "$T/img" --read-only)
	upper=$("$B/ublk-add" --base "$lower" --cache "$T/cache")
	dd if=/dev/urandom of="$upper" bs=64k count=4 oflag=direct status=none
	cmp "$T/img" "$lower"
	run "$B/ublk-del" --all --timeout 5
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	assert_none_left
}

@test "del --all: a device over another with a lower id is tried again once that one is gone; a held one fails once" {
	make_image "$T/img" 4
	spare=$("$B/ublk-add" --base "$T/img" --read-only)
	lower=$("$B/ublk-add" --base "$T/img" --read-only)
	"$B/ublk-del" "$spare"
	# the first free id: below the device it is built over
	upper=$("$B/ublk-add" --base "$lower" --cache "$T/cache")
	[ "${upper#/dev/ublkb}" -lt "${lower#/dev/ublkb}" ]
	run "$B/ublk-del" --all --timeout 2
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	assert_none_left
	# held open by this shell: deleted by no pass, said once, exit 8
	held=$("$B/ublk-add" --base "$T/img" --read-only)
	free=$("$B/ublk-add" --base "$T/img" --read-only)
	exec 7<"$held"
	run "$B/ublk-del" --all --timeout 1
	exec 7<&-
	echo "$output"
	[ "$status" -eq 8 ]
	[ "${#lines[@]}" -eq 1 ]
	[[ "$output" == "ublk-del: ublkb${held#/dev/ublkb}: still in use after 1000 ms: pid $$ ("* ]]
	assert_gone "${free#/dev/ublkb}"
	"$B/ublk-del" "$held"
	assert_none_left
}

@test "--cgroup: the server leaves its caller's control group, whose kill no longer takes the device; a recovery keeps it" {
	make_image "$T/img" 4
	cg=/sys/fs/cgroup
	mountpoint -q "$cg" || mount -t cgroup2 none "$cg"
	mkdir "$cg/ublk-test-caller" "$cg/ublk-test-servers"
	# the caller in a group of its own, as a service is
	sh -c 'echo $$ >"$1/cgroup.procs" && exec "$2" --base "$3" --cgroup "$4"' \
		sh "$cg/ublk-test-caller" "$B/ublk-add" "$T/img" "$cg/ublk-test-servers" >"$T/dev"
	dev=$(cat "$T/dev")
	id=${dev#/dev/ublkb}
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	grep -qx "0::/ublk-test-servers" "/proc/$pid/cgroup"
	# the caller's service stops: everything in its group is killed
	echo 1 >"$cg/ublk-test-caller/cgroup.kill"
	wait_until 30 "grep -qx 'populated 0' '$cg/ublk-test-caller/cgroup.events'"
	kill -0 "$pid"
	cmp "$dev" "$T/img"
	kill -9 "$pid"
	"$B/ublk-pool" reclaim --recover
	wait_until 60 "served_by_other $id $pid"
	grep -qx "0::/ublk-test-servers" "/proc/$(cat "$UBLK_STATE_DIR/ublkb$id/pid")/cgroup"
	cmp "$dev" "$T/img"
	"$B/ublk-del" "$dev"
	assert_gone "$id"
	rmdir "$cg/ublk-test-caller" "$cg/ublk-test-servers"
	run_mustfail 1 "--cgroup $T: not a folder of the cgroup v2 file system" \
		"$B/ublk-add" --base "$T/img" --cgroup "$T"
	run_mustfail 1 "--cgroup $cg/none: No such file or directory: create it" \
		"$B/ublk-add" --base "$T/img" --cgroup "$cg/none"
	assert_none_left
}

@test "two adds of one name at once: the one that publishes it later fails (exit 8), the other keeps it" {
	make_image "$T/img" 4
	# A checks the name, then waits for its remote base's probe, which
	# is answered once $T/gate exists; B adds the same name meanwhile
	export UBLK_HOSTILE_GATE=$T/gate UBLK_CHUNK_CACHE=$T/chunks
	hostile_start 28280 "$T"
	BG=$server
	"$B/ublk-add" --base "http://127.0.0.1:28280/gate/img" --read-only --name twin --timeout 60 \
		>"$T/a.out" 2>"$T/a.err" 3>&- &
	a=$!
	BG="$server $a"
	wait_until 60 'grep -q "^28280 /gate/img auth=no range=bytes=0-0" "$T/server.log"'
	b=$("$B/ublk-add" --base "$T/img" --read-only --name twin)
	touch "$T/gate"
	code=0
	wait "$a" || code=$?
	BG=$server
	cat "$T/a.out" "$T/a.err"
	[ "$code" -eq 8 ]
	grep -q "name 'twin' is already used by $b" "$T/a.err"
	[ ! -s "$T/a.out" ]
	# B's device alone: A's went with its server
	[ "$(ls /sys/class/ublk-char)" = "ublkc${b#/dev/ublkb}" ]
	cmp "$b" "$T/img"
	"$B/ublk-del" twin
	assert_none_left
}

@test "--name: shown in JSON, unique, and ublk-del NAME deletes it" {
	make_image "$T/img" 4
	json=$("$B/ublk-add" --base "$T/img" --name sandbox-1 --json)
	[ "$(jq -r .name <<<"$json")" = sandbox-1 ]
	id=$(jq -r .id <<<"$json")
	run_mustfail 8 "name 'sandbox-1' is already used by /dev/ublkb$id" \
		"$B/ublk-add" --base "$T/img" --read-only --name sandbox-1
	[ "$(ls /sys/class/ublk-char | wc -l)" -eq 1 ]
	"$B/ublk-del" sandbox-1
	assert_gone "$id"
	run_mustfail 6 "'sandbox-1' is neither a ublk device" "$B/ublk-del" sandbox-1
	# one device given twice, by its name and its number: deleted once, exit 0
	dev=$("$B/ublk-add" --base "$T/img" --name sandbox-2)
	run "$B/ublk-del" sandbox-2 "$dev" "${dev#/dev/ublkb}"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	assert_gone "${dev#/dev/ublkb}"
}
