#!/usr/bin/env bats
# What a server or another local user can feed the remote-image code
# (issue #11): header parsers, URL redaction, chunk cache limits and links
# (tests/unit/test-http.c), and whole requests against our own hostile
# server (tests/hostile_http.py) over loopback: no ublk needed.

load ../helpers

PORT=28180

setup() {
	T=$(mktemp -d)
	# the chunk cache in the test's folder, not the host's
	export UBLK_CHUNK_CACHE=$T/chunks
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

@test "ublk-export-diff takes a URL's options: --http-timeout bounds a slow server, --auth-file's token is sent" {
	# each read after the probe answered in 2 s: within the default, not within 1 s
	"$B/ublk-export-diff" --flatten --base "http://127.0.0.1:$PORT/slow/img" -o "$T/slow.img"
	"$B/ublk-export-diff" --flatten --base "http://127.0.0.1:$PORT/ok/img" -o "$T/ok.img"
	cmp "$T/slow.img" "$T/ok.img"
	rm -rf "$T/chunks"
	run "$B/ublk-export-diff" --flatten --base "http://127.0.0.1:$PORT/slow/img" --http-timeout 1 \
		--http-retries 0 -o "$T/x.img"
	echo "$output"
	[ "$status" -eq 7 ]
	[[ "$output" == *"Operation timed out"* ]]
	[[ "$output" == *"Connection timed out"* ]]
	[ ! -e "$T/x.img" ]
	# the token from a file (not the environment) opens the private image
	printf 's3cret\n' >"$T/auth"
	chmod 600 "$T/auth"
	run_mustfail 4 "HTTP 403" "$B/ublk-export-diff" --inspect "http://127.0.0.1:$PORT/private/img"
	run_mustfail 5 "not a ublk-tools diff (bad magic)" \
		"$B/ublk-export-diff" --inspect "http://127.0.0.1:$PORT/private/img" --auth-file "$T/auth"
	grep -q "^$PORT /private/img auth=yes" "$T/server.log"
	# in a folder others may change, the name could be pointed at a file of root's
	mkdir -m 0777 "$T/open"
	cp "$T/auth" "$T/open/auth"
	run_mustfail 2 "--auth-file $T/open/auth: its folder $T/open is writable by other users (mode 0777)" \
		"$B/ublk-export-diff" --inspect "http://127.0.0.1:$PORT/private/img" --auth-file "$T/open/auth"
	run_mustfail 2 "--http-timeout, --http-retries, --auth-file, --secrets-fd and --insecure go with a URL" \
		"$B/ublk-export-diff" --cache "$T/c" -o "$T/y" --http-timeout 1
}

@test "--secrets-fd: a URL's credentials and the token reach the server, never a command line" {
	"$B/ublk-export-diff" --flatten --base "http://127.0.0.1:$PORT/ok/img" -o "$T/ok.img"
	# a presigned query string, on fd 3 only
	run "$B/ublk-export-diff" --flatten --base "http://127.0.0.1:$PORT/ok/img" -o "$T/signed.img" \
		--secrets-fd 3 3< <(printf 'base=http://127.0.0.1:%s/ok/img?sig=TOPSECRET\n' "$PORT")
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" != *TOPSECRET* ]]
	cmp "$T/ok.img" "$T/signed.img"
	grep -q "^$PORT /ok/img?sig=TOPSECRET " "$T/server.log"
	# the token as auth=, for the image that needs it
	rm -rf "$T/chunks"
	run "$B/ublk-export-diff" --flatten --base "http://127.0.0.1:$PORT/private/img" -o "$T/private.img" \
		--secrets-fd 3 3< <(printf 'auth=Bearer s3cret\n')
	[ "$status" -eq 0 ]
	grep -q "^$PORT /private/img auth=yes" "$T/server.log"
	# the credentials of another URL than the command line's are refused, by each tool
	run_mustfail 2 "--secrets-fd: the credentials given for --base belong to another URL" \
		"$B/ublk-export-diff" --flatten --base "http://127.0.0.1:$PORT/ok/img" -o "$T/x.img" \
		--secrets-fd 3 3< <(printf 'base=http://127.0.0.1:%s/other/img?sig=x\n' "$PORT")
	[ ! -e "$T/x.img" ]
	run_mustfail 2 "--secrets-fd: the credentials given for --base belong to another URL" \
		"$B/ublk-add" --base "http://127.0.0.1:$PORT/ok/img" --state-dir "$T/state" \
		--secrets-fd 3 3< <(printf 'base=http://127.0.0.1:%s/other/img?sig=x\n' "$PORT")
	run_mustfail 2 "--secrets-fd '9': expected an open descriptor from 3 to 1024" \
		"$B/ublk-add" --base "http://127.0.0.1:$PORT/ok/img" --secrets-fd 9
	run_mustfail 2 "--secrets-fd and --insecure go with a URL" \
		"$B/ublk-export-diff" --cache "$T/c" -o "$T/y" --secrets-fd 3 3</dev/null
}
