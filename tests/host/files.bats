#!/usr/bin/env bats
# Files and folders another local user could prepare (docs/security.md):
# the state directory, its entries, files the tools replace, exported
# images. No ublk needed: the tools stop before the kernel or never use it.

load ../helpers

setup() {
	export UBLK_CONTROL_PATH=/dev/null
	T=$(mktemp -d)
	S=$T/state
	mkdir -m 0700 "$S"
}

teardown() {
	[ -z "${pid:-}" ] || kill -9 "$pid" 2>/dev/null || true
	[ -z "${server:-}" ] || kill "$server" 2>/dev/null || true
	[ -z "${other:-}" ] || kill "$other" 2>/dev/null || true
	[ -z "${holder:-}" ] || { pkill -P "$holder"; kill "$holder"; } 2>/dev/null || true
	chmod -R u+rwX "$T" 2>/dev/null || true
	rm -rf "$T"
}

@test "a state directory writable by others is refused with what to do" {
	chmod 0777 "$S"
	run_mustfail 1 "state directory $S is writable by other users (mode 0777): chmod 0700 it or use --state-dir" \
		"$B/ublk-pool" list --state-dir "$S"
	run_mustfail 1 "is writable by other users" "$B/ublk-pool" status --state-dir "$S"
	run_mustfail 1 "is writable by other users" "$B/ublk-export-diff" --state-dir "$S" -o "$T/o" sb1
	run "$B/ublk-del" --state-dir "$S" sb1
	[ "$status" -ne 0 ]
	[[ "$output" == *"state directory $S is writable by other users (mode 0777)"* ]]
}

@test "a state directory of another user, or under a folder others can write, is refused" {
	chown 65534 "$S"
	run_mustfail 1 "is owned by uid 65534, not by this user" "$B/ublk-pool" list --state-dir "$S"
	chown 0 "$S"
	mkdir -m 0777 "$T/open"
	mkdir -m 0700 "$T/open/state"
	run_mustfail 1 "the folder $T/open on its way is writable by other users" \
		"$B/ublk-pool" list --state-dir "$T/open/state"
	# the sticky bit (like /tmp) keeps others from replacing our folder
	chmod 1777 "$T/open"
	run "$B/ublk-pool" list --state-dir "$T/open/state"
	[ "$status" -eq 0 ]
}

@test "a state directory to be made through another user's link, or under a folder others can write, makes nothing" {
	mkdir -m 0700 "$T/victim"
	chmod 1777 "$T"
	ln -s "$T/victim" "$T/theirs"
	chown -h 65534 "$T/theirs"
	truncate -s 1M "$T/img"
	run_mustfail 1 "state directory $T/theirs/state: the folder $T/theirs on its way is owned by another user" \
		"$B/ublk-add" --base "$T/img" --state-dir "$T/theirs/state"
	[ -z "$(ls -A "$T/victim")" ]
	mkdir -m 0777 "$T/open"
	run_mustfail 1 "the folder $T/open on its way is writable by other users" \
		"$B/ublk-add" --base "$T/img" --state-dir "$T/open/a/state"
	[ ! -e "$T/open/a" ]
}

@test "a symlinked state entry is removed itself, never followed" {
	mkdir "$T/victim"
	echo precious >"$T/victim/config"
	echo precious >"$T/victim/pid"
	ln -s "$T/victim" "$S/ublkb5"
	run "$B/ublk-pool" reclaim --state-dir "$S"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(cat "$T/victim/config")" = precious ]
	[ "$(cat "$T/victim/pid")" = precious ]
	[ ! -L "$S/ublkb5" ]
}

@test "reclaim removes the half-made entry of a server killed making it, not one being made" {
	for id in 7 8 9; do
		mkdir -m 0700 "$S/.ublkb$id.new"
		echo 2 >"$S/.ublkb$id.new/version"
	done
	# 7 and 9 from an hour ago; 9 locked, as a server making it holds it
	touch -d '1 hour ago' "$S/.ublkb7.new" "$S/.ublkb9.new"
	# (the lock's holder is the process killed below: no child keeps it)
	( exec 8<"$S/.ublkb9.new"; flock -x 8; exec sleep 600 ) 3>&- &
	holder=$!
	wait_until 20 '! flock -n "$S/.ublkb9.new" true'
	run "$B/ublk-pool" reclaim --state-dir "$S"
	echo "$output"
	kill "$holder"
	wait "$holder" || true
	[ "$status" -eq 0 ]
	[ ! -e "$S/.ublkb7.new" ]
	[ -e "$S/.ublkb8.new/version" ]
	[ -e "$S/.ublkb9.new/version" ]
}

@test "the metrics textfile is never written through a planted link" {
	mkdir -m 0700 "$T/prom"
	echo "root only" >"$T/secret"
	chmod 600 "$T/secret"
	# the old temporary name was ublk.prom.<pid>: plant it for the pid the
	# tool will have (exec keeps the shell's)
	run sh -c 'ln -s "$1/secret" "$1/prom/ublk.prom.$$" && exec "$2/ublk-pool" metrics --state-dir "$1/state" --textfile "$1/prom"' \
		sh "$T" "$B"
	[ "$status" -eq 0 ]
	[ "$(cat "$T/secret")" = "root only" ]
	[ -f "$T/prom/ublk.prom" ]
	[ ! -L "$T/prom/ublk.prom" ]
	[ "$(stat -c %a "$T/prom/ublk.prom")" = 644 ]
	grep -q '^ublk_devices' "$T/prom/ublk.prom"
}

@test "a metrics textfile that is a link is replaced, not followed" {
	mkdir -m 0700 "$T/prom"
	echo "root only" >"$T/secret"
	ln -s "$T/secret" "$T/prom/ublk.prom"
	run "$B/ublk-pool" metrics --state-dir "$S" --textfile "$T/prom"
	[ "$status" -eq 0 ]
	[ "$(cat "$T/secret")" = "root only" ]
	[ ! -L "$T/prom/ublk.prom" ]
}

@test "a flattened image gets the umask's mode, and no temporary is left" {
	truncate -s 1M "$T/base"
	mkdir "$T/out"
	(umask 077 && "$B/ublk-export-diff" --flatten --base "$T/base" -o "$T/out/private.img")
	[ "$(stat -c %a "$T/out/private.img")" = 600 ]
	(umask 027 && "$B/ublk-export-diff" --flatten --base "$T/base" -o "$T/out/group.img")
	[ "$(stat -c %a "$T/out/group.img")" = 640 ]
	(umask 022 && "$B/ublk-export-diff" --flatten --base "$T/base" -o "$T/out/shared.img")
	[ "$(stat -c %a "$T/out/shared.img")" = 644 ]
	[ "$(ls -A "$T/out" | wc -l)" -eq 3 ]
}

@test "a failed flatten leaves no file; a link, device or pipe at the output is refused, not replaced" {
	truncate -s 1M "$T/base"
	mkdir "$T/out"
	echo junk >"$T/bad.diff"
	run "$B/ublk-export-diff" --flatten --base "$T/base" --layer "$T/bad.diff" -o "$T/out/x.img"
	[ "$status" -ne 0 ]
	[ -z "$(ls -A "$T/out")" ]
	echo "root only" >"$T/secret"
	ln -s "$T/secret" "$T/out/x.img"
	run_mustfail 2 "$T/out/x.img: is a symbolic link, which the output would replace rather than write through: give the name of a regular file, or a new one" \
		"$B/ublk-export-diff" --flatten --base "$T/base" -o "$T/out/x.img"
	[ "$(cat "$T/secret")" = "root only" ]
	[ -L "$T/out/x.img" ]
	mknod "$T/out/null" c 1 3
	run_mustfail 2 "$T/out/null: is a character device, which the output would replace rather than write to" \
		"$B/ublk-export-diff" --flatten --base "$T/base" -o "$T/out/null"
	[ -c "$T/out/null" ]
	mkfifo "$T/out/fifo"
	run_mustfail 2 "$T/out/fifo: is a named pipe" timeout 20 "$B/ublk-export-diff" --flatten --base "$T/base" -o "$T/out/fifo"
	[ -p "$T/out/fifo" ]
	rm "$T/out/x.img"
	"$B/ublk-export-diff" --flatten --base "$T/base" -o "$T/out/x.img"
	[ "$(stat -c %s "$T/out/x.img")" -eq 1048576 ]
	# a regular file is replaced whole
	"$B/ublk-export-diff" --flatten --base "$T/base" -o "$T/out/x.img"
	[ "$(stat -c %s "$T/out/x.img")" -eq 1048576 ]
}

@test "a base that is a pipe, a character device or of an odd size is refused at once, saying why" {
	mkfifo "$T/fifo"
	run_mustfail 5 "$T/fifo: not a regular file or block device" \
		timeout 20 "$B/ublk-export-diff" --flatten --base "$T/fifo" -o "$T/x.img"
	run_mustfail 5 "/dev/null: not a regular file or block device" \
		"$B/ublk-export-diff" --flatten --base /dev/null -o "$T/x.img"
	truncate -s 1000 "$T/odd"
	run_mustfail 5 "$T/odd: size 1000 is not a non-zero multiple of 4096 bytes; pad it (truncate -s %4096 FILE)" \
		"$B/ublk-export-diff" --flatten --base "$T/odd" -o "$T/x.img"
	[ ! -e "$T/x.img" ]
}

@test "files, live map, state directory and control socket unit tests" {
	run "$UBLK_TEST_BIN/test-files"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" 0 failed" ]]
	# what the unit test could not run is said, not passed
	[[ "$output" != *"not root: "* ]] || skip "not root: the state directory tests did not run"
	[[ "$output" != *"no mount namespace"* ]]
}

@test "an export killed by SIGTERM removes its named temporary" {
	# Hiding /proc keeps the output from being an unnamed file (O_TMPFILE
	# needs /proc to get a name), as on a filesystem without O_TMPFILE.
	unshare -m true || skip "no mount namespaces here"
	# a base served one byte a second: the flatten is still reading it when killed
	hostile_start 28190 "$T"
	mkdir "$T/out"
	unshare -m sh -c 'mount --make-rprivate / && mount -t tmpfs none /proc &&
		UBLK_CHUNK_CACHE="$2/chunks" exec "$1/ublk-export-diff" --no-progress --flatten \
			--base http://127.0.0.1:28190/drip/img -o "$2/out/x.img"' sh "$B" "$T" 2>/dev/null &
	pid=$!
	wait_until 20 'ls -A "$T/out" | grep -q "^\.x\.img\..*\.tmp$"'
	kill -0 "$pid"
	kill -TERM "$pid"
	rc=0
	wait "$pid" || rc=$?
	[ "$rc" -eq 143 ]
	[ -z "$(ls -A "$T/out")" ]
}

@test "metrics folds a long .events into .events.totals and counts every event once" {
	# 40000 adds of 100 ms and one of 3 s: more than the fold threshold
	awk 'BEGIN { for (i = 0; i < 40000; i++) print "add 100"; print "add 3000"; print "recover 200" }' \
		>"$S/.events"
	run "$B/ublk-pool" metrics --state-dir "$S"
	[ "$status" -eq 0 ]
	[[ "$output" == *$'\nublk_acquired_total 40001\n'* ]]
	[[ "$output" == *$'\nublk_recovered_total 1\n'* ]]
	[[ "$output" == *'ublk_add_duration_seconds_bucket{le="0.1"} 40000'* ]]
	[[ "$output" == *'ublk_add_duration_seconds_bucket{le="5"} 40001'* ]]
	[[ "$output" == *$'\nublk_add_duration_seconds_sum 4003.000\n'* ]]
	# folded: the lines are gone, their counts kept
	[ ! -s "$S/.events" ]
	[ -s "$S/.events.totals" ]
	echo "add 100" >>"$S/.events"
	run "$B/ublk-pool" metrics --state-dir "$S"
	[ "$status" -eq 0 ]
	[[ "$output" == *$'\nublk_acquired_total 40002\n'* ]]
	[[ "$output" == *$'\nublk_add_duration_seconds_sum 4003.100\n'* ]]
}

@test "metrics skips damaged .events lines whole: an overlong line's tail, a negative count" {
	{
		echo "add 100"
		printf '%s del 5000\n' "$(head -c 63 /dev/zero | tr '\0' x)"
		echo "add -1"
		echo "del 200"
	} >"$S/.events"
	run "$B/ublk-pool" metrics --state-dir "$S"
	[ "$status" -eq 0 ]
	[[ "$output" == *$'\nublk_add_duration_seconds_sum 0.100\n'* ]]
	[[ "$output" == *$'\nublk_add_duration_seconds_count 1\n'* ]]
	[[ "$output" == *$'\nublk_delete_duration_seconds_count 1\n'* ]]
	[[ "$output" == *$'\nublk_delete_duration_seconds_sum 0.200\n'* ]]
	# a last line still being written counts once it is whole, not before
	printf 'add 3' >>"$S/.events"
	run "$B/ublk-pool" metrics --state-dir "$S"
	[[ "$output" == *$'\nublk_add_duration_seconds_count 1\n'* ]]
	printf '000\n' >>"$S/.events"
	run "$B/ublk-pool" metrics --state-dir "$S"
	[ "$status" -eq 0 ]
	[[ "$output" == *$'\nublk_add_duration_seconds_count 2\n'* ]]
	[[ "$output" == *$'\nublk_add_duration_seconds_sum 3.100\n'* ]]
}

# A stand-in for device 5's server at its control socket: "deaf" takes no
# connection (its backlog of 4 fills up), "busy" answers every client as a
# server with too many does, and hangs up.
fake_ctl_server() {
	mkdir -m 0700 "$S/ublkb5"
	printf '2\n' >"$S/ublkb5/version"
	printf 'base=%s\ncache=%s\n' "$T/base" "$T/cache" >"$S/ublkb5/config"
	python3 - "$S/ublkb5" "$1" 3>&- <<'PY' &
import os, signal, socket, sys
entry, mode = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(entry + "/ctl")
s.listen(4)
with open(entry + "/pid.new", "w") as f:
    f.write("%d\n" % os.getpid())
os.rename(entry + "/pid.new", entry + "/pid")
while True:
    if mode == "deaf":
        signal.pause()
    c, _ = s.accept()
    try:
        c.sendall(b"error busy: too many control clients\n")
    except OSError:
        pass  # a client that did not trust us has gone
    c.close()
PY
	server=$!
	wait_until 20 '[ -s "$S/ublkb5/pid" ]'
}

@test "a server that takes no connection: save-trace and --live end at their deadline with exit 7, every time" {
	fake_ctl_server deaf
	# more tries than the backlog holds: a blocking connect would wait for ever
	# each at its own 1 s deadline (5 s: room for a loaded host, not 60)
	for i in 1 2 3 4 5 6 7; do
		start=$(date +%s%N)
		run_mustfail 7 "ublkb5: its server" timeout 60 "$B/ublk-pool" save-trace 5 --timeout 1 --state-dir "$S"
		[[ "$output" == *"within 1000 ms: is it stopped or hung?" ]]
		[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 5000 ]
	done
	start=$(date +%s%N)
	run_mustfail 7 "ublkb5: its server took no connection within 1000 ms: is it stopped or hung?" \
		timeout 60 "$B/ublk-export-diff" --live --timeout 1 -o "$T/x.diff" --state-dir "$S" 5
	[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 5000 ]
	[ ! -e "$T/x.diff" ]
}

@test "a server that hangs up at once: --live says what it answered, no SIGPIPE" {
	fake_ctl_server busy
	for i in $(seq 10); do
		run_mustfail 1 "ublkb5: server did not freeze: error busy: too many control clients" \
			timeout 60 "$B/ublk-export-diff" --live --timeout 2 -o "$T/x.diff" --state-dir "$S" 5
	done
	run_mustfail 1 "ublkb5: busy: too many control clients" \
		timeout 60 "$B/ublk-pool" save-trace 5 --timeout 2 --state-dir "$S"
}

@test "a control socket whose process is not the entry's server is not trusted: exit 4" {
	fake_ctl_server busy
	# the entry names another live process as its server
	echo "$$" >"$S/ublkb5/pid"
	run_mustfail 4 "ublkb5: not trusted: its state entry, or the process at its control socket, is not root's or ours or not the entry's server; check $S/ublkb5" \
		timeout 60 "$B/ublk-export-diff" --live --timeout 2 -o "$T/x.diff" --state-dir "$S" 5
	[ ! -e "$T/x.diff" ]
	run_mustfail 4 "ublkb5: not trusted" timeout 60 "$B/ublk-pool" save-trace 5 --timeout 2 --state-dir "$S"
}

# shutdown_holders STATE: how many shutdowns hold STATE/.shutdown (open
# file description locks, which flock(1) cannot see)
shutdown_holders() {
	local ino
	ino=$(stat -c %i "$1/.shutdown" 2>/dev/null) || { echo 0; return; }
	grep -c "OFDLCK *ADVISORY *READ .*:$ino " /proc/locks || true
}

# add_in_flight: hold the pool lock shared, as an add does from its checks
# until its device is live: a shutdown waits for it (holder: the flock)
add_in_flight() {
	flock -o -s "$S/.pool.lock" sleep 600 3>&- &
	holder=$!
	wait_until 20 '[ -e "$S/.pool.lock" ] && ! flock -n -x "$S/.pool.lock" true'
}

@test "a shutdown closes the pool while it runs; one that was killed leaves it open" {
	truncate -s 1M "$T/img"
	add_in_flight
	"$B/ublk-pool" shutdown --timeout 60 --state-dir "$S" 3>&- &
	pid=$!
	# held, not only made (it is made, then locked)
	wait_until 20 '[ "$(shutdown_holders "$S")" -eq 1 ]'
	run_mustfail 8 "the pool is shutting down (ublk-pool shutdown): no new devices" \
		"$B/ublk-add" --base "$T/img" --state-dir "$S"
	kill -TERM "$pid"
	code=0
	wait "$pid" || code=$?
	[ "$code" -eq 143 ]
	# its sleep: flock then ends, and lets go
	pkill -P "$holder"
	# its mark is left, but held by nobody: adds go on (here to the kernel
	# this host lacks)
	[ -e "$S/.shutdown" ]
	run "$B/ublk-add" --base "$T/img" --state-dir "$S"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" != *"shutting down"* ]]
}

@test "an add while a shutdown holds the pool lock: exit 8, the pool is shutting down" {
	truncate -s 1M "$T/img"
	# a shutdown in its second pass: its mark held, the pool lock exclusive
	python3 -c 'import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.fcntl(fd, 37, struct.pack("hhqqi4x", fcntl.F_RDLCK, 0, 0, 0, 0))  # F_OFD_SETLK
time.sleep(600)' "$S/.shutdown" 3>&- &
	other=$!
	flock -o -x "$S/.pool.lock" sleep 600 3>&- &
	holder=$!
	wait_until 20 '[ "$(shutdown_holders "$S")" -eq 1 ] && [ -e "$S/.pool.lock" ] && ! flock -n -s "$S/.pool.lock" true'
	run_mustfail 8 "the pool is shutting down (ublk-pool shutdown): no new devices" \
		"$B/ublk-add" --base "$T/img" --state-dir "$S" --timeout 1
}

@test "a shutdown ends by its --timeout, also while an add is under way: exit 7" {
	add_in_flight
	start=$(date +%s%N)
	run_mustfail 7 "adds still in progress after" "$B/ublk-pool" shutdown --timeout 4 --state-dir "$S"
	# one deadline: not the stops', then the lock's, then the second stops' (12 s)
	[ $(( ($(date +%s%N) - start) / 1000000 )) -lt 7500 ]
}

@test "two shutdowns at once: the pool stays closed until the last one ends" {
	truncate -s 1M "$T/img"
	add_in_flight
	# the first gives up at its deadline (15 s: time for the second to
	# start on a loaded host), the second waits on
	"$B/ublk-pool" shutdown --timeout 15 --state-dir "$S" 3>&- &
	other=$!
	wait_until 20 '[ "$(shutdown_holders "$S")" -eq 1 ]'
	"$B/ublk-pool" shutdown --timeout 60 --state-dir "$S" 3>&- &
	pid=$!
	wait_until 20 '[ "$(shutdown_holders "$S")" -eq 2 ]'
	code=0
	wait "$other" || code=$?
	[ "$code" -eq 7 ]
	# the first to end leaves the pool closed for the second
	[ "$(shutdown_holders "$S")" -eq 1 ]
	run_mustfail 8 "the pool is shutting down (ublk-pool shutdown): no new devices" \
		"$B/ublk-add" --base "$T/img" --state-dir "$S"
	# the add in flight ends: the second takes the lock, ends, and reopens
	pkill -P "$holder"
	code=0
	wait "$pid" || code=$?
	[ "$code" -eq 0 ]
	[ ! -e "$S/.shutdown" ]
	run "$B/ublk-add" --base "$T/img" --state-dir "$S"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" != *"shutting down"* ]]
}
