#!/usr/bin/env bash
# The VM suite on several kernels at once, each line labelled with its
# kernel ("[6.12] ok 3 ..."), each kernel counted by check-kernel.sh.
# The VMs spend much of a run waiting on the tests' deadlines, so two
# boots side by side take 15% less time than one after the other on two
# cores (docs/kernels.md).
#
#   check-kernels.sh KERNEL...    e.g. 6.1 6.12
#   UBLK_VM_SERIAL=1  one after the other (a host short of memory or cores)
# Exits non-zero when any kernel's run did.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
[ $# -gt 0 ] || { echo "usage: check-kernels.sh KERNEL..." >&2; exit 2; }

one() {
	UBLK_VM_KERNEL=$1 "$here/check-kernel.sh" 2>&1 | sed -u "s/^/[$1] /"
	return "${PIPESTATUS[0]}"
}

rc=0
if [ "${UBLK_VM_SERIAL:-0}" = 1 ]; then
	for k in "$@"; do one "$k" || rc=1; done
	exit "$rc"
fi
pids=()
for k in "$@"; do
	one "$k" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit "$rc"
