#!/usr/bin/env bash
# make bench: fio against ublk (plain file, overlay on 1 and 2 queues, an
# overlay whose cache is fragmented, a remote base served from its chunk
# cache), the kernel loop device over the same file, null_blk, and NBD
# (nbdkit file + cow filter through the kernel NBD client), all in one VM
# run; add->live->del latency; export, flatten and remote throughput; RSS
# of idle servers; the IO stall of a crash recovery. Ends with the goals of
# issue #15 as ratios. A benchmark, not a test: it prints numbers.
#
#   BENCH_RUNTIME  seconds per fio job (default 5)
#   UBLK_BIN_B     a second build (make bench BENCH_AB=REV builds REV): every
#                  ublk measurement runs on both, in this one boot, the
#                  second's labelled @B (BENCH_AB_LABEL)
set -euo pipefail
A=${UBLK_BIN:-$(dirname "$0")/../build}
runtime=${BENCH_RUNTIME:-5}
W=$(mktemp -d)
export UBLK_STATE_DIR=$W/state
builds=(A)
declare -A bin=([A]=$A) label=([A]=)
if [ -n "${UBLK_BIN_B:-}" ]; then
	builds+=(B)
	bin[B]=$UBLK_BIN_B
	label[B]=@${BENCH_AB_LABEL:-B}
fi
nbd_pid=
cleanup() {
	nbd-client -d /dev/nbd0 >/dev/null 2>&1 || true
	[ -z "$nbd_pid" ] || kill "$nbd_pid" 2>/dev/null || true
	[ ! -s "$W/nginx/pid" ] || kill "$(cat "$W/nginx/pid")" 2>/dev/null || true
	losetup -D 2>/dev/null || true
	"$A/ublk-del" --all --force >/dev/null 2>&1 || true
	rm -rf "$W"
}
trap cleanup EXIT

echo "bench: linux $(uname -r), $(nproc) cpu(s), ${runtime} s per fio job, builds: ${builds[*]}"
# /tmp is a tmpfs of half the VM memory: keep every copy small, remove it after use
size_mb=128
# The base on tmpfs, as every target reads the same bytes from memory.
dd if=/dev/urandom of="$W/base" bs=1M count=$size_mb status=none

declare -A job=(
	[randread-4k-qd1]="--rw=randread --bs=4k --iodepth=1"
	[randread-4k-qd32]="--rw=randread --bs=4k --iodepth=32"
	[randwrite-4k-qd1]="--rw=randwrite --bs=4k --iodepth=1"
	[randwrite-4k-qd32]="--rw=randwrite --bs=4k --iodepth=32"
	[seqread-128k-qd8]="--rw=read --bs=128k --iodepth=8"
	[randread-64k-qd8]="--rw=randread --bs=64k --iodepth=8"
)
std_jobs="randread-4k-qd1 randread-4k-qd32 randwrite-4k-qd1 randwrite-4k-qd32 seqread-128k-qd8"
all_jobs="$std_jobs randread-64k-qd8"

declare -A iops lat
targets=()
bench() { # target dev job...
	local target=$1 dev=$2 name out
	shift 2
	echo "bench: $target ($dev)" >&2
	targets+=("$target")
	for name in "$@"; do
		# shellcheck disable=SC2086
		out=$(fio --name="$name" --filename="$dev" --ioengine=io_uring --direct=1 ${job[$name]} \
			--time_based --runtime="$runtime" --ramp_time=1 --size=${size_mb}M \
			--output-format=json 2>/dev/null)
		iops[$target,$name]=$(jq '[.jobs[0].read.iops, .jobs[0].write.iops] | add | floor' <<<"$out")
		lat[$target,$name]=$(jq '[.jobs[0].read.lat_ns.mean, .jobs[0].write.lat_ns.mean] | max / 1000 | floor' <<<"$out")
	done
}
# ratio a b: a / b to two places, or - when either is missing
ratio() { awk -v a="${1:--}" -v b="${2:--}" 'BEGIN { if (a == "-" || b == "-" || !b) print "-"; else printf "%.2f", a / b }'; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
mb_s() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.0f", ms ? b / 1048576 / (ms / 1000) : 0 }'; }

# kernel loop over a copy of the base (writes must not touch the others')
cp "$W/base" "$W/loop.img"
loopdev=$(losetup --find --show "$W/loop.img")
bench loop "$loopdev" $all_jobs
losetup -d "$loopdev"
rm -f "$W/loop.img"

if [ -b /dev/nullb0 ]; then bench null_blk /dev/nullb0 $std_jobs; fi

for b in "${builds[@]}"; do
	B=${bin[$b]} L=${label[$b]}
	cp "$W/base" "$W/plain.img"
	dev=$("$B/ublk-add" --base "$W/plain.img")
	bench "plain$L" "$dev" $std_jobs
	"$B/ublk-del" "$dev"
	rm -f "$W/plain.img"

	for q in 1 2; do
		dev=$("$B/ublk-add" --base "$W/base" --cache "$W/cache" --queues $q)
		bench "overlay-q$q$L" "$dev" $all_jobs
		"$B/ublk-del" "$dev"
		rm -f "$W/cache" "$W/cache.map"
	done

	# every other 4 KiB block in the cache: a read alternates cache and base
	dev=$("$B/ublk-add" --base "$W/base" --cache "$W/cache")
	fio --name=frag --filename="$dev" --ioengine=io_uring --direct=1 --rw=write:4k --bs=4k \
		--iodepth=32 --size=${size_mb}M >/dev/null
	bench "frag$L" "$dev" randread-64k-qd8
	"$B/ublk-del" "$dev"
	rm -f "$W/cache" "$W/cache.map"
done

nbdkit -U "$W/nbd.sock" -P "$W/nbd.pid" -f --filter=cow file "$W/base" &
nbd_pid=$!
for _ in $(seq 50); do [ -S "$W/nbd.sock" ] && break; sleep 0.1; done
nbd-client -unix "$W/nbd.sock" /dev/nbd0 -b 4096 -N '' >/dev/null
bench nbd-cow /dev/nbd0 $std_jobs
nbd-client -d /dev/nbd0 >/dev/null
kill "$nbd_pid"; wait "$nbd_pid" 2>/dev/null || true; nbd_pid=

# remote base from nginx on loopback: a cold sequential read against curl
# downloading the same file, then 4 KiB random reads from the chunk cache
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
declare -A remote_cold remote_warm
for b in "${builds[@]}"; do
	B=${bin[$b]} L=${label[$b]}
	dev=$("$B/ublk-add" --base http://127.0.0.1:18090/img --chunk-cache "$W/chunks" --read-only --readahead 4)
	start=$(date +%s%N)
	dd if="$dev" of=/dev/null bs=1M iflag=direct status=none
	remote_cold[$b]=$(mb_s $((size_mb << 20)) "$(ms "$start")")
	start=$(date +%s%N)
	dd if="$dev" of=/dev/null bs=1M iflag=direct status=none
	remote_warm[$b]=$(mb_s $((size_mb << 20)) "$(ms "$start")")
	bench "remote-warm$L" "$dev" randread-4k-qd32
	"$B/ublk-del" "$dev"
	rm -rf "$W/chunks"
done
kill "$(cat "$W/nginx/pid")"
rm -f "$W/nginx/pid"

table() { # title, name of the associative array
	local -n cell=$2
	local t name
	printf '\n%-18s' "$1"
	for t in "${targets[@]}"; do printf '%14s' "$t"; done
	echo
	for name in $all_jobs; do
		printf '%-18s' "$name"
		for t in "${targets[@]}"; do printf '%14s' "${cell[$t,$name]:--}"; done
		echo
	done
}
declare -A to_loop
for t in "${targets[@]}"; do
	for name in $all_jobs; do
		to_loop[$t,$name]=$(ratio "${iops[$t,$name]:-}" "${iops[loop,$name]:-}")
	done
done
table IOPS iops
table "ratio to loop" to_loop
table "mean lat (us)" lat

# add -> live -> del, 10 times each
n=10
echo
for b in "${builds[@]}"; do
	B=${bin[$b]}
	start=$(date +%s%N)
	for _ in $(seq $n); do
		dev=$("$B/ublk-add" --base "$W/base" --cache "$W/cache2")
		"$B/ublk-del" "$dev"
	done
	echo "add -> live -> del, mean of $n: ublk-tools${label[$b]} $(( $(ms "$start") / n )) ms"
	rm -f "$W/cache2" "$W/cache2.map"
done
start=$(date +%s%N)
for _ in $(seq $n); do
	rm -f "$W/nbd.sock"
	nbdkit -U "$W/nbd.sock" --filter=cow file "$W/base"
	for _ in $(seq 100); do [ -S "$W/nbd.sock" ] && break; sleep 0.01; done
	nbd-client -unix "$W/nbd.sock" /dev/nbd0 -b 4096 -N '' >/dev/null
	nbd-client -d /dev/nbd0 >/dev/null
done
echo "add -> live -> del, mean of $n: nbdkit+nbd-client $(( $(ms "$start") / n )) ms"

# export: a device with 64 MiB of changed blocks, against cp + sync of
# the same number of bytes; each the best of 3 (a TCG run varies)
best_ms() { # command...: the shortest of 3 runs, in ms
	local best= t
	for _ in 1 2 3; do
		t=$(date +%s%N)
		"$@"
		t=$(ms "$t")
		[ -n "$best" ] && [ "$best" -le "$t" ] || best=$t
	done
	echo "$best"
}
head -c $((64 << 20)) "$W/base" >"$W/src64"
cp_mb=$(mb_s $((64 << 20)) "$(best_ms sh -c "cp '$W/src64' '$W/dst64' && sync")")
rm -f "$W/src64" "$W/dst64"
declare -A export_mb
for b in "${builds[@]}"; do
	B=${bin[$b]}
	dev=$("$B/ublk-add" --base "$W/base" --cache "$W/xcache")
	dd if=/dev/urandom of="$dev" bs=1M count=64 oflag=direct status=none
	"$B/ublk-del" "$dev"
	for mode in raw zstd; do
		zopt=(); [ "$mode" = raw ] || zopt=(--zstd)
		export_mb[$b,$mode]=$(mb_s $((64 << 20)) "$(best_ms sh -c "'$B/ublk-export-diff' --no-progress --keep ${zopt[*]} --cache '$W/xcache' -o '$W/x.diff' && sync")")
		rm -f "$W/x.diff"
	done
	rm -f "$W/xcache" "$W/xcache.map"
	echo "export of 64 MiB changed${label[$b]}: raw ${export_mb[$b,raw]} MiB/s, zstd ${export_mb[$b,zstd]} MiB/s; cp + sync of 64 MiB: $cp_mb MiB/s (best of 3 each)"
done

# flatten: a 20 GiB sparse base (tmpfs keeps it sparse), 10 MiB of 4 KiB
# writes scattered over it through the device
truncate -s 20G "$W/sparse"
declare -A flat_ms flat_kib
for b in "${builds[@]}"; do
	B=${bin[$b]}
	dev=$("$B/ublk-add" --base "$W/sparse" --cache "$W/fcache")
	fio --name=scatter --filename="$dev" --ioengine=io_uring --direct=1 --rw=randwrite --bs=4k \
		--iodepth=16 --io_size=10M --randrepeat=1 --norandommap >/dev/null
	"$B/ublk-del" "$dev"
	start=$(date +%s%N)
	# a build that writes the holes runs out of the VM's tmpfs: say so, go on
	if "$B/ublk-export-diff" --no-progress --flatten --base "$W/sparse" --cache "$W/fcache" \
		-o "$W/flat.img"; then
		flat_ms[$b]=$(ms "$start")
		flat_kib[$b]=$(du -k "$W/flat.img" | cut -f1)
	else
		flat_ms[$b]="failed after $(ms "$start")" flat_kib[$b]=0
	fi
	rm -f "$W/fcache" "$W/fcache.map" "$W/flat.img"
	echo "flatten of a 20 GiB sparse base + 10 MiB scattered${label[$b]}: ${flat_ms[$b]} ms, $(( flat_kib[$b] / 1024 )) MiB allocated"
done
rm -f "$W/sparse"

# RSS of idle servers, default options, base + cache
declare -A rss_kib
for b in "${builds[@]}"; do
	B=${bin[$b]} total=0 devs=()
	for i in 1 2 3 4; do devs+=("$("$B/ublk-add" --base "$W/base" --cache "$W/rcache$i")"); done
	for d in "${devs[@]}"; do
		pid=$(cat "$UBLK_STATE_DIR/ublkb${d#/dev/ublkb}/pid")
		total=$(( total + $(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status") ))
	done
	for d in "${devs[@]}"; do "$B/ublk-del" "$d"; done
	rm -f "$W"/rcache*
	rss_kib[$b]=$(( total / 4 ))
	echo "ublk-serve RSS per idle device${label[$b]} (mean of 4): ${rss_kib[$b]} KiB"
done

echo "remote base, ${size_mb} MiB sequential: curl download $(mb_s $((size_mb << 20)) "$curl_ms") MiB/s"
for b in "${builds[@]}"; do
	echo "  ublk-tools${label[$b]}: cold ${remote_cold[$b]} MiB/s, warm (chunk cache) ${remote_warm[$b]} MiB/s"
done

# crash recovery: the longest IO stall a reader of one 4 KiB O_DIRECT read
# at a time sees while the server is killed (kill -9) and ublk-pool watch
# attaches a new one, 10 times
dev=$("$A/ublk-add" --base "$W/base" --cache "$W/rcache")
id=${dev#/dev/ublkb}
"$A/ublk-pool" watch --interval 0.1 >/dev/null 2>&1 &
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
"$A/ublk-del" "$dev"
echo "kill -9 of the server, recovered by ublk-pool watch (10 times): IO stalls over 50 ms, sorted: $(cat "$W/stalls") ms"

# The goals of issue #15, each build: measured, then the goal.
for b in "${builds[@]}"; do
	L=${label[$b]}
	echo
	echo "goals${L:+ of $L}:"
	for name in randread-4k-qd32:0.95 randwrite-4k-qd32:0.75 randwrite-4k-qd1:0.8 seqread-128k-qd8:0.85; do
		printf '  overlay %-18s / loop: q1 %s, q2 %s (goal >= %s)\n' "${name%%:*}" \
			"${to_loop[overlay-q1$L,${name%%:*}]}" "${to_loop[overlay-q2$L,${name%%:*}]}" "${name#*:}"
	done
	echo "  fragmented overlay randread-64k-qd8 / unfragmented: $(ratio "${iops[frag$L,randread-64k-qd8]}" "${iops[overlay-q1$L,randread-64k-qd8]}") (goal >= 0.8)"
	echo "  export raw / cp + sync: $(ratio "${export_mb[$b,raw]}" "$cp_mb") (goal >= 1.0)"
	echo "  export zstd / cp + sync: $(ratio "${export_mb[$b,zstd]}" "$cp_mb") (goal >= 0.8)"
	echo "  flatten 20 GiB sparse + 10 MiB: ${flat_ms[$b]} ms, $(( flat_kib[$b] / 1024 )) MiB (goal < 1000 ms, <= 11 MiB)"
	echo "  remote cold sequential / curl: $(ratio "${remote_cold[$b]}" "$(mb_s $((size_mb << 20)) "$curl_ms")") (goal >= 1.0)"
	echo "  remote warm randread-4k-qd32 / overlay: $(ratio "${iops[remote-warm$L,randread-4k-qd32]}" "${iops[overlay-q1$L,randread-4k-qd32]}") (goal >= 0.9)"
	echo "  RSS per idle device: ${rss_kib[$b]} KiB (goal <= 8192)"
done
