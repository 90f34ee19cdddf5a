#!/usr/bin/env bats
# ublk-pool: every device of the host, and cleaning up after crashes.

load lib

setup() { vm_setup; }
teardown() { vm_teardown; }

@test "list --json matches reality; status adds statistics" {
	make_image "$T/base" 4
	a=$("$B/ublk-add" --base "$T/base" --cache "$T/ca" --name web-1)
	b=$("$B/ublk-add" --base "$T/base" --read-only)
	dd if="$a" of=/dev/null bs=4k count=10 iflag=direct status=none
	run "$B/ublk-pool" list --json
	[ "$status" -eq 0 ]
	j=$output
	[ "$(jq '.devices | length' <<<"$j")" -eq 2 ]
	[ "$(jq -r '.devices[] | select(.name == "web-1") | .path' <<<"$j")" = "$a" ]
	[ "$(jq -r ".devices[] | select(.path == \"$b\") | .base" <<<"$j")" = "$T/base" ]
	[ "$(jq '[.devices[] | select(.server_alive and .in_kernel and .has_state and .problem == null)] | length' <<<"$j")" -eq 2 ]
	[ "$(jq -r '.devices[0].kernel_state' <<<"$j")" = live ]
	sleep 1.2
	run "$B/ublk-pool" status --json
	[ "$(jq -r '.devices[] | select(.name == "web-1") | .stats.reads' <<<"$output")" -ge 10 ]
	[ "$(jq -r '.devices[] | select(.name == "web-1") | .cache' <<<"$output")" = "$T/ca" ]
	# the table is for people: a header and one line per device
	[ "$("$B/ublk-pool" list | wc -l)" -eq 3 ]
}

@test "kill -9 of several servers, then reclaim leaves nothing; reclaim is idempotent" {
	make_image "$T/base" 4
	for i in 1 2 3 4; do devs[$i]=$("$B/ublk-add" --base "$T/base" --cache "$T/c$i"); done
	for i in 1 3; do kill -9 "$(cat "$UBLK_STATE_DIR/ublkb${devs[$i]#/dev/ublkb}/pid")"; done
	sleep 0.5
	j=$("$B/ublk-pool" list --json)
	[ "$(jq '[.devices[] | select(.problem == "server is dead")] | length' <<<"$j")" -eq 2 ]
	run "$B/ublk-pool" reclaim --timeout 5
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c '^deleted ublkb' <<<"$output")" -eq 2 ]
	[ "$(ls /sys/class/ublk-char | wc -l)" -eq 2 ]
	run "$B/ublk-pool" reclaim --json
	[ "$status" -eq 0 ]
	[ "$(jq '.actions | length' <<<"$output")" -eq 0 ]
	# the caches of the dead servers are kept (no --caches): their data is there
	[ -e "$T/c1" ] && [ -e "$T/c3" ]
	"$B/ublk-del" --all
	assert_none_left
}

@test "stale state entries are removed, with their caches when asked" {
	mkdir -p "$UBLK_STATE_DIR/ublkb77"
	printf 'base=/x\ncache=%s\n' "$T/orphan" >"$UBLK_STATE_DIR/ublkb77/config"
	echo 999999 >"$UBLK_STATE_DIR/ublkb77/pid"
	echo live >"$UBLK_STATE_DIR/ublkb77/state"
	: >"$T/orphan"; : >"$T/orphan.map"
	run "$B/ublk-pool" reclaim --caches
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"removed the state entry of ublkb77 (stale state: the kernel has no such device)"* ]]
	[[ "$output" == *"removed orphaned cache $T/orphan"* ]]
	[ ! -e "$UBLK_STATE_DIR/ublkb77" ] && [ ! -e "$T/orphan" ] && [ ! -e "$T/orphan.map" ]
}

@test "a kernel device the state directory does not know is deleted after the grace time" {
	make_image "$T/base" 4
	# a device whose state went elsewhere, and whose server is gone
	dev=$(UBLK_STATE_DIR=$T/other "$B/ublk-add" --base "$T/base")
	kill -9 "$(cat "$T/other/ublkb${dev#/dev/ublkb}/pid")"
	sleep 0.5
	run "$B/ublk-pool" reclaim
	[ "$status" -eq 0 ]
	[ -z "$output" ]   # too young: a tool may be adding it right now
	run "$B/ublk-pool" reclaim --grace 0
	echo "$output"
	[[ "$output" == *"deleted ublkb${dev#/dev/ublkb} (not in the state directory)"* ]]
	assert_none_left
}
