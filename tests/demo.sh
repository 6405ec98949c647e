#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The README's Quick start: install what the demo needs (Debian 12, as root),
# build it in a directory of its own, and run the launcher for real on a
# private system bus with the real polkitd: see tests/demo.py.
#
#   tests/demo.sh [-C DIR] [--no-deps] [--no-run] [--packages]
#
#   -C DIR       build directory (default: build-demo; not build, so that a later
#                "meson setup build --prefix=/usr" configures afresh instead of
#                finding a directory already set up for /usr/local)
#   --no-deps    do not install packages (default: install the missing ones when root)
#   --no-run     stop after building
#   --packages   print the packages the demo needs and exit
#
# Only what the demo uses is installed, not the test suite's list
# (tests/packages.txt: compilers, sanitizers, browsers, valgrind, node...).
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=$src/build-demo
deps=1
run=1

# Build the daemon and platformctl; a system bus and polkitd to run them on;
# setpriv/unshare (util-linux) and gdbus (libglib2.0-bin) for the harness;
# python3 with GLib's introspection and cryptography for the harness and the
# dstack simulators; busctl (systemd) for the signal monitor; git for the
# Updater's part.
packages=(gcc meson ninja-build pkg-config libsystemd-dev libglib2.0-dev libjson-glib-dev libcurl4-openssl-dev
          libssl-dev dbus-daemon polkitd util-linux libglib2.0-bin python3 python3-gi python3-cryptography systemd git)

while [ $# -gt 0 ]; do
        case "$1" in
                -C) builddir=$2; shift ;;
                -C*) builddir=${1#-C} ;;
                --no-deps) deps=0 ;;
                --no-run) run=0 ;;
                --packages) printf '%s\n' "${packages[@]}"; exit 0 ;;
                -h|--help) sed -n '3,17p' "$0"; exit 0 ;;
                *) echo "demo.sh: unknown option $1" >&2; exit 2 ;;
        esac
        shift
done

if [ "$deps" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        missing=()
        for p in "${packages[@]}"; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then
                echo "demo.sh: installing ${missing[*]}"
                export DEBIAN_FRONTEND=noninteractive
                apt-get update -qq
                apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        fi
fi

if [ ! -f "$builddir/build.ninja" ]; then
        meson setup "$builddir" "$src"
fi
meson compile -C "$builddir" platform-launcherd platformctl

[ "$run" = 1 ] || exit 0
exec /usr/bin/python3 "$src/tests/demo.py" -C "$builddir"
