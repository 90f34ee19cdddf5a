#!/usr/bin/env bash
# Build the ext4 image of make bench's boot rows (tests/bench.sh) on the
# host, before the VM starts, and print its path. The image holds a real
# Debian tree, the host's own: /etc (without its secrets), dpkg's database,
# /usr/bin, /usr/sbin, /usr/lib (without its biggest trees: JVMs, compilers,
# SDKs, GPU drivers, static libraries, files over 7 MiB, unless a
# binary of the workload links them), perl's modules and the merged-usr
# links, so that `chroot MNT dpkg -l`, bash, perl and python3 run in it:
# about 690 MiB of files in an image of about 960 MiB (a quarter spare).
#
# Cached outside the checkout like the VM kernels (build-kernel.sh), in
# $UBLK_VM_CACHE (default /var/cache/ublk-tools-vm, which the VM sees
# through its read-only share of the host root) as boot-KEY.img, KEY the
# hash of this script and of dpkg's status file (new packages, new image);
# built under a temporary name and renamed, older boot images removed.
# Needs root (ownership, /etc) and mke2fs with -d (e2fsprogs 1.43+).
set -euo pipefail

cache=${UBLK_VM_CACHE:-/var/cache/ublk-tools-vm}
die() { echo "bench-boot-image: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (the tree's owners and /etc)"
command -v mke2fs >/dev/null || die "mke2fs not found (e2fsprogs)"
key=$( { cat "$0"; cat /var/lib/dpkg/status; } | sha256sum | cut -c1-16)
img=$cache/boot-$key.img
if [ -s "$img" ]; then echo "$img"; exit 0; fi

mkdir -p "$cache"
exec 9>"$cache/boot-$key.lock"
flock -w 1800 9 || die "timed out waiting for another build of $img"
if [ -s "$img" ]; then echo "$img"; exit 0; fi

stage=$cache/boot-$key.stage
rm -rf "$stage" "$img.tmp"
trap 'rm -rf "$stage" "$img.tmp"' EXIT
mkdir -p "$stage"
echo "bench-boot-image: building $img from the host's Debian tree (about 10 s)" >&2

# The binaries tests/bench.sh runs in the image, and the libraries they
# link, go in whatever their size.
bins="dpkg bash env perl python3 ls cat find sort awk xargs head git curl systemctl gpg openssl"
needed() {
	local b p
	for b in $bins; do
		p=/usr/bin/$b
		[ -x "$p" ] || continue
		echo "${p#/}"
		ldd "$p" 2>/dev/null | awk '$3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
			while read -r p; do
				realpath "$p" | cut -c2-
				echo "${p#/}"
			done
	done
}

cd /
{
	# merged-usr: /bin, /sbin, /lib, /lib64 are links into /usr
	for d in bin sbin lib lib64; do [ ! -e "$d" ] || printf '%s\0' "$d"; done
	find etc var/lib/dpkg usr/bin usr/sbin usr/lib usr/lib64 usr/share/perl usr/share/perl5 usr/share/dpkg \
		\( -path usr/lib/jvm -o -path usr/lib/google-cloud-sdk -o -path 'usr/lib/llvm-*' \
		-o -path usr/lib/gcc -o -path usr/lib/debug -o -path usr/lib/node_modules \
		-o -path usr/lib/firmware -o -path usr/lib/modules -o -path usr/lib/x86_64-linux-gnu/dri \
		-o -path usr/lib/x86_64-linux-gnu/fpc -o -path usr/lib/x86_64-linux-gnu/valgrind \
		-o -path 'etc/shadow*' -o -path 'etc/gshadow*' -o -path etc/ssl/private \
		-o -path 'etc/ssh/ssh_host_*' -o -path 'etc/*-' \) -prune \
		-o \( -type d -o -type l -o -type f ! -name '*.a' -size -8M \) -print0
	needed | sort -u | tr '\n' '\0'
} | tar --null --no-recursion -T - -cf - | tar -xf - -C "$stage"
mkdir -p "$stage"/{dev,proc,sys,tmp,run,root,var/tmp,var/cache}
for f in usr/bin/dpkg usr/bin/bash; do [ -x "$stage/$f" ] || die "the tree copied lacks /$f"; done

# room for the files, their inodes and the journal
mib=$(( $(du -sm "$stage" | cut -f1) * 5 / 4 + 96 ))
mke2fs -q -F -t ext4 -L ublk-bench-boot -d "$stage" "$img.tmp" "${mib}M" >&2 ||
	die "mke2fs -d failed"
chmod 0600 "$img.tmp"
mv "$img.tmp" "$img"
for old in "$cache"/boot-*.img; do [ "$old" = "$img" ] || rm -f "$old" "${old%.img}.lock"; done
echo "$img"
