#!/usr/bin/env bats
# Devices over E2B builds read from a storage root (docs/e2b.md, Serving
# a build): stores written by test-e2b-store from the format by hand (a V3
# chain, zstd and lz4 frames under V4 headers), read through real devices,
# local and over HTTP, and recovered after a server is killed.

load lib

PORT=18090

setup() {
	vm_setup
	"${UBLK_TEST_BIN:-$B/tests}/test-e2b-store" make "$T"
	S=$T/store
	while read -r name id; do
		eval "ID_$name=$id"
	done <"$T/ids"
}

teardown() {
	nginx_stop
	vm_teardown
}

server_pid() { cat "$UBLK_STATE_DIR/ublkb$1/pid"; }

@test "a device over each build of a chain reads the build, byte for byte, on 2 queues" {
	for n in A C D E; do
		eval "id=\$ID_$n"
		dev=$("$B/ublk-add" --e2b "$S" --build "$id" --read-only --queues 2)
		cmp "$dev" "$T/expect-$n.img"
		"$B/ublk-del" "$dev"
	done
}

@test "the state entry and --json name the build; the odd-sized build is refused" {
	run "$B/ublk-add" --e2b "$S" --build "$ID_D" --read-only --json
	echo "$output"
	[ "$status" -eq 0 ]
	jq -e ".base == null and .e2b_root == \"$S\" and .build == \"$ID_D\" and .e2b_file == \"rootfs.ext4\"" <<<"$output"
	id=$(jq -r .id <<<"$output")
	grep -qx "e2b=$S" "$UBLK_STATE_DIR/ublkb$id/config"
	grep -qx "build=$ID_D" "$UBLK_STATE_DIR/ublkb$id/config"
	run_mustfail 5 "is not a multiple of 4096 bytes" \
		"$B/ublk-add" --e2b "$T/odd" --build "$ID_odd" --read-only
}

@test "a cache over a build, and a killed server recovered over the same build" {
	dev=$("$B/ublk-add" --e2b "$S" --build "$ID_C" --cache "$T/cache")
	id=${dev#/dev/ublkb}
	dd if=/dev/urandom of="$T/new" bs=4k count=3 status=none
	dd if="$T/new" of="$dev" bs=4k seek=5 oflag=direct conv=notrunc status=none
	cp "$T/expect-C.img" "$T/want.img"
	dd if="$T/new" of="$T/want.img" bs=4k seek=5 conv=notrunc status=none
	cmp "$dev" "$T/want.img"
	pid=$(server_pid "$id")
	kill -9 "$pid"
	"$B/ublk-pool" reclaim --recover
	wait_until 60 "[ \"\$(cat $UBLK_STATE_DIR/ublkb$id/state 2>/dev/null)\" = live ] && [ \"\$(server_pid $id)\" != $pid ]"
	echo 3 >/proc/sys/vm/drop_caches
	cmp "$dev" "$T/want.img"
}

@test "a device over a build in an HTTP storage root" {
	nginx_run "$(cat <<CONF
	access_log off;
	server {
		listen 127.0.0.1:$PORT;
		root $T;
	}
CONF
)"
	dev=$("$B/ublk-add" --e2b "http://127.0.0.1:$PORT/store" --build "$ID_D" --read-only \
		--chunk-cache "$T/chunks")
	cmp "$dev" "$T/expect-D.img"
	"$B/ublk-del" "$dev"
	mv "$S/$ID_B/rootfs.ext4" "$T/b.moved"
	run_mustfail 5 "build(s) not found under http://127.0.0.1:$PORT/store: $ID_B" \
		"$B/ublk-add" --e2b "http://127.0.0.1:$PORT/store" --build "$ID_D" --read-only \
		--chunk-cache "$T/chunks"
}
