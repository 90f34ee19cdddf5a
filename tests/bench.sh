#!/usr/bin/env bash
# make bench: fio against ublk (plain file, overlay on 1 and 2 queues, an
# overlay whose cache is fragmented, one whose cache is all written, the
# same bytes as a raw and as a zstd diff over an empty base, a remote base
# served from its chunk cache), the kernel loop device over
# the same file, null_blk, and NBD (nbdkit file + cow filter through the
# kernel NBD client), all in one VM run; add->live->del latency; export,
# flatten and remote throughput; RSS of idle servers; the IO stall of a
# crash recovery; a boot-like cold start over a remote base behind an 80
# ms round trip, without and with an access trace and warm, and what
# recording a trace costs (issue #17). Ends with the goals of issues #15
# and #17 as ratios. A benchmark, not a test: it prints numbers.
#
#   BENCH_RUNTIME  seconds per fio job (default 5)
#   BENCH_ONLY     run only these sections, comma-separated: boot (the
#                  boot-like cold start), record (the cost of --record-access),
#                  profile (perf: where the CPU goes in loop and overlay jobs),
#                  fio (the fio rows and their tables only), export (the
#                  export rows), remote (remote cold and warm reads)
#   BENCH_BOOT_IMG the ext4 image of the boot rows (tests/bench-boot-image.sh
#                  builds it on the host; make bench passes it); unset: the
#                  boot rows are skipped
#   BENCH_BOOT_CHUNK  --chunk-size of the boot rows (default 512K)
#   BENCH_BOOT_ROUNDS rounds of the boot rows (default 3)
#   BENCH_BOOT_DELAY_MS  netem delay of the boot rows, each way (default 40)
#   BENCH_ROUNDS   rounds of the fio rows (default 1): each round measures
#                  loop first, then every device; a device's ratio to loop
#                  is taken within a round, and the tables give the median
#                  of the rounds (of an even number, the lower middle) and
#                  the lowest-highest ratio (a TCG VM drifts over minutes:
#                  one pass cannot judge a 10% change)
#   UBLK_BIN_B     a second build (make bench BENCH_AB=REV builds REV): every
#                  ublk measurement runs on both, in this one boot, the
#                  second's labelled @B (BENCH_AB_LABEL)
set -euo pipefail
A=${UBLK_BIN:-$(dirname "$0")/../build}
runtime=${BENCH_RUNTIME:-5}
rounds=${BENCH_ROUNDS:-1}
[[ $rounds =~ ^[1-9][0-9]?$ ]] || { echo "bench: BENCH_ROUNDS=$rounds: expected 1 to 99" >&2; exit 2; }
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
netem=
cleanup() {
	nbd-client -d /dev/nbd0 >/dev/null 2>&1 || true
	[ -z "$nbd_pid" ] || kill "$nbd_pid" 2>/dev/null || true
	[ -z "$netem" ] || tc qdisc del dev lo root 2>/dev/null || true
	! mountpoint -q "$W/bootmnt" 2>/dev/null || umount -R "$W/bootmnt" 2>/dev/null || true
	local p
	for p in "$W"/nginx*/pid; do [ ! -s "$p" ] || kill "$(cat "$p")" 2>/dev/null || true; done
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

# fio_job DEV JOB [fio options...]: run one timed job of the table, JSON out
fio_job() {
	local dev=$1 name=$2
	shift 2
	# shellcheck disable=SC2086
	fio --name="$name" --filename="$dev" --ioengine=io_uring --direct=1 ${job[$name]} \
		--time_based --runtime="$runtime" --ramp_time=1 --size=${size_mb}M "$@"
}
# iops and lat: the median of the rounds; each round's values in the
# *_runs, and each round's ratio to that round's loop in ratio_runs
declare -A iops lat iops_runs lat_runs ratio_runs loop_now
targets=()
bench() { # target dev job...
	local target=$1 dev=$2 name out v
	shift 2
	echo "bench: $target ($dev)" >&2
	[[ " ${targets[*]} " == *" $target "* ]] || targets+=("$target")
	for name in "$@"; do
		out=$(fio_job "$dev" "$name" --output-format=json 2>/dev/null)
		v=$(jq '[.jobs[0].read.iops, .jobs[0].write.iops] | add | floor' <<<"$out")
		[ "$target" != loop ] || loop_now[$name]=$v
		iops_runs[$target,$name]+="$v "
		ratio_runs[$target,$name]+="$(ratio "$v" "${loop_now[$name]:-}") "
		lat_runs[$target,$name]+="$(jq '[.jobs[0].read.lat_ns.mean, .jobs[0].write.lat_ns.mean] | max / 1000 | floor' <<<"$out") "
		# shellcheck disable=SC2086
		iops[$target,$name]=$(median ${iops_runs[$target,$name]})
		# shellcheck disable=SC2086
		lat[$target,$name]=$(median ${lat_runs[$target,$name]})
	done
}
# ratio a b: a / b to two places, or - when either is missing
ratio() { awk -v a="${1:--}" -v b="${2:--}" 'BEGIN { if (a == "-" || b == "-" || !b) print "-"; else printf "%.2f", a / b }'; }
ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
mb_s() { awk -v b="$1" -v ms="$2" 'BEGIN { printf "%.0f", ms ? b / 1048576 / (ms / 1000) : 0 }'; }

# nginx_up NAME DIR PORT: an nginx serving DIR on 127.0.0.1:PORT (its
# files in $W/nginx-NAME; stopped by nginx_down NAME or the cleanup)
nginx_up() {
	local d=$W/nginx-$1
	mkdir -p "$d"
	cat >"$d/nginx.conf" <<CONF
user root; daemon on; worker_processes 1; pid $d/pid; error_log $d/error.log;
events { worker_connections 64; }
http { access_log off; client_body_temp_path $d/b; proxy_temp_path $d/p;
  fastcgi_temp_path $d/f; uwsgi_temp_path $d/u; scgi_temp_path $d/s;
  server { listen 127.0.0.1:$3; root $2; } }
CONF
	nginx -p "$d" -c "$d/nginx.conf"
}
nginx_down() {
	local pid
	pid=$(cat "$W/nginx-$1/pid")
	kill "$pid"
	wait_for 30 "nginx $1 to exit" "! kill -0 $pid 2>/dev/null"
	rm -f "$W/nginx-$1/pid"
}
# nap SECONDS: sleep without starting a program (a poll loop that starts
# one every 50 ms would take a CPU of the TCG VM from what it waits for)
mkfifo "$W/nap"
exec {nap_fd}<>"$W/nap"
nap() { read -r -t "$1" -u "$nap_fd" _ || true; }
# wait_for SECONDS WHAT CONDITION: poll CONDITION (a shell command) until
# true; false, saying what it waited for, after SECONDS
wait_for() {
	local end=$((SECONDS + $1))
	until eval "$3"; do
		[ "$SECONDS" -lt "$end" ] || { echo "bench: no $2 within $1 s" >&2; return 1; }
		nap 0.05
	done
}
# stats_json DEV: the device's statistics, as written by its server (once
# a second) after this moment, so they count all IO done before
stats_json() {
	local f="$UBLK_STATE_DIR/ublkb${1#/dev/ublkb}/stats" now
	now=$(date +%s.%N)
	wait_for 30 "fresh statistics of $1" \
		"awk -v a=\"\$(stat -c %.9Y '$f' 2>/dev/null || echo 0)\" -v b=$now 'BEGIN { exit !(a > b) }'"
	cat "$f"
}
# fio_iops DEV JOB: IOPS of one fio job (no row in the tables)
fio_iops() {
	fio_job "$1" "$2" --output-format=json 2>/dev/null | jq '[.jobs[0].read.iops, .jobs[0].write.iops] | add | floor'
}
# median of the numbers given
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
has_trace() { "$1/ublk-add" --help 2>&1 | grep -q -- --prefetch-trace; }

# The cost of --record-access (issue #17): randread-4k-qd32 on a remote
# base whose every chunk is in the chunk cache, without and with a
# recording (its window, 60 s, spans the job): after one run not counted
# (the first after the fill ran slower), ten runs in the order ABBAABBAAB,
# each neighbouring pair one of each; the cost is one minus the mean of the
# five pairs' ratios, which a drift of the VM's speed over the runs moves
# less than medians (single runs vary by 5-10%).
declare -A rec_cost
record_rows() {
	local b B L dev i mode opts n pairs
	mkdir -p "$W/www-rec"
	ln -f "$W/base" "$W/www-rec/img"
	nginx_up rec "$W/www-rec" 18092
	for b in "${builds[@]}"; do
		B=${bin[$b]} L=${label[$b]}
		if ! has_trace "$B"; then
			echo "bench: record cost$L: skipped, this build has no --record-access"
			continue
		fi
		dev=$("$B/ublk-add" --base http://127.0.0.1:18092/img --chunk-cache "$W/recchunks" --read-only)
		dd if="$dev" of=/dev/null bs=1M iflag=direct status=none
		fio_iops "$dev" randread-4k-qd32 >/dev/null
		"$B/ublk-del" "$dev"
		local -a plain=() rec=()
		n=0 pairs=
		for mode in plain rec rec plain plain rec rec plain plain rec; do
			opts=()
			[ "$mode" = plain ] || opts=(--record-access "$W/rec.trace")
			dev=$("$B/ublk-add" --base http://127.0.0.1:18092/img --chunk-cache "$W/recchunks" --read-only "${opts[@]}")
			i=$(fio_iops "$dev" randread-4k-qd32)
			"$B/ublk-del" "$dev"
			if [ "$mode" = plain ]; then plain+=("$i"); else rec+=("$i"); fi
			if (( ++n % 2 == 0 )); then pairs+=" ${plain[-1]}:${rec[-1]}"; fi
		done
		# shellcheck disable=SC2086 # one argument per pair
		rec_cost[$b]=$(printf '%s\n' $pairs | awk -F: '{ r = $2 / $1; s += r; if (!lo || r < lo) lo = r; if (r > hi) hi = r }
			END { printf "%.1f%% (pairs: %.1f%% to %.1f%%)", (1 - s / NR) * 100, (1 - hi) * 100, (1 - lo) * 100 }')
		echo "remote warm randread-4k-qd32$L: ${plain[*]} IOPS, with --record-access ${rec[*]} IOPS: costs ${rec_cost[$b]}"
		rm -rf "$W/recchunks" "$W/rec.trace"
	done
	nginx_down rec
	rm -rf "$W/www-rec"
}

# Where the CPU goes (issue #15): perf samples the whole VM (cpu-clock, a
# software event: TCG has no PMU) while fio runs a job on the loop device
# and on a 1-queue overlay over the same bytes; per job and target, the
# share of each program and of each function over 2%.
profile_rows() {
	local name target dev perf_pid
	if ! perf record -q -e cpu-clock -o "$W/probe.data" -- true 2>/dev/null; then
		echo "bench: profile: skipped, perf cannot sample here (CONFIG_PERF_EVENTS, linux-perf)"
		return 0
	fi
	cp "$W/base" "$W/loop.img"
	for name in randread-4k-qd32 randwrite-4k-qd32 seqread-128k-qd8; do
		for target in loop overlay; do
			if [ "$target" = loop ]; then
				dev=$(losetup --find --show "$W/loop.img")
			else
				dev=$("$A/ublk-add" --base "$W/base" --cache "$W/cache")
			fi
			# the whole VM while the job runs: perf stops on SIGINT
			perf record -q -a -e cpu-clock -F 997 -o "$W/perf.data" 2>/dev/null &
			perf_pid=$!
			fio_job "$dev" "$name" >/dev/null 2>&1
			kill -INT "$perf_pid"
			wait "$perf_pid" || true
			if [ "$target" = loop ]; then losetup -d "$dev"; else "$A/ublk-del" "$dev"; fi
			rm -f "$W/cache" "$W/cache.map"
			echo
			echo "profile $name, $target: share of samples by thread, then by function (>= 2%)"
			perf report -i "$W/perf.data" --stdio --no-children --sort comm --percent-limit 2 2>/dev/null |
				awk '!/^#/ && NF'
			perf report -i "$W/perf.data" --stdio --no-children --sort comm,dso,sym --percent-limit 2 \
				2>/dev/null | awk '!/^#/ && NF'
		done
	done
	rm -f "$W/loop.img" "$W/perf.data" "$W/probe.data"
}

# Boot-like cold start (issue #17): an ext4 image of the host's Debian tree
# (tests/bench-boot-image.sh) as a remote base, from nginx on loopback
# delayed by netem, 40 ms each way: an 80 ms round trip. TCG runs the
# workload about 40 times slower than a host while the delay is real time,
# so a round trip weighs far less against the workload here than on
# hardware: at 20 ms the warm run alone is 0.35 of the cold one, and no
# prefetch could show its worth (docs/access-trace.md). Each run: drop the
# page cache, then ublk-add, mount, the workload (boot_workload), umount,
# ublk-del, timed together (the wait for the device's statistics, taken
# before ublk-del, left out). A round is three runs: cold without a trace
# (recording one), cold with that trace, warm (the chunk cache the second
# left); BENCH_BOOT_ROUNDS rounds (default 3), the median of each kind
# reported, as a TCG VM on a shared host varies by 2x from run to run.
boot_chunk=${BENCH_BOOT_CHUNK:-512K}
boot_rounds=${BENCH_BOOT_ROUNDS:-3}
boot_delay_ms=${BENCH_BOOT_DELAY_MS:-40}
[[ $boot_delay_ms =~ ^[0-9]{1,4}$ ]] || { echo "bench: BENCH_BOOT_DELAY_MS: not a number of ms: $boot_delay_ms" >&2; exit 2; }
boot_skip=
declare -A boot_ms boot_cpu boot_stat boot_read boot_fetched boot_trace

# boot_workload MNT: what a boot reads and runs, with the image's own
# binaries: dpkg's database, all of /etc, perl and python with a few of
# their modules, five programs that link many libraries, the first 4 KiB
# of 300 libraries (about 8 s warm in the TCG VM)
boot_workload() {
	local m=$1
	mount --bind /dev "$m/dev"
	mount --bind /proc "$m/proc"
	# shellcheck disable=SC2016 # the script's own $ and quotes
	chroot "$m" /usr/bin/env -i PATH=/usr/sbin:/usr/bin LANG=C.UTF-8 HOME=/root /bin/bash -euo pipefail -c '
		dpkg -l >/dev/null
		ls -la /etc /usr/bin >/dev/null
		find /etc -type f -exec cat {} + >/dev/null
		perl -MPOSIX -MFile::Find -MData::Dumper -MGetopt::Long -e 1
		python3 -c "import json, os, email.parser, http.client, ssl, subprocess, logging, argparse"
		for b in git curl systemctl gpg; do "$b" --version >/dev/null; done
		openssl version >/dev/null
		find /usr/lib/x86_64-linux-gnu -type f | LC_ALL=C sort |
			awk "{ f[NR] = \$0 } END { k = int(NR / 300); if (k < 1) k = 1; for (i = 1; i <= NR && n < 300; i += k) { print f[i]; n++ } }" |
			xargs -d "\n" head -q -c 4096 >/dev/null
	'
	umount "$m/proc" "$m/dev"
}

# The jiffies (1/100 s) the CPUs have been busy since boot.
cpu_busy() {
	local _ user nice sys irq softirq steal
	read -r _ user nice sys _ _ irq softirq steal _ </proc/stat
	echo $((user + nice + sys + irq + softirq + steal))
}

# boot_run BUILD KIND ROUND CHUNK-CACHE OPTION...: one timed run
# shellcheck disable=SC2034 # boot_cpu, boot_read, boot_fetched: read by boot_median
boot_run() {
	local k=$1,$2,$3 chunks=$4 B=${bin[$1]} dev t del cpu
	shift 4
	sync
	echo 3 >/proc/sys/vm/drop_caches
	cpu=$(cpu_busy)
	t=$(date +%s%N)
	dev=$("$B/ublk-add" --base http://127.0.0.1:18091/boot.img --read-only --chunk-size "$boot_chunk" \
		--chunk-cache "$chunks" "$@")
	mount -t ext4 -o ro,noload "$dev" "$W/bootmnt"
	boot_workload "$W/bootmnt"
	umount "$W/bootmnt"
	t=$(ms "$t") cpu=$(($(cpu_busy) - cpu))
	# MiB the kernel read from the device (what the chunks fetched hold)
	boot_read[$k]=$(awk '{ print int($3 / 2048) }' "/sys/block/${dev#/dev/}/stat")
	boot_stat[$k]=$(stats_json "$dev" | jq -c .remote)
	boot_fetched[$k]=$(jq .chunks_fetched <<<"${boot_stat[$k]}")
	del=$(date +%s%N)
	cpu=$((cpu - $(cpu_busy)))
	"$B/ublk-del" "$dev"
	boot_ms[$k]=$((t + $(ms "$del")))
	boot_cpu[$k]=$(((cpu + $(cpu_busy)) * 10))
}

# prefetch_done STATS: whether the prefetch of the trace has ended
prefetch_done() {
	local s n
	s=$(<"$1") || return 1
	[[ $s =~ \"trace_chunks\":([0-9]+) ]] || return 1
	n=${BASH_REMATCH[1]}
	[[ $s =~ \"trace_chunks_done\":([0-9]+) ]] && [ "${BASH_REMATCH[1]}" = "$n" ]
}
# boot_prefetch BUILD: how long the prefetch of the trace alone takes (no
# reads), to within the second at which the server writes its statistics
# (polled without starting a program: they would take the CPU it needs)
boot_prefetch() {
	local B=${bin[$1]} dev t f
	rm -rf "$W/bootchunks"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	t=$(date +%s%N)
	dev=$("$B/ublk-add" --base http://127.0.0.1:18091/boot.img --read-only --chunk-size "$boot_chunk" \
		--chunk-cache "$W/bootchunks" --prefetch-trace "$W/boot.trace")
	f="$UBLK_STATE_DIR/ublkb${dev#/dev/ublkb}/stats"
	wait_for 900 "end of the prefetch of $W/boot.trace" "prefetch_done '$f'"
	boot_ms[$1,prefetch]=$(ms "$t")
	"$B/ublk-del" "$dev"
	rm -rf "$W/bootchunks"
}

# boot_median BUILD KIND ARRAY: the median over the rounds of ARRAY[BUILD,KIND,r]
boot_median() {
	local -n v=$3
	local r all=()
	for ((r = 1; r <= boot_rounds; r++)); do all+=("${v[$1,$2,$r]}"); done
	median "${all[@]}"
}

boot_rows() {
	local img=${BENCH_BOOT_IMG:-} b B L err s r st all
	if [ -z "$img" ] || [ ! -r "$img" ]; then
		boot_skip="no image${img:+ $img} (tests/bench-boot-image.sh builds it on the host: make bench does)"
	elif ! command -v tc >/dev/null; then
		boot_skip="no tc (iproute2) to delay loopback"
	elif ! err=$(tc qdisc add dev lo root netem delay ${boot_delay_ms}ms 2>&1); then
		boot_skip="tc qdisc netem failed (a kernel without CONFIG_NET_SCH_NETEM?): $err"
	fi
	if [ -n "$boot_skip" ]; then
		echo "bench: boot-like cold start skipped: $boot_skip"
		return 0
	fi
	netem=1
	mkdir -p "$W/www-boot" "$W/bootmnt"
	ln -sf "$img" "$W/www-boot/boot.img"
	nginx_up boot "$W/www-boot" 18091
	for b in "${builds[@]}"; do
		B=${bin[$b]} L=${label[$b]}
		if ! has_trace "$B"; then
			echo "bench: boot-like cold start$L: skipped, this build has no --prefetch-trace"
			continue
		fi
		for ((r = 1; r <= boot_rounds; r++)); do
			rm -rf "$W/bootchunks" "$W/boot.trace"
			echo "bench: boot$L round $r: cold, recording a trace" >&2
			boot_run "$b" cold "$r" "$W/bootchunks" --record-access "$W/boot.trace" --record-for 3600
			if [ "$r" = 1 ]; then
				echo "bench: boot$L round $r: the prefetch of the trace alone" >&2
				boot_prefetch "$b"
			fi
			rm -rf "$W/bootchunks"
			echo "bench: boot$L round $r: cold with the trace" >&2
			boot_run "$b" trace "$r" "$W/bootchunks" --prefetch-trace "$W/boot.trace"
			echo "bench: boot$L round $r: warm" >&2
			boot_run "$b" warm "$r" "$W/bootchunks"
			boot_trace[$b,$r]="$(awk '$1 == "end" { print $2 }' "$W/boot.trace") chunks, $(stat -c %s "$W/boot.trace") bytes"
		done
		rm -rf "$W/bootchunks" "$W/boot.trace"
		for s in cold trace warm; do
			boot_ms[$b,$s]=$(boot_median "$b" "$s" boot_ms)
		done
	done
	nginx_down boot
	tc qdisc del dev lo root
	netem=
	rm -rf "$W/www-boot"
	echo
	echo "boot-like cold start: $(basename "$img") ($(( $(stat -c %s "$img") >> 20 )) MiB ext4, a Debian tree)" \
		"from nginx on loopback, ${boot_delay_ms} ms each way ($((2 * boot_delay_ms)) ms RTT), --chunk-size $boot_chunk;" \
		"$boot_rounds round(s), medians"
	printf '%-16s %8s %-24s %11s %15s %12s\n' run ms "each round" "CPU busy ms" "fetched on read" "device MiB"
	for b in "${builds[@]}"; do
		L=${label[$b]}
		[ -n "${boot_ms[$b,cold]:-}" ] || continue
		for s in cold trace warm; do
			all=()
			for ((r = 1; r <= boot_rounds; r++)); do all+=("${boot_ms[$b,$s,$r]}"); done
			printf '%-16s %8s %-24s %11s %15s %12s\n' "$s$L" "${boot_ms[$b,$s]}" "${all[*]}" \
				"$(boot_median "$b" "$s" boot_cpu)" \
				"$(boot_median "$b" "$s" boot_fetched)" \
				"$(boot_median "$b" "$s" boot_read)"
		done
		for ((r = 1; r <= boot_rounds; r++)); do
			st=${boot_stat[$b,trace,$r]}
			echo "  round $r$L: trace of ${boot_trace[$b,$r]};" \
				"prefetched $(jq .trace_chunks_done <<<"$st") of $(jq .trace_chunks <<<"$st");" \
				"prefetch hits $(jq -r 'if .trace_reads > 0 then "\(.trace_hits) of \(.trace_reads) chunk reads (\(.trace_hits * 100 / .trace_reads | floor)%)" else "-" end' <<<"$st")"
		done
		echo "  the prefetch of the trace alone, no reads (round 1): ${boot_ms[$b,prefetch]} ms"
		echo "  cold with trace / warm: $(ratio "${boot_ms[$b,trace]}" "${boot_ms[$b,warm]}"), / cold without: $(ratio "${boot_ms[$b,trace]}" "${boot_ms[$b,cold]}");" \
			"warm / cold without (what a prefetch that costs nothing would reach): $(ratio "${boot_ms[$b,warm]}" "${boot_ms[$b,cold]}")"
	done
}

# within_rounds A B JOB: the median over the rounds of A's IOPS / B's in
# the same round (each round's in brackets when there are several)
within_rounds() {
	local -a a b r=()
	local i
	read -ra a <<<"${iops_runs[$1,$3]:-}"
	read -ra b <<<"${iops_runs[$2,$3]:-}"
	for i in "${!a[@]}"; do
		[ -z "${b[$i]:-}" ] || r+=("$(ratio "${a[$i]}" "${b[$i]}")")
	done
	if [ ${#r[@]} -eq 0 ]; then echo -; return; fi
	echo "$(median "${r[@]}")$([ ${#r[@]} -eq 1 ] || echo " (${r[*]})")"
}
# The fio goals of issue #15 of build $1: measured (with the rounds'
# range), then the goal.
goals15_fio() {
	local L=${label[$1]} name
	for name in randread-4k-qd32:0.95 randwrite-4k-qd32:0.75 randwrite-4k-qd1:0.8 seqread-128k-qd8:0.85; do
		printf '  overlay %-18s / loop: q1 %s, q2 %s (goal >= %s)\n' "${name%%:*}" \
			"$(ratio_cell overlay-q1$L "${name%%:*}")" "$(ratio_cell overlay-q2$L "${name%%:*}")" "${name#*:}"
	done
	echo "  fragmented overlay randread-64k-qd8 / unfragmented: $(within_rounds frag$L overlay-q1$L randread-64k-qd8) (goal >= 0.8)"
	echo "  remote warm randread-4k-qd32 / overlay q1: $(within_rounds remote-warm$L overlay-q1$L randread-4k-qd32) (goal >= 0.9)"
	echo "  (overlay randwrite-4k-qd1 on a cache whose every page was written once / loop:" \
		"$(ratio_cell written$L randwrite-4k-qd1): q1's fresh cache pays the first touch of each page on top)"
}
# The goals of issue #17 for build $1.
goals17() {
	local b=$1
	if [ -n "${boot_ms[$b,cold]:-}" ]; then
		echo "  boot cold with trace / warm: $(ratio "${boot_ms[$b,trace]}" "${boot_ms[$b,warm]}") (goal <= 1.5)"
		echo "  boot cold with trace / cold without: $(ratio "${boot_ms[$b,trace]}" "${boot_ms[$b,cold]}") (goal <= 0.3;" \
			"warm / cold without, its floor here: $(ratio "${boot_ms[$b,warm]}" "${boot_ms[$b,cold]}"))"
	else
		echo "  boot cold start: not measured${boot_skip:+ ($boot_skip)}"
	fi
	if [ -n "${rec_cost[$b]:-}" ]; then
		echo "  --record-access cost, remote warm randread-4k-qd32: ${rec_cost[$b]} (goal <= 2%)"
	fi
}

# fio on the loop device, null_blk, and each build's plain, overlay (1 and 2
# queues) and fragmented overlay devices. The builds take turns for each
# kind of device: a boot's speed drifts, and all of one build's devices
# before all of the other's would measure the drift as well.
fio_rows() {
	local round dev kind zopt e2b_id=e2b00000-0000-4000-8000-0000000000b1
	# the base's bytes as a diff over an empty base, raw and zstd (the
	# export stops the device)
	truncate -s ${size_mb}M "$W/empty"
	for kind in raw zstd; do
		zopt=()
		[ "$kind" = raw ] || zopt=(--zstd)
		dev=$("$A/ublk-add" --base "$W/empty" --cache "$W/dcache")
		dd if="$W/base" of="$dev" bs=1M oflag=direct status=none
		"$A/ublk-export-diff" --no-progress "${zopt[@]}" -o "$W/$kind.diff" "$dev" >/dev/null
		rm -f "$W/dcache" "$W/dcache.map"
	done
	# the base as an E2B build of zstd frames of 2 MiB (E2B's), written by
	# the reference writer
	python3 "$(dirname "$0")/e2b/e2b_ref.py" template "$W/e2b" "$W/base" "$e2b_id" --layout 4 \
		--codec zstd >/dev/null
	# the base over HTTP, for remote-warm
	mkdir -p "$W/www-warm"
	ln -f "$W/base" "$W/www-warm/img"
	nginx_up warm "$W/www-warm" 18091
	for round in $(seq "$rounds"); do
		[ "$rounds" -eq 1 ] || echo "bench: fio round $round of $rounds" >&2
		fio_round
	done
	nginx_down warm
	rm -rf "$W/www-warm"
}
fio_round() {
	local b B L kind dev loopdev
	# kernel loop over a copy of the base (writes must not touch the others')
	cp "$W/base" "$W/loop.img"
	loopdev=$(losetup --find --show "$W/loop.img")
	bench loop "$loopdev" $all_jobs
	losetup -d "$loopdev"
	rm -f "$W/loop.img"

	if [ -b /dev/nullb0 ]; then bench null_blk /dev/nullb0 $std_jobs; fi

	for kind in plain overlay-q1 remote-warm overlay-q2 frag written diff-raw diff-zstd e2b-zstd; do
		for b in "${builds[@]}"; do
			B=${bin[$b]} L=${label[$b]}
			case $kind in
			plain)
				cp "$W/base" "$W/plain.img"
				dev=$("$B/ublk-add" --base "$W/plain.img")
				bench "plain$L" "$dev" $std_jobs
				;;
			overlay-q*)
				dev=$("$B/ublk-add" --base "$W/base" --cache "$W/cache" --queues "${kind#overlay-q}")
				bench "$kind$L" "$dev" $all_jobs
				;;
			remote-warm)
				# a remote base, every chunk in the chunk cache: in the
				# rounds, next to overlay-q1, which it is measured against
				dev=$("$B/ublk-add" --base http://127.0.0.1:18091/img --chunk-cache "$W/wchunks" \
					--read-only --readahead 4)
				dd if="$dev" of=/dev/null bs=1M iflag=direct status=none
				bench "$kind$L" "$dev" randread-4k-qd32
				;;
			frag)
				# every other 4 KiB block in the cache: a read alternates cache and base
				dev=$("$B/ublk-add" --base "$W/base" --cache "$W/cache")
				fio --name=frag --filename="$dev" --ioengine=io_uring --direct=1 --rw=write:4k \
					--bs=4k --iodepth=32 --size=${size_mb}M >/dev/null
				bench "frag$L" "$dev" randread-64k-qd8
				;;
			written)
				# every cache page written once: the writes overlay-q1's fresh
				# cache makes, less the first touch of each page
				dev=$("$B/ublk-add" --base "$W/base" --cache "$W/cache")
				fio --name=written --filename="$dev" --ioengine=io_uring --direct=1 --rw=write \
					--bs=1M --iodepth=4 --size=${size_mb}M >/dev/null
				bench "written$L" "$dev" randwrite-4k-qd1
				;;
			diff-*)
				# reads of 4 KiB over a diff of 1 MiB frames; a zstd one's
				# frames decompressed into a chunk cache of this device's
				dev=$("$B/ublk-add" --base "$W/empty" --layer "$W/${kind#diff-}.diff" --read-only \
					--chunk-cache "$W/dchunks")
				bench "$kind$L" "$dev" randread-4k-qd1 randread-4k-qd32 seqread-128k-qd8
				;;
			e2b-zstd)
				# likewise, its frames decompressed into the device's chunk cache
				dev=$("$B/ublk-add" --e2b "$W/e2b" --build "$e2b_id" --read-only \
					--chunk-cache "$W/dchunks")
				bench "$kind$L" "$dev" randread-4k-qd1 randread-4k-qd32 seqread-128k-qd8
				;;
			esac
			"$B/ublk-del" "$dev"
			rm -rf "$W/plain.img" "$W/cache" "$W/cache.map" "$W/dchunks" "$W/wchunks"
		done
	done
}

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
# export: a device with 64 MiB of changed blocks, against cp + sync of
# the same number of bytes; each the best of 3 (a TCG run varies)
least_of3() { # command...: the least of the numbers 3 runs of it print
	local best= t
	for _ in 1 2 3; do
		t=$("$@")
		[ -n "$best" ] && [ "$best" -le "$t" ] || best=$t
	done
	echo "$best"
}
timed_ms() { # command...: run it, print how long it took in ms
	local t
	t=$(date +%s%N)
	"$@"
	ms "$t"
}
best_ms() { least_of3 timed_ms "$@"; } # command...: the shortest of 3 runs, in ms
declare -A export_mb
cp_mb=
export_rows() {
	head -c $((64 << 20)) "$W/base" >"$W/src64"
	cp_mb=$(mb_s $((64 << 20)) "$(best_ms sh -c "cp '$W/src64' '$W/dst64' && sync")")
	rm -f "$W/src64" "$W/dst64"
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
		echo "export of 64 MiB changed${label[$b]}: raw ${export_mb[$b,raw]} MiB/s, zstd ${export_mb[$b,zstd]} MiB/s; cp + sync of 64 MiB: $cp_mb MiB/s (best of 3 each; ratios $(ratio "${export_mb[$b,raw]}" "$cp_mb"), $(ratio "${export_mb[$b,zstd]}" "$cp_mb"))"
	done
	# The random bytes above do not compress (zstd stores them as they are);
	# the host's shared libraries do, as a sandbox's binaries would.
	{ cat /usr/lib/x86_64-linux-gnu/*.so* 2>/dev/null || true; } | head -c $((64 << 20)) >"$W/libs" || true
	for b in "${builds[@]}"; do
		B=${bin[$b]}
		dev=$("$B/ublk-add" --base "$W/base" --cache "$W/xcache")
		dd if="$W/libs" of="$dev" bs=1M oflag=direct status=none
		"$B/ublk-del" "$dev"
		export_mb[$b,libs]=$(mb_s $((64 << 20)) "$(best_ms sh -c "'$B/ublk-export-diff' --no-progress --keep --zstd --cache '$W/xcache' -o '$W/x.diff' && sync")")
		local kib
		kib=$(du -k "$W/x.diff" | cut -f1)
		rm -f "$W/x.diff" "$W/xcache" "$W/xcache.map"
		echo "export of 64 MiB of shared libraries${label[$b]}, zstd: ${export_mb[$b,libs]} MiB/s, $(( kib * 100 / 65536 ))% of the size (ratio to cp + sync $(ratio "${export_mb[$b,libs]}" "$cp_mb"))"
	done
	rm -f "$W/libs"
}

# The fio rows so far: IOPS, ratio to loop (kept in to_loop), mean latency
declare -A to_loop loop_range

# remote base from nginx on loopback: a cold sequential read against curl
# downloading the same file (each the best of 3), then the warm chunk cache
declare -A remote_cold remote_warm
curl_mb=
remote_rows() {
	local b B L dev
	mkdir -p "$W/www"
	cp "$W/base" "$W/www/img"
	nginx_up remote "$W/www" 18090
	curl_mb=$(mb_s $((size_mb << 20)) "$(best_ms curl -s -o "$W/curl.img" http://127.0.0.1:18090/img)")
	rm -f "$W/curl.img"
	echo "remote base, ${size_mb} MiB sequential: curl download $curl_mb MiB/s"
	for b in "${builds[@]}"; do
		B=${bin[$b]} L=${label[$b]}
		remote_cold[$b]=$(mb_s $((size_mb << 20)) "$(least_of3 remote_cold_ms "$B")")
		dev=$("$B/ublk-add" --base http://127.0.0.1:18090/img --chunk-cache "$W/chunks" --read-only --readahead 4)
		remote_warm[$b]=$(mb_s $((size_mb << 20)) "$(best_ms dd if="$dev" of=/dev/null bs=1M iflag=direct status=none)")
		"$B/ublk-del" "$dev"
		rm -rf "$W/chunks"
		echo "  ublk-tools$L: cold ${remote_cold[$b]} MiB/s ($(ratio "${remote_cold[$b]}" "$curl_mb") of curl)," \
			"warm (chunk cache) ${remote_warm[$b]} MiB/s, warm randread-4k-qd32 ${iops[remote-warm$L,randread-4k-qd32]:--} IOPS (fio rows)"
	done
	nginx_down remote
}
# remote_cold_ms BIN: one whole read of the image through a new device with
# an empty chunk cache, in ms
remote_cold_ms() {
	local dev t
	rm -rf "$W/chunks"
	dev=$("$1/ublk-add" --base http://127.0.0.1:18090/img --chunk-cache "$W/chunks" --read-only --readahead 4)
	t=$(timed_ms dd if="$dev" of=/dev/null bs=1M iflag=direct status=none)
	"$1/ublk-del" "$dev"
	echo "$t"
}

# ratio_cell TARGET JOB: its ratio to loop, with the rounds' range if several
ratio_cell() {
	local r=${loop_range[$1,$2]:-}
	[[ $r == *-* ]] || r=
	echo "${to_loop[$1,$2]:--}${r:+ ($r)}"
}
fio_tables() {
	local t name
	for t in "${targets[@]}"; do
		for name in $all_jobs; do
			[ -n "${ratio_runs[$t,$name]:-}" ] || continue
			# shellcheck disable=SC2086
			to_loop[$t,$name]=$(median ${ratio_runs[$t,$name]})
			# shellcheck disable=SC2086
			loop_range[$t,$name]=$(printf '%s\n' ${ratio_runs[$t,$name]} | sort -n | sed -n '1p;$p' |
				paste -sd- | sed 's/^\([^-]*\)-\1$/\1/')
		done
	done
	[ "$rounds" -eq 1 ] || printf '\nfio rows: the median of %s rounds; ratios taken within a round\n' "$rounds"
	table IOPS iops
	table "ratio to loop" to_loop
	[ "$rounds" -eq 1 ] || table "ratio low-high" loop_range
	table "mean lat (us)" lat
}

if [ -n "${BENCH_ONLY:-}" ]; then
	for section in ${BENCH_ONLY//,/ }; do
		case $section in
		boot) boot_rows ;;
		record) record_rows ;;
		profile) profile_rows ;;
		fio) fio_rows; fio_tables ;;
		export) export_rows ;;
		remote) remote_rows ;;
		*) echo "bench: BENCH_ONLY: unknown section '$section' (boot, record, profile, fio, export, remote)" >&2; exit 2 ;;
		esac
	done
	for b in "${builds[@]}"; do
		echo
		if [[ ",$BENCH_ONLY," == *,fio,* ]]; then
			echo "fio goals of issue #15${label[$b]:+ of ${label[$b]}}:"
			goals15_fio "$b"
		fi
		echo "goals of issue #17${label[$b]:+ of ${label[$b]}}:"
		goals17 "$b"
	done
	exit 0
fi

fio_rows

nbdkit -U "$W/nbd.sock" -P "$W/nbd.pid" -f --filter=cow file "$W/base" &
nbd_pid=$!
for _ in $(seq 50); do [ -S "$W/nbd.sock" ] && break; sleep 0.1; done
nbd-client -unix "$W/nbd.sock" /dev/nbd0 -b 4096 -N '' >/dev/null
bench nbd-cow /dev/nbd0 $std_jobs
nbd-client -d /dev/nbd0 >/dev/null
kill "$nbd_pid"; wait "$nbd_pid" 2>/dev/null || true; nbd_pid=

remote_rows
fio_tables

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

export_rows

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

echo
record_rows
boot_rows

# The goals of issues #15 and #17, each build: measured, then the goal.
for b in "${builds[@]}"; do
	L=${label[$b]}
	echo
	echo "goals${L:+ of $L}:"
	goals15_fio "$b"
	echo "  export raw / cp + sync: $(ratio "${export_mb[$b,raw]}" "$cp_mb") (goal >= 1.0)"
	echo "  export zstd / cp + sync: $(ratio "${export_mb[$b,zstd]}" "$cp_mb") (goal >= 0.8)"
	echo "  export zstd / cp + sync, shared libraries (compressible): $(ratio "${export_mb[$b,libs]:-}" "$cp_mb")"
	echo "  flatten 20 GiB sparse + 10 MiB: ${flat_ms[$b]} ms, $(( flat_kib[$b] / 1024 )) MiB (goal < 1000 ms, <= 11 MiB)"
	echo "  remote cold sequential / curl: $(ratio "${remote_cold[$b]}" "$curl_mb") (goal >= 1.0)"
	echo "  RSS per idle device: ${rss_kib[$b]} KiB (goal <= 8192)"
	goals17 "$b"
done
