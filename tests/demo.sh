#!/usr/bin/env bash
# A short demonstration of the main job: serve an image as a block device,
# put a filesystem on it, use it, and delete the device.
set -euo pipefail
B=${UBLK_BIN:-$(dirname "$0")/../build}
export UBLK_STATE_DIR=${UBLK_STATE_DIR:-/run/ublk-tools}
work=$(mktemp -d)
trap 'umount "$work/mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
step() { printf '\n== %s\n' "$*"; }

step "a 256 MiB sparse image"
truncate -s 256M "$work/rootfs.img"
ls -ls "$work/rootfs.img"

step "ublk-add --base rootfs.img --queues 2"
dev=$("$B/ublk-add" --base "$work/rootfs.img" --queues 2)
echo "$dev"
lsblk -o NAME,SIZE,LOG-SEC,RO "$dev" 2>/dev/null || blockdev --getsize64 --getss "$dev"
echo "state: $(cat "$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/state"), server pid $(cat "$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/pid")"

step "mkfs.ext4, mount, write"
mkfs.ext4 -q "$dev"
mkdir "$work/mnt"
mount "$dev" "$work/mnt"
dd if=/dev/urandom of="$work/mnt/data" bs=1M count=32 status=none
sha256sum "$work/mnt/data" | tee "$work/sum"
umount "$work/mnt"

step "ublk-del $dev"
"$B/ublk-del" "$dev"
ls "$dev" 2>&1 || true

step "the image keeps the data: loop-mount it"
fsck.ext4 -fn "$work/rootfs.img" | tail -1
mount -o loop,ro "$work/rootfs.img" "$work/mnt"
(cd "$work/mnt" && sed "s|$work/mnt/||" "$work/sum" | sha256sum -c)
umount "$work/mnt"
echo; echo "demo done"
