#!/usr/bin/env bats
# Credentials of a remote base (docs/security.md): a URL's user:password@
# and presigned query, and UBLK_HTTP_AUTH, reach the server and a
# recovering server, and nobody else: no command line, state file, log,
# cache file or listing shows them.

load lib

PORT=18081

# nginx serving /private/ only with all three credentials.
nginx_start() {
	mkdir -p "$T/www/private"
	nginx_run "$(cat <<CONF
	access_log off;
	server {
		listen 127.0.0.1:$PORT;
		root $T/www;
		location /private/ {
			if (\$http_authorization != "Basic $(printf 'alice:pw-s3cr3t-1' | base64)") { return 401; }
			if (\$args !~ "X-Amz-Signature=sig-s3cr3t-2") { return 403; }
			if (\$http_x_api_key != "key-s3cr3t-3") { return 403; }
		}
	}
CONF
)"
}

setup() {
	vm_setup
	export UBLK_CHUNK_CACHE=$T/chunks
	nginx_start
	# the secrets, as grep patterns in a file: grep's own command line
	# must not hold them
	printf '%s\n' pw-s3cr3t-1 sig-s3cr3t-2 key-s3cr3t-3 >"$T/patterns"
}

teardown() {
	"$B/ublk-del" --all --force --timeout 5 >/dev/null 2>&1 || true
	nginx_stop || true
	vm_teardown
}

# Fails if a secret is in any of the files given (or read from stdin).
assert_no_secret() {
	run grep -a -l -r -F -f "$T/patterns" "$@"
	if [ "$status" -ne 1 ]; then
		echo "secrets found in: $output" >&2
		return 1
	fi
}

# Every process's command line, one file per process.
all_cmdlines() {
	local p
	mkdir -p "$T/cmdlines"
	rm -f "$T/cmdlines"/*
	for p in /proc/[0-9]*; do
		cat "$p/cmdline" >"$T/cmdlines/${p#/proc/}" 2>/dev/null || true
	done
}

@test "credentials of a remote base stay private, and a recovered server still has them" {
	make_image "$T/www/private/img" 8
	url="http://alice:pw-s3cr3t-1@127.0.0.1:$PORT/private/img?X-Amz-Signature=sig-s3cr3t-2&X-Amz-Date=1"
	# without the header the server refuses: the credentials matter
	run_mustfail 4 "check the credentials" "$B/ublk-add" --base "$url" --read-only --chunk-size 1M
	dev=$(UBLK_HTTP_AUTH='X-Api-Key: key-s3cr3t-3' UBLK_DEBUG=1 \
		"$B/ublk-add" --base "$url" --read-only --chunk-size 1M 2>"$T/add.err")
	id=${dev#/dev/ublkb}
	entry=$UBLK_STATE_DIR/ublkb$id
	# one chunk read now, the rest after the recovery (fetched with credentials)
	dd if="$dev" of="$T/first" bs=1M count=1 iflag=direct status=none
	cmp "$T/first" <(head -c 1M "$T/www/private/img")
	pid=$(cat "$entry/pid")

	all_cmdlines
	assert_no_secret "$T/cmdlines"
	grep -q -- "--secrets-fd" "$T/cmdlines/$pid"
	grep -q -F "127.0.0.1:$PORT/private/img?..." "$T/cmdlines/$pid"
	# the server got the header on an fd, not in its environment
	assert_no_secret "/proc/$pid/environ"
	assert_no_secret "$entry/config" "$entry/log" "$entry/state" "$T/add.err"
	grep -qx -F "base=http://127.0.0.1:$PORT/private/img?..." "$entry/config"
	assert_no_secret "$UBLK_CHUNK_CACHE"
	"$B/ublk-pool" list --json >"$T/list.json"
	assert_no_secret "$T/list.json"
	# the full credentials are kept, privately, for recovery
	[ "$(stat -c %a "$entry/secret")" = 600 ]
	grep -q -F "base=$url" "$entry/secret"
	grep -q -x -F "auth=X-Api-Key: key-s3cr3t-3" "$entry/secret"

	kill -9 "$pid"
	run "$B/ublk-pool" reclaim --recover
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == "recovered ublkb$id "* ]]
	newpid=$(cat "$entry/pid")
	[ "$newpid" != "$pid" ]
	[ "$(cat "$entry/state")" = live ]
	# every chunk but the first is fetched now, by the recovered server
	cmp "$T/www/private/img" "$dev"
	all_cmdlines
	assert_no_secret "$T/cmdlines" "/proc/$newpid/environ" "$entry/config" "$entry/log"
	assert_no_secret "$UBLK_CHUNK_CACHE"
	"$B/ublk-del" "$dev"
	assert_gone "$id" "$newpid"
}

@test "credentials on ublk-add --secrets-fd: none on any command line, the device serves the private image" {
	make_image "$T/www/private/img" 4
	# the full URL and the header only in a file on fd 3 (a file, so that no
	# process's command line or environment ever holds them)
	printf 'base=http://alice:pw-s3cr3t-1@127.0.0.1:%s/private/img?X-Amz-Signature=sig-s3cr3t-2&X-Amz-Date=1\nauth=X-Api-Key: key-s3cr3t-3\n' \
		"$PORT" >"$T/secrets"
	chmod 600 "$T/secrets"
	dev=$("$B/ublk-add" --base "http://127.0.0.1:$PORT/private/img" --read-only --chunk-size 1M \
		--secrets-fd 3 3<"$T/secrets")
	id=${dev#/dev/ublkb}
	entry=$UBLK_STATE_DIR/ublkb$id
	cmp "$T/www/private/img" "$dev"
	all_cmdlines
	assert_no_secret "$T/cmdlines" "/proc/$(cat "$entry/pid")/environ" "$entry/config" "$entry/log"
	grep -q -x -F "auth=X-Api-Key: key-s3cr3t-3" "$entry/secret"
	# credentials of another URL are refused, and make no device
	printf 'base=http://127.0.0.1:%s/private/other?X-Amz-Signature=x\n' "$PORT" >"$T/wrong"
	run_mustfail 2 "--secrets-fd: the credentials given for --base belong to another URL" \
		"$B/ublk-add" --base "http://127.0.0.1:$PORT/private/img" --read-only --secrets-fd 3 3<"$T/wrong"
	[ "$(ls /sys/class/ublk-char | wc -l)" -eq 1 ]
	"$B/ublk-del" "$dev"
	assert_gone "$id"
}
