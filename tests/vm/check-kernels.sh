#!/usr/bin/env bash
# The VM suite on several kernels, each counted by check-kernel.sh, the
# VMs running side by side, each on one host thread: a guest's two CPUs
# then take turns on it (qemu's TCG thread=single) instead of fighting the
# other VM for the host's cores, and on two cores two kernels take little
# longer than one (docs/kernels.md). A kernel that fails (or does not
# build) does not keep the others from running; exits non-zero when any
# failed.
#
#   check-kernels.sh [VERSION...]
#   UBLK_VM_PARALLEL  VMs at once (default: the host's cores; 1 runs the
#                     kernels one after the other, each guest CPU on a
#                     host thread of its own)
#   UBLK_VM_TAPLOG    as for check-kernel.sh, with "-VERSION" appended
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
at_once=${UBLK_VM_PARALLEL:-$(nproc)}
[[ $at_once =~ ^[1-9][0-9]*$ ]] || { echo "UBLK_VM_PARALLEL: not a count: $at_once" >&2; exit 2; }
[ $# -gt 0 ] || exit 0

# Each kernel's run in a process group of its own: stopping this script
# stops its VMs (run.sh kills its qemu on SIGTERM).
set -m
out=$(mktemp -d /tmp/ublk-vm-kernels.XXXXXX)
# shellcheck disable=SC2317  # run by the trap
stop_all() {
	local g
	for g in $(jobs -rp); do kill -- "-$g" 2>/dev/null; done
	rm -rf "$out"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# Built one at a time, before any VM: builds side by side would only share
# the cores, and VMs would then start at different times.
rc=0
kernels=()
for k in "$@"; do
	if UBLK_VM_KERNEL=$k "$here/build-kernel.sh" >/dev/null; then
		kernels+=("$k")
	else
		echo "vm-$k: could not build the test kernel" >&2
		rc=1
	fi
done

if [ "$at_once" -gt 1 ] && [ ${#kernels[@]} -gt 1 ]; then
	export UBLK_VM_TCG_THREAD=${UBLK_VM_TCG_THREAD:-single}
fi

# Kernel $1's run into its file, its failures said as they come.
run_behind() {
	local run
	env "${log[@]}" UBLK_VM_KERNEL="$1" "$here/check-kernel.sh" </dev/null >"$out/$1" 2>&1 &
	run=$!
	tail -n +1 -s 1 --pid="$run" -F "$out/$1" 2>/dev/null |
		sed -un "s/\r\$//; s/^not ok /vm-$1: not ok /p" &
	wait "$run"
}

# A kernel's output comes as it runs when it starts alone, else whole
# once every kernel has ended, its failures said as they come, each as
# "vm-VERSION: not ok ..." (not counted as TAP by .ci/run).
declare -A pid_of status_of
for k in "${kernels[@]}"; do
	while [ "$(jobs -rp | wc -l)" -ge "$at_once" ]; do
		wait -n -p done_pid
		status_of[$done_pid]=$?
	done
	log=()
	[ -z "${UBLK_VM_TAPLOG:-}" ] || log=(UBLK_VM_TAPLOG="$UBLK_VM_TAPLOG-$k")
	if [ -z "$(jobs -rp)" ]; then
		env "${log[@]}" UBLK_VM_KERNEL="$k" "$here/check-kernel.sh" </dev/null &
	else
		run_behind "$k" &
	fi
	pid_of[$k]=$!
done
for k in "${kernels[@]}"; do
	p=${pid_of[$k]}
	if [ -z "${status_of[$p]:-}" ]; then
		wait "$p"
		status_of[$p]=$?
	fi
	[ "${status_of[$p]}" = 0 ] || rc=1
	[ ! -e "$out/$k" ] || cat "$out/$k"
done
exit "$rc"
