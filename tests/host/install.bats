#!/usr/bin/env bats
# make install and make uninstall: what a host gets (the tools, their man
# pages and completions, the ublk-pool watch unit, tmpfiles.d, the udev
# rule, the docs), and that uninstall takes all of it away again.

load ../helpers

setup() {
	TOP=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
	T=$(mktemp -d)
}

teardown() {
	rm -rf "$T"
}

# make in the checkout with the binaries under test, as they are (-o all:
# never rebuilt here, so a sanitizer build stays one)
top_make() {
	make -C "$TOP" --no-print-directory -s -o all OUT="$B" "$@"
}

@test "make install puts every file in place; make uninstall removes every one" {
	top_make install DESTDIR="$T/root" PREFIX=/usr
	r=$T/root/usr
	for t in ublk-add ublk-serve ublk-del ublk-export-diff ublk-pool; do
		[ -x "$r/bin/$t" ]
		[ -f "$r/share/man/man8/$t.8" ]
	done
	# the bash completion once, linked under every other tool's name
	[ -f "$r/share/bash-completion/completions/ublk-add" ]
	[ ! -L "$r/share/bash-completion/completions/ublk-add" ]
	for t in ublk-serve ublk-del ublk-export-diff ublk-pool; do
		[ "$(readlink "$r/share/bash-completion/completions/$t")" = ublk-add ]
	done
	[ -f "$r/share/zsh/site-functions/_ublk-tools" ]
	grep -qx 'ExecStart=/usr/bin/ublk-pool watch' "$r/lib/systemd/system/ublk-pool-watch.service"
	grep -qx 'Type=notify' "$r/lib/systemd/system/ublk-pool-watch.service"
	grep -q 'PROGRAM="/usr/bin/ublk-pool list -n --raw -o name %k"' "$r/lib/udev/rules.d/59-ublk-tools.rules"
	grep -qx 'd /run/ublk-tools 0700 root root -' "$r/lib/tmpfiles.d/ublk-tools.conf"
	[ -f "$r/share/doc/ublk-tools/README.md" ]
	[ -f "$r/share/doc/ublk-tools/state-dir.md" ]
	[ -z "$(grep -rl '@BINDIR@' "$T/root")" ]
	top_make uninstall DESTDIR="$T/root" PREFIX=/usr
	[ -z "$(find "$T/root" -type f -o -type l)" ]
}

@test "the ublk-pool watch unit passes systemd-analyze verify" {
	top_make install PREFIX="$T/usr"
	run systemd-analyze verify --man=no "$T/usr/lib/systemd/system/ublk-pool-watch.service"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "ublk-pool watch tells its service manager when it is ready, and when it stops" {
	mkdir -m 700 "$T/state"
	python3 - "$B/ublk-pool" "$T" <<'PY'
import os, signal, socket, subprocess, sys
tool, tmp = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(tmp + "/notify")
s.settimeout(60)
env = dict(os.environ, NOTIFY_SOCKET=tmp + "/notify")
def watch(interval, sig, hup_ignored=False):
    """A watcher is ready, then sig ends it with STOPPING=1 and exit 0."""
    p = subprocess.Popen([tool, "watch", "--state-dir", tmp + "/state", "--interval", interval],
                         env=env, stderr=subprocess.DEVNULL,
                         preexec_fn=(lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
                         if hup_ignored else None)
    try:
        assert s.recv(64) == b"READY=1"
        if hup_ignored:
            ign = [l for l in open("/proc/%d/status" % p.pid) if l.startswith("SigIgn:")][0]
            assert int(ign.split()[1], 16) & (1 << (signal.SIGHUP - 1)), ign
        p.send_signal(sig)
        assert s.recv(64) == b"STOPPING=1"
        assert p.wait(60) == 0
    finally:
        # a failed check leaves no watcher running on the host
        if p.poll() is None:
            p.kill()
            p.wait()

watch("0.1", signal.SIGTERM)
# SIGHUP (a terminal's hangup) in an hour-long sleep
watch("3600", signal.SIGHUP)
# started with SIGHUP ignored (nohup), it stays ignored: SIGTERM still ends it
watch("3600", signal.SIGTERM, hup_ignored=True)
PY
}

@test "make deb: lintian finds nothing; it installs and removes cleanly" {
	run "$TOP/dist/make-deb.sh" "$B" "$T/out"
	echo "$output"
	[ "$status" -eq 0 ]
	deb=$output
	[ -f "$deb" ]
	run lintian --tag-display-limit 0 "$deb"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$(grep -E '^[EW]: ' <<<"$output")" ]
	dpkg-deb --contents "$deb" | grep -q ' ./lib/systemd/system/ublk-pool-watch.service$'
	dpkg-deb --field "$deb" Depends | grep -q liburing
	# into a scratch root: the host's own packages stay as they are
	mkdir -p "$T/root/var/lib/dpkg/info" "$T/root/var/lib/dpkg/updates"
	touch "$T/root/var/lib/dpkg/status"
	dpkg --root="$T/root" --force-depends --force-script-chrootless -i "$deb" >/dev/null
	[ -x "$T/root/usr/bin/ublk-pool" ]
	[ "$(dpkg --root="$T/root" -s ublk-tools | sed -n 's/^Status: //p')" = "install ok installed" ]
	dpkg --root="$T/root" -r ublk-tools >/dev/null
	[ -z "$(find "$T/root" \( -type f -o -type l \) -not -path "$T/root/var/lib/dpkg/*")" ]
}
