#!/usr/bin/env bats
# What a server or another local user can feed the remote-image code
# (issue #11): header parsers, URL redaction, chunk cache limits and links
# (tests/unit/test-http.c), and whole requests against our own hostile
# server (tests/hostile_http.py) over loopback: no ublk needed.

load ../helpers

PORT=28180

setup() {
	T=$(mktemp -d)
	hostile_start $PORT "$T"
}

teardown() {
	[ -z "${server:-}" ] || kill "$server" 2>/dev/null || true
	rm -rf "$T"
}

@test "remote input unit tests: parsers, chunk cache, hostile server" {
	run env UBLK_HOSTILE_PORT=$PORT UBLK_HOSTILE_TLS_PORT=$((PORT + 2)) "$UBLK_TEST_BIN/test-http"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" 0 failed" ]]
	# the redirect to another origin arrived there without the credentials
	grep -q "^$((PORT + 1)) /private/img auth=no" "$T/server.log"
	run grep "^$((PORT + 1)) .*auth=yes" "$T/server.log"
	[ "$status" -ne 0 ]
}

@test "--inspect of a URL shows it without user:password@ or query, in text and JSON" {
	url="http://alice:pw-s3cret@127.0.0.1:$PORT/golden/v4.header?X-Amz-Signature=sig-s3cret"
	run "$B/ublk-export-diff" --inspect "$url"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == "E2B header http://127.0.0.1:$PORT/golden/v4.header?..."* ]]
	[[ "$output" != *s3cret* ]]
	run "$B/ublk-export-diff" --inspect "$url" --json
	[ "$status" -eq 0 ]
	[ "$(jq -r .path <<<"$output")" = "http://127.0.0.1:$PORT/golden/v4.header?..." ]
	[[ "$output" != *s3cret* ]]
	# refused by the server: a permission (4), as for ublk-add, not a bad image
	run_mustfail 4 "/private/img: range 0-0: HTTP 403 (check the credentials)" \
		"$B/ublk-export-diff" --inspect "http://127.0.0.1:$PORT/private/img"
	# a scheme in capitals is a URL too (it was taken for a path, shown whole)
	run "$B/ublk-export-diff" --inspect "HTTP${url#http}"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == "E2B header http://127.0.0.1:$PORT/golden/v4.header?..."* ]]
	[[ "$output" != *s3cret* ]]
}
