#!/usr/bin/env bash
# Boot the ublk test kernel under qemu (TCG) with the host root shared
# read-only and run a command, or every bats suite of a folder, inside it.
# Exits with the command's exit code.
#
#   run.sh [--bats DIR | COMMAND [ARGS...]]
#
#   UBLK_VM_KERNEL   kernel to boot: 6.1 (default, legacy opcodes) or 6.12
#                    (ioctl-encoded opcodes only); see build-kernel.sh
#   UBLK_VM_CACHE    kernel/initramfs cache (default /var/cache/ublk-tools-vm)
#   UBLK_VM_TIMEOUT  whole-run deadline in seconds (default 3600)
#   UBLK_VM_MEM      guest memory (default 2048M)
#   UBLK_VM_SMP      guest CPUs (default 2)
#   UBLK_VM_TCG_THREAD  multi (default: a host thread per guest CPU) or
#                    single (one host thread runs every guest CPU in turn)
#   UBLK_VM_CPU      qemu -cpu model and features (default max)
#   UBLK_VM_LOGDIR   where serial logs of failed runs are kept (default /tmp)
#   UBLK_VM_DISK     raw image FILE attached as /dev/vda (virtio-blk,
#                    cache=writeback: guest flushes reach FILE, and what qemu
#                    wrote survives a kill, like a disk's contents do)
#   UBLK_VM_CRASH_ON MARKER: when a console line contains MARKER, SIGKILL
#                    qemu (a power cut: the guest's RAM and page cache are
#                    lost) and exit 0, printing "vm: power cut at marker";
#                    a VM that ends without printing MARKER is a failure
#                    (MARKER must not be part of the command: the job echoes it)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
cache=${UBLK_VM_CACHE:-/var/cache/ublk-tools-vm}
timeout_s=${UBLK_VM_TIMEOUT:-3600}
die() { echo "vm: $*" >&2; exit 1; }

[ $# -gt 0 ] || die "usage: run.sh [--bats DIR | COMMAND [ARGS...]]"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found: run 'make deps'"
[ -x /bin/busybox ] || die "/bin/busybox not found: run 'make deps' (busybox-static)"

kernel=$("$here/build-kernel.sh") || die "could not build the test kernel ${UBLK_VM_KERNEL:-6.1}"

# The initramfs holds only busybox and init; rebuild it when init changes.
ikey=$( { cat "$here/init"; sha256sum /bin/busybox; } | sha256sum | cut -c1-16)
initrd=$cache/initramfs-$ikey.gz
if [ ! -s "$initrd" ]; then
	stage=$(mktemp -d)
	mkdir -p "$stage"/{bin,proc,sys,dev,newroot}
	cp /bin/busybox "$stage/bin/busybox"
	cp "$here/init" "$stage/init"
	chmod +x "$stage/init"
	# two runs may start at once: each writes its own, then renames
	(cd "$stage" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.$$.tmp"
	mv "$initrd.$$.tmp" "$initrd"
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
export HOME=/tmp TERM=dumb LANG=C.UTF-8 UBLK_IN_VM=1 UBLK_VM_KERNEL=$(printf '%q' "${UBLK_VM_KERNEL:-6.1}")
export UBLK_BIN=$(printf '%q' "${UBLK_BIN:-$top/build}")
cd $(printf '%q' "$top")
echo "vm: linux \$(uname -r), \$(nproc) cpus: $*"
$job
rc=\$?
# A kernel warning or oops is a failure whatever the job said: the console
# shows only errors (loglevel=3), and a process no test checks can oops.
oops='WARNING:|BUG:|Oops|general protection fault|Unable to handle|kernel BUG'
if dmesg | grep -qE "\$oops"; then
	echo "vm: the kernel logged a warning or an oops during the run:"
	dmesg | grep -E -A30 "\$oops" | head -200
	[ "\$rc" != 0 ] || rc=1
fi
echo \$rc >/run/vm-results/rc
JOB

printf '%s' "$top" >"$results/srcpath"
crash_on=${UBLK_VM_CRASH_ON:-}
disk=()
if [ -n "${UBLK_VM_DISK:-}" ]; then
	[ -f "$UBLK_VM_DISK" ] || die "UBLK_VM_DISK: no such file: $UBLK_VM_DISK"
	disk=(-drive "file=$UBLK_VM_DISK,format=raw,if=virtio,cache=writeback")
fi
: >"$serial"  # before tail follows it
start=$(date +%s)
# qemu runs in the background, its console going to the log, so that the
# console can be watched for the crash marker while the log is followed;
# the pid file names qemu itself (not timeout) for the power cut. Killed
# qemu makes timeout kill itself: the subshell (kept from exec'ing by
# "|| exit") swallows bash's "Killed" notice and exits with status 137.
( timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 \
	-accel tcg,thread="${UBLK_VM_TCG_THREAD:-multi}" -cpu "${UBLK_VM_CPU:-max}" -smp "${UBLK_VM_SMP:-2}" -m "${UBLK_VM_MEM:-2048M}" \
	-nographic -no-reboot -nodefaults -serial stdio -bios /usr/share/qemu/qboot.rom \
	-kernel "$kernel" -initrd "$initrd" \
	-append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
	-virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
	-virtfs local,path="$results",mount_tag=results,security_model=none \
	-virtfs local,path="$top",mount_tag=src,security_model=none,readonly=on,multidevs=remap \
	"${disk[@]}" -pidfile "$results/qemu.pid" \
	</dev/null >"$serial" 2>&1 || exit ) 2>/dev/null &
tpid=$!
# SIGKILL qemu, checking the pid still names it (it may have exited already).
kill_qemu() {
	local pid
	pid=$(cat "$results/qemu.pid" 2>/dev/null) || return 0
	[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = qemu-system-x86 ] && kill -KILL "$pid" 2>/dev/null
	return 0
}
# An interrupted run.sh must not leave qemu behind.
trap 'kill_qemu; rm -rf "$results"' EXIT
trap 'exit 130' INT TERM

# Follow the console until qemu's end; cut the power at the marker. In the
# background, as a signal to run.sh would wait for a foreground pipeline.
tail -n +1 -s 0.2 --pid="$tpid" -f "$serial" | while IFS= read -r line || [ -n "$line" ]; do
	printf '%s\n' "$line"
	if [ -n "$crash_on" ] && [[ $line == *"$crash_on"* ]] && [ ! -e "$results/cut" ]; then
		: >"$results/cut"
		kill_qemu
	fi
done &
set +e
wait $!
wait "$tpid"
qrc=$?
set -e

keep_log() {
	local dir=${UBLK_VM_LOGDIR:-/tmp} kept
	kept=$(mktemp "$dir/ublk-vm-serial.XXXXXX.log")
	cp "$serial" "$kept"
	echo "vm: serial console log kept in $kept" >&2
}
if [ -n "$crash_on" ]; then
	if [ -e "$results/cut" ]; then
		echo "vm: power cut at marker ($(( $(date +%s) - start ))s)"
		exit 0
	fi
	keep_log
	rc=$(cat "$results/rc" 2>/dev/null || echo "none, qemu exit $qrc")
	die "VM ended without printing the crash marker '$crash_on' (job exit $rc)"
fi
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
