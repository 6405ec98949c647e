# SPDX-License-Identifier: Apache-2.0
"""A hostile local client: keeps `in_flight` calls outstanding on one
connection until `total` calls were answered or `seconds` passed, then prints
one JSON line {"calls": N, "outcomes": {"ok" | error name: count}}.

Run as another user through setpriv (harness.Harness.spawn(user='nobody')),
under /usr/bin/python3, with DBUS_SYSTEM_BUS_ADDRESS set. Request (argv[1],
JSON): dest, path, interface, method, signature, args, in_flight, total,
seconds, timeout (s, per call), leave (send in_flight calls, then exit).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import to_variant  # noqa: E402
from gi.repository import Gio, GLib  # noqa: E402


def main():
    req = json.loads(sys.argv[1])
    conn = Gio.DBusConnection.new_for_address_sync(
        os.environ['DBUS_SYSTEM_BUS_ADDRESS'],
        Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    sig = req.get('signature')
    params = to_variant('(%s)' % sig, list(req.get('args') or [])) if sig else None
    loop = GLib.MainLoop()
    deadline = time.monotonic() + req.get('seconds', 10)
    state = {'sent': 0, 'done': 0, 'outcomes': {}}

    def send():
        state['sent'] += 1
        conn.call(req['dest'], req['path'], req['interface'], req['method'], params, None,
                  Gio.DBusCallFlags.NONE, int(req.get('timeout', 30) * 1000), None, on_reply, None)

    def on_reply(c, res, _):
        try:
            c.call_finish(res)
            key = 'ok'
        except GLib.Error as e:
            key = Gio.DBusError.get_remote_error(e) or e.message
            if os.environ.get('FLOOD_MESSAGES'):
                key += ': ' + e.message[-60:]
        state['outcomes'][key] = state['outcomes'].get(key, 0) + 1
        state['done'] += 1
        if state['sent'] < req.get('total', 1 << 30) and time.monotonic() < deadline:
            send()
        elif state['done'] == state['sent']:
            loop.quit()

    for _ in range(req.get('in_flight', 1)):
        send()
    if req.get('leave'):
        # A caller that leaves with its calls pending.
        conn.flush_sync(None)
        print(json.dumps({'calls': 0, 'outcomes': {}, 'sent': state['sent']}), flush=True)
        os._exit(0)
    loop.run()
    print(json.dumps({'calls': state['done'], 'outcomes': state['outcomes']}), flush=True)


if __name__ == '__main__':
    main()
