#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Build the Debian packages (debian/) from a clean copy of the checkout:
#
#   tests/package/build-debs.sh OUTDIR
#
# The files git tracks or would add, as they are in the work tree, are copied to
# OUTDIR/platform-launcher-VERSION/ (no build directories, no node_modules),
# built there with `dpkg-buildpackage -us -uc -b`, and the .deb, .changes and
# .buildinfo files land in OUTDIR. Needs the Build-Depends of debian/control
# (`dpkg-checkbuilddeps` says which are missing) and debhelper, dpkg-dev and
# fakeroot. DEB_BUILD_OPTIONS is passed through (nocheck skips the unit suite).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?usage: build-debs.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

version=$(cd "$src" && dpkg-parsechangelog -S Version)
tree=$out/platform-launcher-${version%-*}
rm -rf "$tree"
mkdir -p "$tree"
# What git would commit: tracked and new files as in the work tree, nothing ignored.
(cd "$src" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r sh -c 'for f; do [ -e "$f" ] || [ -L "$f" ] && printf "%s\0" "$f"; done' sh |
        tar --null -T - -cf -) | tar -xf - -C "$tree"

cd "$tree"
dpkg-checkbuilddeps
export DEB_BUILD_OPTIONS=${DEB_BUILD_OPTIONS:-}
# parallel=N: the unit suite and the compile use the cores CI gives.
case " $DEB_BUILD_OPTIONS " in
        *" parallel="*) ;;
        *) DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:+$DEB_BUILD_OPTIONS }parallel=$(nproc)" ;;
esac
dpkg-buildpackage -us -uc -b
ls -l "$out"/*.deb
