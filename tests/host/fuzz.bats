#!/usr/bin/env bats
# Each libFuzzer harness (tests/fuzz/README.md) for FUZZ_SECONDS (default
# 5) seconds: its seeds must be accepted by the code under test, and no
# input may crash, leak, hang or trip an invariant. `make check` builds the
# harnesses into build-fuzz and sets UBLK_FUZZ_BIN; `make fuzz` runs them
# longer. A failure prints the saved input and the top of the stack.

setup() {
	FUZZ_BIN=${UBLK_FUZZ_BIN:-$BATS_TEST_DIRNAME/../../build-fuzz}
	if [ -z "${UBLK_FUZZ_BIN:-}" ] && [ ! -x "$FUZZ_BIN/fuzz_diff" ]; then
		skip "fuzz harnesses not built: make fuzz-build (make check builds them)"
	fi
}

fuzz() {
	run "$BATS_TEST_DIRNAME/../fuzz/run.sh" --seconds "${FUZZ_SECONDS:-5}" --bin "$FUZZ_BIN" "$1"
	echo "$output"
	echo "# ${lines[0]}" >&3
	[ "$status" -eq 0 ]
}

@test "fuzz diff: v1 diffs, raw and zstd frames, checksums recomputed" { fuzz diff; }
@test "fuzz diff_v3: v3 mapping header and data file" { fuzz diff_v3; }
@test "fuzz e2b: E2B build headers, layouts 1-5, and a child written on each" { fuzz e2b; }
@test "fuzz e2b_section: the builds and mapping section of E2B layouts 4 and 5, past its LZ4 frame" { fuzz e2b_section; }
@test "fuzz e2b_store: an E2B build's header and data files, plain, zstd and lz4 frames, read and verified" { fuzz e2b_store; }
@test "fuzz cache_map: cache map file, with and without a live map" { fuzz cache_map; }
@test "fuzz cache_live: live block map" { fuzz cache_live; }
@test "fuzz state: state entry config, pid, state, stats, secret" { fuzz state; }
@test "fuzz http: Content-Range, Content-Length, ETag, URLs in logs and cache keys" { fuzz http; }
@test "fuzz http_response: whole responses over TCP: status lines, headers, bodies, redirects, credentials kept to their origin" { fuzz http_response; }
@test "fuzz ctlsock: control socket lines" { fuzz ctlsock; }
@test "fuzz options: sizes, seconds, ids, inject specs, names, device options" { fuzz options; }
@test "fuzz trace: access traces, their text and merge" { fuzz trace; }
@test "fuzz mountinfo: mount tables a sandbox names mountpoints in, as ublk-del says who holds a device" { fuzz mountinfo; }
@test "fuzz chunkcache: chunk cache roots as crashes and planted links leave them: key, chunks, eviction" { fuzz chunkcache; }
