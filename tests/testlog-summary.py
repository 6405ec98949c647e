#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Summarize meson test logs: testlog-summary.py TESTLOG.json... [--label L]

Reads meson-logs/testlog.json files (one JSON object per line; fuzz results use
the same format), lists every test that did not pass, and prints as the last line
exactly `N passed, N failed` (plus `, N skipped` when any). Exit 1 on any failure
or if no test ran at all.
"""
import json
import sys

PASS = {'OK', 'EXPECTEDFAIL'}
SKIP = {'SKIP'}


def main(paths):
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
