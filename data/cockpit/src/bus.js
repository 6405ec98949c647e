/* SPDX-License-Identifier: Apache-2.0
 *
 * The page's only way to the launcher: org.platform.Launcher1 on the system
 * bus through Cockpit's cockpit.js (cockpit.dbus, superuser "try"). Follows
 * PropertiesChanged, InterfacesAdded/Removed and the history signals (no
 * polling) and keeps what it learned in one store that React reads
 * (useSyncExternalStore): every change makes a new snapshot object.
 *
 * The launcher's connection is made when its name has an owner and made
 * again whenever it gets one: a cockpit.dbus client opened while the name has
 * no owner is closed at once ("not-found") and never recovers. The name is
 * followed on a bus connection of its own (NameOwnerChanged, then
 * GetNameOwner: no change falls in between).
 *
 * Everything is read from the daemon itself (subscribe first, then GetAll or
 * GetManagedObjects), not through cockpit.dbus proxies: through the bridge's
 * cache the root object's interfaces sometimes never got their data
 * (cockpit-bridge 287; the root object also holds the ObjectManager).
 */
/* global cockpit */

export const BUS_NAME = "org.platform.Launcher1";
export const ROOT = "/org/platform/Launcher1";
export const CONFIG_IFACE = "org.platform.Launcher1.Config";
export const VM_IFACE = "org.platform.Launcher1.Vm";
export const UPDATER_IFACE = "org.platform.Launcher1.Updater";
const PROPERTIES_IFACE = "org.freedesktop.DBus.Properties";
const OM_IFACE = "org.freedesktop.DBus.ObjectManager";
export const HISTORY_LIMIT = 200;

const DENIED = [
    "org.freedesktop.DBus.Error.AccessDenied",
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
    "org.freedesktop.PolicyKit1.Error.NotAuthorized",
];

export function isDenied(err) {
    return !!err && (DENIED.includes(err.name) || err.problem === "access-denied" || err.problem === "not-authorized");
}

function unwrap(v) {
    return v !== null && typeof v === "object" && "t" in v && "v" in v ? v.v : v;
}

function unwrapAll(props) {
    const out = {};
    for (const k in props)
        out[k] = unwrap(props[k]);
    return out;
}

/* ---- the store ---- */

let state = {
    ready: false,          /* the page shows what the bus holds (connected or not) */
    connected: false,
    status: "Connecting to " + BUS_NAME + "…",
    config: null,          /* Config properties, null: not read (or no such interface) */
    updater: null,         /* Updater properties, null: none */
    vms: {},               /* path → Vm properties */
    history: [],           /* entries, newest first */
    uniqueName: null,      /* the bridge's name on the system bus (for polkit checks) */
};
const listeners = new Set();

function update(changes) {
    state = { ...state, ...changes };
    for (const l of listeners)
        l();
}

export function subscribe(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
}

export function snapshot() {
    return state;
}

/* ---- calls ---- */

const sysbus = cockpit.dbus(null, { bus: "system", superuser: "try" });
let client = null;
let generation = 0;  /* which connection the callbacks belong to */

function notRunning() {
    return Promise.reject({ problem: "not-found", message: "The launcher is not running." });
}

export function callVm(path, method, args) {
    return client ? client.call(path, VM_IFACE, method, args || []) : notRunning();
}

export function callConfig(method, args) {
    return client ? client.call(ROOT, CONFIG_IFACE, method, args || []) : notRunning();
}

export function callUpdater(method, args) {
    return client ? client.call(ROOT, UPDATER_IFACE, method, args || []) : notRunning();
}

/* polkit's answer for the bridge's own connection, without interaction:
 * "yes", "challenge" (an administrator's password would be asked), "no".
 * The caller is the subject itself, which polkit allows everyone. */
export function polkitCheck(action) {
    return sysbus.wait().then(() => sysbus.call("/org/freedesktop/PolicyKit1/Authority",
                                                "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization",
                                                [["system-bus-name", { name: cockpit.variant("s", sysbus.unique_name) }],
                                                    action, {}, 0, ""],
                                                { name: "org.freedesktop.PolicyKit1" }))
            .then(([[authorized, challenge]]) => authorized ? "yes" : challenge ? "challenge" : "no");
}

/* ---- Config and Updater: properties of the root object ---- */

function followRoot(iface, key, mine) {
    const read = () => client.call(ROOT, PROPERTIES_IFACE, "GetAll", [iface])
            .then(([all]) => {
                /* no properties: an object without that interface (a stand-in) */
                if (mine === generation)
                    update({ [key]: Object.keys(all).length ? unwrapAll(all) : null });
            }, () => {
                if (mine === generation)
                    update({ [key]: null });  /* no such interface: a daemon without it */
            });
    client.subscribe({ path: ROOT, interface: PROPERTIES_IFACE, member: "PropertiesChanged", arg0: iface },
                     (path, i, signal, [changedIface, changed, invalidated]) => {
                         if (mine !== generation || changedIface !== iface)
                             return;
                         if (invalidated && invalidated.length)
                             read();
                         else if (state[key])
                             update({ [key]: { ...state[key], ...unwrapAll(changed) } });
                     });
    return read();
}

/* ---- VM objects: the ObjectManager's children ---- */

function followVms(mine) {
    let known = false;  /* GetManagedObjects answered: signals before that are older than its answer */
    const setVm = (path, props) => update({ vms: { ...state.vms, [path]: props } });
    client.subscribe({ path: ROOT, interface: OM_IFACE, member: "InterfacesAdded" }, (p, i, s, [path, ifaces]) => {
        if (mine === generation && known && ifaces[VM_IFACE]) {
            setVm(path, unwrapAll(ifaces[VM_IFACE]));
            followHistory(path, VM_IFACE, mine);
        }
    });
    client.subscribe({ path: ROOT, interface: OM_IFACE, member: "InterfacesRemoved" }, (p, i, s, [path, ifaces]) => {
        if (mine !== generation || !known || !ifaces.includes(VM_IFACE) || !state.vms[path])
            return;
        const vms = { ...state.vms };
        delete vms[path];
        historyFollowed.delete(path);  /* read again if it comes back */
        update({ vms, history: state.history.filter(e => e.path !== path) });
    });
    client.subscribe({ path_namespace: ROOT + "/vm", interface: PROPERTIES_IFACE, member: "PropertiesChanged" },
                     (path, i, s, [iface, changed]) => {
                         if (mine === generation && known && iface === VM_IFACE && state.vms[path])
                             setVm(path, { ...state.vms[path], ...unwrapAll(changed) });
                     });
    return client.call(ROOT, OM_IFACE, "GetManagedObjects", [])
            .then(([objects]) => {
                if (mine !== generation)
                    return;
                known = true;
                const vms = {};
                for (const path in objects)
                    if (objects[path][VM_IFACE])
                        vms[path] = unwrapAll(objects[path][VM_IFACE]);
                update({ vms });
                for (const path in vms)
                    followHistory(path, VM_IFACE, mine);
            })
            .catch(() => {
                if (mine === generation)
                    known = true;
            });
}

/* ---- history: the VMs' and the Updater's entries in one list ---- */

const historyFollowed = new Set();

function historyKey(e) {
    return [e.timestamp, e.kind, e.action, e.trigger, e.to, e.result, e.path].join("|");
}

function addHistory(path, entries) {
    const all = new Map(state.history.map(e => [historyKey(e), e]));
    for (const a of entries) {
        const e = {
            timestamp: a[0], kind: a[1], action: a[2], trigger: a[3], from: a[4], to: a[5],
            result: a[6], reason: a[7], duration: a[8], path,
        };
        all.set(historyKey(e), e);
    }
    update({ history: [...all.values()].sort((a, b) => b.timestamp - a.timestamp) });
}

/* Subscribe first, then read the backlog: no entry falls in between. */
function followHistory(path, iface, mine) {
    if (historyFollowed.has(path))
        return;
    historyFollowed.add(path);
    client.subscribe({ path, interface: iface, member: "HistoryAdded" }, (p, i, signal, args) => {
        if (mine === generation && (path === ROOT || state.vms[path]))
            addHistory(path, [args]);
    });
    client.call(path, iface, "GetHistory", [HISTORY_LIMIT])
            .then(([entries]) => {
                if (mine === generation)
                    addHistory(path, entries);
            })
            .catch(() => {});  /* a daemon without history */
}

/* ---- connection ---- */

function disconnect(status) {
    generation++;
    if (client)
        client.close();
    client = null;
    historyFollowed.clear();
    update({ connected: false, config: null, updater: null, vms: {}, history: [], ...(status ? { status } : {}) });
}

const NOT_RUNNING = "The launcher is not running (" + BUS_NAME + " is not on the system bus).";

/* Opens the launcher's connection; resolves once every part has its data
 * (or is known to have none). */
function connect() {
    disconnect();
    const mine = generation;
    client = cockpit.dbus(BUS_NAME, { bus: "system", superuser: "try" });
    client.addEventListener("close", (ev, options) => {
        if (mine === generation)
            disconnect(options.problem === "not-found" ? NOT_RUNNING : "Disconnected: " + cockpit.message(options));
    });
    const parts = [followRoot(CONFIG_IFACE, "config", mine), followRoot(UPDATER_IFACE, "updater", mine),
        followVms(mine)];
    followHistory(ROOT, UPDATER_IFACE, mine);
    return Promise.all(parts).then(() => {
        if (mine === generation)
            update({ connected: true, status: "Connected to the launcher on the system bus." });
    });
}

/* Resolves when the page shows what the bus holds now (connected or not). */
export function start() {
    sysbus.wait().then(() => update({ uniqueName: sysbus.unique_name }), () => {});
    sysbus.subscribe({
        name: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
        member: "NameOwnerChanged", arg0: BUS_NAME
    }, (path, iface, signal, [name, oldOwner, newOwner]) => {
        if (newOwner)
            connect();
        else if (client)
            disconnect(NOT_RUNNING);
    });
    return sysbus.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "GetNameOwner", [BUS_NAME],
                       { name: "org.freedesktop.DBus" })
            .then(() => connect())
            .catch(() => disconnect(NOT_RUNNING))
            .finally(() => update({ ready: true }));
}
