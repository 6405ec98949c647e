# SPDX-License-Identifier: Apache-2.0
"""A stand-in for platform-launcherd that serves the bus contract only
(dbus/org.platform.Launcher1.{Config,Vm}.xml), scripted by the test through
the extra interface org.platform.Launcher1.Fake. It lets platformctl's Vm
commands be tested against the contract before and independently of the
real reconciler; test_platformctl_vm.py runs the same commands against the
real daemon and the simulators.

    fake_launcher.py            (DBUS_SYSTEM_BUS_ADDRESS selects the bus)

Fake methods (root object):
    AddVm(s name, s props_json)         export a Vm object (InterfacesAdded)
    RemoveVm(s name)                    (InterfacesRemoved)
    SetVm(s name, s props_json)         change properties (PropertiesChanged)
    Script(s name, s method, s json)    what Update/Start/Stop/Restart do: a list of
        steps {"delay": s, "props": {...}, "signal": [member, [args]],
               "error": [name, message]}; replies after the last step
    SetPlan(s name, s json)             [action, [[field, current, target], ...]]
    AddHistory(s name, s json)          entries [[timestamp, kind, action, trigger, from, to,
                                        result, reason, duration], ...] kept newest first;
                                        HistoryAdded for each (Vm.GetHistory serves them)
    SetConfig(s json)                   change Config properties (PropertiesChanged)
    Calls() -> s                        JSON list of {"vm", "method", "args", "no_reply"}
Several VMs: AddVm once for each (the Cockpit page lists them as a table).
Properties a VM does not have in dbus/ yet (AllowedEnv as,
LastSuccessfulCheckTimestamp t) are exported when AddVm's JSON gives them.
SIGTERM exits 0.
"""
import json
import signal
import sys

import dbus
import dbus.mainloop.glib
import dbus.service
from gi.repository import GLib

NAME = 'org.platform.Launcher1'
ROOT = '/org/platform/Launcher1'
VM_PREFIX = ROOT + '/vm/'
CONFIG = 'org.platform.Launcher1.Config'
VM = 'org.platform.Launcher1.Vm'
FAKE = 'org.platform.Launcher1.Fake'
PROPS = 'org.freedesktop.DBus.Properties'
OM = 'org.freedesktop.DBus.ObjectManager'

VM_TYPES = {
    'Name': 's', 'Id': 's', 'State': 's', 'StateReason': 's', 'VmmStatus': 's', 'AppId': 's',
    'ComposeHash': 's', 'TargetComposeHash': 's', 'Image': 's', 'ImageVersion': 's',
    'Vcpu': 'u', 'MemoryMiB': 'u', 'DiskGiB': 'u', 'LastCheckTimestamp': 't',
    'LastUpdateTimestamp': 't', 'UpdateCount': 'u', 'RestartCount': 'u', 'LastError': 's',
    'Operation': 's', 'Progress': 'u',
}
# Not in the contract yet: exported only when a test gives them (AddVm/SetVm).
OPTIONAL_VM_TYPES = {'AllowedEnv': 'as', 'LastSuccessfulCheckTimestamp': 't'}
CONFIG_TYPES = {'EnvKeys': 'as', 'RequiredEnv': 'as', 'MissingEnv': 'as', 'PollIntervalUSec': 't',
                'StopTimeoutUSec': 't'}
CONFIG_PROPS = {
    'ApiUrl': 'http://127.0.0.1:1/config/compose/validator_vm', 'VmmUrl': 'http://127.0.0.1:2',
    'GuestVmmUrl': 'http://10.0.2.2:10300/', 'PollIntervalUSec': dbus.UInt64(5000000),
    'StopTimeoutUSec': dbus.UInt64(60000000), 'UpdateStrategy': 'recreate',
    'EnvKeys': dbus.Array([], signature='s'), 'RequiredEnv': dbus.Array([], signature='s'),
    'MissingEnv': dbus.Array([], signature='s'), 'ConfigPath': '/nonexistent/config.json',
    'ConfigError': '',
}
WRAP = {'s': dbus.String, 'u': dbus.UInt32, 't': dbus.UInt64,
        'as': lambda v: dbus.Array([dbus.String(x) for x in v], signature='s')}
HISTORY_SIG = 'tssssssst'


def encode_label(name):
    """sd_bus_path_encode: [A-Za-z0-9] kept, everything else _xx."""
    if not name:
        return '_'
    return ''.join(c if c.isascii() and c.isalnum() else '_%02x' % ord(c) for c in name)


def plain(v):
    if isinstance(v, (dbus.Dictionary, dict)):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (dbus.Array, dbus.Struct, list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (int,)):
        return int(v)
    return str(v)


class Vm(dbus.service.Object):
    def __init__(self, fake, name, props):
        self.fake, self.name = fake, name
        self.path = VM_PREFIX + encode_label(name)
        self.props = {k: WRAP[t]('' if t == 's' else 0) for k, t in VM_TYPES.items()}
        self.props['Name'] = dbus.String(name)
        self.props.update(self.typed(props))
        self.scripts = {}
        self.plan = ['none', []]
        self.history = []
        super().__init__(fake.conn, self.path)

    @staticmethod
    def typed(props):
        # A property the XML does not have yet by its value's type.
        def sig(k, v):
            if k in VM_TYPES or k in OPTIONAL_VM_TYPES:
                return VM_TYPES.get(k) or OPTIONAL_VM_TYPES[k]
            return 's' if isinstance(v, str) else 'as' if isinstance(v, list) else 'u'
        return {k: WRAP[sig(k, v)](v) for k, v in props.items()}

    def set(self, props):
        changed = self.typed(props)
        self.props.update(changed)
        self.PropertiesChanged(VM, changed, dbus.Array([], signature='s'))

    @dbus.service.method(PROPS, in_signature='ss', out_signature='v')
    def Get(self, iface, prop):
        return self.props[prop]

    @dbus.service.method(PROPS, in_signature='s', out_signature='a{sv}')
    def GetAll(self, iface):
        return self.props if iface == VM else {}

    @dbus.service.signal(PROPS, signature='sa{sv}as')
    def PropertiesChanged(self, iface, changed, invalidated):
        pass

    @dbus.service.signal(VM, signature='sss')
    def VmUpdated(self, old, new, vm_id):
        pass

    @dbus.service.signal(VM, signature='ss')
    def UpdateFailed(self, target, reason):
        pass

    def run(self, method, args, msg, ok, err):
        self.fake.calls.append({'vm': self.name, 'method': method, 'args': plain(args),
                                'no_reply': bool(msg.get_no_reply())})
        steps = list(self.scripts.get(method, []))

        def step():
            while steps:
                s = steps.pop(0)
                if s.get('delay'):
                    GLib.timeout_add(int(s['delay'] * 1000), step)
                    s.pop('delay')
                    steps.insert(0, s)
                    return False
                if 'props' in s:
                    self.set(s['props'])
                if 'signal' in s:
                    getattr(self, s['signal'][0])(*s['signal'][1])
                if 'error' in s:
                    err(dbus.exceptions.DBusException(s['error'][1], name=s['error'][0]))
                    return False
            ok()
            return False
        step()

    @dbus.service.method(VM, in_signature='a{sv}', out_signature='', message_keyword='msg',
                         async_callbacks=('ok', 'err'))
    def Update(self, options, msg, ok, err):
        unknown = [k for k in options if k != 'force']
        if unknown:
            raise dbus.exceptions.DBusException("Unknown option '%s'." % unknown[0],
                                                name='org.freedesktop.DBus.Error.InvalidArgs')
        self.run('Update', [options], msg, ok, err)

    @dbus.service.method(VM, in_signature='', out_signature='', message_keyword='msg', async_callbacks=('ok', 'err'))
    def Start(self, msg, ok, err):
        self.run('Start', [], msg, ok, err)

    @dbus.service.method(VM, in_signature='', out_signature='', message_keyword='msg', async_callbacks=('ok', 'err'))
    def Stop(self, msg, ok, err):
        self.run('Stop', [], msg, ok, err)

    @dbus.service.method(VM, in_signature='', out_signature='', message_keyword='msg', async_callbacks=('ok', 'err'))
    def Restart(self, msg, ok, err):
        self.run('Restart', [], msg, ok, err)

    @dbus.service.method(VM, in_signature='', out_signature='sa(sss)')
    def Plan(self):
        return self.plan[0], dbus.Array([dbus.Struct(c, signature='sss') for c in self.plan[1]], signature='(sss)')

    @dbus.service.method(VM, in_signature='u', out_signature='a(%s)' % HISTORY_SIG)
    def GetHistory(self, limit):
        entries = self.history[:int(limit)] if limit else self.history
        return dbus.Array([history_struct(e) for e in entries], signature='(%s)' % HISTORY_SIG)

    @dbus.service.signal(VM, signature=HISTORY_SIG)
    def HistoryAdded(self, timestamp, kind, action, trigger, from_, to, result, reason, duration):
        pass

    @dbus.service.method(VM, in_signature='su', out_signature='s', message_keyword='msg')
    def GetLogs(self, channel, lines, msg):
        self.fake.calls.append({'vm': self.name, 'method': 'GetLogs', 'args': [str(channel), int(lines)],
                                'no_reply': bool(msg.get_no_reply())})
        return ''.join('%s line %d\n' % (channel, i + 1) for i in range(min(int(lines), 3)))


def history_struct(e):
    return dbus.Struct([dbus.UInt64(e[0])] + [dbus.String(x) for x in e[1:8]] + [dbus.UInt64(e[8])],
                       signature=HISTORY_SIG)


class Fake(dbus.service.Object):
    def __init__(self, conn):
        self.conn = conn
        self.vms = {}
        self.calls = []
        super().__init__(conn, ROOT)

    @dbus.service.method(PROPS, in_signature='ss', out_signature='v')
    def Get(self, iface, prop):
        return CONFIG_PROPS[prop]

    @dbus.service.method(PROPS, in_signature='s', out_signature='a{sv}')
    def GetAll(self, iface):
        return CONFIG_PROPS if iface == CONFIG else {}

    @dbus.service.signal(PROPS, signature='sa{sv}as')
    def PropertiesChanged(self, iface, changed, invalidated):
        pass

    @dbus.service.method(CONFIG, in_signature='ss', out_signature='', message_keyword='msg')
    def SetEnv(self, key, value, msg):
        """Replies at once; then runs the script 'SetEnv' of every VM (what the change sets in motion)."""
        self.calls.append({'vm': '', 'method': 'SetEnv', 'args': [str(key)], 'no_reply': bool(msg.get_no_reply())})
        for vm in self.vms.values():
            if 'SetEnv' in vm.scripts:
                GLib.idle_add(lambda vm=vm: vm.run('SetEnv', [], msg, lambda: None, lambda e: None) and False)

    @dbus.service.method(CONFIG, in_signature='s', out_signature='', message_keyword='msg')
    def RemoveEnv(self, key, msg):
        self.calls.append({'vm': '', 'method': 'RemoveEnv', 'args': [str(key)], 'no_reply': bool(msg.get_no_reply())})

    @dbus.service.method(OM, in_signature='', out_signature='a{oa{sa{sv}}}')
    def GetManagedObjects(self):
        return {vm.path: {VM: vm.props} for vm in self.vms.values()}

    @dbus.service.signal(OM, signature='oa{sa{sv}}')
    def InterfacesAdded(self, path, ifaces):
        pass

    @dbus.service.signal(OM, signature='oas')
    def InterfacesRemoved(self, path, ifaces):
        pass

    @dbus.service.method(FAKE, in_signature='ss', out_signature='')
    def AddVm(self, name, props):
        vm = self.vms[str(name)] = Vm(self, str(name), json.loads(props))
        self.InterfacesAdded(vm.path, {VM: vm.props})

    @dbus.service.method(FAKE, in_signature='s', out_signature='')
    def RemoveVm(self, name):
        vm = self.vms.pop(str(name))
        vm.remove_from_connection()
        self.InterfacesRemoved(vm.path, [VM])

    @dbus.service.method(FAKE, in_signature='ss', out_signature='')
    def SetVm(self, name, props):
        self.vms[str(name)].set(json.loads(props))

    @dbus.service.method(FAKE, in_signature='sss', out_signature='')
    def Script(self, name, method, steps):
        self.vms[str(name)].scripts[str(method)] = json.loads(steps)

    @dbus.service.method(FAKE, in_signature='ss', out_signature='')
    def SetPlan(self, name, plan):
        self.vms[str(name)].plan = json.loads(plan)

    @dbus.service.method(FAKE, in_signature='ss', out_signature='')
    def AddHistory(self, name, entries):
        vm = self.vms[str(name)]
        for e in json.loads(entries):
            vm.history.insert(0, e)
            vm.HistoryAdded(*history_struct(e))

    @dbus.service.method(FAKE, in_signature='s', out_signature='')
    def SetConfig(self, props):
        changed = {}
        for k, v in json.loads(props).items():
            t = CONFIG_TYPES.get(k, 's')
            CONFIG_PROPS[k] = changed[k] = WRAP[t](v)
        self.PropertiesChanged(CONFIG, changed, dbus.Array([], signature='s'))

    @dbus.service.method(FAKE, in_signature='', out_signature='s')
    def Calls(self):
        return json.dumps(self.calls)


def main():
    dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
    conn = dbus.SystemBus()
    fake = Fake(conn)
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    fake.bus_name = dbus.service.BusName(NAME, conn, do_not_queue=True)  # released when collected
    loop.run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
