# SPDX-License-Identifier: Apache-2.0
"""A stand-in for platform-launcherd that serves only
org.platform.Launcher1.Updater as dbus-api.md describes it, so the Cockpit
page's Updater section can be tested before the daemon has that interface.
Scripted through org.platform.Launcher1.Fake on the same object:

    SetProps(s json)     change Updater properties (PropertiesChanged follows)
    Calls() -> s         JSON list of [method, args] received

Check() answers (true, TargetCommit). Apply({}) moves CurrentCommit to
TargetCommit through the states applying and verifying (each a
PropertiesChanged); Apply({"dry-run": true}) changes nothing. Rollback("")
returns to PreviousCommit and quarantines the commit it left. A caller whose
uid is not 0 gets org.freedesktop.DBus.Error.AccessDenied.

    /usr/bin/python3 fake_updater.py   (DBUS_SYSTEM_BUS_ADDRESS selects the bus)
"""
import json
import signal
import sys

from gi.repository import Gio, GLib

NAME = 'org.platform.Launcher1'
ROOT = '/org/platform/Launcher1'
UPDATER = 'org.platform.Launcher1.Updater'
FAKE = 'org.platform.Launcher1.Fake'

XML = '''
<node>
 <interface name="org.platform.Launcher1.Updater">
  <property name="State" type="s" access="read"/>
  <property name="Repository" type="s" access="read"/>
  <property name="Remote" type="s" access="read"/>
  <property name="Branch" type="s" access="read"/>
  <property name="CurrentCommit" type="s" access="read"/>
  <property name="TargetCommit" type="s" access="read"/>
  <property name="LastGoodCommit" type="s" access="read"/>
  <property name="PreviousCommit" type="s" access="read"/>
  <property name="QuarantinedCommit" type="s" access="read"/>
  <property name="DeferReasons" type="a(sss)" access="read"/>
  <property name="Operation" type="s" access="read"/>
  <property name="Progress" type="u" access="read"/>
  <property name="AutoUpdate" type="b" access="read"/>
  <property name="IntervalUSec" type="t" access="read"/>
  <property name="LastCheckTimestamp" type="t" access="read"/>
  <property name="LastUpdateTimestamp" type="t" access="read"/>
  <property name="NextCheckTimestamp" type="t" access="read"/>
  <property name="LastError" type="s" access="read"/>
  <method name="Check"><arg type="b" name="available" direction="out"/><arg type="s" name="commit" direction="out"/></method>
  <method name="Apply"><arg type="a{sv}" name="options" direction="in"/>
   <arg type="s" name="from_commit" direction="out"/><arg type="s" name="to_commit" direction="out"/></method>
  <method name="Rollback"><arg type="s" name="commit" direction="in"/>
   <arg type="s" name="from_commit" direction="out"/><arg type="s" name="to_commit" direction="out"/></method>
  <method name="SetAutoUpdate"><arg type="b" name="enabled" direction="in"/></method>
 </interface>
 <interface name="org.platform.Launcher1.Fake">
  <method name="SetProps"><arg type="s" name="json" direction="in"/></method>
  <method name="Calls"><arg type="s" name="json" direction="out"/></method>
 </interface>
</node>
'''

TYPES = {'DeferReasons': 'a(sss)', 'Progress': 'u', 'AutoUpdate': 'b', 'IntervalUSec': 't',
         'LastCheckTimestamp': 't', 'LastUpdateTimestamp': 't', 'NextCheckTimestamp': 't'}

props = {
    'State': 'idle', 'Repository': '/srv/validator', 'Remote': 'origin', 'Branch': 'release',
    'CurrentCommit': 'a' * 40, 'TargetCommit': 'a' * 40, 'LastGoodCommit': 'a' * 40,
    'PreviousCommit': '', 'QuarantinedCommit': '', 'DeferReasons': [], 'Operation': '', 'Progress': 0,
    'AutoUpdate': True, 'IntervalUSec': 300 * 10**6, 'LastCheckTimestamp': 0, 'LastUpdateTimestamp': 0,
    'NextCheckTimestamp': 0, 'LastError': '',
}
calls = []


def variant(name):
    v = props[name]
    if name == 'DeferReasons':
        v = [tuple(x) for x in v]
    return GLib.Variant(TYPES.get(name, 's'), v)


def set_props(conn, changes):
    props.update(changes)
    changed = {k: variant(k) for k in changes}
    conn.emit_signal(None, ROOT, 'org.freedesktop.DBus.Properties', 'PropertiesChanged',
                     GLib.Variant('(sa{sv}as)', (UPDATER, changed, [])))


def caller_uid(conn, sender):
    r = conn.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus',
                       'GetConnectionUnixUser', GLib.Variant('(s)', (sender,)), None,
                       Gio.DBusCallFlags.NONE, 5000, None)
    return r.unpack()[0]


def on_call(conn, sender, path, iface, method, params, inv):
    args = params.unpack()
    calls.append([method, list(args)])
    if iface == FAKE:
        if method == 'SetProps':
            set_props(conn, json.loads(args[0]))
            return inv.return_value(None)
        return inv.return_value(GLib.Variant('(s)', (json.dumps(calls),)))
    if caller_uid(conn, sender) != 0:
        return inv.return_dbus_error('org.freedesktop.DBus.Error.AccessDenied',
                                     'Interactive authentication required.')
    if method == 'Check':
        return inv.return_value(GLib.Variant('(bs)', (props['TargetCommit'] != props['CurrentCommit'],
                                                      props['TargetCommit'])))
    if method == 'Apply':
        old, new = props['CurrentCommit'], props['TargetCommit']
        if args[0].get('dry-run') or old == new:
            return inv.return_value(GLib.Variant('(ss)', (old, new if args[0].get('dry-run') else old)))
        set_props(conn, {'State': 'applying', 'Operation': 'build', 'Progress': 50})
        set_props(conn, {'State': 'verifying', 'Operation': 'health', 'Progress': 90})
        set_props(conn, {'State': 'idle', 'Operation': '', 'Progress': 0, 'CurrentCommit': new,
                         'LastGoodCommit': new, 'PreviousCommit': old})
        return inv.return_value(GLib.Variant('(ss)', (old, new)))
    if method == 'Rollback':
        old, new = props['CurrentCommit'], args[0] or props['PreviousCommit']
        if not new:
            return inv.return_dbus_error('org.platform.Launcher1.Error.NotFound', 'No previous commit to return to.')
        set_props(conn, {'CurrentCommit': new, 'LastGoodCommit': new, 'PreviousCommit': '',
                         'QuarantinedCommit': old})
        return inv.return_value(GLib.Variant('(ss)', (old, new)))
    set_props(conn, {'AutoUpdate': args[0]})
    return inv.return_value(None)


def on_get(conn, sender, path, iface, name):
    return variant(name)


def main():
    loop = GLib.MainLoop()
    conn = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
    node = Gio.DBusNodeInfo.new_for_xml(XML)
    for iface in node.interfaces:
        conn.register_object(ROOT, iface, on_call, on_get, None)
    r = conn.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RequestName',
                       GLib.Variant('(su)', (NAME, 4)), None, Gio.DBusCallFlags.NONE, 5000, None)
    if r.unpack()[0] != 1:
        sys.exit('cannot own ' + NAME)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    print('ready', flush=True)
    loop.run()


if __name__ == '__main__':
    main()
