/* SPDX-License-Identifier: Apache-2.0
 *
 * What the page's actions share: the alerts (one per action key: a new
 * outcome replaces the old one, so repeated clicks never pile up; each can be
 * dismissed), the actions running now (their buttons are disabled), and the
 * confirmation dialog that says what an action will do before it is called.
 */
/* global cockpit */
import { useSyncExternalStore } from "react";

import { isDenied } from "./bus.js";

let state = { alerts: [], running: {}, dialog: null };
const listeners = new Set();

function update(changes) {
    state = { ...state, ...changes };
    for (const l of listeners)
        l();
}

function subscribe(l) {
    listeners.add(l);
    return () => listeners.delete(l);
}

export function useOps() {
    return useSyncExternalStore(subscribe, () => state);
}

/* ---- alerts ---- */

const MAX_ALERTS = 6;

export function showAlert(key, variant, text) {
    const others = state.alerts.filter(a => a.key !== key);
    update({ alerts: [{ key, variant, text }, ...others].slice(0, MAX_ALERTS) });
}

export function dismissAlert(key) {
    update({ alerts: state.alerts.filter(a => a.key !== key) });
}

export function describeError(what, err) {
    const detail = (err && err.message) || cockpit.message(err);
    if (isDenied(err))
        return "Not authorized to " + what + ". Turn on administrative access or ask an administrator. (" + detail + ")";
    if (err && (err.problem === "not-found" || err.name === "org.freedesktop.DBus.Error.ServiceUnknown"))
        return "Cannot " + what + ": the launcher is not running.";
    return "Cannot " + what + ": " + detail;
}

/* Runs one action under key: its buttons are disabled while it runs and its
 * outcome is shown in words. Resolves to whether it succeeded; onError may
 * take the error instead of an alert (a form showing it at a field). */
export function run(key, what, call, done, onError) {
    update({ running: { ...state.running, [key]: what } });
    return Promise.resolve()
            .then(call)
            .then(result => {
                showAlert(key, "success", done ? done(result) : what.charAt(0).toUpperCase() + what.slice(1) + ": done.");
                return true;
            })
            .catch(err => {
                if (!(onError && onError(err)))
                    showAlert(key, "danger", describeError(what, err));
                return false;
            })
            .finally(() => {
                const running = { ...state.running };
                delete running[key];
                update({ running });
            });
}

/* ---- the confirmation dialog ----
 *
 * confirm({ id, title, confirmLabel, danger, explain, option }) resolves to
 * { confirmed, option } once the user chose. explain() returns a promise of
 * { body, blocked }: what the action will do, read from the daemon (Vm.Plan,
 * Updater.Apply dry-run) while the dialog shows a spinner; blocked (a
 * string) keeps the confirm button disabled and says why. option: an
 * optional checkbox { label, description }. Cancel calls nothing. */
export function confirm(spec) {
    return new Promise(resolve => {
        update({ dialog: { ...spec, resolve } });
    });
}

export function closeDialog(result) {
    const d = state.dialog;
    update({ dialog: null });
    if (d)
        d.resolve(result);
}
