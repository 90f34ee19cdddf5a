#!/usr/bin/env bash
# Host-crash test, boot 2 (in the VM, same disk after the power cut): add
# both devices again over their caches and check what phase1.sh left.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
B=$UBLK_BIN
D=/tmp/disk
fail() { echo "phase2: FAIL: $*"; exit 1; }
say() { echo "phase2: $*"; }

mkdir -p "$D"
mount /dev/vda "$D"  # replays the test disk's journal
[ -s "$D/cache1.map" ] && [ -s "$D/sums" ] || fail "phase 1 left no cache map or checksums"

# a. raw blocks: 1024..4095 flushed gen1; 0..1023 gen1 or the unflushed
# gen2; region C (never flushed) still base; everything else base.
dev=$("$B/ublk-add" --base "$D/base" --cache "$D/cache1") || fail "ublk-add over cache1 refused"
python3 "$here/blocks.py" check "$dev" "$D/base" \
	0-1023=G1/G2 1024-4095=G1 8192-9215=base || fail "raw device $dev: wrong blocks after the power cut"
"$B/ublk-del" "$dev"

# b. ext4: the journal replays on mount; then it must be clean and the
# fsynced files intact.
dev2=$("$B/ublk-add" --base "$D/base2" --cache "$D/cache2") || fail "ublk-add over cache2 refused"
mkdir -p /tmp/fs2
mount "$dev2" /tmp/fs2 || fail "cannot mount ext4 on $dev2"
(cd /tmp/fs2 && sha256sum -c --quiet "$D/sums") || fail "fsynced files changed on $dev2"
say "ext4 files after the cut: $(cd /tmp/fs2 && echo *)"
umount /tmp/fs2
e2fsck -fn "$dev2" || fail "e2fsck found errors on $dev2 after journal replay"
"$B/ublk-del" "$dev2"
umount "$D"
say "ok"
