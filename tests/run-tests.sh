#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
#
# Build platform-launcher and run its test suite; one command on a fresh Debian 12:
#
#   tests/run-tests.sh                     # as root: installs missing packages, builds ./build, runs all
#   tests/run-tests.sh -C build-x --setup-arg=-Dwerror=true --suite unit
#
# Options:
#   -C DIR              build directory (default: build)
#   --setup-arg=ARG     extra `meson setup` argument (repeatable), e.g. -Db_sanitize=address,undefined
#   --suite=NAME        only this meson suite (repeatable): unit, integration
#   --jobs=N            meson test --num-processes (default: nproc)
#   --wipe              start from an empty build directory
#   --no-deps           do not install packages (default: install missing ones when root)
#   --no-build          do not configure/build
#   --no-test           stop after installing and building (tests/demo.sh uses this)
#   -- ARGS             passed to `meson test`
# Environment: CC (compiler for a fresh build dir).
# When node is present, `npm ci` installs the committed lockfiles of tests/oracle
# (the dstack SDK oracle), tests/browser (playwright-core) and data/cockpit (the
# page's build: meson builds the page with it) before the build, once per
# lockfile change.
#
# Ends with the line `N passed, N failed[, N skipped]` from meson's testlog.json;
# exits non-zero on any failure or when no test ran. CI (.ci/run) calls this too.
set -euo pipefail

src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=build
deps=1
build=1
run=1
wipe=0
jobs=$(nproc 2>/dev/null || echo 2)
setup_args=()
suites=()
test_args=()

while [ $# -gt 0 ]; do
        case "$1" in
                -C) builddir=$2; shift ;;
                -C*) builddir=${1#-C} ;;
                --setup-arg=*) setup_args+=("${1#*=}") ;;
                --suite=*) suites+=(--suite "${1#*=}") ;;
                --jobs=*) jobs=${1#*=} ;;
                --wipe) wipe=1 ;;
                --no-deps) deps=0 ;;
                --no-build) build=0 ;;
                --no-test) run=0 ;;
                --) shift; test_args=("$@"); break ;;
                -h|--help) sed -n '3,25p' "$0"; exit 0 ;;
                *) echo "run-tests.sh: unknown option $1" >&2; exit 2 ;;
        esac
        shift
done

cd "$src"

if [ "$deps" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        mapfile -t pkgs < <(grep -v '^[[:space:]]*\(#\|$\)' tests/packages.txt)
        missing=()
        for p in "${pkgs[@]}"; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
        done
        if [ ${#missing[@]} -gt 0 ]; then
                echo "run-tests.sh: installing ${missing[*]}"
                export DEBIAN_FRONTEND=noninteractive
                apt-get update -qq
                apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        fi
fi

# npm packages from committed lockfiles, before the build (meson builds the
# Cockpit page when data/cockpit/node_modules is there): the dstack SDK oracle,
# the browser driver and the page's build. Debian's nodejs may come without npm
# (NodeSource's has it).
if command -v node >/dev/null; then
        if ! command -v npm >/dev/null && [ "$deps" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
                echo "run-tests.sh: installing npm"
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >/dev/null ||
                        echo "run-tests.sh: npm could not be installed; the tests that need it will skip"
        fi
        reconfigure=0
        for dir in tests/oracle tests/browser data/cockpit; do
                lock=$dir/package-lock.json stamp=$dir/node_modules/.installed-lock
                if command -v npm >/dev/null && ! cmp -s "$lock" "$stamp"; then
                        echo "run-tests.sh: npm ci in $dir"
                        if (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error); then
                                cp "$lock" "$stamp"
                                [ "$dir" = data/cockpit ] && reconfigure=1
                        else
                                echo "run-tests.sh: npm ci in $dir failed; the tests that need it will skip" >&2
                        fi
                fi
        done
fi

if [ "$build" = 1 ]; then
        if [ "$wipe" = 1 ]; then
                rm -rf "$builddir"
        fi
        if [ -f "$builddir/build.ninja" ]; then
                if [ ${#setup_args[@]} -gt 0 ]; then
                        meson configure "$builddir" "${setup_args[@]}"
                fi
                # meson looks for the page's node_modules when it configures
                if [ "${reconfigure:-0}" = 1 ]; then
                        meson setup --reconfigure "$builddir" >/dev/null
                fi
        else
                meson setup "$builddir" "${setup_args[@]}"
        fi
        meson compile -C "$builddir"
fi

[ "$run" = 1 ] || exit 0

rc=0
rm -f "$builddir/meson-logs/testlog.json"
meson test -C "$builddir" --print-errorlogs --num-processes "$jobs" "${suites[@]}" "${test_args[@]}" || rc=$?
/usr/bin/python3 "$src/tests/testlog-summary.py" "$builddir/meson-logs/testlog.json" || rc=1
exit $rc
