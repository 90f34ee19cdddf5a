#!/usr/bin/env bash
# Build a ublk-enabled bzImage from Debian's linux-source-6.1 and cache it
# outside the checkout, keyed by the config fragment and the source version,
# so a changed fragment or a new source package rebuilds and nothing else does.
# Prints the path of the bzImage on stdout.
#
#   UBLK_VM_CACHE  cache folder (default /var/cache/ublk-tools-vm)
#   JOBS           make -j (default: cores + 1)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${UBLK_VM_CACHE:-/var/cache/ublk-tools-vm}
fragment=$here/kernel.config
tarball=$(ls /usr/src/linux-source-6.1.tar.xz 2>/dev/null || true)

die() { echo "build-kernel: $*" >&2; exit 1; }
[ -n "$tarball" ] || die "no /usr/src/linux-source-6.1.tar.xz: run 'make deps' (package linux-source-6.1)"

srcver=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null || stat -c %Y "$tarball")
key=$( { cat "$fragment"; echo "$srcver"; } | sha256sum | cut -c1-16)
image=$cache/bzImage-$key

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 1800 9 || die "timed out waiting for another kernel build (lock $cache/.lock)"

if [ -s "$image" ]; then echo "$image"; exit 0; fi

build=$cache/build-$key
log=$cache/build-$key.log
rm -rf "$build"; mkdir -p "$build"
echo "build-kernel: building ublk kernel $key (a few minutes; log $log)" >&2
{
	tar -xf "$tarball" -C "$build" --strip-components=1
	cd "$build"
	make -s tinyconfig
	scripts/kconfig/merge_config.sh -m .config "$fragment"
	make -s olddefconfig
	for opt in $(grep -oE '^CONFIG_[A-Z0-9_]+=y' "$fragment" | cut -d= -f1); do
		grep -q "^$opt=y" .config || { echo "missing after olddefconfig: $opt"; exit 1; }
	done
	make -s -j"${JOBS:-$(( $(nproc) + 1 ))}" bzImage
} >"$log" 2>&1 || { tail -30 "$log" >&2; die "kernel build failed; full log in $log"; }

cp "$build/arch/x86/boot/bzImage" "$image.tmp" && mv "$image.tmp" "$image"
rm -rf "$build"
echo "$image"
