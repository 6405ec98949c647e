/* SPDX-License-Identifier: Apache-2.0
 *
 * platform-launcher's Cockpit page. Talks only to org.platform.Launcher1 on
 * the system bus through cockpit.dbus, follows PropertiesChanged and the
 * daemon's signals (no polling), and acts through the same methods as
 * platformctl. Text from the bus goes into the DOM as text (textContent),
 * never as markup. An env value is read from its password field, the field
 * is cleared at once, and the value goes nowhere but the SetEnv call.
 */
"use strict";

const BUS_NAME = "org.platform.Launcher1";
const ROOT = "/org/platform/Launcher1";
const CONFIG_IFACE = "org.platform.Launcher1.Config";
const VM_IFACE = "org.platform.Launcher1.Vm";
const UPDATER_IFACE = "org.platform.Launcher1.Updater";
const HISTORY_LIMIT = 200;
const LOG_LINES = 200;
const DENIED = [
    "org.freedesktop.DBus.Error.AccessDenied",
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired",
    "org.freedesktop.PolicyKit1.Error.NotAuthorized",
];

const $ = id => document.getElementById(id);

function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null)
        e.textContent = String(text);
    if (cls)
        e.className = cls;
    return e;
}

function when(usec) {
    if (!usec)
        return "never";
    return new Date(usec / 1000).toLocaleString();
}

function age(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 120)
        return s + " s";
    if (s < 7200)
        return Math.round(s / 60) + " min";
    if (s < 172800)
        return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " days";
}

function took(usec) {
    if (!usec)
        return "–";
    if (usec < 1e6)
        return Math.round(usec / 1000) + " ms";
    return (usec / 1e6).toFixed(1) + " s";
}

function shortHash(h) {
    return h ? h.substring(0, 12) : "–";
}

/* ---- alerts: every outcome of an action in words ---- */

function isDenied(err) {
    return DENIED.includes(err.name) || err.problem === "access-denied" || err.problem === "not-authorized";
}

function describeError(what, err) {
    const detail = err.message || cockpit.message(err);
    if (isDenied(err))
        return "Not authorized to " + what + ". Turn on administrative access or ask an administrator. (" +
               detail + ")";
    if (err.problem === "not-found" || err.name === "org.freedesktop.DBus.Error.ServiceUnknown")
        return "Cannot " + what + ": the launcher is not running.";
    return "Cannot " + what + ": " + detail;
}

function alert(kind, action, text) {
    const box = $("alerts");
    const old = box.querySelector('[data-action="' + action + '"]');
    if (old)
        old.remove();
    const a = el("div", null, "pl-alert pl-alert-" + kind);
    a.setAttribute("role", kind === "danger" ? "alert" : "status");
    a.dataset.action = action;
    a.appendChild(el("span", text, "pl-alert-text"));
    const close = el("button", "×", "pl-alert-close");
    close.type = "button";
    close.setAttribute("aria-label", "Dismiss");
    close.addEventListener("click", () => a.remove());
    a.appendChild(close);
    box.prepend(a);
}

/* Runs one action: the button is disabled while it runs, the outcome is
 * shown. Resolves to whether it succeeded. */
function act(button, action, what, call, done) {
    button.disabled = true;
    button.classList.add("pl-busy");
    return Promise.resolve()
            .then(() => {
                if (!client)
                    throw { problem: "not-found" };
                return call();
            })
            .then(result => {
                alert("success", action, done ? done(result) : what.charAt(0).toUpperCase() + what.slice(1) + ": done.");
                return true;
            })
            .catch(err => {
                alert("danger", action, describeError(what, err));
                return false;
            })
            .finally(() => {
                button.disabled = false;
                button.classList.remove("pl-busy");
            });
}

/* ---- the bus ----
 *
 * The launcher's connection is made when its name has an owner and made
 * again whenever it gets one: a cockpit.dbus client opened while the name has
 * no owner is closed at once ("not-found") and never recovers, and its
 * proxies never become valid. A page opened while the daemon was starting
 * (or restarting) used to keep every card empty or hidden for good. The
 * name is followed on a bus connection of its own (NameOwnerChanged, then
 * GetNameOwner: no change falls in between). */

const sysbus = cockpit.dbus(null, { bus: "system", superuser: "try" });
let client = null;
let config = null;
let vms = {};
let updater = null;
let generation = 0;  /* which connection the callbacks belong to */

/* Config and Updater live on the launcher's own object (ROOT), which also
 * holds the ObjectManager. Through cockpit.dbus proxies (the bridge's cache)
 * the Updater proxy of the real daemon sometimes never got its data: the card
 * stayed hidden for good in about one page load in twenty (cockpit-bridge
 * 287), likely because the cache fills the manager's subtree from
 * GetManagedObjects, which names the children only, and whether ROOT's own
 * interfaces were introspected depended on the order the bridge answered the
 * page's watches in. So these two are read from the daemon itself:
 * PropertiesChanged subscribed first, then GetAll; "valid" once GetAll
 * answered (UnknownInterface: a daemon without that interface). */
const PROPERTIES_IFACE = "org.freedesktop.DBus.Properties";

function unwrap(v) {
    return v !== null && typeof v === "object" && "t" in v && "v" in v ? v.v : v;
}

function rootObject(iface) {
    const obj = cockpit.event_target({ valid: false, data: {} });
    const mine = generation;
    obj.call = (method, args) => client.call(ROOT, iface, method, args || []);
    obj.read = () => client.call(ROOT, PROPERTIES_IFACE, "GetAll", [iface])
            .then(([all]) => {
                if (mine !== generation)
                    return;
                for (const k in all)
                    obj.data[k] = unwrap(all[k]);
                obj.valid = true;
                obj.dispatchEvent("changed");
            }, () => {
                if (mine !== generation)
                    return;
                obj.valid = false;  /* no such interface: a daemon without it */
                obj.dispatchEvent("changed");
            });
    client.subscribe({ path: ROOT, interface: PROPERTIES_IFACE, member: "PropertiesChanged", arg0: iface },
                     (path, i, signal, [changedIface, changed, invalidated]) => {
                         if (mine !== generation || changedIface !== iface)
                             return;
                         for (const k in changed)
                             obj.data[k] = unwrap(changed[k]);
                         if (invalidated && invalidated.length)
                             obj.read();
                         else if (obj.valid)
                             obj.dispatchEvent("changed");
                     });
    return obj;
}

function theVm() {
    const paths = Object.keys(vms).sort();
    return paths.length ? vms[paths[0]] : null;
}

/* ---- VM ---- */

function field(dl, label, value, id) {
    const dt = el("dt", label);
    const dd = el("dd", value === "" || value === undefined || value === null ? "–" : value);
    if (id)
        dd.id = id;
    dl.append(dt, dd);
}

function renderProgress(prefix, data) {
    const op = data.Operation || "";
    const box = $(prefix + "-progress");
    box.hidden = !op;
    if (!op)
        return;
    $(prefix + "-operation").textContent = op;
    const p = data.Progress || 0;
    $(prefix + "-progress-bar").value = p;
    $(prefix + "-progress-text").textContent = p + " %";
}

function renderVm() {
    const vm = theVm();
    $("vm-empty").hidden = !!vm;
    for (const id of ["vm-update", "vm-start", "vm-stop", "vm-restart"])
        $(id).disabled = !vm;
    const dl = $("vm-props");
    dl.replaceChildren();
    if (!vm) {
        $("vm-state").textContent = "none";
        $("vm-reason").textContent = "";
        return;
    }
    const d = vm.data;
    $("vm-name").textContent = d.Name || "";
    const state = $("vm-state");
    state.textContent = d.State || "unknown";
    state.className = "pl-label pl-state-" + (d.State || "unknown");
    $("vm-reason").textContent = d.StateReason || "";
    renderProgress("vm", d);

    field(dl, "Compose hash", d.ComposeHash, "vm-compose-hash");
    if (d.TargetComposeHash && d.TargetComposeHash !== d.ComposeHash)
        field(dl, "Target compose hash", d.TargetComposeHash, "vm-target-hash");
    field(dl, "Image", d.Image ? d.Image + (d.ImageVersion ? " (" + d.ImageVersion + ")" : "") : "", "vm-image");
    field(dl, "Resources", d.Vcpu ? d.Vcpu + " vCPU, " + d.MemoryMiB + " MiB memory, " + d.DiskGiB + " GiB disk" : "",
          "vm-resources");
    field(dl, "VMM status", d.VmmStatus, "vm-vmm-status");
    field(dl, "VM id", d.Id, "vm-id");
    field(dl, "App id", d.AppId, "vm-app-id");
    field(dl, "Last check", when(d.LastCheckTimestamp), "vm-last-check");
    field(dl, "Last update", when(d.LastUpdateTimestamp), "vm-last-update");
    field(dl, "Updates, restarts", (d.UpdateCount || 0) + ", " + (d.RestartCount || 0), "vm-counts");
    if (d.LastError)
        field(dl, "Last error", d.LastError, "vm-last-error");
}

function vmAction(id, method, what, args) {
    $(id).addEventListener("click", ev => {
        const vm = theVm();
        if (!vm)
            return;
        act(ev.currentTarget, id, what, () => client.call(vm.path, VM_IFACE, method, args || []));
    });
}

/* ---- history: the VM's and the Updater's entries in one table ---- */

const history = new Map(); /* key → entry */
let historyPath = null;
let historySubscription = null;
let updaterHistorySubscription = null;

function historyKey(e) {
    return [e.timestamp, e.kind, e.action, e.trigger, e.to, e.result].join("|");
}

function addHistory(a) {
    const e = {
        timestamp: a[0], kind: a[1], action: a[2], trigger: a[3], from: a[4], to: a[5],
        result: a[6], reason: a[7], duration: a[8],
    };
    history.set(historyKey(e), e);
}

function renderHistory() {
    const rows = [...history.values()].sort((a, b) => b.timestamp - a.timestamp).slice(0, HISTORY_LIMIT);
    const body = $("history-rows");
    body.replaceChildren();
    for (const e of rows) {
        const tr = el("tr");
        tr.dataset.kind = e.kind;
        tr.dataset.action = e.action;
        tr.dataset.result = e.result;
        const result = el("td", null);
        result.appendChild(el("span", e.result, "pl-label pl-result-" + e.result));
        if (e.reason)
            result.appendChild(el("div", e.reason, "pl-subtle"));
        const from = el("td", shortHash(e.from), "pl-mono");
        from.title = e.from;
        const to = el("td", shortHash(e.to), "pl-mono");
        to.title = e.to;
        tr.append(el("td", when(e.timestamp)), el("td", e.kind === "updater" ? "Updater" : "VM"), el("td", e.action),
                  result, el("td", e.trigger), from, to, el("td", took(e.duration)));
        body.appendChild(tr);
    }
    $("history-empty").hidden = rows.length > 0;
}

/* Subscribe first, then read the backlog: no entry falls in between. */
function readHistory(path, iface) {
    const mine = generation;
    const sub = client.subscribe({ path: path, interface: iface, member: "HistoryAdded" },
                                 (p, i, signal, args) => {
                                     if (mine !== generation)
                                         return;
                                     addHistory(args);
                                     renderHistory();
                                 });
    client.call(path, iface, "GetHistory", [HISTORY_LIMIT])
            .then(([entries]) => {
                if (mine !== generation)
                    return;
                entries.forEach(addHistory);
                renderHistory();
            })
            .catch(err => {
                if (mine === generation && err.name !== "org.freedesktop.DBus.Error.UnknownMethod")
                    alert("danger", "history", describeError("read the history", err));
            });
    return sub;
}

function followHistory() {
    const vm = theVm();
    if (!client || !vm || vm.path === historyPath)
        return;
    /* The VM's entries of another VM go; the Updater's stay. */
    for (const [k, e] of history)
        if (e.kind !== "updater")
            history.delete(k);
    historyPath = vm.path;
    if (historySubscription)
        historySubscription.remove();
    historySubscription = readHistory(vm.path, VM_IFACE);
}

function followUpdaterHistory() {
    if (updaterHistorySubscription)
        updaterHistorySubscription.remove();
    updaterHistorySubscription = readHistory(ROOT, UPDATER_IFACE);
}

function resetHistory() {
    for (const sub of [historySubscription, updaterHistorySubscription])
        if (sub)
            sub.remove();
    historySubscription = updaterHistorySubscription = null;
    historyPath = null;
    history.clear();
    renderHistory();
}

/* ---- configuration ---- */

function renderConfig() {
    if (!config || !config.valid)
        return;
    const d = config.data;
    $("config-path").textContent = d.ConfigPath || "";
    $("config-error").hidden = !d.ConfigError;
    $("config-error").textContent = d.ConfigError ? "The config file has a problem: " + d.ConfigError : "";

    for (const input of document.querySelectorAll("[data-setting]")) {
        if (input.dataset.dirty === "true")
            continue;
        const v = d[input.dataset.setting];
        if (v === undefined)
            continue;
        input.value = input.dataset.kind === "sec" ? String(Math.round(v / 1e6)) : v;
    }

    const required = d.RequiredEnv || [];
    const missing = d.MissingEnv || [];
    const body = $("env-keys");
    body.replaceChildren();
    for (const key of (d.EnvKeys || []).slice().sort()) {
        const tr = el("tr");
        tr.dataset.key = key;
        const remove = el("button", "Remove", "pl-btn pl-btn-link");
        remove.type = "button";
        remove.dataset.key = key;
        remove.addEventListener("click", ev =>
            act(ev.currentTarget, "env-remove", "remove env value " + key,
                () => config.call("RemoveEnv", [key]), () => "Env value " + key + " removed."));
        const actions = el("td");
        actions.appendChild(remove);
        tr.append(el("td", key, "pl-mono"), el("td", required.includes(key) ? "yes" : "no"), actions);
        body.appendChild(tr);
    }
    $("env-missing").hidden = missing.length === 0;
    $("env-missing").textContent = missing.length ? "Missing env values (no VM is created until set): " +
                                                    missing.join(", ") : "";
}

function setupConfigForms() {
    for (const input of document.querySelectorAll("[data-setting]"))
        input.addEventListener("input", () => { input.dataset.dirty = "true" });

    $("settings-form").addEventListener("submit", ev => {
        ev.preventDefault();
        const settings = {};
        for (const input of document.querySelectorAll("[data-setting]")) {
            if (input.dataset.dirty !== "true")
                continue;
            if (input.dataset.kind === "sec")
                settings[input.dataset.setting] = cockpit.variant("t", Math.round(Number(input.value) * 1e6));
            else
                settings[input.dataset.setting] = cockpit.variant("s", input.value);
        }
        if (Object.keys(settings).length === 0) {
            alert("info", "settings", "No setting was changed.");
            return;
        }
        act($("settings-save"), "settings", "change the settings", () => config.call("SetSettings", [settings]),
            () => "Settings saved: " + Object.keys(settings).join(", ") + ".")
                .then(ok => {
                    if (!ok)
                        return; /* what the user typed stays, to be corrected */
                    for (const input of document.querySelectorAll("[data-setting]"))
                        delete input.dataset.dirty;
                    renderConfig();
                });
    });

    $("env-form").addEventListener("submit", ev => {
        ev.preventDefault();
        const key = $("env-key").value.trim();
        const valueInput = $("env-value");
        let value = valueInput.value;
        valueInput.value = "";  /* never left in the DOM after submit */
        act($("env-set"), "env-set", "set env value " + key, () => {
            const call = config.call("SetEnv", [key, value]);
            value = null;
            return call;
        }, () => "Env value " + key + " set.").then(ok => {
            if (ok)
                $("env-key").value = "";
        });
    });
}

/* ---- updater (only when the daemon has that interface) ---- */

function renderUpdater() {
    const card = $("updater-card");
    const valid = !!updater && updater.valid;
    card.hidden = !valid;
    card.dataset.decided = "true";
    if (!valid)
        return;
    const d = updater.data;
    const state = $("updater-state");
    state.textContent = d.State || "unknown";
    state.className = "pl-label pl-state-" + (d.State || "unknown");
    renderProgress("updater", d);

    const defer = $("updater-defer");
    defer.replaceChildren();
    for (const [gate, detail, since] of d.DeferReasons || []) {
        const t = Date.parse(since);
        defer.appendChild(el("li", gate + ": " + detail + (isNaN(t) ? "" : " (for " + age(Date.now() - t) + ")")));
    }

    const dl = $("updater-props");
    dl.replaceChildren();
    field(dl, "Repository", d.Repository);
    field(dl, "Following", (d.Remote || "") + "/" + (d.Branch || ""));
    field(dl, "Current commit", d.CurrentCommit, "updater-current");
    field(dl, "Target commit", d.TargetCommit, "updater-target");
    if (d.QuarantinedCommit)
        field(dl, "Quarantined commit", d.QuarantinedCommit, "updater-quarantined");
    if (d.PreviousCommit)
        field(dl, "Previous commit", d.PreviousCommit);
    field(dl, "Automatic updates", d.AutoUpdate ? "on" : "off");
    field(dl, "Last check", when(d.LastCheckTimestamp));
    field(dl, "Last update", when(d.LastUpdateTimestamp));
    if (d.NextCheckTimestamp)
        field(dl, "Next check", when(d.NextCheckTimestamp));
    if (d.LastError)
        field(dl, "Last error", d.LastError);
}

function setupUpdater() {
    const call = (method, args) => () => client.call(ROOT, UPDATER_IFACE, method, args);
    $("updater-check").addEventListener("click", ev =>
        act(ev.currentTarget, "updater-check", "check for updates", call("Check", []),
            ([available, commit]) => available ? "Update available: " + commit + "." : "Up to date."));
    $("updater-apply").addEventListener("click", ev =>
        act(ev.currentTarget, "updater-apply", "apply the update", call("Apply", [{}]),
            ([from, to]) => from === to ? "Already current (" + shortHash(to) + ")." : "Updated " + shortHash(from) +
                                                                                    " → " + shortHash(to) + "."));
    $("updater-dry-run").addEventListener("click", ev =>
        act(ev.currentTarget, "updater-dry-run", "try the update",
            call("Apply", [{ "dry-run": cockpit.variant("b", true) }]),
            ([from, to]) => "Dry run: would go " + shortHash(from) + " → " + shortHash(to) + "."));
    $("updater-rollback").addEventListener("click", ev =>
        act(ev.currentTarget, "updater-rollback", "roll back", call("Rollback", [""]),
            ([from, to]) => "Rolled back " + shortHash(from) + " → " + shortHash(to) + "."));
}

/* ---- logs ---- */

function setupLogs() {
    $("logs-show").addEventListener("click", ev => {
        const vm = theVm();
        if (!vm)
            return;
        const channel = $("logs-channel").value;
        act(ev.currentTarget, "logs", "read the VM's logs",
            () => client.call(vm.path, VM_IFACE, "GetLogs", [channel, LOG_LINES]).then(([text]) => {
                const pre = $("logs-text");
                pre.textContent = text || "(empty)";
                pre.hidden = false;
            }), () => "Logs of " + channel + " shown.");
    });
}

/* ---- start ---- */

function ready() {
    $("page").dataset.ready = "true";
}

function showStatus(text) {
    $("daemon-status").textContent = text;
}

function disconnect() {
    generation++;
    if (client)
        client.close();
    client = null;
    config = null;
    vms = {};
    updater = null;
    resetHistory();
    renderVm();
    renderUpdater();
}

/* Opens the launcher's connection and its proxies; resolves once every proxy
 * has its data (or is known to have none): only then is the page drawn. */
function connect() {
    disconnect();
    const mine = generation;
    client = cockpit.dbus(BUS_NAME, { bus: "system", superuser: "try" });
    config = rootObject(CONFIG_IFACE);
    updater = rootObject(UPDATER_IFACE);
    vms = client.proxies(VM_IFACE, ROOT);
    client.addEventListener("close", (ev, options) => {
        if (mine !== generation)
            return;
        showStatus(options.problem === "not-found"
            ? "The launcher is not running (" + BUS_NAME + " is not on the system bus)."
            : "Disconnected: " + cockpit.message(options));
        disconnect();
    });
    config.addEventListener("changed", () => mine === generation && renderConfig());
    updater.addEventListener("changed", () => mine === generation && renderUpdater());
    for (const e of ["added", "changed", "removed"])
        vms.addEventListener(e, () => {
            if (mine !== generation)
                return;
            renderVm();
            followHistory();
        });
    return Promise.all([config.read(), updater.read(), Promise.resolve(vms.wait()).catch(() => null)])
            .then(() => {
                if (mine !== generation)
                    return;
                showStatus("Connected to the launcher on the system bus.");
                renderConfig();
                renderVm();
                renderUpdater();
                followHistory();
                followUpdaterHistory();
            });
}

/* Resolves when the page shows what the bus holds now (connected or not). */
function followOwner() {
    sysbus.subscribe({ name: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                       member: "NameOwnerChanged", arg0: BUS_NAME },
                     (path, iface, signal, [name, oldOwner, newOwner]) => {
                         if (newOwner)
                             connect();
                         else if (client) {
                             showStatus("The launcher is not running (" + BUS_NAME + " is not on the system bus).");
                             disconnect();
                         }
                     });
    return sysbus.call("/org/freedesktop/DBus", "org.freedesktop.DBus", "GetNameOwner", [BUS_NAME],
                       { name: "org.freedesktop.DBus" })
            .then(() => connect())
            .catch(() => {
                showStatus("The launcher is not running (" + BUS_NAME + " is not on the system bus).");
                disconnect();
            });
}

function init() {
    vmAction("vm-update", "Update", "update the VM", [{}]);
    vmAction("vm-start", "Start", "start the VM");
    vmAction("vm-stop", "Stop", "stop the VM");
    vmAction("vm-restart", "Restart", "restart the VM");
    setupConfigForms();
    setupUpdater();
    setupLogs();
    followOwner().finally(ready);
}

document.addEventListener("DOMContentLoaded", init);
