#!/usr/bin/env bash
# make bench: fio against ublk (plain file and overlay), the kernel loop
# device over the same file, null_blk, and NBD (nbdkit file + cow filter
# through the kernel NBD client), all in one VM run; then add->live->del
# latency for ublk and NBD; export and remote throughput; the IO stall of a
# crash recovery. A benchmark, not a test: it prints numbers.
#
#   BENCH_RUNTIME  seconds per fio job (default 5)
set -euo pipefail
B=${UBLK_BIN:-$(dirname "$0")/../build}
runtime=${BENCH_RUNTIME:-5}
W=$(mktemp -d)
export UBLK_STATE_DIR=$W/state
nbd_pid=
cleanup() {
	nbd-client -d /dev/nbd0 >/dev/null 2>&1 || true
	[ -z "$nbd_pid" ] || kill "$nbd_pid" 2>/dev/null || true
	losetup -D 2>/dev/null || true
	"$B/ublk-del" --all --force >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT

echo "bench: linux $(uname -r), $(nproc) cpu(s), ${runtime} s per fio job"
# /tmp is a tmpfs of half the VM memory: keep every copy small, remove it after use
size_mb=128
# The base on tmpfs, as every target reads the same bytes from memory.
dd if=/dev/urandom of="$W/base" bs=1M count=$size_mb status=none

jobs=(
	"randread-4k-qd1   --rw=randread --bs=4k --iodepth=1"
	"randread-4k-qd32  --rw=randread --bs=4k --iodepth=32"
	"randwrite-4k-qd1  --rw=randwrite --bs=4k --iodepth=1"
	"randwrite-4k-qd32 --rw=randwrite --bs=4k --iodepth=32"
	"seqread-128k-qd8  --rw=read --bs=128k --iodepth=8"
)

declare -A iops lat
run_fio() { # target dev
	local target=$1 dev=$2 name args out
	for j in "${jobs[@]}"; do
		name=${j%% *}
		args=${j#* }
		# shellcheck disable=SC2086
		out=$(fio --name="$name" --filename="$dev" --ioengine=io_uring --direct=1 $args \
			--time_based --runtime="$runtime" --ramp_time=1 --size=${size_mb}M \
			--output-format=json 2>/dev/null)
		iops[$target,$name]=$(jq '[.jobs[0].read.iops, .jobs[0].write.iops] | add | floor' <<<"$out")
		lat[$target,$name]=$(jq '[.jobs[0].read.lat_ns.mean, .jobs[0].write.lat_ns.mean] | max / 1000 | floor' <<<"$out")
	done
}

targets=()
bench() { # target dev
	echo "bench: $1 ($2)" >&2
	targets+=("$1")
	run_fio "$1" "$2"
}

# kernel loop over a copy of the base (writes must not touch the others')
cp "$W/base" "$W/loop.img"
loopdev=$(losetup --find --show "$W/loop.img")
bench loop "$loopdev"
losetup -d "$loopdev"
rm -f "$W/loop.img"

if [ -b /dev/nullb0 ]; then bench null_blk /dev/nullb0; fi

cp "$W/base" "$W/plain.img"
dev=$("$B/ublk-add" --base "$W/plain.img" --queues 2)
bench ublk-plain "$dev"
"$B/ublk-del" "$dev"
rm -f "$W/plain.img"

dev=$("$B/ublk-add" --base "$W/base" --cache "$W/cache" --queues 2)
bench ublk-overlay "$dev"
"$B/ublk-del" "$dev"
rm -f "$W/cache" "$W/cache.map"

nbdkit -U "$W/nbd.sock" -P "$W/nbd.pid" -f --filter=cow file "$W/base" &
nbd_pid=$!
for _ in $(seq 50); do [ -S "$W/nbd.sock" ] && break; sleep 0.1; done
nbd-client -unix "$W/nbd.sock" /dev/nbd0 -b 4096 -N '' >/dev/null
bench nbd-cow /dev/nbd0
nbd-client -d /dev/nbd0 >/dev/null
kill "$nbd_pid"; wait "$nbd_pid" 2>/dev/null || true; nbd_pid=

declare -A ratio
for t in "${targets[@]}"; do
	for j in "${jobs[@]}"; do
		name=${j%% *}
		ratio[$t,$name]=$(awk -v a="${iops[$t,$name]}" -v b="${iops[loop,$name]}" \
			'BEGIN { printf "%.2f", b ? a / b : 0 }')
	done
done

table() { # title, name of the associative array
	local -n cell=$2
	printf '\n%-18s' "$1"
	for t in "${targets[@]}"; do printf '%14s' "$t"; done
	echo
	for j in "${jobs[@]}"; do
		name=${j%% *}
		printf '%-18s' "$name"
		for t in "${targets[@]}"; do printf '%14s' "${cell[$t,$name]}"; done
		echo
	done
}
table IOPS iops
table "ratio to loop" ratio
table "mean lat (us)" lat

# add -> live -> del, 10 times each
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
n=10
start=$(date +%s%N)
for _ in $(seq $n); do
	dev=$("$B/ublk-add" --base "$W/base" --cache "$W/cache2")
	"$B/ublk-del" "$dev"
done
ublk_ms=$(( $(ms "$start") / n ))
start=$(date +%s%N)
for _ in $(seq $n); do
	rm -f "$W/nbd.sock"
	nbdkit -U "$W/nbd.sock" --filter=cow file "$W/base"
	for _ in $(seq 100); do [ -S "$W/nbd.sock" ] && break; sleep 0.01; done
	nbd-client -unix "$W/nbd.sock" /dev/nbd0 -b 4096 -N '' >/dev/null
	nbd-client -d /dev/nbd0 >/dev/null
done
nbd_ms=$(( $(ms "$start") / n ))
echo
echo "add -> live -> del, mean of $n: ublk-tools ${ublk_ms} ms, nbdkit+nbd-client ${nbd_ms} ms"

# export throughput: a device with 64 MiB of changed blocks, against cp of
# the same number of bytes
mb_s() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.0f", ms ? b / 1048576 / (ms / 1000) : 0 }'; }
for mode in raw zstd; do
	dev=$("$B/ublk-add" --base "$W/base" --cache "$W/xcache")
	dd if=/dev/urandom of="$dev" bs=1M count=64 oflag=direct status=none
	"$B/ublk-del" "$dev"
	zopt=(); [ "$mode" = raw ] || zopt=(--zstd)
	start=$(date +%s%N)
	"$B/ublk-export-diff" --no-progress "${zopt[@]}" --cache "$W/xcache" -o "$W/x.diff"
	sync
	exp_ms=$(ms "$start")
	rm -f "$W/xcache" "$W/xcache.map" "$W/x.diff"
	eval "export_$mode=$exp_ms"
done
head -c $((64 << 20)) "$W/base" >"$W/src64"
start=$(date +%s%N)
cp "$W/src64" "$W/dst64"
sync
cp_ms=$(ms "$start")
echo "export of 64 MiB changed: raw $(mb_s $((64 << 20)) "$export_raw") MiB/s, zstd $(mb_s $((64 << 20)) "$export_zstd") MiB/s; cp of 64 MiB: $(mb_s $((64 << 20)) "$cp_ms") MiB/s"

# remote base: cold sequential read of the whole image against curl
# downloading the same file from the same nginx on loopback
mkdir -p "$W/www" "$W/nginx"
cp "$W/base" "$W/www/img"
cat >"$W/nginx/nginx.conf" <<CONF
user root; daemon on; worker_processes 1; pid $W/nginx/pid; error_log $W/nginx/error.log;
events { worker_connections 64; }
http { access_log off; client_body_temp_path $W/nginx/b; proxy_temp_path $W/nginx/p;
  fastcgi_temp_path $W/nginx/f; uwsgi_temp_path $W/nginx/u; scgi_temp_path $W/nginx/s;
  server { listen 127.0.0.1:18090; root $W/www; } }
CONF
nginx -p "$W/nginx" -c "$W/nginx/nginx.conf"
start=$(date +%s%N)
curl -s -o "$W/curl.img" http://127.0.0.1:18090/img
curl_ms=$(ms "$start")
rm -f "$W/curl.img"
dev=$("$B/ublk-add" --base http://127.0.0.1:18090/img --chunk-cache "$W/chunks" --read-only --readahead 4)
start=$(date +%s%N)
dd if="$dev" of=/dev/null bs=1M iflag=direct status=none
cold_ms=$(ms "$start")
start=$(date +%s%N)
dd if="$dev" of=/dev/null bs=1M iflag=direct status=none
warm_ms=$(ms "$start")
"$B/ublk-del" "$dev"
kill "$(cat "$W/nginx/pid")"
echo "remote base, ${size_mb} MiB sequential: cold $(mb_s $((size_mb << 20)) "$cold_ms") MiB/s, warm (chunk cache) $(mb_s $((size_mb << 20)) "$warm_ms") MiB/s; curl download $(mb_s $((size_mb << 20)) "$curl_ms") MiB/s"

# crash recovery: the longest IO stall a reader of one 4 KiB O_DIRECT read
# at a time sees while the server is killed (kill -9) and ublk-pool watch
# attaches a new one, 10 times
dev=$("$B/ublk-add" --base "$W/base" --cache "$W/rcache")
id=${dev#/dev/ublkb}
"$B/ublk-pool" watch --interval 0.1 >/dev/null 2>&1 &
watch=$!
python3 - "$dev" "$W/stop" >"$W/stalls" <<'PY' &
import mmap, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT)
buf = mmap.mmap(-1, 4096)
last, stalls = time.monotonic(), []
while not os.path.exists(sys.argv[2]):
    os.preadv(fd, [buf], 4096 * (int(last * 1000) % 16384))
    now = time.monotonic()
    if now - last > 0.05:
        stalls.append(now - last)
    last = now
print(" ".join("%.0f" % (s * 1000) for s in sorted(stalls)))
PY
reader=$!
for k in $(seq 10); do
	sleep 1
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -9 "$pid"
	for i in $(seq 200); do
		[ "$(cat "$UBLK_STATE_DIR/ublkb$id/pid")" != "$pid" ] &&
			[ "$(cat "$UBLK_STATE_DIR/ublkb$id/state")" = live ] && break
		sleep 0.05
	done
done
sleep 1
touch "$W/stop"
wait "$reader"
kill "$watch"
wait "$watch" || true
"$B/ublk-del" "$dev"
echo "kill -9 of the server, recovered by ublk-pool watch (10 times): IO stalls over 50 ms, sorted: $(cat "$W/stalls") ms"
