#!/usr/bin/env bash
# Boot the ublk test kernel under qemu (TCG) with the host root shared
# read-only and run a command, or every bats suite of a folder, inside it.
# Exits with the command's exit code.
#
#   run.sh [--bats DIR | COMMAND [ARGS...]]
#
#   UBLK_VM_CACHE    kernel/initramfs cache (default /var/cache/ublk-tools-vm)
#   UBLK_VM_TIMEOUT  whole-run deadline in seconds (default 1500)
#   UBLK_VM_MEM      guest memory (default 2048M)
#   UBLK_VM_LOGDIR   where serial logs of failed runs are kept (default /tmp)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache=${UBLK_VM_CACHE:-/var/cache/ublk-tools-vm}
timeout_s=${UBLK_VM_TIMEOUT:-1500}
die() { echo "vm: $*" >&2; exit 1; }

[ $# -gt 0 ] || die "usage: run.sh [--bats DIR | COMMAND [ARGS...]]"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found: run 'make deps'"
[ -x /bin/busybox ] || die "/bin/busybox not found: run 'make deps' (busybox-static)"

kernel=$("$here/build-kernel.sh") || die "could not build the test kernel"

# The initramfs holds only busybox and init; rebuild it when init changes.
ikey=$( { cat "$here/init"; sha256sum /bin/busybox; } | sha256sum | cut -c1-16)
initrd=$cache/initramfs-$ikey.gz
if [ ! -s "$initrd" ]; then
	stage=$(mktemp -d)
	mkdir -p "$stage"/{bin,proc,sys,dev,newroot}
	cp /bin/busybox "$stage/bin/busybox"
	cp "$here/init" "$stage/init"
	chmod +x "$stage/init"
	(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
	mv "$initrd.tmp" "$initrd"
	rm -rf "$stage"
fi

results=$(mktemp -d /tmp/ublk-vm.XXXXXX)
serial=$results/serial.log
trap 'rm -rf "$results"' EXIT

if [ "$1" = --bats ]; then
	[ $# -eq 2 ] || die "usage: run.sh --bats DIR"
	set -- bats --print-output-on-failure "$2"
fi
job=$(printf '%q ' "$@")
cat >"$results/job.sh" <<JOB
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp TERM=dumb LANG=C.UTF-8 UBLK_IN_VM=1
export UBLK_BIN=$(printf '%q' "${UBLK_BIN:-$top/build}")
cd $(printf '%q' "$top")
echo "vm: linux \$(uname -r), \$(nproc) cpus: $*"
$job
echo \$? >/run/vm-results/rc
JOB

printf '%s' "$top" >"$results/srcpath"
start=$(date +%s)
set +e
timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu max -smp 2 -m "${UBLK_VM_MEM:-2048M}" \
	-nographic -no-reboot -nodefaults -serial stdio -bios /usr/share/qemu/qboot.rom \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
	-virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
	-virtfs local,path="$results",mount_tag=results,security_model=none \
	-virtfs local,path="$top",mount_tag=src,security_model=none,readonly=on,multidevs=remap \
	</dev/null 2>&1 | tee "$serial"
qrc=${PIPESTATUS[0]}
set -e

keep_log() {
	local dir=${UBLK_VM_LOGDIR:-/tmp} kept
	kept=$(mktemp "$dir/ublk-vm-serial.XXXXXX.log")
	cp "$serial" "$kept"
	echo "vm: serial console log kept in $kept" >&2
}
if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
	keep_log
	die "VM run exceeded its ${timeout_s}s deadline and was killed"
fi
if [ ! -s "$results/rc" ]; then
	keep_log
	die "VM ended without a result (qemu exit $qrc, $(( $(date +%s) - start ))s): kernel panic or boot failure?"
fi
rc=$(cat "$results/rc")
[ "$rc" = 0 ] || keep_log
exit "$rc"
