# Shared by the bats suites.
#   UBLK_BIN  folder of the tools under test

B=${UBLK_BIN:-$BATS_TEST_DIRNAME/../../build}

# run_mustfail CODE "message part" cmd...: cmd exits CODE and says message.
run_mustfail() {
	local code=$1 msg=$2
	shift 2
	run "$@"
	if [ "$status" -ne "$code" ]; then
		echo "expected exit $code, got $status from: $*" >&2
		echo "output: $output" >&2
		return 1
	fi
	if [[ "$output" != *"$msg"* ]]; then
		echo "expected message containing '$msg' from: $*" >&2
		echo "output: $output" >&2
		return 1
	fi
	# one line, prefixed by the tool's name
	if [ "$(printf '%s\n' "$output" | wc -l)" -ne 1 ] || [[ "$output" != ublk-* ]]; then
		echo "expected one 'tool: message' line, got: $output" >&2
		return 1
	fi
}

# flip_byte FILE OFFSET: invert the byte at OFFSET in place. Writing a fixed
# value instead would leave random data unchanged once in 256 runs.
flip_byte() {
	local old
	old=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	[ -n "$old" ] || { echo "flip_byte: $1 has no byte $2" >&2; return 1; }
	printf "\\$(printf '%03o' $((255 - old)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# wait_until SECONDS CONDITION: evaluate CONDITION (a command line, quoted)
# until it succeeds; after SECONDS fail, saying what was awaited. The
# deadline catches a hang: size it for a machine three times slower.
wait_until() {
	local secs=$1 cond=$2
	local end=$((SECONDS + secs))
	until eval "$cond"; do
		if [ "$SECONDS" -ge "$end" ]; then
			echo "wait_until: still false after ${secs} s: $cond" >&2
			return 1
		fi
		sleep 0.05
	done
}

# stats_fresh DEV: wait until DEV's server has written its statistics
# after this moment, so they count all IO done before: SIGUSR1 asks for
# them now (else they come once a second).
# The file is replaced (renamed over) at each write: a new inode is a new
# write, where an mtime on tmpfs is too coarse to tell one from the last.
stats_fresh() {
	local entry="$UBLK_STATE_DIR/ublkb${1#/dev/ublkb}" pid ino
	ino=$(stats_inode "$entry")
	pid=$(cat "$entry/pid" 2>/dev/null) || true
	# between servers: the next one writes them
	[ -z "$pid" ] || kill -USR1 "$pid" 2>/dev/null || true
	wait_until 30 "[ \"\$(stats_inode '$entry')\" != '$ino' ]"
}
stats_inode() {
	stat -c %i "$1/stats" 2>/dev/null || echo none
}

# Requests device $1 (/dev/ublkbN) completed, reads + writes, per the kernel.
dev_ios() {
	local stat
	read -ra stat <"/sys/block/${1#/dev/}/stat"
	echo $((stat[0] + stat[4]))
}

# Read (write) requests of device $1 the driver holds now, per the kernel.
dev_reads_in_flight() {
	local reads _
	read -r reads _ <"/sys/block/${1#/dev/}/inflight"
	echo "$reads"
}
dev_writes_in_flight() {
	local _ writes
	read -r _ writes <"/sys/block/${1#/dev/}/inflight"
	echo "$writes"
}

as_nobody() {
	setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
}

# Root that cannot bypass file permissions: makes "unreadable" testable.
root_without_dac() {
	setpriv --inh-caps=-dac_override,-dac_read_search \
		--bounding-set=-dac_override,-dac_read_search "$@"
}

# Only the standard error of a command (for tools that also print results).
stderr_of() {
	"$@" 2>&1 >/dev/null
}

# Start tests/hostile_http.py on ports $1, $1 + 1 (another origin) and
# $1 + 2 (TLS), with a fresh certificate in folder $2; its pid in $server.
hostile_start() {
	local port=$1 dir=$2
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
		-subj /CN=localhost -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
	python3 "$BATS_TEST_DIRNAME/../hostile_http.py" "$port" $((port + 1)) $((port + 2)) \
		"$dir/cert.pem" "$dir/key.pem" >"$dir/server.log" 2>&1 &
	server=$!
	wait_until 30 'grep -q ready "$dir/server.log"' || { cat "$dir/server.log" >&2; return 1; }
}
