#!/usr/bin/env bash
# Host-crash test, boot 1 (in the VM, /dev/vda = the test disk): make two
# cache devices, write flushed and unflushed data, then print the marker at
# which the host cuts the power (tests/crash/host-crash.bats).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=$UBLK_BIN
D=/tmp/disk
say() { echo "phase1: $*"; }

mkdir -p "$D"
mount /dev/vda "$D"
dd if=/dev/urandom of="$D/base" bs=1M count=64 status=none
truncate -s 128M "$D/base2"
sync  # the bases are part of the "before" state, not under test

# a. raw blocks. Region A (0..4095) gen1, flushed: must survive exactly.
dev=$("$B/ublk-add" --base "$D/base" --cache "$D/cache1")
python3 "$here/blocks.py" write "$dev" G1 0 4096 fsync
# Unflushed: gen2 over 0..1023 (dirty in the cache) and into region C
# (8192..9215, base underneath). Either may be lost, never turn to garbage.
# Half of it reaches the disk the way the guest's page writeback would
# write it, without a FLUSH (every cache file: data, map, live map): 0..511
# then read gen2, while region C, never flushed, must still read base.
python3 "$here/blocks.py" write "$dev" G2 0 512
python3 "$here/blocks.py" write "$dev" G2 8192 1024
sync "$D"/cache1*
python3 "$here/blocks.py" write "$dev" G2 512 512
say "raw device $dev written"

# b. ext4 over a second cache device: fsynced files must survive intact.
dev2=$("$B/ublk-add" --base "$D/base2" --cache "$D/cache2")
mkfs.ext4 -q -b 4096 "$dev2"
mkdir -p /tmp/fs2
mount "$dev2" /tmp/fs2
for i in 1 2 3 4 5; do
	dd if=/dev/urandom of=/tmp/fs2/synced$i bs=64k count=$((i * 16)) conv=fsync status=none
done
sync -f /tmp/fs2  # and their directory entries
(cd /tmp/fs2 && sha256sum synced*) >"$D/sums"
sync "$D/sums"
# Unflushed: may be lost, must not break the file system.
for i in 1 2 3; do
	dd if=/dev/urandom of=/tmp/fs2/unsynced$i bs=64k count=32 status=none
done
say "ext4 on $dev2 written"

# c. power cut: run.sh kills qemu when it sees this line.
echo "crash-test: cut the power now"
sleep 600
say "still running: the host did not cut the power"
exit 1
