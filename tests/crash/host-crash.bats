#!/usr/bin/env bats
# Power loss under a cache device: boot the test VM with a disk, write
# flushed and unflushed data (phase1.sh), kill qemu at a console marker,
# boot again on the same disk and check the data (phase2.sh). Runs on the
# host; each phase runs inside the VM (tests/vm/run.sh).

setup() {
	top=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	T=$(mktemp -d)
}

teardown() {
	rm -rf "$T"
}

@test "host crash: flushed data survives a power cut, unflushed writes never turn into garbage" {
	# The disk stands for the host's disk: qemu's writes to it (in the host
	# page cache) survive the kill; the guest's RAM does not.
	truncate -s 1G "$T/disk"
	mkfs.ext4 -q -F "$T/disk"

	# each phase takes a minute or two: a hung one ends at 900 s
	run env UBLK_VM_TIMEOUT=900 UBLK_VM_DISK="$T/disk" UBLK_VM_CRASH_ON="crash-test: cut the power now" \
		"$top/tests/vm/run.sh" bash tests/crash/phase1.sh
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"vm: power cut at marker"* ]]

	run env UBLK_VM_TIMEOUT=900 UBLK_VM_DISK="$T/disk" "$top/tests/vm/run.sh" bash tests/crash/phase2.sh
	echo "$output"
	[ "$status" -eq 0 ]
	# the gen1/gen2 split of the unflushed overwrite, for the log
	grep -a '^blocks 0-1023' <<<"$output" | tr -d '\r' | sed 's/^/# /' >&3 || true
}
