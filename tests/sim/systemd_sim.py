#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A stand-in systemd Manager (org.freedesktop.systemd1) on the private bus.

systemd is not PID 1 here, and python-dbusmock's systemd template has no
RestartUnit/Subscribe, so this is a small Manager of its own that does what
the Updater relies on, as systemd does (src/core/dbus-manager.c,
src/core/dbus-job.c in systemd v252):

  Subscribe()                       ok; a second Subscribe from the same client
                                    fails with org.freedesktop.systemd1.AlreadySubscribed
  Unsubscribe()
  RestartUnit(s name, s mode) → o   replies with a job path /org/freedesktop/systemd1/job/N,
                                    emits JobNew(u id, o job, s unit), then after
                                    --job-seconds JobRemoved(u id, o job, s unit, s result)
  StopUnit / StartUnit (s, s) → o   the same, recorded too

A unit name without a type suffix is refused as the manager refuses it
(InvalidArgs "Unit name validator is not valid."; systemctl appends ".service"
on its side, the manager never does); so is a mode other than replace/fail/....
The test controls below take either form. Fault injection only: what the
Updater does with real units is tested against a real manager
(tests/integration/real_systemd.py).

Test control, interface org.platform.Test.SystemdSim on the same path:

  Restarts() → as                   unit names restarted so far, in order
  Reset()                           forget them and every fault
  FailUnit(s unit, s result)        the next job for unit ends with result
                                    ("failed", "timeout", ...); each call queues one
                                    more failing job; "" clears the queue
  HangUnit(s unit, b hang)          jobs for unit never end (no JobRemoved)
  SetJobSeconds(d seconds)

Also writes each restarted unit name as a line to --record FILE if given.
Ready when the name is owned (the harness waits for NameOwnerChanged).
"""
import argparse
import os
import signal
import sys

import gi
gi.require_version('Gio', '2.0')
from gi.repository import Gio, GLib  # noqa: E402

NAME = 'org.freedesktop.systemd1'
PATH = '/org/freedesktop/systemd1'
MANAGER = 'org.freedesktop.systemd1.Manager'
CONTROL = 'org.platform.Test.SystemdSim'

XML = '''
<node>
  <interface name="org.freedesktop.systemd1.Manager">
    <method name="Subscribe"/>
    <method name="Unsubscribe"/>
    <method name="RestartUnit"><arg name="name" type="s" direction="in"/><arg name="mode" type="s" direction="in"/><arg name="job" type="o" direction="out"/></method>
    <method name="StartUnit"><arg name="name" type="s" direction="in"/><arg name="mode" type="s" direction="in"/><arg name="job" type="o" direction="out"/></method>
    <method name="StopUnit"><arg name="name" type="s" direction="in"/><arg name="mode" type="s" direction="in"/><arg name="job" type="o" direction="out"/></method>
    <signal name="JobNew"><arg name="id" type="u"/><arg name="job" type="o"/><arg name="unit" type="s"/></signal>
    <signal name="JobRemoved"><arg name="id" type="u"/><arg name="job" type="o"/><arg name="unit" type="s"/><arg name="result" type="s"/></signal>
  </interface>
  <interface name="org.platform.Test.SystemdSim">
    <method name="Restarts"><arg name="units" type="as" direction="out"/></method>
    <method name="Reset"/>
    <method name="FailUnit"><arg name="unit" type="s" direction="in"/><arg name="result" type="s" direction="in"/></method>
    <method name="HangUnit"><arg name="unit" type="s" direction="in"/><arg name="hang" type="b" direction="in"/></method>
    <method name="SetJobSeconds"><arg name="seconds" type="d" direction="in"/></method>
  </interface>
</node>
'''

MODES = ('replace', 'fail', 'isolate', 'ignore-dependencies', 'ignore-requirements', 'flush', 'triggering')


class Manager:
    def __init__(self, conn, job_seconds, record):
        self.conn = conn
        self.job_seconds = job_seconds
        self.record = record
        self.next_id = 1
        self.subscribers = set()
        self.restarts = []
        self.fail = {}
        self.hang = set()

    @staticmethod
    def unit_name(name):
        return name if '.' in name else name + '.service'

    def emit(self, member, sig, args):
        self.conn.emit_signal(None, PATH, MANAGER, member, GLib.Variant(sig, args))

    def job(self, inv, verb, name, mode):
        if mode not in MODES:
            inv.return_dbus_error('org.freedesktop.DBus.Error.InvalidArgs', 'Job mode %s invalid' % mode)
            return
        if '.' not in name:
            inv.return_dbus_error('org.freedesktop.DBus.Error.InvalidArgs', 'Unit name %s is not valid.' % name)
            return
        unit = name
        jid = self.next_id
        self.next_id += 1
        path = '%s/job/%d' % (PATH, jid)
        if verb == 'restart':
            self.restarts.append(unit)
            if self.record:
                with open(self.record, 'a') as f:
                    f.write(unit + '\n')
        inv.return_value(GLib.Variant('(o)', (path,)))
        self.emit('JobNew', '(uos)', (jid, path, unit))
        if unit in self.hang:
            return
        queue = self.fail.get(unit) or []
        result = queue.pop(0) if queue else 'done'

        def removed():
            self.emit('JobRemoved', '(uoss)', (jid, path, unit, result))
            return False
        if self.job_seconds > 0:
            GLib.timeout_add(int(self.job_seconds * 1000), removed)
        else:
            GLib.idle_add(removed)

    def on_call(self, conn, sender, path, iface, method, params, inv):
        args = params.unpack()
        if iface == MANAGER:
            if method == 'Subscribe':
                if sender in self.subscribers:
                    inv.return_dbus_error('org.freedesktop.systemd1.AlreadySubscribed',
                                          'Client is already subscribed.')
                    return
                self.subscribers.add(sender)
                inv.return_value(None)
            elif method == 'Unsubscribe':
                self.subscribers.discard(sender)
                inv.return_value(None)
            elif method in ('RestartUnit', 'StartUnit', 'StopUnit'):
                self.job(inv, method[:-4].lower(), args[0], args[1])
            return
        if method == 'Restarts':
            inv.return_value(GLib.Variant('(as)', (self.restarts,)))
        elif method == 'Reset':
            self.restarts, self.fail, self.hang = [], {}, set()
            inv.return_value(None)
        elif method == 'FailUnit':
            u = self.unit_name(args[0])
            if args[1]:
                self.fail.setdefault(u, []).append(args[1])
            else:
                self.fail.pop(u, None)
            inv.return_value(None)
        elif method == 'HangUnit':
            u = self.unit_name(args[0])
            (self.hang.add if args[1] else self.hang.discard)(u)
            inv.return_value(None)
        elif method == 'SetJobSeconds':
            self.job_seconds = args[0]
            inv.return_value(None)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--job-seconds', type=float, default=0.02, help='time from RestartUnit to JobRemoved')
    p.add_argument('--record', help='append each restarted unit to this file')
    args = p.parse_args()

    addr = os.environ.get('DBUS_SYSTEM_BUS_ADDRESS')
    if not addr:
        sys.exit('systemd_sim: DBUS_SYSTEM_BUS_ADDRESS is not set (it only runs on a private bus)')
    conn = Gio.DBusConnection.new_for_address_sync(
        addr, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    m = Manager(conn, args.job_seconds, args.record)
    info = Gio.DBusNodeInfo.new_for_xml(XML)
    for iface in info.interfaces:
        conn.register_object(PATH, iface, m.on_call, None, None)

    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    conn.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RequestName',
                   GLib.Variant('(su)', (NAME, 4)), None, 0, -1, None)
    loop.run()


if __name__ == '__main__':
    main()
