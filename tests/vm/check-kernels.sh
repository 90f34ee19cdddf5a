#!/usr/bin/env bash
# The VM suite on several kernels, each counted by check-kernel.sh, the
# VMs running side by side, each on one host thread: a guest's two CPUs
# then take turns on it (qemu's TCG thread=single) instead of fighting the
# other VM for the host's cores, and on two cores two kernels take little
# longer than one (docs/kernels.md). Exits non-zero when any kernel failed.
#
#   check-kernels.sh VERSION...
#   UBLK_VM_PARALLEL  VMs at once (default: the host's cores; 1 runs the
#                     kernels one after the other, each guest CPU on a
#                     host thread of its own)
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || { echo "usage: check-kernels.sh VERSION..." >&2; exit 2; }
at_once=${UBLK_VM_PARALLEL:-$(nproc)}
[[ $at_once =~ ^[1-9][0-9]*$ ]] || { echo "UBLK_VM_PARALLEL: not a count: $at_once" >&2; exit 2; }

out=$(mktemp -d /tmp/ublk-vm-kernels.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; rm -rf "$out"' EXIT
trap 'exit 130' INT TERM

# Built one at a time, before any VM: builds side by side would only share
# the cores, and VMs would then start at different times.
for k in "$@"; do
	UBLK_VM_KERNEL=$k "$here/build-kernel.sh" >/dev/null || {
		echo "vm-$k: could not build the test kernel" >&2
		exit 1
	}
done

[ "$at_once" -eq 1 ] || export UBLK_VM_TCG_THREAD=${UBLK_VM_TCG_THREAD:-single}

# A kernel's output comes as it runs when it starts alone, else whole
# once every kernel has ended.
rc=0
declare -A pid_of status_of
for k in "$@"; do
	while [ "$(jobs -rp | wc -l)" -ge "$at_once" ]; do
		wait -n -p done_pid
		status_of[$done_pid]=$?
	done
	if [ -z "$(jobs -rp)" ]; then
		UBLK_VM_KERNEL=$k "$here/check-kernel.sh" &
	else
		UBLK_VM_KERNEL=$k "$here/check-kernel.sh" >"$out/$k" 2>&1 &
	fi
	pid_of[$k]=$!
	pids+=("$!")
done
for k in "$@"; do
	p=${pid_of[$k]}
	if [ -z "${status_of[$p]:-}" ]; then
		wait "$p"
		status_of[$p]=$?
	fi
	[ "${status_of[$p]}" = 0 ] || rc=1
	[ ! -e "$out/$k" ] || cat "$out/$k"
done
exit "$rc"
