#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Install what is needed (Debian 12, as root), build, and run the launcher for
# real on a private system bus with the real polkitd: see tests/demo.py.
set -euo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$src/tests/run-tests.sh" -C "$src/build" --no-test
exec /usr/bin/python3 "$src/tests/demo.py" -C "$src/build"
