# Helpers for the VM suites: real /dev/ublkbN devices.
load ../helpers

vm_setup() {
	[ -e /dev/ublk-control ] || { echo "not in the ublk VM (no /dev/ublk-control)" >&2; return 1; }
	T=$(mktemp -d)
	# a test's own chunk cache: remote images, zstd diffs' frames
	export UBLK_STATE_DIR=$T/state UBLK_CHUNK_CACHE=$T/chunks
}

# Stop what the test started in the background ($BG: pids), delete
# whatever it left, and unmount what it mounted in its folder.
vm_teardown() {
	[ -z "${BG:-}" ] || kill $BG 2>/dev/null || true
	for m in $(awk '$1 ~ /^\/dev\/ublkb/ {print $2}' /proc/mounts); do umount -l "$m"; done
	"$B/ublk-del" --all --force --timeout 5 >/dev/null 2>&1 || true
	# a file system a test mounted in its folder, left by a failure
	for m in $(awk -v t="$T/" 'index($2, t) == 1 {print $2}' /proc/mounts); do umount -l "$m"; done
	rm -rf "$T"
	# what a forced delete of everything leaves is a leak, and the next
	# test's trouble: a device, or a server that would not end
	wait_until 30 '[ -z "$(ls /sys/class/ublk-char 2>/dev/null)$(pgrep -x ublk-serve)" ]' ||
		{ echo "teardown: left after ublk-del --all --force:" >&2; assert_none_left; }
}

# kernel major.minor as one number: 6.12 -> 612
kernel_num() {
	local r
	r=$(uname -r)
	r=${r%%-*}
	echo $(( ${r%%.*} * 100 + $(echo "$r" | cut -d. -f2) ))
}

# random image of N MiB
make_image() {
	# AES-CTR under a random key: twice the rate of /dev/urandom in the TCG VM
	local key
	key=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
	head -c $(($2 << 20)) /dev/zero |
		openssl enc -aes-128-ctr -K "$key" -iv 00000000000000000000000000000000 -out "$1"
}

# Assert that device id $1 is gone: node, server, state entry.
assert_gone() {
	local id=$1 pid=${2:-}
	wait_until 30 "[ ! -e /dev/ublkb$id ]" || return 1
	[ ! -e "/dev/ublkc$id" ] || { echo "/dev/ublkc$id still exists" >&2; return 1; }
	[ ! -e "/sys/class/ublk-char/ublkc$id" ] || { echo "kernel still has ublkc$id" >&2; return 1; }
	[ ! -e "$UBLK_STATE_DIR/ublkb$id" ] || { echo "state entry ublkb$id left" >&2; return 1; }
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		echo "server $pid still running" >&2; return 1
	fi
}

# Whether device $1 is served by a live server other than pid $2: the
# server writes "live" once the kernel made the device live.
served_by_other() {
	[ "$(cat "$UBLK_STATE_DIR/ublkb$1/state" 2>/dev/null)" = live ] || return 1
	[ "$(cat "$UBLK_STATE_DIR/ublkb$1/pid" 2>/dev/null)" != "$2" ]
}

# What every ublk process is doing, for a test that gave up waiting:
# state, kernel wait channel and stack of each thread, open files.
dump_ublk_procs() {
	local p t
	echo "--- ublk processes" >&2
	for p in $(pgrep -f '/ublk-(add|serve|del|pool|export-diff) '); do
		echo "pid $p: $(tr '\0' ' ' </proc/$p/cmdline 2>/dev/null)" >&2
		for t in /proc/$p/task/*; do
			echo "  task ${t##*/} $(cut -d' ' -f3 "$t/stat" 2>/dev/null) $(cat "$t/wchan" 2>/dev/null)" >&2
			sed 's/^/    /' "$t/stack" >&2 2>/dev/null || true
		done
		ls -l "/proc/$p/fd" 2>/dev/null | sed 's/^/  /' >&2
	done
	echo "--- kernel devices: $(ls /sys/class/ublk-char 2>/dev/null | tr '\n' ' ')" >&2
}

# no ublk device, no server and no state entry at all
assert_none_left() {
	[ -z "$(ls /sys/class/ublk-char 2>/dev/null)" ] || { ls /sys/class/ublk-char >&2; return 1; }
	[ -z "$(pgrep -x ublk-serve)" ] || { pgrep -ax ublk-serve >&2; return 1; }
	assert_no_entry
}

# The state directory holds nothing but the pool's own files
# (docs/state-dir.md): no entry, no half-made one (.ublkbN.new), no
# temporary, no .shutdown of a shutdown that ended.
assert_no_entry() {
	local left
	left=$(ls -A "$UBLK_STATE_DIR" 2>/dev/null |
		grep -vxE '\.(pool|admit|names)\.lock|\.events(\.totals)?' || true)
	[ -z "$left" ] || { echo "left in $UBLK_STATE_DIR: $left" >&2; return 1; }
}

# How many files of the chunk cache the server of device $1 has mapped
# (kept frames and remote chunks it reads in place).
mapped_chunks() {
	local pid
	pid=$(cat "$UBLK_STATE_DIR/ublkb${1#/dev/ublkb}/pid")
	grep -c " $UBLK_CHUNK_CACHE/[^/]*/[0-9]*\$" "/proc/$pid/maps" || true
}

# A device over $T/base with its cache in $T/$1 (more ublk-add options
# after it), whose server was killed (SIGKILL) and is gone: $dev, $id,
# and the server's $pid.
add_with_dead_server() {
	dev=$("$B/ublk-add" --base "$T/base" --cache "$T/$1" "${@:2}")
	id=${dev#/dev/ublkb}
	pid=$(cat "$UBLK_STATE_DIR/ublkb$id/pid")
	kill -9 "$pid"
	wait_until 30 '! kill -0 "$pid" 2>/dev/null'
}

# stat_of DEV JQ_PATH: a value of DEV's statistics, written after this moment.
stat_of() {
	stats_fresh "$1"
	jq "$2" "$UBLK_STATE_DIR/ublkb${1#/dev/ublkb}/stats"
}

# nginx on loopback, as root, in $T/nginx; $1 is the http block's own
# lines (access_log, server blocks), after the common settings.
nginx_run() {
	mkdir -p "$T/nginx"
	cat >"$T/nginx/nginx.conf" <<CONF
user root;
daemon on;
worker_processes 1;
pid $T/nginx/nginx.pid;
error_log $T/nginx/error.log;
events { worker_connections 64; }
http {
	client_body_temp_path $T/nginx/body;
	proxy_temp_path $T/nginx/proxy;
	fastcgi_temp_path $T/nginx/fastcgi;
	uwsgi_temp_path $T/nginx/uwsgi;
	scgi_temp_path $T/nginx/scgi;
$1
}
CONF
	nginx -p "$T/nginx" -c "$T/nginx/nginx.conf"
}

nginx_stop() {
	[ -s "$T/nginx/nginx.pid" ] || return 0
	local pid
	pid=$(cat "$T/nginx/nginx.pid")
	kill "$pid"
	wait_until 30 "! kill -0 $pid 2>/dev/null"
}
