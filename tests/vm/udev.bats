#!/usr/bin/env bats
# The udev rule make install puts in place (dist/59-ublk-tools.rules),
# under a real systemd-udevd: a named device gets its stable link, and the
# host does not probe what the sandbox wrote.

load lib

setup() {
	vm_setup
	# the rule as installed, pointed at the tools under test and this state dir
	mkdir -p /run/udev/rules.d
	sed "s|@BINDIR@/ublk-pool list|$B/ublk-pool --state-dir $UBLK_STATE_DIR list|" \
		"$BATS_TEST_DIRNAME/../../dist/59-ublk-tools.rules" >/run/udev/rules.d/59-ublk-tools.rules
	# a daemon must not hold bats' descriptors (3 above all): bats waits for them
	/lib/systemd/systemd-udevd --daemon </dev/null >/dev/null 2>&1 3>&-
	wait_until 30 "udevadm control --ping"
}

teardown() {
	udevadm control --exit || true
	pkill -x systemd-udevd || true
	wait_until 30 '! pgrep -x systemd-udevd >/dev/null'
	rm -f /run/udev/rules.d/59-ublk-tools.rules
	vm_teardown
}

@test "udev: a named device gets /dev/disk/by-ublk-name/NAME, nothing probes it, the link goes with it" {
	truncate -s 64M "$T/base"
	mkfs.ext4 -q "$T/base"
	dev=$("$B/ublk-add" --base "$T/base" --read-only --name web-7)
	udevadm settle --timeout 60
	wait_until 60 '[ "$(readlink -f /dev/disk/by-ublk-name/web-7)" = "$dev" ]'
	run udevadm info --query=property "$dev"
	[ "$status" -eq 0 ]
	[[ "$output" == *$'\nUDISKS_IGNORE=1'* ]]
	# 60-persistent-storage left it alone: no filesystem probe, no by-uuid link
	[[ "$output" != *ID_FS_UUID=* ]]
	[ -z "$(find /dev/disk/by-uuid -lname "*${dev#/dev/}" 2>/dev/null)" ]
	# an unnamed device gets no link
	other=$("$B/ublk-add" --base "$T/base" --read-only)
	udevadm settle --timeout 60
	[ "$(find /dev/disk/by-ublk-name -lname "*${other#/dev/}" | wc -l)" -eq 0 ]
	"$B/ublk-del" "$dev" "$other"
	wait_until 60 '[ ! -e /dev/disk/by-ublk-name/web-7 ]'
}
