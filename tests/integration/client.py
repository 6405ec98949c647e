# SPDX-License-Identifier: Apache-2.0
"""One D-Bus method call with Gio; prints one JSON line
{ok, result, error_name, error_message}. Run by harness.client_call() as another
user (setpriv), under /usr/bin/python3, with DBUS_SYSTEM_BUS_ADDRESS set.

Request (argv[1], JSON): dest, path, interface, method, signature (no parens,
may be null), args (list; a 'v' is [signature, value]), timeout (s), flags
(Gio.DBusCallFlags bits, e.g. 1 = NO_AUTO_START, 2 = ALLOW_INTERACTIVE_AUTHORIZATION).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import gio_call, _jsonable  # noqa: E402
from gi.repository import Gio  # noqa: E402


def main():
    req = json.loads(sys.argv[1])
    conn = Gio.DBusConnection.new_for_address_sync(
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'],
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    r = gio_call(conn, req['dest'], req['path'], req['interface'], req['method'],
                 req.get('signature'), req.get('args'), req.get('timeout', 10),
                 Gio.DBusCallFlags(req.get('flags', 0)))
    print(json.dumps({'ok': r.ok, 'result': _jsonable(r.result), 'error_name': r.error_name,
                      'error_message': r.error_message, 'unique_name': conn.get_unique_name()}))


if __name__ == '__main__':
    main()
