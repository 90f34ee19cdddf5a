#!/usr/bin/env bash
# Run libFuzzer harnesses one after the other (tests/fuzz/README.md).
#   tests/fuzz/run.sh [--seconds N] [--bin DIR] HARNESS...
# For each: the seeds (tests/fuzz/corpus/HARNESS) must run clean and at
# least one must be accepted by the code under test (else the harness
# tests nothing past the first check); then libFuzzer runs for N seconds.
# Any crash, leak, timeout or out-of-memory fails it; the input is saved
# in DIR/artifacts/HARNESS/. One summary line per harness; exit 1 if any
# failed. New inputs the fuzzer finds go to DIR/corpus/HARNESS (not to
# the seeds in the source tree).
set -uo pipefail
cd "$(dirname "$0")/../.."

seconds=60
bin=build-fuzz
while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) seconds=$2; shift 2 ;;
	--bin) bin=$2; shift 2 ;;
	-*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || { echo "usage: tests/fuzz/run.sh [--seconds N] [--bin DIR] HARNESS..." >&2; exit 2; }

# Largest input per harness: enough for a few frames or map pages, small
# enough that each run stays fast.
max_len() {
	case "$1" in
	diff|diff_v3|cache_map|e2b_store) echo 65536 ;;
	cache_live|e2b|e2b_section) echo 20480 ;;
	state|http_response|mountinfo) echo 16384 ;;
	ctlsock) echo 1024 ;;
	*) echo 4096 ;;
	esac
}

failed=0 total=0
for h in "$@"; do
	exe=$bin/fuzz_$h seeds=tests/fuzz/corpus/$h
	work=$bin/corpus/$h art=$bin/artifacts/$h/ log=$bin/logs/$h.log
	if [ ! -x "$exe" ]; then
		echo "fuzz_$h: FAILED: $exe is missing: run 'make fuzz-build'"
		failed=1
		continue
	fi
	mkdir -p "$work" "$art" "$(dirname "$log")"
	dict=()
	[ -f "tests/fuzz/$h.dict" ] && dict=(-dict="tests/fuzz/$h.dict")

	# The seeds, once each: clean, and getting past the checks.
	n_seeds=$(find "$seeds" -type f | wc -l)
	accepted=0
	if [ "$n_seeds" -gt 0 ]; then
		out=$(find "$seeds" -type f -print0 | FUZZ_SELFTEST=1 xargs -0 "$exe" -runs=1 \
			-rss_limit_mb=2048 -timeout=10 2>&1)
		rc=$?
		accepted=$(sed -n 's/^fuzz selftest: accepted //p' <<<"$out" | tail -1)
		if [ $rc -ne 0 ]; then
			echo "$out" >"$log"
			echo "fuzz_$h: FAILED: a seed crashes it (see $log)"
			grep -aE '^(==[0-9]+==ERROR|SUMMARY|fuzz invariant)' "$log" | head -5 | sed 's/^/    /'
			failed=1
			continue
		fi
		if [ "${accepted:-0}" -eq 0 ]; then
			echo "fuzz_$h: FAILED: none of the $n_seeds seeds in $seeds is accepted by the code" \
				"under test (harness broken, or seeds out of date: make fuzz-seeds)"
			failed=1
			continue
		fi
	fi

	"$exe" "$work" "$seeds" "${dict[@]}" -max_total_time="$seconds" -timeout=10 \
		-rss_limit_mb=2048 -max_len="$(max_len "$h")" -print_final_stats=1 \
		-artifact_prefix="$art" -close_fd_mask=3 >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -aoE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)
	corp=$(grep -aoE 'corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -1)
	total=$((total + ${execs:-0}))
	stats="execs ${execs:-?}, exec/s ${rate:-?}, ${cov:-cov: ?}, ${corp:-corp: ?}, seeds $n_seeds, accepted in $accepted calls"
	if [ $rc -ne 0 ]; then
		what=$(grep -aoE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer)[^(]*|fuzz invariant failed.*|runtime error.*' "$log" | head -1)
		echo "fuzz_$h: FAILED after $stats: ${what:-exit $rc} (log $log)"
		grep -aoE "Test unit written to .*" "$log" | sed 's/^/    /'
		grep -aE '^ *#[0-9]+ 0x.* in ' "$log" | grep -v -E 'libFuzzer|fuzzer::|__sanitizer|__asan|__ubsan|libc.so' |
			head -6 | sed 's/^/    /'
		failed=1
	else
		echo "fuzz_$h: ok: $stats"
	fi
done
echo "fuzz: $total executions in total"
exit $failed
