#!/usr/bin/env bats
# Remote base images: lazy HTTP range reads through a shared chunk cache,
# against a real nginx on loopback.

load lib

PORT=18080

nginx_start() {
	mkdir -p "$T/nginx" "$T/www/private"
	[ -s "$T/nginx/cert.pem" ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
		-nodes -days 1 -subj /CN=localhost -keyout "$T/nginx/key.pem" -out "$T/nginx/cert.pem" 2>/dev/null
	nginx_run "$(cat <<CONF
	log_format ranges '\$request_uri \$status \$http_range \$http_authorization';
	access_log $T/nginx/access.log ranges;
	server {
		listen 127.0.0.1:$PORT;
		root $T/www;
		# ?sig=slow: the same file (and chunk cache folder: a presigned
		# URL's signature is not in its identity) at 8 KiB/s
		if (\$arg_sig) { set \$limit_rate 8k; }
		location /private/ {
			if (\$http_authorization != "Bearer s3cret-token") { return 403; }
		}
		# what a range from byte 0 asks (the probe, a first chunk) at full
		# speed, the rest at 8 KiB/s
		location /slowtail/ {
			if (\$http_range !~ "^bytes=0-") { set \$limit_rate 8k; }
		}
	}
	server {
		listen 127.0.0.1:18443 ssl;
		ssl_certificate $T/nginx/cert.pem;
		ssl_certificate_key $T/nginx/key.pem;
		root $T/www;
	}
CONF
)"
}

setup() {
	vm_setup
	export UBLK_CHUNK_CACHE=$T/chunks
	nginx_start
	URL=http://127.0.0.1:$PORT
}

teardown() {
	[ -z "${proxy:-}" ] || kill "$proxy" 2>/dev/null || true
	[ -z "${WATCH:-}" ] || pkill -TERM -x ublk-pool || true
	"$B/ublk-del" --all --force --timeout 5 >/dev/null 2>&1 || true
	nginx_stop || true
	vm_teardown
}

# The credentials test's token is nowhere but in the entry's secret file
# (mode 0600, for a recovery): in no other state file, no command line.
assert_token_private() {
	local p
	echo s3cret-token >"$T/pattern"
	# (-s: a statistics file renamed over while grep reads the folder)
	run grep -r -s -l -F -f "$T/pattern" --exclude=secret "$UBLK_STATE_DIR"
	[ -z "$output" ] || { echo "the token is in: $output" >&2; return 1; }
	for p in /proc/[0-9]*; do
		run grep -q -a -F -f "$T/pattern" "$p/cmdline"
		[ "$status" -ne 0 ] || { echo "the token is in the command line of ${p#/proc/}" >&2; return 1; }
	done
}

@test "a device over a remote base has the bytes of the file" {
	make_image "$T/www/img" 24
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --read-only)
	cmp "$T/www/img" "$dev"
	[ "$(stat_of "$dev" .remote.chunks_fetched)" -eq 24 ]
	"$B/ublk-del" "$dev"
	# a copy-on-write cache over it works as over a file
	dev=$("$B/ublk-add" --base "$URL/img" --cache "$T/cache")
	dd if=/dev/urandom of="$T/p" bs=4k count=4 status=none
	dd if="$T/p" of="$dev" bs=4k seek=10 oflag=direct status=none
	cmp "$T/p" <(dd if="$dev" bs=4k skip=10 count=4 iflag=direct status=none)
	cmp -n 40960 "$T/www/img" "$dev"
	"$B/ublk-del" "$dev"
}

@test "reading a few files of an ext4 image fetches only their chunks; a second device fetches nothing" {
	mkdir "$T/tree"
	for i in $(seq 20); do make_image "$T/tree/f$i" 2; done
	mkfs.ext4 -q -F -b 4096 -d "$T/tree" "$T/www/fs.img" 128M
	dev=$("$B/ublk-add" --base "$URL/fs.img" --chunk-size 1M --read-only)
	mkdir "$T/mnt"
	mount -o ro,noload "$dev" "$T/mnt"
	cmp "$T/tree/f3" "$T/mnt/f3"
	cmp "$T/tree/f17" "$T/mnt/f17"
	umount "$T/mnt"
	fetched=$(stat_of "$dev" .remote.chunks_fetched)
	echo "fetched $fetched of 128 chunks"
	[ "$fetched" -lt 32 ]
	ranges=$(grep -c "^/fs.img 206 bytes=" "$T/nginx/access.log")
	[ "$ranges" -eq "$((fetched + 1))" ]   # + the size probe
	"$B/ublk-del" "$dev"
	# the chunk cache is shared: a new device reads the same files without a fetch
	dev=$("$B/ublk-add" --base "$URL/fs.img" --chunk-size 1M --read-only)
	mount -o ro,noload "$dev" "$T/mnt"
	cmp "$T/tree/f3" "$T/mnt/f3"
	umount "$T/mnt"
	[ "$(stat_of "$dev" .remote.chunks_fetched)" -eq 0 ]
	[ "$(stat_of "$dev" .remote.chunk_cache_hits)" -gt 0 ]
	"$B/ublk-del" "$dev"
}

@test "server gone: EIO within the deadline, device deletable; back: reads succeed" {
	make_image "$T/www/img" 16
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --read-only --http-timeout 2 --http-retries 1)
	dd if="$dev" of=/dev/null bs=1M count=1 iflag=direct status=none
	nginx_stop
	start=$(date +%s)
	run dd if="$dev" of=/dev/null bs=4k skip=1024 count=1 iflag=direct status=none
	[ "$status" -ne 0 ]
	[ $(( $(date +%s) - start )) -lt 10 ]
	# the first chunk is cached: still readable without the server
	dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
	nginx_start
	cmp <(dd if="$T/www/img" bs=4k skip=1024 count=1 status=none) \
		<(dd if="$dev" bs=4k skip=1024 count=1 iflag=direct status=none)
	[ "$(stat_of "$dev" .remote.fetch_errors)" -ge 1 ]
	grep -q "Connection refused\|Couldn't connect" "$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/log"
	"$B/ublk-del" --timeout 5 "$dev"
	assert_none_left
}

@test "5xx answers are retried" {
	make_image "$T/www/img" 4
	python3 "$BATS_TEST_DIRNAME/helpers/flaky-proxy.py" 18081 "$URL" 3 2>"$T/proxy.log" &
	proxy=$!
	wait_until 30 '(echo >/dev/tcp/127.0.0.1/18081) 2>/dev/null'
	# the size probe takes the three 500s, then succeeds on its fourth try
	dev=$("$B/ublk-add" --base "http://127.0.0.1:18081/img" --chunk-size 1M --read-only --http-retries 3)
	cmp "$T/www/img" "$dev"
	[ "$(grep -c ' 500 ' "$T/proxy.log")" -eq 3 ]
	"$B/ublk-del" "$dev"
}

@test "credentials from a file or the environment, never in logs, state or ps" {
	make_image "$T/www/private/img" 4
	run_mustfail 4 "HTTP 403 (check the credentials)" "$B/ublk-add" --base "$URL/private/img" --read-only
	echo "s3cret-token" >"$T/token"
	# a relative name is kept absolute: a recovery runs elsewhere
	dev=$(cd "$T" && "$B/ublk-add" --base "$URL/private/img" --read-only --auth-file token)
	grep -qx "auth_file=$T/token" "$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/config"
	cmp "$T/www/private/img" "$dev"
	assert_token_private
	kill -9 "$(cat "$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/pid")"
	(cd / && "$B/ublk-pool" reclaim --recover --timeout 30)
	echo 3 >/proc/sys/vm/drop_caches
	cmp "$T/www/private/img" "$dev"
	"$B/ublk-del" "$dev"
	dev=$(UBLK_HTTP_AUTH="Bearer s3cret-token" "$B/ublk-add" --base "$URL/private/img" --read-only)
	cmp "$T/www/private/img" "$dev"
	assert_token_private
	"$B/ublk-del" "$dev"
}

@test "a recovery sends the device's credentials, never those of whoever started it" {
	make_image "$T/www/img" 8
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --read-only)
	id=${dev#/dev/ublkb}
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -9 "$pid"
	UBLK_HTTP_AUTH="Bearer callers-token" "$B/ublk-pool" reclaim --recover
	pid2=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	[ "$pid2" != "$pid" ]
	cmp -n 4M "$T/www/img" "$dev"
	run grep -q -a callers-token "/proc/$pid2/environ"
	[ "$status" -eq 1 ]
	# and a recovery by hand
	kill -9 "$pid2"
	UBLK_HTTP_AUTH="Bearer callers-token" "$B/ublk-serve" --recover "$id" </dev/null \
		>/dev/null 2>"$T/serve.err" &
	BG=$!
	wait_until 60 "served_by_other $id $pid2"
	cmp "$T/www/img" "$dev"
	[ "$(grep -c "^/img 206 bytes=" "$T/nginx/access.log")" -ge 8 ]
	run grep -c callers-token "$T/nginx/access.log"
	[ "$output" = 0 ]
	"$B/ublk-del" "$dev"
	wait "$BG"
	BG=
	assert_none_left
}

@test "a recovery keeps the chunk cache the device was added with, whatever the environment of whoever starts it" {
	make_image "$T/www/img" 8
	dev=$(UBLK_CHUNK_CACHE=$T/chunks-a "$B/ublk-add" --base "$URL/img" --chunk-size 1M --read-only)
	id=${dev#/dev/ublkb}
	grep -qx "chunk_cache=$T/chunks-a" "$UBLK_STATE_DIR/ublkb$id/config"
	cmp "$T/www/img" "$dev"
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -9 "$pid"
	UBLK_CHUNK_CACHE=$T/chunks-b "$B/ublk-pool" reclaim --recover
	[ "$(cat "$UBLK_STATE_DIR/ublkb$id/pid")" != "$pid" ]
	echo 3 >/proc/sys/vm/drop_caches
	cmp "$T/www/img" "$dev"
	[ ! -e "$T/chunks-b" ]
	# every chunk was fetched once: the recovered server read them from the cache
	for i in 0 1 2 3 4 5 6 7; do
		run grep -c "^/img 206 bytes=$((i << 20))-$(((i + 1 << 20) - 1)) " "$T/nginx/access.log"
		[ "$output" -eq 1 ]
	done
	"$B/ublk-del" "$dev"
	assert_none_left
}

@test "an image changed on the server is refused, never mixed" {
	make_image "$T/www/img" 8
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --read-only)
	dd if="$dev" of=/dev/null bs=1M count=1 iflag=direct status=none
	make_image "$T/www/img.new" 8
	# a different mtime, so a different ETag
	touch -d "@$(( $(stat -c %Y "$T/www/img") + 10 ))" "$T/www/img.new"
	mv "$T/www/img.new" "$T/www/img"
	run dd if="$dev" of=/dev/null bs=4k skip=1024 count=1 iflag=direct status=none
	[ "$status" -ne 0 ]
	grep -q "changed on the server" "$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/log"
	"$B/ublk-del" "$dev"
	# a new device sees the new version, from a new cache key
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --read-only)
	cmp "$T/www/img" "$dev"
	"$B/ublk-del" "$dev"
}

@test "a recovery over an image changed on the server is refused: the device waits, and recovers once its version is back" {
	make_image "$T/www/img" 8
	cp -p "$T/www/img" "$T/img.v1"   # the same mtime and size: the same ETag
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --cache "$T/cache")
	id=${dev#/dev/ublkb}
	grep -qx "size=8388608" "$UBLK_STATE_DIR/ublkb$id/image"
	# nginx's ETag: "MTIME-SIZE" in hex
	grep -qxE 'remote=8388608 "[0-9a-f]+-800000"' "$UBLK_STATE_DIR/ublkb$id/image"
	head -c 4096 /dev/urandom >"$T/block"
	dd if="$T/block" of="$dev" bs=4k seek=5 oflag=direct conv=fsync status=none
	cp "$T/img.v1" "$T/want"
	dd if="$T/block" of="$T/want" bs=4k seek=5 conv=notrunc status=none
	kill -9 "$(cat "$UBLK_STATE_DIR/ublkb$id/pid")"
	state() { "$B/ublk-pool" list --json | jq -r ".devices[] | select(.id == $id) | .kernel_state"; }
	wait_until 30 '[ "$(state)" = quiesced ]'
	make_image "$T/www/img.new" 8
	touch -d "@$(( $(stat -c %Y "$T/img.v1") + 10 ))" "$T/www/img.new"
	mv "$T/www/img.new" "$T/www/img"
	run timeout 120 "$B/ublk-serve" --recover "$id" --timeout 10
	echo "$output"
	[ "$status" -eq 5 ]
	# the cache, which recorded the version it was made over, refuses first
	[[ "$output" == *"$T/cache: cache was made over another version of its base (it recorded remote=8388608 \""* ]]
	[[ "$output" == *"the base is now remote=8388608 \""* ]]
	# refused before the kernel's recovery: the device still waits for one
	[ "$(state)" = quiesced ]
	run "$B/ublk-pool" reclaim --recover --timeout 30
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"recovery failed, left waiting: "*"cache was made over another version of its base"* ]]
	[ "$(state)" = quiesced ]
	# watch tries again after 1 s, then 2 s, ...: not every pass (0.2 s)
	"$B/ublk-pool" watch --interval 0.2 2>&1 | while IFS= read -r line; do
		echo "$(date +%s%N) $line"
	done >"$T/watch.log" &
	WATCH=$!
	wait_until 60 '[ "$(grep -c "recovery failed" "$T/watch.log")" -ge 3 ]'
	first=$(grep "recovery failed" "$T/watch.log" | sed -n 1p | cut -d' ' -f1)
	third=$(grep "recovery failed" "$T/watch.log" | sed -n 3p | cut -d' ' -f1)
	[ $(( (third - first) / 1000000 )) -ge 2500 ]
	# the version it was made over, back: watch recovers it, with the write made over it
	cp -p "$T/img.v1" "$T/www/img"
	wait_until 90 '[ "$(state)" = live ]'
	pkill -TERM -x ublk-pool
	wait "$WATCH" || true
	WATCH=
	cmp "$T/want" "$dev"
	"$B/ublk-del" "$dev"
	assert_none_left
}

@test "bad URLs fail with a clear message and leave nothing" {
	run_mustfail 5 "HTTP 404" "$B/ublk-add" --base "$URL/missing" --read-only --http-retries 0
	run_mustfail 5 "Couldn't connect to server" "$B/ublk-add" --base "http://127.0.0.1:1/x" --read-only --http-retries 0
	assert_none_left
}

@test "--prefetch brings the whole image in the background" {
	make_image "$T/www/img" 16
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --read-only --prefetch)
	wait_until 120 '[ "$(stat_of "$dev" .remote.chunks_fetched)" -eq 16 ]'
	# the progress is in the statistics and in ublk-pool status
	[ "$(stat_of "$dev" .remote.prefetch_chunks)" -eq 16 ]
	wait_until 60 '[ "$(stat_of "$dev" .remote.prefetch_chunks_done)" -eq 16 ]'
	[ "$("$B/ublk-pool" status -n -o prefetch "$dev")" = "100%" ]
	# everything is local now: the server is not needed any more
	nginx_stop
	cmp "$T/www/img" "$dev"
	"$B/ublk-del" "$dev"
}

@test "readahead: a sequential reader finds the next chunks fetched, the window moving with it" {
	make_image "$T/www/img" 8
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --read-only --readahead 2)
	stats=$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/stats
	fetched() { jq .remote.chunks_fetched "$stats" 2>/dev/null || echo 0; }
	dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
	# the two chunks after it come in the background
	wait_until 60 '[ "$(fetched)" -ge 3 ]'
	# reading a chunk that was read ahead (a hit) keeps two chunks ahead
	dd if="$dev" of=/dev/null bs=4k skip=256 count=1 iflag=direct status=none
	wait_until 60 '[ "$(fetched)" -ge 4 ]'
	dd if="$dev" of=/dev/null bs=4k skip=512 count=1 iflag=direct status=none
	wait_until 60 '[ "$(fetched)" -ge 5 ]'
	# and a read elsewhere fetches only its window (chunk 7 is the last)
	dd if="$dev" of=/dev/null bs=4k skip=$((7 * 256)) count=1 iflag=direct status=none
	wait_until 60 '[ "$(fetched)" -ge 6 ]'
	[ "$(stat_of "$dev" .remote.chunks_fetched)" -eq 6 ]
	# two reads missed (chunks 0 and 7), the others found their chunk fetched
	[ "$(stat_of "$dev" .remote.chunk_cache_misses)" -eq 2 ]
	cmp "$T/www/img" "$dev"
	"$B/ublk-del" "$dev"
}

@test "a chunk cache on a full disk: room is made once, a chunk that cannot fit fails with EIO, the log says why" {
	make_image "$T/www/img" 4
	mkdir -m 700 "$T/small"
	mount -t tmpfs -o size=512K,mode=700 tmpfs "$T/small"
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --chunk-cache "$T/small" --read-only --readahead 0)
	run dd if="$dev" of=/dev/null bs=4k count=1 iflag=direct status=none
	[ "$status" -ne 0 ]
	grep -q "writing the body: No space left on device" "$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/log"
	# the failed chunk left no file: the space is free again
	[ "$(find "$T/small" -type f ! -name key ! -name .full | wc -l)" -eq 0 ]
	[ "$(df --output=used -k "$T/small" | tail -1)" -lt 64 ]
	"$B/ublk-del" "$dev"
	umount "$T/small"
	# a disk with room for two chunks, under a limit far above it: the
	# least recently used make room, and every read succeeds
	mount -t tmpfs -o size=2600K,mode=700 tmpfs "$T/small"
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --chunk-cache "$T/small" --read-only --readahead 0)
	for i in 0 1 2 3; do
		dd if="$dev" of="$T/part$i" bs=1M skip=$i count=1 iflag=direct status=none
	done
	cat "$T/part0" "$T/part1" "$T/part2" "$T/part3" | cmp - "$T/www/img"
	[ "$(find "$T/small" -type f -name '[0-9]*' | wc -l)" -le 2 ]
	"$B/ublk-del" "$dev"
	umount "$T/small"
}

@test "remote diffs: zstd frames fetched lazily and verified; v3 pair too" {
	make_image "$T/www/base" 16
	dev=$("$B/ublk-add" --base "$URL/base" --chunk-size 1M --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=1M seek=2 count=6 oflag=direct status=none
	want=$(sha256sum <"$dev" | cut -d' ' -f1)
	"$B/ublk-export-diff" --keep --zstd --frame-size 256K -o "$T/www/d.diff" "$dev"
	"$B/ublk-export-diff" --cache "$T/cache" --format v3 -o "$T/www/v3.data"
	ro=$("$B/ublk-add" --base "$URL/base" --layer "$URL/d.diff" --chunk-size 64K --read-only)
	# one block of the diff needs its frame only
	dd if="$ro" of=/dev/null bs=4k skip=600 count=1 iflag=direct status=none
	[ "$(grep -c '^/d.diff 206' "$T/nginx/access.log")" -lt 20 ]
	[ "$(sha256sum <"$ro" | cut -d' ' -f1)" = "$want" ]
	"$B/ublk-del" "$ro"
	ro=$("$B/ublk-add" --base "$URL/base" --layer "$URL/v3.data.header" --read-only)
	[ "$(sha256sum <"$ro" | cut -d' ' -f1)" = "$want" ]
	"$B/ublk-del" "$ro"
	# a corrupted frame on the server is detected: EIO for its blocks only
	python3 - "$T/www/d.diff" <<'PY'
import json, subprocess, sys
path = sys.argv[1]
data = bytearray(open(path, 'rb').read())
data[8192 + 10] ^= 0xff          # inside the first frame
open(path + '.bad', 'wb').write(data)
PY
	ro=$("$B/ublk-add" --base "$URL/base" --layer "$URL/d.diff.bad" --chunk-cache "$T/chunks2" --read-only)
	run dd if="$ro" of=/dev/null bs=4k skip=512 count=1 iflag=direct status=none
	[ "$status" -ne 0 ]
	dd if="$ro" of=/dev/null bs=4k skip=0 count=1 iflag=direct status=none
	"$B/ublk-del" "$ro"
}

@test "a remote diff's slow frame fetch does not stall the other requests of its queue" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=1M seek=4 count=2 oflag=direct status=none
	"$B/ublk-del" "$dev"
	"$B/ublk-export-diff" --cache "$T/cache" --frame-size 64K -o "$T/www/s.diff"
	# the diff's header and tables into the chunk cache, at full speed
	dev=$("$B/ublk-add" --base "$T/base" --layer "$URL/s.diff" --chunk-size 64K --readahead 0 --read-only)
	want=$(dd if="$dev" bs=4k skip=1100 count=1 iflag=direct status=none | sha256sum)
	"$B/ublk-del" "$dev"
	# every chunk but the first and the last (header and tables) fetched again
	dir=$(dirname "$(ls "$T"/chunks/*/key)")
	last=$(ls "$dir" | grep -E '^[0-9]+$' | sort -n | tail -1)
	for c in $(ls "$dir" | grep -E '^[0-9]+$'); do
		[ "$c" = 0 ] || [ "$c" = "$last" ] || rm "$dir/$c"
	done
	dev=$("$B/ublk-add" --base "$T/base" --layer "$URL/s.diff?sig=slow" --chunk-size 64K --readahead 0 \
		--read-only --queues 1)
	# one read of the diff's data: a 64 KiB chunk at 8 KiB/s
	dd if="$dev" of="$T/slow" bs=4k skip=1100 count=1 iflag=direct status=none &
	slow=$!
	wait_until 30 '[ "$(dev_reads_in_flight "$dev")" -ge 1 ]'
	# meanwhile 50 reads of the base below, one at a time, on the same queue
	dd if="$dev" of=/dev/null bs=4k skip=0 count=50 iflag=direct status=none
	kill -0 "$slow"
	[ "$(dev_reads_in_flight "$dev")" -eq 1 ]
	wait "$slow"
	[ "$(sha256sum <"$T/slow")" = "$want" ]
	"$B/ublk-del" "$dev"
}

@test "a remote v3 pair: blocks in the chunk cache are read while its fetch threads wait on slow chunks" {
	make_image "$T/base" 8
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=1M seek=4 count=2 oflag=direct status=none
	"$B/ublk-del" "$dev"
	mkdir "$T/www/slowtail"
	"$B/ublk-export-diff" --cache "$T/cache" --format v3 -o "$T/www/slowtail/v3.data"
	dev=$("$B/ublk-add" --base "$T/base" --layer "$URL/slowtail/v3.data.header" --chunk-size 64K \
		--readahead 0 --read-only --queues 1)
	# device 4 MiB is the data file's first block: its chunk (0) comes fast
	want=$(dd if="$T/cache" bs=4k skip=1024 count=1 status=none | sha256sum)
	[ "$(dd if="$dev" bs=4k skip=1024 count=1 iflag=direct status=none | sha256sum)" = "$want" ]
	# two reads of later chunks (64 KiB at 8 KiB/s each, one after the
	# other): both fetch threads busy
	dd if="$dev" of="$T/slow1" bs=4k skip=1100 count=1 iflag=direct status=none &
	slow1=$!
	dd if="$dev" of="$T/slow2" bs=4k skip=1300 count=1 iflag=direct status=none &
	slow2=$!
	BG="$slow1 $slow2"
	wait_until 30 '[ "$(dev_reads_in_flight "$dev")" -ge 2 ]'
	# the cached block again, past the page cache: served while both wait
	[ "$(dd if="$dev" bs=4k skip=1025 count=1 iflag=direct status=none | sha256sum)" = \
		"$(dd if="$T/cache" bs=4k skip=1025 count=1 status=none | sha256sum)" ]
	kill -0 "$slow1"
	kill -0 "$slow2"
	[ "$(dev_reads_in_flight "$dev")" -eq 2 ]
	wait "$slow1"
	wait "$slow2"
	BG=
	cmp "$T/slow1" <(dd if="$T/cache" bs=4k skip=1100 count=1 status=none)
	cmp "$T/slow2" <(dd if="$T/cache" bs=4k skip=1300 count=1 status=none)
	"$B/ublk-del" "$dev"
}

@test "the chunk cache stays within its limit, evicting the least recently used" {
	make_image "$T/www/img" 16
	# a limit under 16 chunks could evict what reads wait for
	run_mustfail 2 "--chunk-cache-limit 8388608 is less than 16 chunks of 1048576 bytes (--chunk-size): give at least 16777216" \
		"$B/ublk-add" --base "$URL/img" --chunk-size 1M --chunk-cache-limit 8M --read-only
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 256K --chunk-cache-limit 4M --readahead 0 --read-only)
	cmp "$T/www/img" "$dev"
	used=$(du -sk "$T/chunks" | cut -f1)
	echo "chunk cache holds ${used} KiB"
	[ "$used" -le $((5 * 1024)) ]
	"$B/ublk-del" "$dev"
}

@test "a server keeps the last 64 chunk files it read open, within a raised fd limit" {
	make_image "$T/www/img" 8
	# a soft limit below the hard one, as a login shell has: the server
	# raises its own to the hard one
	dev=$(ulimit -S -n 256 && "$B/ublk-add" --base "$URL/img" --chunk-size 64K --readahead 0 --read-only)
	cmp "$T/www/img" "$dev"
	# again past the page cache: every read a hit in the chunk cache
	dd if="$dev" of=/dev/null bs=64k iflag=direct status=none
	pid=$(cat "$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/pid")
	run bash -c "ls -l /proc/$pid/fd | grep -c '$T/chunks/[0-9a-f]*/[0-9]*$'"
	echo "chunk files open: $output of 128 read"
	[ "$output" -eq 64 ]
	run awk '/^Max open files/ { print ($4 == $5) }' "/proc/$pid/limits"
	[ "$output" = 1 ]
	"$B/ublk-del" "$dev"
}

@test "warm chunks are read in place (USER_COPY, or before 6.5 NEED_GET_DATA); a chunk cut short under its mapping is fetched again" {
	make_image "$T/www/img" 8
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 1M --readahead 0 --cache "$T/cache")
	id=${dev#/dev/ublkb}
	cmp "$T/www/img" "$dev"
	# again past the page cache: chunk cache hits
	cmp "$T/www/img" <(dd if="$dev" bs=64k iflag=direct status=none)
	[ "$(stat_of "$dev" .remote.chunks_fetched)" -eq 8 ]
	[ "$(stat_of "$dev" .errors)" -eq 0 ]
	flags=$(sed -n 's/^device_flag_names=//p' "$UBLK_STATE_DIR/ublkb$id/features")
	if grep -q '^kernel_feature_names=.*USER_COPY' "$UBLK_STATE_DIR/ublkb$id/features"; then
		[[ "$flags" == *USER_COPY* ]]
	else
		[[ "$flags" == *NEED_GET_DATA* ]]
	fi
	[ "$(stat_of "$dev" .reads_in_place)" -gt 0 ]
	# chunk 3 cut short (a full disk, another hand) while the server holds
	# it mapped: its reads fetch it again and return its bytes
	chunk=$(echo "$T"/chunks/*/3)
	[ -f "$chunk" ]
	truncate -s 4096 "$chunk"
	cmp <(dd if="$T/www/img" bs=1M skip=3 count=1 status=none) \
		<(dd if="$dev" bs=64k skip=48 count=16 iflag=direct status=none)
	[ "$(stat_of "$dev" .remote.chunks_fetched)" -eq 9 ]
	[ "$(stat_of "$dev" .errors)" -eq 0 ]
	cmp "$T/www/img" <(dd if="$dev" bs=64k iflag=direct status=none)
	"$B/ublk-del" "$dev"
	assert_gone "$id"
}

@test "TLS is verified by default; --insecure skips it" {
	make_image "$T/www/img" 4
	run_mustfail 5 "certificate" "$B/ublk-add" --base "https://127.0.0.1:18443/img" --read-only
	dev=$("$B/ublk-add" --base "https://127.0.0.1:18443/img" --read-only --insecure)
	cmp "$T/www/img" "$dev"
	"$B/ublk-del" "$dev"
	assert_none_left
}
