#!/usr/bin/env bash
# Build a Debian package of ublk-tools from the built tools (make deb):
# make install into a staging root with Debian's paths, then dpkg-deb.
# Prints the path of the .deb.
#   make-deb.sh BUILD_DIR OUT_DIR
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
build=$1
out=$2
version=$(sed -n 's/^#define UBLK_TOOLS_VERSION "\(.*\)"/\1/p' "$top/common/util/cli.h")
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# -o all: package the tools as built, never rebuild them here
make -C "$top" --no-print-directory -s -o all OUT="$build" install DESTDIR="$stage" PREFIX=/usr \
	UNITDIR=/lib/systemd/system UDEVRULESDIR=/lib/udev/rules.d
strip --remove-section=.comment --remove-section=.note --strip-unneeded "$stage"/usr/bin/ublk-*
gzip -9n "$stage"/usr/share/man/man8/*.8
doc=$stage/usr/share/doc/ublk-tools
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: ublk-tools

Files: *
Copyright: 2026 the ublk-tools developers
License: other
 The owners of ublk-tools have not chosen a licence for redistribution yet.
COPYRIGHT
printf 'ublk-tools (%s) unstable; urgency=medium\n\n  * Built from the ublk-tools tree (make deb).\n\n -- ublk-tools developers <maintainers@ublk-tools.example.org>  %s\n' \
	"$version" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s)}")" |
	gzip -9n >"$doc/changelog.gz"

mkdir -p "$stage/DEBIAN"
# the shared libraries the tools link, as package dependencies
deps=$(cd "$stage" && mkdir -p debian && printf 'Source: ublk-tools\n\nPackage: ublk-tools\nArchitecture: any\n' \
	>debian/control && dpkg-shlibdeps -O usr/bin/ublk-* 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
rm -rf "$stage/debian"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: ublk-tools
Version: $version
Architecture: $arch
Maintainer: ublk-tools developers <maintainers@ublk-tools.example.org>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: $deps
Recommends: udev, systemd
Section: admin
Priority: optional
Description: serve sandbox root filesystems as ublk block devices
 ublk-tools serves images as Linux ublk block devices (the io_uring-based
 userspace block driver): a read-only base, local or fetched lazily over
 HTTP, with diff layers and a private copy-on-write cache; the changed
 blocks export as a diff for the next image. Devices survive a crash of
 their server (ublk-pool watch recovers them), and every tool has a man
 page, --json output and stable exit codes.
CONTROL
(cd "$stage" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
mkdir -p "$out"
deb=$out/ublk-tools_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
