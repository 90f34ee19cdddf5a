#!/usr/bin/env bats
# Access traces (docs/access-trace.md): a device records which chunks of
# its remote images a start reads first; a later start prefetches them in
# that order, behind the reads, against a real nginx on loopback.

load lib

PORT=18070

setup() {
	vm_setup
	export UBLK_CHUNK_CACHE=$T/chunks
	mkdir -p "$T/www"
	# $msec $request_time: when each transfer started, to check the order;
	# ?sig=slow is the same file (and chunk cache folder: a signature is not
	# in its identity) at 32 KiB/s, a 64 KiB chunk in 2 s
	nginx_run "$(cat <<CONF
	log_format timed '\$msec \$request_time \$uri \$status \$http_range';
	access_log $T/nginx/access.log timed;
	server {
		listen 127.0.0.1:$PORT;
		root $T/www;
		if (\$arg_sig) { set \$limit_rate 32k; }
	}
CONF
)"
	URL=http://127.0.0.1:$PORT
}

teardown() {
	"$B/ublk-del" --all --force --timeout 5 >/dev/null 2>&1 || true
	nginx_stop || true
	vm_teardown
}

# The chunks of a trace's entries, in its order, on one line.
trace_chunks() { awk 'NF == 4 && $4 ~ /^[rw]$/ { printf "%s ", $3 }' "$1"; }

# read_chunks DEV CHUNK...: one 4 KiB read in each 64 KiB chunk, in order
read_chunks() {
	local dev=$1 c
	shift
	for c in "$@"; do
		dd if="$dev" of=/dev/null bs=4k skip=$((c * 16)) count=1 iflag=direct status=none
	done
}

# When nginx started sending chunk $1 of $2 (64 KiB chunks) first, in ms.
fetch_started() {
	awk -v r="bytes=$(($1 * 65536))-" -v u="$2" '
		$3 == u { if (index($5, r) != 1) next; t = ($1 - $2) * 1000; if (!s) s = t; if (t < s) s = t }
		END { if (!s) exit 1; printf "%.0f\n", s }' "$T/nginx/access.log"
}

# The most transfers of $1 that nginx was sending at one moment.
most_at_once() {
	awk -v u="$1" '
		$3 == u { n++
			s[n] = $1 - $2
			e[n] = $1 }
		END {
			for (i = 1; i <= n; i++) {
				c = 0
				for (j = 1; j <= n; j++)
					if (s[j] <= s[i] && s[i] < e[j])
						c++
				if (c > m)
					m = c
			}
			print m + 0
		}' "$T/nginx/access.log"
}

ORDER="100 37 250 180 401 77 300 12 460 222 150 333"

# Record a start of $URL/img reading chunks $@ (default ORDER); the trace
# in $T/trace.
record_img() {
	make_image "$T/www/img" 32
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 64K --readahead 0 --read-only --name rec \
		--record-access "$T/trace")
	udevadm settle --timeout 30 2>/dev/null || true
	# shellcheck disable=SC2086
	read_chunks "$dev" ${@:-$ORDER}
	"$B/ublk-del" "$dev"
}

@test "a recorded trace lists the first reads in order; a replay fetches them in that order" {
	record_img
	# the header names the image by its chunk cache folder, never by URL
	run grep -c '^image 0 base [0-9a-f]\{64\} 33554432 65536$' "$T/trace"
	[ "$output" = 1 ]
	key=$(awk '$1 == "image" { print $4 }' "$T/trace")
	[ -d "$T/chunks/$key" ]
	run grep -c "127.0.0.1" "$T/trace"
	[ "$output" = 0 ]
	grep -q '^start [0-9]\{13\} rec$' "$T/trace"
	# the chunks read, in the order read (udev's probes of the new disk come too)
	run bash -c "tr ' ' '\n' <<<'$(trace_chunks "$T/trace")' | grep -xE '$(tr ' ' '|' <<<"$ORDER")' | tr '\n' ' '"
	[ "$output" = "$ORDER " ]
	n=$(grep -c ' r$' "$T/trace")
	grep -q "^end $n [0-9a-f]\{8\}$" "$T/trace"
	# a cold start with the trace: every chunk fetched in the trace's order
	rm -rf "$T/chunks"
	: >"$T/nginx/access.log"
	dev=$("$B/ublk-add" --base "$URL/img?sig=slow" --chunk-size 64K --readahead 0 --read-only \
		--prefetch-trace "$T/trace" --prefetch-connections 2)
	[ "$(stat_of "$dev" .remote.trace_chunks)" -eq "$n" ]
	wait_until 240 '[ "$(stat_of "$dev" .remote.trace_chunks_done)" -eq "$n" ]'
	# no chunk came twice: the disk's probe of chunk 0 at start waited for
	# the prefetch's transfer of it instead of starting its own
	run bash -c "awk '\$3 == \"/img\" { print \$5 }' '$T/nginx/access.log' | sort | uniq -d"
	[ -z "$output" ]
	# two connections: a chunk starts before any chunk four places later,
	# and at most two transfers overlap (three, while a probe of the new
	# disk fetches a chunk the prefetch has not reached); the default, 8,
	# would have eight
	read -ra chunks <<<"$(trace_chunks "$T/trace")"
	for ((i = 0; i + 4 < ${#chunks[@]}; i++)); do
		a=$(fetch_started "${chunks[$i]}" /img)
		b=$(fetch_started "${chunks[$((i + 4))]}" /img)
		echo "entry $i (chunk ${chunks[$i]}) at $a ms, entry $((i + 4)) at $b ms"
		[ "$a" -lt "$b" ]
	done
	run most_at_once /img
	echo "at most $output transfers at once"
	[ "$output" -ge 2 ]
	[ "$output" -le 3 ]
	# the boot's reads now find their chunks: every one a prefetch hit
	before=$(grep -c ' 206 ' "$T/nginx/access.log")
	# shellcheck disable=SC2086
	read_chunks "$dev" $ORDER
	[ "$(grep -c ' 206 ' "$T/nginx/access.log")" -eq "$before" ]
	[ "$(stat_of "$dev" .remote.trace_hits)" -ge 12 ]
	[ "$("$B/ublk-pool" status -n -o prefetch "$dev")" = "100%" ]
	[[ "$("$B/ublk-pool" status -n -o prefetch-hits "$dev")" =~ ^[0-9]+%$ ]]
	"$B/ublk-del" "$dev"
}

@test "a read overtakes the prefetch; deleting the device mid-way stops the prefetch" {
	# 97 chunks: 25 rounds of four 2 s transfers, 50 s to prefetch; the
	# device is deleted long before, so a slow host only eats the margin
	last=388
	record_img $(seq 100 3 $last)
	rm -rf "$T/chunks"
	dev=$("$B/ublk-add" --base "$URL/img?sig=slow" --chunk-size 64K --readahead 0 --read-only \
		--prefetch-trace "$T/trace" --prefetch-connections 4 --timeout 60)
	udevadm settle --timeout 30 2>/dev/null || true
	n=$(stat_of "$dev" .remote.trace_chunks)
	reads=$(stat_of "$dev" .remote.trace_reads)
	# the trace's last chunk, needed now: fetched at once, not after the others
	dd if="$dev" of="$T/last" bs=4k skip=$((last * 16)) count=1 iflag=direct status=none
	# one read, counted once though it waited for its chunk
	[ "$(stat_of "$dev" .remote.trace_reads)" -eq $((reads + 1)) ]
	cmp "$T/last" <(dd if="$T/www/img" bs=4k skip=$((last * 16)) count=1 status=none)
	done_now=$(stat_of "$dev" .remote.trace_chunks_done)
	echo "prefetched $done_now of $n when the read of the last one ended"
	[ "$done_now" -lt $((n - 1)) ]
	# deleted while the prefetch still runs: its transfers are cancelled
	# (the server ends by itself: ublk-del would say it killed it)
	SECONDS=0
	run "$B/ublk-del" --timeout 30 "$dev"
	echo "deleted in $SECONDS s: $output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
	[ "$SECONDS" -lt 20 ]
	assert_none_left
	# nothing half-written is left in the chunk cache
	run bash -c "ls '$T'/chunks/*/ | grep -vxE 'key|[0-9]+'"
	[ -z "$output" ]
}

@test "a trace of another image version, or a damaged one, is refused" {
	record_img
	# the image changes on the server: its validator, so its identity, changes
	touch -d '2001-01-01' "$T/www/img"
	run "$B/ublk-add" --base "$URL/img" --chunk-size 64K --read-only --prefetch-trace "$T/trace"
	[ "$status" -eq 5 ]
	[[ "$output" == *"a trace of other images"* ]]
	[[ "$output" == *"record a trace of this version"* ]]
	assert_none_left
	# another chunk size is another image, too
	record_img
	run "$B/ublk-add" --base "$URL/img" --chunk-size 128K --read-only --prefetch-trace "$T/trace"
	[ "$status" -eq 5 ]
	[[ "$output" == *"a trace of other images"* ]]
	# a flipped byte fails the checksum
	flip_byte "$T/trace" 40
	run "$B/ublk-add" --base "$URL/img" --chunk-size 64K --read-only --prefetch-trace "$T/trace"
	[ "$status" -eq 5 ]
	[[ "$output" == *"$T/trace"* ]]
	[[ "$output" == *"line"* ]]
	# a missing one: the message says which file of the command line it is
	run_mustfail 5 "prefetch trace: $T/none: No such file or directory" \
		"$B/ublk-add" --base "$URL/img" --chunk-size 64K --read-only --prefetch-trace "$T/none"
	assert_none_left
}

@test "--record-access to a link or a device is refused before any device is made" {
	head -c 1M /dev/zero >"$T/img"
	ln -s "$T/elsewhere" "$T/link.trace"
	run "$B/ublk-add" --base "$T/img" --read-only --record-access "$T/link.trace"
	echo "$output"
	[ "$status" -eq 2 ]
	[[ "$output" == *"$T/link.trace: is a symbolic link, which the output would replace rather than write through"* ]]
	[ ! -e "$T/elsewhere" ]
	run "$B/ublk-add" --base "$T/img" --read-only --record-access /dev/null
	[ "$status" -eq 2 ]
	[[ "$output" == *"/dev/null: is a character device"* ]]
	[ -c /dev/null ]
	assert_none_left
}

@test "remote base and remote diff in one trace; replayed from a URL" {
	make_image "$T/www/base" 8
	dev=$("$B/ublk-add" --base "$T/www/base" --cache "$T/cache")
	dd if=/dev/urandom of="$dev" bs=64k seek=40 count=8 oflag=direct status=none
	"$B/ublk-del" "$dev"
	"$B/ublk-export-diff" --cache "$T/cache" --frame-size 64K -o "$T/www/d.diff"
	stack=(--base "$URL/base" --layer "$URL/d.diff" --chunk-size 64K --readahead 0 --read-only)
	dev=$("$B/ublk-add" "${stack[@]}" --record-access "$T/www/trace")
	read_chunks "$dev" 3 42 90 44
	want=$(sha256sum <"$dev")
	"$B/ublk-del" "$dev"
	grep -q '^image 0 base ' "$T/www/trace"
	grep -q '^image 1 layer ' "$T/www/trace"
	# entries of both images
	[ "$(awk 'NF == 4 && $2 == 0' "$T/www/trace" | wc -l)" -ge 2 ]
	[ "$(awk 'NF == 4 && $2 == 1' "$T/www/trace" | wc -l)" -ge 1 ]
	rm -rf "$T/chunks"
	dev=$("$B/ublk-add" "${stack[@]}" --prefetch-trace "$URL/trace")
	n=$(stat_of "$dev" .remote.trace_chunks)
	wait_until 120 '[ "$(stat_of "$dev" .remote.trace_chunks_done)" -eq "$n" ]'
	# the diff's frames came with the trace: the same reads fetch nothing
	before=$(grep -c ' 206 ' "$T/nginx/access.log")
	read_chunks "$dev" 3 42 90 44
	[ "$(grep -c ' 206 ' "$T/nginx/access.log")" -eq "$before" ]
	[ "$(sha256sum <"$dev")" = "$want" ]
	"$B/ublk-del" "$dev"
}

@test "a killed and recovered recorder leaves the written trace whole" {
	make_image "$T/www/img" 32
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 64K --readahead 0 --read-only \
		--record-access "$T/trace" --record-for 2)
	id=${dev#/dev/ublkb}
	read_chunks "$dev" 100 200
	# the window ends: the trace is written while the device lives on
	wait_until 60 '[ -s "$T/trace" ]'
	sum=$(sha256sum <"$T/trace")
	[[ "$(trace_chunks "$T/trace")" == *"100 200 "* ]]
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -9 "$pid"
	"$B/ublk-pool" reclaim --recover
	wait_until 60 "[ \"\$(cat $UBLK_STATE_DIR/ublkb$id/pid 2>/dev/null)\" != $pid ]"
	read_chunks "$dev" 300 400
	"$B/ublk-del" "$dev"
	# the recovered server did not record: the trace is the start's, whole
	[ "$(sha256sum <"$T/trace")" = "$sum" ]
	# killed before its window ended: no trace, and nothing half-written
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 64K --read-only --record-access "$T/trace2")
	id=${dev#/dev/ublkb}
	read_chunks "$dev" 7
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -9 "$pid"
	"$B/ublk-pool" reclaim --recover
	wait_until 60 "[ \"\$(cat $UBLK_STATE_DIR/ublkb$id/pid 2>/dev/null)\" != $pid ]"
	"$B/ublk-del" "$dev"
	[ ! -e "$T/trace2" ]
	run bash -c "ls -A '$T' | grep -c trace"
	[ "$output" = 1 ]
}

@test "a whole-image read records each chunk once; save-trace writes it while the device lives" {
	make_image "$T/www/img" 32
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 64K --read-only --record-access "$T/trace")
	read_chunks "$dev" 300 301
	run "$B/ublk-pool" save-trace "$dev"
	[ "$status" -eq 0 ]
	[[ "$(trace_chunks "$T/trace")" == *"300 301 "* ]]
	grep -q '^end ' "$T/trace"
	dd if="$dev" of=/dev/null bs=1M status=none
	# every chunk once: the whole image is in the trace, each chunk once
	"$B/ublk-del" "$dev"
	[ "$(grep -c ' r$' "$T/trace")" -eq 512 ]
	[ "$(trace_chunks "$T/trace" | tr ' ' '\n' | sort -n | uniq | wc -l)" -eq 512 ]
	# a device that records nothing says so
	dev=$("$B/ublk-add" --base "$URL/img" --chunk-size 64K --read-only)
	run "$B/ublk-pool" save-trace "$dev"
	[ "$status" -eq 1 ]
	[[ "$output" == *"records no access trace (--record-access)"* ]]
	"$B/ublk-del" "$dev"
}
