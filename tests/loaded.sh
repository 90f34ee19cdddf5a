#!/usr/bin/env bash
# Run a command while every core of the host is kept busy, as on a host
# whose sandboxes use the CPU: `make check-loaded` runs the VM suite so.
#
#   tests/loaded.sh COMMAND [ARGS...]
#
#   UBLK_LOAD_HOGS  busy processes (default: one per core)
set -euo pipefail

hogs=${UBLK_LOAD_HOGS:-$(nproc)}
pids=()
stop() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap stop EXIT
for _ in $(seq "$hogs"); do
	sh -c 'while :; do :; done' &
	pids+=($!)
done
echo "loaded: $hogs busy process(es) on $(nproc) core(s)" >&2
"$@"
