#!/usr/bin/env bash
# Build a ublk-enabled bzImage from Debian's linux-source-<version> package
# and cache it outside the checkout, keyed by the config fragments and the
# source package version, so a changed fragment or a new source package
# rebuilds and nothing else does. Prints the path of the bzImage on stdout.
#
#   UBLK_VM_KERNEL  kernel version: 6.1 (default) or 6.12
#   UBLK_VM_CACHE   cache folder (default /var/cache/ublk-tools-vm)
#   JOBS            make -j (default: cores + 1)
#
# Fragments: kernel.config (every version), then kernel-<version>.config if
# it exists (6.12: no legacy opcodes, so 6.12 tests the ioctl-encoded path
# and 6.1 the legacy one). The key of a version without its own fragment is
# the hash of kernel.config and the source version, as it always was, so
# existing cache entries stay valid.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${UBLK_VM_CACHE:-/var/cache/ublk-tools-vm}
ver=${UBLK_VM_KERNEL:-6.1}
die() { echo "build-kernel: $*" >&2; exit 1; }

case $ver in
6.1 | 6.12) ;;
*) die "UBLK_VM_KERNEL=$ver: unsupported kernel; use 6.1 or 6.12" ;;
esac
pkg=linux-source-$ver
tarball=/usr/src/$pkg.tar.xz
[ -f "$tarball" ] || die "no $tarball: run 'make deps' (package $pkg)"

fragments=("$here/kernel.config")
[ -f "$here/kernel-$ver.config" ] && fragments+=("$here/kernel-$ver.config")

srcver=$(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || stat -c %Y "$tarball")
key=$( { cat "${fragments[@]}"; echo "$srcver"; } | sha256sum | cut -c1-16)
image=$cache/bzImage-$key

# A cached kernel needs no lock: images appear by rename, whole.
if [ -s "$image" ]; then echo "$image"; exit 0; fi

# One lock per key: building one version must not hold up runs on another.
mkdir -p "$cache"
exec 9>"$cache/.lock-$key"
flock -w 3600 9 || die "timed out waiting for another build of kernel $ver (lock $cache/.lock-$key)"

if [ -s "$image" ]; then echo "$image"; exit 0; fi

build=$cache/build-$key
log=$cache/build-$key.log
rm -rf "$build"; mkdir -p "$build"
echo "build-kernel: building ublk kernel $ver ($key; several minutes; log $log)" >&2
# A subshell with errexit, its status taken with set +e: on the left of
# || (or in an if) bash would ignore set -e in every step of it.
set +e
(
	set -e
	tar -xf "$tarball" -C "$build" --strip-components=1
	cd "$build"
	make -s tinyconfig
	scripts/kconfig/merge_config.sh -m .config "${fragments[@]}"
	make -s olddefconfig
	# olddefconfig drops what it cannot satisfy silently: check every line.
	for opt in $(cat "${fragments[@]}" | grep -oE '^CONFIG_[A-Z0-9_]+=y' | cut -d= -f1); do
		grep -q "^$opt=y" .config || { echo "missing after olddefconfig: $opt"; exit 1; }
	done
	for opt in $(cat "${fragments[@]}" | grep -oE '^# CONFIG_[A-Z0-9_]+ is not set' | cut -d' ' -f2); do
		! grep -q "^$opt=" .config || { echo "still set after olddefconfig: $opt"; exit 1; }
	done
	make -s -j"${JOBS:-$(( $(nproc) + 1 ))}" bzImage
) >"$log" 2>&1
built=$?
set -e
if [ "$built" != 0 ]; then
	tail -30 "$log" >&2
	die "kernel $ver build failed; full log in $log"
fi

cp "$build/arch/x86/boot/bzImage" "$image.tmp" || die "copying the kernel to $image.tmp failed"
mv "$image.tmp" "$image" || die "publishing the kernel as $image failed"
rm -rf "$build"
echo "$image"
