#!/usr/bin/env bats
# Crash recovery (docs/recovery.md): a killed server is replaced while IO
# waits, and no acknowledged write is lost.

load lib

# kills per stress test: enough for check to see kills land at many
# moments; make soak raises it to 250
KILLS=${UBLK_RECOVERY_KILLS:-10}

setup() { vm_setup; }
teardown() {
	[ -z "${WATCH:-}" ] || { kill "$WATCH" 2>/dev/null; wait "$WATCH" 2>/dev/null || true; }
	# a test that failed while holding /dev/ublkcN (fd 7): the kernel's
	# delete would wait for it for ever
	exec 7>&-
	vm_teardown     # kills $BG, a test's own background processes
}

server_pid() { cat "$UBLK_STATE_DIR/ublkb$1/pid"; }
# Whether device $1's server holds writes for a live export (its stats say until when).
held_writes() { [ "$(jq .held_until_ms "$UBLK_STATE_DIR/ublkb$1/stats" 2>/dev/null)" -gt 0 ] 2>/dev/null; }
kernel_state() { "$B/ublk-pool" list --json | jq -r ".devices[] | select(.id == $1) | .kernel_state"; }

# reclaim --recover --hang-timeout $3 leaves device $1's server (pid $2)
# alone, and its data (over $T/base) as it was.
reclaim_kills_nothing() {
	run "$B/ublk-pool" reclaim --recover --hang-timeout "$3"
	echo "$output"
	[ "$status" -eq 0 ] || return 1
	[ "$(server_pid "${1#/dev/ublkb}")" = "$2" ] || return 1
	kill -0 "$2" || return 1
	cmp "$1" "$T/base"
}

wait_recovered() {
	wait_until 60 "served_by_other $1 $2"
}

# Kill the server of device $1 $2 times at random moments, each time
# waiting for a recovery (by $3: "reclaim" runs one, "watch" waits for it).
kill_and_recover() {
	local id=$1 times=$2 how=$3 k pid want
	for k in $(seq "$times"); do
		# the kill lands at a random moment of the IO: after 1 to 200 more requests
		want=$(( $(dev_ios "/dev/ublkb$id") + RANDOM % 200 + 1 ))
		wait_until 60 "[ \$(dev_ios /dev/ublkb$id) -ge $want ]"
		pid=$(server_pid "$id")
		kill -9 "$pid"
		if [ "$how" = reclaim ]; then
			"$B/ublk-pool" reclaim --recover >>"$T/reclaim.log"
		else   # the watcher reports each recovery once the device is live
			wait_until 60 '[ "$(grep -c "^recovered ublkb$id" "$T/watch.log")" -ge "$k" ]'
		fi
		wait_recovered "$id" "$pid"
		echo "kill $k of $times at $(date +%T.%N | cut -c1-12): server $pid -> $(server_pid "$id")"
	done
}

# Run fio ($@) over and over while the servers get killed, until
# $T/kills-done exists; every run must end without a verify error.
fio_until_done() {
	local n=0
	set +e
	while [ ! -e "$T/kills-done" ]; do
		n=$((n + 1))
		if ! fio "$@" --output="$T/fio.$n.out" || ! grep -q "err= 0" "$T/fio.$n.out"; then
			cat "$T/fio.$n.out" >&2
			echo "fio run $n failed" >"$T/fio.failed"
			return 1
		fi
	done
	echo "$n fio runs" >"$T/fio.runs"
}

@test "a killed server is recovered: IO waits meanwhile and no acknowledged write is lost" {
	make_image "$T/base" 64
	make_image "$T/data" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	# acknowledged, never flushed
	dd if="$T/data" of="$dev" bs=1M oflag=direct status=none
	pid=$(server_pid "$id")
	kill -9 "$pid"
	# a read issued now waits instead of failing
	(set +e; dd if="$dev" bs=1M count=8 iflag=direct status=none | sha256sum >"$T/read.sum") &
	reader=$!
	wait_until 30 '[ "$(kernel_state "$id")" = quiesced ]'
	j=$("$B/ublk-pool" list --json)
	jq -e ".devices[] | select(.id == $id) | .recoverable and (.problem | startswith(\"server is dead\"))" <<<"$j"
	# the read is still waiting for a server (requeued: no longer counted in flight)
	kill -0 "$reader"
	# a second device over the cache would fork the data the waiting one has
	run_mustfail 8 "$T/cache: the cache of /dev/ublkb$id, whose server died: recover that device" \
		"$B/ublk-add" --base "$T/base" --cache "$T/cache"
	run "$B/ublk-pool" reclaim --recover
	[ "$status" -eq 0 ]
	[[ "$output" == "recovered ublkb$id (server is dead; recoverable, IO waits): new server pid "* ]]
	wait "$reader"
	[ "$(cut -d' ' -f1 "$T/read.sum")" = "$(sha256sum <"$T/data" | cut -d' ' -f1)" ]
	[ "$(kernel_state "$id")" = live ]
	[ "$(cat "$UBLK_STATE_DIR/ublkb$id/state")" = live ]
	grep -q "recovered, live again" "$UBLK_STATE_DIR/ublkb$id/log"
	grep -q "live block map .* is used" "$UBLK_STATE_DIR/ublkb$id/log"
	# nothing left to do; the new server stops cleanly and drops the live map
	run "$B/ublk-pool" reclaim --recover
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	newpid=$(server_pid "$id")
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$newpid"
	[ ! -e "$T/cache.live" ]
	# the map file alone now has everything
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --read-only)
	[ "$(dd if="$dev" bs=1M count=8 iflag=direct status=none | sha256sum)" = "$(sha256sum <"$T/data")" ]
}

@test "a recovery over a local base replaced under its name is refused; with its time kept it recovers" {
	make_image "$T/base" 8
	cp -p "$T/base" "$T/base.v1"
	dev=$("$B/ublk-add" --base "$T/base" --read-only)
	id=${dev#/dev/ublkb}
	grep -qxE "file=8388608 [0-9]+\.[0-9]{9}" "$UBLK_STATE_DIR/ublkb$id/image"
	kill -9 "$(server_pid "$id")"
	wait_until 30 '[ "$(kernel_state "$id")" = quiesced ]'
	# a new version renamed over it, as a template update would
	make_image "$T/base.new" 8
	mv "$T/base.new" "$T/base"
	run timeout 120 "$B/ublk-serve" --recover "$id" --timeout 10
	echo "$output"
	[ "$status" -eq 5 ]
	[[ "$output" == *"ublkb$id: the image is not the one the device was made over (a remote image changed on its server (another ETag, Last-Modified or size), or a local one was written or replaced (another modification time))"* ]]
	[ "$(kernel_state "$id")" = quiesced ]
	cp -p "$T/base.v1" "$T/base"
	run "$B/ublk-pool" reclaim --recover
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == "recovered ublkb$id "* ]]
	[ "$(kernel_state "$id")" = live ]
	cmp "$T/base.v1" "$dev"
	"$B/ublk-del" "$dev"
	assert_none_left
}

# recover_with_fds ID LIMIT: ublk-serve --recover ID under an fd limit of
# LIMIT; 0 once it serves the device (it is left running, its pid in
# $T/srv.pid), 1 once it failed (its messages in $T/srv.err)
recover_with_fds() {
	prlimit --nofile="$2:$2" -- "$B/ublk-serve" --recover "$1" --timeout 10 \
		</dev/null >"$T/srv.out" 2>"$T/srv.err" &
	echo $! >"$T/srv.pid"
	wait_until 60 "! kill -0 $! 2>/dev/null || grep -qx /dev/ublkb$1 '$T/srv.out'"
	grep -qx "/dev/ublkb$1" "$T/srv.out"
}

@test "a name whose device waits for recovery is taken: a new device of that name is refused until it is recovered or deleted" {
	make_image "$T/base" 4
	add_with_dead_server cache --name sb-1
	wait_until 30 '[ "$(kernel_state "$id")" = quiesced ]'
	run_mustfail 8 "name 'sb-1' is the name of /dev/ublkb$id, whose server died: recover that device" \
		"$B/ublk-add" --base "$T/base" --read-only --name sb-1
	[ "$(ls /sys/class/ublk-char | wc -l)" -eq 1 ]
	"$B/ublk-pool" reclaim --recover
	[ "$(kernel_state "$id")" = live ]
	"$B/ublk-del" sb-1
	assert_gone "$id"
	# deleted: the name is free again
	dev=$("$B/ublk-add" --base "$T/base" --read-only --name sb-1)
	"$B/ublk-del" sb-1
	assert_none_left
}

@test "a recovery that fails for want of resources fails before the kernel starts it: the next one recovers the device" {
	make_image "$T/base" 16
	make_image "$T/data" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --queues 2)
	id=${dev#/dev/ublkb}
	dd if="$T/data" of="$dev" bs=1M oflag=direct status=none
	kill -9 "$(server_pid "$id")"
	wait_until 30 '[ "$(kernel_state "$id")" = quiesced ]'
	# more fds each time, until one is enough: every attempt that fails
	# must leave the device to the next (after the kernel's start of a
	# recovery it takes no other until every queue fetched)
	failed=0
	for limit in $(seq 8 64); do
		if recover_with_fds "$id" "$limit"; then break; fi
		# it ended (a hang would have failed the wait above)
		run kill -0 "$(cat "$T/srv.pid")"
		[ "$status" -ne 0 ]
		failed=$((failed + 1))
		echo "fds $limit: $(tail -1 "$T/srv.err")" | tee -a "$T/attempts.log"
		# (the step is said only with -v: the line after it is said always)
		run grep -cE "START_USER_RECOVERY|recovering: new server pid" "$T/srv.err"
		[ "$output" = 0 ]
		# nor does the entry say a recovery is under way
		[ "$(cat "$UBLK_STATE_DIR/ublkb$id/state")" != recovering ]
	done
	echo "recovered with $limit fds after $failed failed attempts"
	[ "$failed" -ge 3 ]
	grep -q "preparing queues: Too many open files" "$T/attempts.log"
	[ "$(kernel_state "$id")" = live ]
	cmp <(head -c 4M "$dev") "$T/data"
	pid=$(cat "$T/srv.pid")
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"
}

@test "ublk-del while a recovery waits for the kernel: the recovery ends at once, saying so; the next device of the id is left alone" {
	make_image "$T/base" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	pid=$(server_pid "$id")
	kill -9 "$pid"
	# /dev/ublkcN held by another process once the dead server let go: the
	# kernel refuses a recovery's start (busy) for as long as it is open
	wait_until 30 "{ exec 7<>/dev/ublkc$id; } 2>/dev/null"
	"$B/ublk-serve" --recover "$id" --timeout 60 </dev/null >"$T/srv.out" 2>"$T/srv.err" 7>&- &
	srv=$!
	BG=$srv
	wait_until 30 '[ "$(cat "$UBLK_STATE_DIR/ublkb$id/state")" = recovering ]'
	"$B/ublk-del" --timeout 30 "$id" 7>&- &
	del=$!
	# stopped (its disk gone), deleted once the node is let go
	wait_until 30 "[ ! -e /sys/block/ublkb$id ]"
	exec 7>&-
	wait "$del"
	# a new device may take the id at once: the waiting recovery must not take it
	dev2=$("$B/ublk-add" --base "$T/base" --read-only)
	code=0
	wait "$srv" || code=$?
	cat "$T/srv.err"
	[ "$code" -eq 6 ]
	grep -q "ublkb$id: deleted (ublk-del, ublk-pool) while this server waited to recover it; nothing is served" "$T/srv.err"
	cmp "$dev2" "$T/base"
	"$B/ublk-del" "$dev2"
	assert_none_left
}

@test "a recovery the kernel does not let start in time exits 7 and leaves the entry's state as it found it; the next recovers the device" {
	make_image "$T/base" 8
	make_image "$T/data" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	dd if="$T/data" of="$dev" bs=1M oflag=direct status=none
	kill -9 "$(server_pid "$id")"
	# the kernel refuses a recovery's start while /dev/ublkcN is open
	wait_until 30 "{ exec 7<>/dev/ublkc$id; } 2>/dev/null"
	[ "$(cat "$UBLK_STATE_DIR/ublkb$id/state")" = live ]
	run timeout 60 "$B/ublk-serve" --recover "$id" --timeout 2 7>&-
	echo "$output"
	[ "$status" -eq 7 ]
	[[ "$output" == *"ublkb$id: the kernel did not release the device for recovery within 2000 ms"* ]]
	[ "$(cat "$UBLK_STATE_DIR/ublkb$id/state")" = live ]
	run "$B/ublk-pool" list --json
	[ "$(jq -r ".devices[] | select(.id == $id) | .state" <<<"$output")" = live ]
	exec 7>&-
	recover_with_fds "$id" 1024
	[ "$(cat "$UBLK_STATE_DIR/ublkb$id/state")" = live ]
	cmp <(head -c 4M "$dev") "$T/data"
	pid=$(cat "$T/srv.pid")
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"
}

@test "servers killed together are recovered together by one reclaim --recover" {
	make_image "$T/base" 16
	for i in 1 2 3 4; do
		devs[$i]=$("$B/ublk-add" --base "$T/base" --cache "$T/c$i")
		make_image "$T/d$i" 2
		dd if="$T/d$i" of="${devs[$i]}" bs=1M oflag=direct status=none
	done
	for i in 1 2 3 4; do kill -9 "$(server_pid "${devs[$i]#/dev/ublkb}")"; done
	run "$B/ublk-pool" reclaim --recover --json
	[ "$status" -eq 0 ]
	[ "$(jq '[.actions[] | select(.action == "recover" and .ok)] | length' <<<"$output")" -eq 4 ]
	for i in 1 2 3 4; do
		[ "$(dd if="${devs[$i]}" bs=1M count=2 iflag=direct status=none | sha256sum)" = \
			"$(sha256sum <"$T/d$i")" ]
	done
	run "$B/ublk-pool" list --json
	[ "$(jq '[.devices[] | select(.server_alive and .kernel_state == "live")] | length' <<<"$output")" -eq 4 ]
}

@test "fio crc32c verify on the raw device through repeated kill -9 and recoveries" {
	make_image "$T/base" 64
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --queues 2)
	id=${dev#/dev/ublkb}
	cd "$T"
	fio_until_done --name=v --filename="$dev" --ioengine=libaio --direct=1 --rw=randwrite \
		--bs=4k --iodepth=16 --size=32M --rate_iops=1500 --verify=crc32c --verify_fatal=1 \
		--verify_backlog=1024 --verify_state_save=0 &
	fio=$!
	kill_and_recover "$id" "$KILLS" reclaim
	touch "$T/kills-done"
	wait "$fio"
	cat "$T/fio.runs"
	[ ! -e "$T/fio.failed" ]
	[ "$(grep -c '^recovered ublkb' "$T/reclaim.log")" -eq "$KILLS" ]
	grep -c "recovered, live again" "$UBLK_STATE_DIR/ublkb$id/log" | grep -qx "$KILLS"
}

@test "fio crc32c verify on ext4 through repeated kills recovered by ublk-pool watch; fsck clean" {
	truncate -s 256M "$T/base"
	mkfs.ext4 -q -F -b 4096 "$T/base"
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	mkdir "$T/mnt"
	mount "$dev" "$T/mnt"
	"$B/ublk-pool" watch --interval 0.1 >"$T/watch.log" 2>&1 &
	WATCH=$!
	cd "$T"
	fio_until_done --name=v --directory="$T/mnt" --ioengine=libaio --direct=1 --rw=randwrite \
		--bs=4k --iodepth=16 --size=24M --nrfiles=4 --fsync=256 --rate_iops=1500 \
		--verify=crc32c --verify_fatal=1 --verify_backlog=1024 --verify_state_save=0 &
	fio=$!
	kill_and_recover "$id" "$KILLS" watch
	touch "$T/kills-done"
	wait "$fio"
	cat "$T/fio.runs"
	[ ! -e "$T/fio.failed" ]
	cat "$T/watch.log"
	[ "$(grep -c "^recovered ublkb$id" "$T/watch.log")" -eq "$KILLS" ]
	# it said once what it watches, and nothing else: no failed attempt
	[ "$(head -n 1 "$T/watch.log")" = "ublk-pool: watching the devices of $UBLK_STATE_DIR every 0.10 s: a dead server is recovered, a server hung for 120 s is killed and recovered; what cannot be recovered is deleted" ]
	[ "$(wc -l <"$T/watch.log")" -eq "$((KILLS + 1))" ]
	umount "$T/mnt"
	fsck.ext4 -fn "$dev"
}

@test "a server is not replaced while it runs; --no-recovery devices fail IO and are deleted" {
	make_image "$T/img" 8
	dev=$("$B/ublk-add" --base "$T/img" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	run_mustfail 8 "ublkb$id: a server is running (pid $(server_pid "$id")): nothing to recover" \
		"$B/ublk-serve" --recover "$id"
	dd if="$dev" of=/dev/null bs=1M count=1 iflag=direct status=none

	dev2=$("$B/ublk-add" --base "$T/img" --read-only --no-recovery)
	id2=${dev2#/dev/ublkb}
	pid=$(server_pid "$id2")
	kill -9 "$pid"
	# IO fails instead of waiting
	run timeout 20 dd if="$dev2" of=/dev/null bs=4k count=1 iflag=direct
	[ "$status" -ne 0 ]
	[ "$status" -ne 124 ]
	run "$B/ublk-pool" reclaim --recover
	[ "$status" -eq 0 ]
	[[ "$output" == "deleted ublkb$id2 (server is dead)" ]]
	assert_gone "$id2" "$pid"
	run_mustfail 6 "ublkb$id2: no such device" "$B/ublk-serve" --recover "$id2"
}

@test "kill during ublk-export-diff --live, then retry" {
	make_image "$T/base" 64
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	dd if=/dev/urandom of="$dev" bs=1M count=8 oflag=direct status=none
	# An export to this pipe stays under way, holding writes, until
	# $T/go exists: its reader opens the pipe, then reads only after that.
	mkfifo "$T/pipe"
	read_on_go() { (exec <"$T/pipe"; wait_until 60 '[ -e "$T/go" ]'; cat >"$1"); }

	# the exporting tool dies: writes resume, and what it wrote is no diff
	read_on_go "$T/part1" &
	reader=$!
	"$B/ublk-export-diff" --live --timeout 60 "$dev" >"$T/pipe" &
	exp=$!
	BG="$reader $exp"
	wait_until 60 "held_writes $id"
	kill -9 "$exp"
	wait "$exp" || true
	timeout 10 dd if=/dev/urandom of="$dev" bs=4k count=16 oflag=direct status=none
	touch "$T/go"
	wait "$reader"
	run "$B/ublk-export-diff" --inspect "$T/part1"
	[ "$status" -eq 5 ]

	# the server dies while writes are held: the export is discarded, and
	# its reader gets no footer though every frame was written
	rm "$T/go"
	read_on_go "$T/part2" &
	reader=$!
	"$B/ublk-export-diff" --live --timeout 60 "$dev" >"$T/pipe" 2>"$T/export.err" &
	exp=$!
	BG="$reader $exp"
	wait_until 60 "held_writes $id"
	(set +e; timeout 60 dd if=/dev/urandom of="$dev" bs=4k count=16 seek=100 \
		oflag=direct status=none; echo $? >"$T/held.rc") &
	writer=$!
	BG="$BG $writer"
	# the write is held by the frozen server
	wait_until 30 '[ "$(dev_writes_in_flight "$dev")" -ge 1 ]'
	pid=$(server_pid "$id")
	kill -9 "$pid"
	touch "$T/go"
	st=0
	wait "$exp" || st=$?
	[ "$st" -eq 1 ]
	grep -q "ublkb$id: the server went away during the export (died?); discarded it" "$T/export.err"
	wait "$reader"
	[ "$(stat -c %s "$T/part2")" -gt $((8 << 20)) ]
	run "$B/ublk-export-diff" --inspect "$T/part2"
	[ "$status" -eq 5 ]
	[[ "$output" == *footer* ]]
	"$B/ublk-pool" reclaim --recover
	wait "$writer"
	[ "$(cat "$T/held.rc")" -eq 0 ]   # the held write was reissued to the new server

	# retry: the diff has exactly what the device has
	"$B/ublk-export-diff" --live --timeout 60 -o "$T/d1" "$dev"
	"$B/ublk-export-diff" --flatten --base "$T/base" --layer "$T/d1" -o "$T/flat"
	[ "$(sha256sum <"$T/flat")" = "$(sha256sum <"$dev")" ]
}

@test "watch kills a hung server and recovers its device: a stopped server, a read held past the deadline" {
	make_image "$T/base" 16
	# reads of 8M-8196K take 15 s: far past the hang timeout, yet they end
	# (a stopped device must not wait on a request that never does)
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --inject delay-read=15000@8M-8196K)
	id=${dev#/dev/ublkb}
	"$B/ublk-pool" watch --interval 0.2 --hang-timeout 3 >"$T/watch.log" 2>&1 &
	WATCH=$!
	# a stopped server has no heartbeat; the read it was given waits, then succeeds
	pid=$(server_pid "$id")
	kill -STOP "$pid"
	(set +e; dd if="$dev" of="$T/read" bs=4k count=1 skip=100 iflag=direct status=none; echo $? >"$T/read.rc") &
	wait_recovered "$id" "$pid"
	wait_until 60 '[ -e "$T/read.rc" ]'
	[ "$(cat "$T/read.rc")" = 0 ]
	cmp "$T/read" <(dd if="$T/base" bs=4k count=1 skip=100 status=none)
	grep -q "ublkb$id: server hung: no heartbeat for [0-9]* s" "$T/watch.log"
	# a read the backend holds: IO pending, none ending
	pid=$(server_pid "$id")
	(set +e; dd if="$dev" of=/dev/null bs=4k count=1 skip=2048 iflag=direct status=none) &
	slow=$!
	wait_recovered "$id" "$pid"
	grep -q "ublkb$id: server hung: IO pending and none completed for [0-9]* s" "$T/watch.log"
	# the other blocks stay readable meanwhile, and the kills are counted
	cmp <(dd if="$dev" bs=1M count=8 iflag=direct status=none) <(head -c 8M "$T/base")
	[ "$("$B/ublk-pool" metrics | awk '$1 == "ublk_hung_total" { print $2 }')" -ge 2 ]
	kill "$WATCH"
	wait "$WATCH" || true
	WATCH=
	# without the watcher the held read ends, on the last server
	wait_until 120 '! kill -0 "$slow" 2>/dev/null'
	"$B/ublk-del" --timeout 30 "$dev"
	assert_gone "$id"
}

@test "a hung server of a device made without recovery is not killed: it would cost the device and its cache" {
	make_image "$T/base" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache" --no-recovery)
	id=${dev#/dev/ublkb}
	pid=$(server_pid "$id")
	stats=$UBLK_STATE_DIR/ublkb$id/stats
	kill -STOP "$pid"
	wait_until 30 "[ \$(stat -c %Y '$stats') -lt \$((\$(date +%s) - 5)) ]"
	run "$B/ublk-pool" reclaim --recover --caches --hang-timeout 3
	kill -CONT "$pid"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"ublkb$id: server hung: no heartbeat for "*": not killed, as it could not be recovered"* ]]
	[ "$(server_pid "$id")" = "$pid" ]
	kill -0 "$pid"
	[ -b "$dev" ]
	[ -e "$T/cache" ]
	cmp "$dev" "$T/base"
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"
}

@test "a heartbeat that only looks old (the clock stepped forward) is no hang: nothing is killed" {
	make_image "$T/base" 4
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	pid=$(server_pid "$id")
	# every heartbeat looks ten minutes old, as after a step of the clock
	# (until the server's next one): each new one (a new file) is aged once
	( stats=$UBLK_STATE_DIR/ublkb$id/stats last=
	while sleep 0.05; do
		ino=$(stat -c %i "$stats" 2>/dev/null) || continue
		[ "$ino" = "$last" ] || touch -d '-10 min' "$stats" 2>/dev/null
		last=$ino
	done ) &
	toucher=$!
	BG=$toucher
	stats=$UBLK_STATE_DIR/ublkb$id/stats
	# the reclaim sees a heartbeat the toucher has aged
	wait_until 30 "[ \$(stat -c %Y '$stats') -lt \$((\$(date +%s) - 300)) ]"
	reclaim_kills_nothing "$dev" "$pid" 3
	# the same heartbeat, old and no longer renewed: a hang, once the
	# toucher has aged the last one the server wrote
	kill -STOP "$pid"
	wait_until 30 "[ \$(stat -c %Y '$stats') -lt \$((\$(date +%s) - 300)) ]"
	run "$B/ublk-pool" reclaim --recover --hang-timeout 3
	kill "$toucher"
	wait "$toucher" || true
	echo "$output"
	[ "$status" -eq 0 ]
	# aged 600 s, and then some
	[[ "$output" == *"ublkb$id: server hung: no heartbeat for 60"?" s "* ]]
	wait_recovered "$id" "$pid"
	pid=$(server_pid "$id")
	cmp "$dev" "$T/base"
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"
}

@test "a full state file system stops the statistics, not the heartbeat: nothing is killed" {
	make_image "$T/base" 4
	mkdir "$T/run"
	mount -t tmpfs -o size=1m,mode=0700 tmpfs "$T/run"
	export UBLK_STATE_DIR=$T/run/state
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	pid=$(server_pid "$id")
	stats=$UBLK_STATE_DIR/ublkb$id/stats
	stats_fresh "$dev"
	run dd if=/dev/zero of="$T/run/fill" bs=4k
	[[ "$output" == *"No space left on device"* ]]
	# no new statistics (the same file), but a heartbeat every second
	ino=$(stat -c %i "$stats")
	since=$(stat -c %Y "$stats")
	wait_until 60 "[ \$(stat -c %Y '$stats') -ge $((since + 4)) ]"
	[ "$(stat -c %i "$stats")" = "$ino" ]
	"$B/ublk-pool" list --check --hang-timeout 1 "$dev"
	reclaim_kills_nothing "$dev" "$pid" 1
	rm "$T/run/fill"
	wait_until 30 "grep -q 'ublkb$id: statistics written again' '$UBLK_STATE_DIR/ublkb$id/log'"
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"
	umount "$T/run"
}

@test "a state file system an error broke: no server is taken for a hung one" {
	make_image "$T/base" 4
	# ext4 that an error turns read-only (errors=remount-ro, as Debian
	# mounts its root): no new file, so no new statistics
	truncate -s 16M "$T/st.img"
	mkfs.ext4 -q "$T/st.img"
	mkdir "$T/run"
	mount -o loop,errors=remount-ro "$T/st.img" "$T/run"
	chmod 700 "$T/run"
	export UBLK_STATE_DIR=$T/run/state
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	pid=$(server_pid "$id")
	loop=$(findmnt -no SOURCE "$T/run")
	echo "test: an error" >"/sys/fs/ext4/${loop#/dev/}/trigger_fs_error"
	# (6.12 does it from a work item, a moment later)
	wait_until 30 "! touch '$T/run/new' 2>/dev/null"
	broken=$(date +%s)
	# longer than the shortest hang timeout (three heartbeats) without
	# a new statistics file
	wait_until 60 "[ \$(date +%s) -ge $((broken + 4)) ]"
	run "$B/ublk-pool" reclaim --recover --hang-timeout 1
	echo "$output"
	[ "$status" -eq 0 ]
	kill -0 "$pid"
	[ "$("$B/ublk-pool" list --json | jq ".devices[] | select(.id == $id) | .pid")" = "$pid" ]
	cmp "$dev" "$T/base"
	# 6.1 still sets a file's time, and the server's heartbeat goes on so;
	# 6.12 fails every change and read there (EIO): no heartbeat is seen
	if touch "$UBLK_STATE_DIR/ublkb$id/stats" 2>/dev/null; then
		grep -q "ublkb$id: statistics not written: Read-only file system; the heartbeat goes on" \
			"$UBLK_STATE_DIR/ublkb$id/log"
	fi
	# the entry cannot be removed: the device and its server can
	"$B/ublk-del" "$dev"
	wait_until 30 "[ ! -e /sys/class/ublk-char/ublkc$id ]"
	wait_until 30 "! kill -0 $pid 2>/dev/null"
	umount "$T/run"
}

@test "a live export's held writes are not a hang" {
	make_image "$T/base" 64
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	dd if=/dev/urandom of="$dev" bs=1M count=48 oflag=direct status=none
	# statistics written after the writes ended: a busy host may have
	# stalled one of them past the hang timeout, which is no hang now
	stats_fresh "$dev"
	"$B/ublk-pool" watch --interval 0.2 --hang-timeout 1 >"$T/watch.log" 2>&1 &
	WATCH=$!
	pid=$(server_pid "$id")
	# The export writes to a pipe that is read only once its hold has been
	# seen, a write is waiting on it, and it has lasted three hang
	# timeouts: an export is too fast to be caught otherwise.
	read_late() {
		wait_until 60 "held_writes $id" || { cat "$T/watch.log" >&2; return 1; }
		(set +e; timeout 120 dd if=/dev/urandom of="$dev" bs=4k count=1 seek=9 oflag=direct \
			status=none; echo $? >"$T/write.rc") &
		wait_until 30 '[ "$(dev_writes_in_flight "$dev")" -ge 1 ]'
		sleep 3   # the hold's length under test, not a wait for something
		cat >"$T/d.diff"
	}
	set -o pipefail
	"$B/ublk-export-diff" --live --timeout 60 --zstd "$dev" | read_late
	wait_until 60 '[ -e "$T/write.rc" ]'
	[ "$(cat "$T/write.rc")" -eq 0 ]
	"$B/ublk-export-diff" --inspect "$T/d.diff" >/dev/null
	[ "$(server_pid "$id")" = "$pid" ]
	# the watcher looked all along, and said nothing but that it watches
	kill -0 "$WATCH"
	grep -q '^ublk-pool: watching' "$T/watch.log"
	[ "$(grep -vc '^ublk-pool: watching' "$T/watch.log")" -eq 0 ]
	"$B/ublk-del" "$dev"
}

@test "a new device has no IO scheduler; a recovered one keeps the one it had" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	# the kernel's choice for a 1-queue disk is mq-deadline
	run cat "/sys/block/ublkb$id/queue/scheduler"
	[[ "$output" == *"[none]"* ]]
	echo mq-deadline >"/sys/block/ublkb$id/queue/scheduler"
	pid=$(server_pid "$id")
	kill -9 "$pid"
	"$B/ublk-pool" reclaim --recover
	wait_recovered "$id" "$pid"
	run cat "/sys/block/ublkb$id/queue/scheduler"
	[[ "$output" == *"[mq-deadline]"* ]]
	dd if="$dev" of=/dev/null bs=4k count=16 iflag=direct status=none
	"$B/ublk-del" "$dev"
}
