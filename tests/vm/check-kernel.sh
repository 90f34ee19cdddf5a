#!/usr/bin/env bash
# The VM suite on one kernel, counted: prints
#   vm-<version>: N passed, N failed, N skipped (S s)
# and exits non-zero when a test failed or the VM did not finish.
#
#   check-kernel.sh [FILE.bats...]   default: every tests/vm/*.bats
#   UBLK_VM_KERNEL   6.1 (default) or 6.12 (tests/vm/build-kernel.sh)
#   UBLK_VM_EXCLUDE  file names to leave out, space-separated (e2b.bats)
#   UBLK_VM_TIMEOUT  the run's deadline (default here 2400 s, twice a run's
#                    time on a busy 2-core host: a hung VM ends well within
#                    CI's 90 minutes, with its console kept)
#   UBLK_VM_TAPLOG   where to keep the TAP output (default: a temporary file)
#   UBLK_VM_TEST_TIMEOUT  seconds one test may take (default 600): a hung
#                    test fails alone instead of eating the run's deadline
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
ver=${UBLK_VM_KERNEL:-6.1}
export UBLK_VM_KERNEL=$ver UBLK_VM_TIMEOUT=${UBLK_VM_TIMEOUT:-2400}

cd "$top"
files=("$@")
if [ ${#files[@]} -eq 0 ]; then
	for f in tests/vm/*.bats; do
		[[ " ${UBLK_VM_EXCLUDE:-} " == *" $(basename "$f") "* ]] || files+=("$f")
	done
fi
log=${UBLK_VM_TAPLOG:-$(mktemp /tmp/ublk-vm-tap.XXXXXX)}
start=$(date +%s)
set +e
# TAP, whatever the console is: the counts come from its ok / not ok lines.
"$here/run.sh" env BATS_TEST_TIMEOUT="${UBLK_VM_TEST_TIMEOUT:-600}" bats --formatter tap --timing --print-output-on-failure "${files[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
secs=$(( $(date +%s) - start ))
tr -d '\r' <"$log" >"$log.clean"
skipped=$(grep -cE '^ok [0-9]+ .*# skip' "$log.clean" || true)
passed=$(( $(grep -cE '^ok [0-9]+ ' "$log.clean" || true) - skipped ))
failed=$(grep -cE '^not ok [0-9]+ ' "$log.clean" || true)
planned=$(grep -oE '^1\.\.[0-9]+' "$log.clean" | head -1 | cut -d. -f3 || true)
rm -f "$log.clean"
echo "vm-$ver: $passed passed, $failed failed, $skipped skipped (${secs}s; TAP in $log)"
if [ -n "$planned" ] && [ $(( passed + failed + skipped )) -ne "$planned" ]; then
	echo "vm-$ver: only $(( passed + failed + skipped )) of $planned tests ran (VM exit $rc)" >&2
	exit 1
fi
[ "$rc" = 0 ] && [ "$failed" = 0 ]
