#!/usr/bin/env bats
# What each kernel speaks (docs/kernels.md): 6.1 legacy opcodes only; the
# 6.12 VM kernel ioctl-encoded ones only (no CONFIG_BLKDEV_UBLK_LEGACY_OPCODES),
# GET_FEATURES and DEL_DEV_ASYNC.

load lib

setup() { vm_setup; }
teardown() { vm_teardown; }

features_key() {
	sed -n "s/^$2=//p" "$UBLK_STATE_DIR/ublkb$1/features"
}

@test "the features file and -v say what the kernel offers and which commands the device takes" {
	make_image "$T/img" 4
	"$B/ublk-serve" -v --base "$T/img" >"$T/out" 2>"$T/err" &
	pid=$!
	wait_until 60 '[ -s "$T/out" ]'
	dev=$(cat "$T/out")
	id=${dev#/dev/ublkb}
	cmp "$dev" "$T/img"
	grep -q "kernel ublk features from" "$T/err"
	grep -q "device flags 0x" "$T/err"
	if [ "$(kernel_num)" -ge 605 ]; then
		[ "$(features_key "$id" kernel_features_from)" = get_features ]
		[ "$(features_key "$id" commands)" = ioctl-encoded ]
		[[ "$(features_key "$id" device_flag_names)" == *CMD_IOCTL_ENCODE* ]]
		grep -q "from GET_FEATURES" "$T/err"
		grep -q "ioctl-encoded commands" "$T/err"
	else
		[ "$(features_key "$id" kernel_features_from)" = device ]
		[ "$(features_key "$id" commands)" = legacy ]
		[[ "$(features_key "$id" device_flag_names)" != *CMD_IOCTL_ENCODE* ]]
		grep -q "legacy commands" "$T/err"
	fi
	[[ "$(features_key "$id" device_flag_names)" == *USER_RECOVERY* ]]
	# ublk-pool status says the same
	j=$("$B/ublk-pool" status --json)
	[ "$(jq -r ".devices[] | select(.id == $id) | .commands" <<<"$j")" = "$(features_key "$id" commands)" ]
	[ "$(jq -r ".devices[] | select(.id == $id) | .device_flags" <<<"$j")" = "$(features_key "$id" device_flags)" ]
	kill -TERM "$pid"
	wait "$pid"
	if [ "$(kernel_num)" -ge 609 ]; then
		grep -q "deleted with DEL_DEV_ASYNC" "$T/err"
	else
		grep -q "deleted with DEL_DEV$" "$T/err"
	fi
	assert_gone "$id" "$pid"
}

@test "the 6.12 VM kernel refuses legacy opcodes, so every command above was encoded" {
	[ "$(kernel_num)" -ge 612 ] || skip "legacy opcodes are the only ones before 6.4"
	# the fragment the VM kernel is built with: no legacy opcodes
	grep -qx '# CONFIG_BLKDEV_UBLK_LEGACY_OPCODES is not set' tests/vm/kernel-6.12.config
	make_image "$T/img" 8
	dev=$("$B/ublk-add" --base "$T/img")
	id=${dev#/dev/ublkb}
	# IO through FETCH / COMMIT_AND_FETCH, and recovery through the encoded
	# control commands
	dd if=/dev/urandom of="$T/pat" bs=4096 count=4 status=none
	dd if="$T/pat" of="$dev" bs=4096 seek=3 oflag=direct conv=notrunc status=none
	cmp "$T/pat" <(dd if="$dev" bs=4096 count=4 skip=3 iflag=direct status=none)
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -KILL "$pid"
	"$B/ublk-pool" reclaim --recover
	wait_until 60 "served_by_other $id $pid"
	cmp "$T/pat" <(dd if="$dev" bs=4096 count=4 skip=3 iflag=direct status=none)
	"$B/ublk-del" "$dev"
	assert_gone "$id"
}

# overlay_up IMG CACHE: an overlay of IMG; sets dev, its id and its server's pid
overlay_up() {
	dev=$("$B/ublk-add" --base "$1" --cache "$2")
	id=${dev#/dev/ublkb}
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
}

# USER_COPY in the kernel's feature list (6.5 and later)
kernel_has_user_copy() {
	[[ ",$(features_key "$1" kernel_feature_names)," == *,USER_COPY,* ]]
}

@test "reads in place (USER_COPY, or before 6.5 NEED_GET_DATA): clean, dirty and zero blocks in one read; a base cut short reads zeros" {
	make_image "$T/img" 8
	cp "$T/img" "$T/model"
	overlay_up "$T/img" "$T/cache"
	# blocks 3-4 dirty, 6 zero, the rest of the first 64 KiB clean
	dd if=/dev/urandom of="$T/pat" bs=4096 count=2 status=none
	dd if="$T/pat" of="$dev" bs=4096 seek=3 oflag=direct conv=notrunc status=none
	dd if="$T/pat" of="$T/model" bs=4096 seek=3 conv=notrunc status=none
	blkdiscard -o $((6 * 4096)) -l 4096 "$dev"
	dd if=/dev/zero of="$T/model" bs=4096 seek=6 count=1 conv=notrunc status=none
	cmp "$T/model" <(dd if="$dev" bs=64k iflag=direct status=none)
	[ "$(stat_of "$dev" .errors)" -eq 0 ]
	if kernel_has_user_copy "$id"; then
		[[ "$(features_key "$id" device_flag_names)" == *USER_COPY* ]]
		[[ "$(features_key "$id" device_flag_names)" != *NEED_GET_DATA* ]]
	else
		# one copy, made by the kernel at commit from the base's mapping
		[[ "$(features_key "$id" device_flag_names)" != *USER_COPY* ]]
		[[ "$(features_key "$id" device_flag_names)" == *NEED_GET_DATA* ]]
	fi
	[ "$(stat_of "$dev" .reads_in_place)" -gt 0 ]
	# the base cut short under its mapping: past its new end reads zeros,
	# with no error and no signal to the server (before 6.5 the kernel's
	# copy fails unseen and sends the read again, which is then read)
	truncate -s $((4 << 20)) "$T/img"
	cmp <(head -c $((4 << 20)) "$T/model") <(dd if="$dev" bs=64k count=64 iflag=direct status=none)
	cmp <(head -c $((4 << 20)) /dev/zero) <(dd if="$dev" bs=64k skip=64 iflag=direct status=none)
	kill -0 "$pid"
	[ "$(stat_of "$dev" .errors)" -eq 0 ]
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"
}

@test "writes in place (USER_COPY, or before 6.5 NEED_GET_DATA): the data reads back after a restart, zeros stay holes, a cache data file cut short is written the usual way" {
	make_image "$T/img" 8
	cp "$T/img" "$T/model"
	overlay_up "$T/img" "$T/cache"
	dd if=/dev/urandom of="$T/pat" bs=64k count=1 status=none
	# 64 KiB at 1 MiB, single blocks here and there, zeros over 256 KiB at 2 MiB
	for at in 16:64k:pat 5:4k:pat 9:4k:pat 1023:4k:pat 8:256k:zero; do
		IFS=: read -r seek bs what <<<"$at"
		src="$T/pat"
		[ "$what" = pat ] || src=/dev/zero
		dd if="$src" of="$dev" bs="$bs" seek="$seek" count=1 oflag=direct conv=notrunc status=none
		dd if="$src" of="$T/model" bs="$bs" seek="$seek" count=1 conv=notrunc status=none
	done
	cmp "$T/model" <(dd if="$dev" bs=1M iflag=direct status=none)
	[ "$(stat_of "$dev" .errors)" -eq 0 ]
	[ "$(stat_of "$dev" .writes_in_place)" -eq 4 ]
	# 64 KiB and four blocks of data: the zeros took no space
	[ "$(stat -c %b "$T/cache")" -le $(((64 + 4 * 4) * 2)) ]
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"

	overlay_up "$T/img" "$T/cache"
	cmp "$T/model" <(dd if="$dev" bs=1M iflag=direct status=none)
	# the data file cut short under its mapping: the write goes the usual
	# way, with no error and no signal to the server (before 6.5 the
	# kernel's copy fails unseen and asks again where the data goes)
	truncate -s 0 "$T/cache"
	dd if="$T/pat" of="$dev" bs=64k seek=4 count=1 oflag=direct conv=notrunc status=none
	cmp "$T/pat" <(dd if="$dev" bs=64k skip=4 count=1 iflag=direct status=none)
	kill -0 "$pid"
	[ "$(stat_of "$dev" .errors)" -eq 0 ]
	[ "$(stat_of "$dev" .writes_in_place)" -eq 0 ]
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"
}

@test "a cache on a full file system: the write that does not fit fails with ENOSPC, the server lives, what fit reads back" {
	make_image "$T/img" 8
	mkdir -m 700 "$T/small"
	mount -t tmpfs -o size=1M,mode=700 tmpfs "$T/small"
	overlay_up "$T/img" "$T/small/cache"
	dd if=/dev/urandom of="$T/pat" bs=1M count=2 status=none
	dd if="$T/pat" of="$dev" bs=64k count=4 oflag=direct conv=notrunc status=none
	run dd if="$T/pat" of="$dev" bs=64k count=32 oflag=direct conv=notrunc status=none
	[ "$status" -ne 0 ]
	[[ "$output" == *"No space left on device"* ]]
	kill -0 "$pid"
	[ "$(stat_of "$dev" .errors)" -gt 0 ]
	[ "$(stat_of "$dev" .writes_in_place)" -ge 4 ]
	cmp -n $((256 << 10)) "$T/pat" "$dev"
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$pid"
	umount "$T/small"
}

@test "a stack with a layer that cannot be mapped is served without USER_COPY or NEED_GET_DATA" {
	make_image "$T/img" 4
	dev=$("$B/ublk-add" --base "$T/img" --inject "delay-read=1@0-4K")
	id=${dev#/dev/ublkb}
	cmp "$dev" "$T/img"
	[[ "$(features_key "$id" device_flag_names)" != *USER_COPY* ]]
	[[ "$(features_key "$id" device_flag_names)" != *NEED_GET_DATA* ]]
	[ "$(stat_of "$dev" .reads_in_place)" -eq 0 ]
	"$B/ublk-del" "$dev"
	assert_gone "$id"
}
