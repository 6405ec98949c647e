#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Summarize meson test logs:

    testlog-summary.py [--fail-on-skip-reason REGEX] TESTLOG.json...

Reads meson-logs/testlog.json files (one JSON object per line; fuzz results use
the same format), lists every test that did not pass, and prints as the last line
exactly `N passed, N failed` (plus `, N skipped` when any). Exit 1 on any failure
or if no test ran at all.

--fail-on-skip-reason: a test whose output has a pytest `SKIPPED ... REGEX` line
counts as failed (CI runs as root: "needs root" skips must not happen there).
"""
import json
import re
import sys

PASS = {'OK', 'EXPECTEDFAIL'}
SKIP = {'SKIP'}


def main(argv):
    strict = None
    if len(argv) >= 2 and argv[0] == '--fail-on-skip-reason':
        strict = re.compile(argv[1])
        argv = argv[2:]
    paths = argv
    passed = failed = skipped = 0
    problems, skips = [], []
    for path in paths:
        try:
            f = open(path)
        except OSError as e:
            print('testlog-summary: %s: %s' % (path, e))
            failed += 1
            problems.append('%s: missing test log' % path)
            continue
        with f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                t = json.loads(line)
                name, result = t.get('name', '?'), t.get('result', '?')
                if strict is not None and result in PASS | SKIP:
                    bad = [ln for ln in (t.get('stdout') or '').splitlines()
                           if ln.startswith('SKIPPED') and strict.search(ln)]
                    if bad:
                        result = 'SKIP-NOT-ALLOWED'
                        print('\n'.join(bad))
                if result in PASS:
                    passed += 1
                elif result in SKIP:
                    skipped += 1
                    skips.append('%s (%s)' % (name, path))
                else:
                    failed += 1
                    problems.append('%s: %s (%s)' % (name, result, path))
    for s in skips:
        print('SKIP %s' % s)
    for p in problems:
        print('FAIL %s' % p)
    line = '%d passed, %d failed' % (passed, failed)
    if skipped:
        line += ', %d skipped' % skipped
    print(line)
    return 1 if failed or passed + failed == 0 else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
