#!/usr/bin/env bash
# A Debian arm64 root for the aarch64 wheels (tools/build_wheels.sh --aarch64-root DIR): its CPython headers are
# what the aarch64 module is compiled against, and its CPython runs the wheel under qemu-aarch64 (user mode, no
# chroot and no binfmt_misc: `qemu-aarch64 -L DIR DIR/usr/bin/python3.X`, tools/wheel/qemu_smoke.sh).
#   tools/wheel/arm64_root.sh DIR [SUITE]        SUITE: bookworm (default, CPython 3.11) or trixie (CPython 3.13)
# `debootstrap --foreign` downloads the packages and unpacks the essential ones; its second stage (which runs arm64
# code as root in a chroot) is replaced by unpacking every downloaded package with dpkg-deb -x: a CPython run needs
# the files, not the maintainer scripts. Needs root, debootstrap and the Debian mirror (apt-get install debootstrap
# qemu-user). ~30 s, ~250 MB.
set -euo pipefail
dir=$1
suite=${2:-bookworm}
case "$suite" in
  bookworm) pyver=3.11 ;;
  trixie) pyver=3.13 ;;
  *) echo "arm64_root.sh: SUITE must be bookworm or trixie" >&2; exit 2 ;;
esac
if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then echo "arm64_root.sh: $dir exists and is not empty" >&2; exit 1; fi
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
debootstrap --foreign --arch=arm64 --variant=minbase --include="python$pyver,libpython$pyver-dev" \
  "$suite" "$dir" "$mirror" > "$dir.debootstrap.log" 2>&1 || { tail -20 "$dir.debootstrap.log"; exit 1; }
for deb in "$dir"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$deb" "$dir"; done
echo "arm64_root: $dir ($suite, CPython $pyver; headers in $dir/usr/include/python$pyver)"
