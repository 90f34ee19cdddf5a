#!/usr/bin/env bash
# Install the Debian packages that building, testing and the test VM need.
# Idempotent and silent when everything is present.
set -euo pipefail

pkgs=(
	# build
	gcc make pkg-config liburing-dev libzstd-dev libcurl4-openssl-dev liblz4-dev
	# tests
	bats fio e2fsprogs jq util-linux procps libcap2-bin
	# a failing fsync or a slow one, made to order (strace -e inject)
	strace
	# make fuzz: clang with libFuzzer (libclang_rt.fuzzer) and the sanitizers
	clang libclang-rt-14-dev
	# benchmark peers: the NBD way of serving the same overlay
	nbdkit nbd-client
	# make bench BENCH_ONLY=profile samples the VM with perf
	linux-perf
	# remote base tests: a real HTTP server on loopback
	nginx python3 curl
	# the udev rule under a real systemd-udevd in the VM; the unit checked by
	# systemd-analyze verify
	udev systemd
	# the zsh completion is parsed by zsh
	zsh
	# make deb: its package is checked by lintian
	lintian
	# E2B tests: an independent reader of compressed frames (tests/e2b/e2b_ref.py)
	python3-zstandard python3-lz4
	# test VM: kernel source and its build tools, qemu, initramfs
	qemu-system-x86 linux-source-6.1 linux-source-6.12 flex bison bc libelf-dev libssl-dev
	cpio busybox-static xz-utils
)

missing=()
for p in "${pkgs[@]}"; do
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "deps: missing packages: ${missing[*]}; run 'make deps' as root" >&2
	exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Another apt (apt-daily, a second run) holds the lock for a while: wait
# for it, and give the whole install a deadline rather than hang CI.
apt_opts=(-o DPkg::Lock::Timeout=300 -o Acquire::http::Timeout=60 -o Acquire::Retries=3)
# (the lists' lock is not waited for: another update holds it a while)
for try in 1 2 3 4 5 6 7 8 9 10; do
	timeout 1800 apt-get "${apt_opts[@]}" update -qq >&2 && break
	[ "$try" = 10 ] && { echo "deps: apt-get update failed 10 times (or took over 30 min)" >&2; exit 1; }
	sleep 30
done
timeout 1800 apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
	{ echo "deps: installing ${missing[*]} failed (or took over 30 min)" >&2; exit 1; }
