/* SPDX-License-Identifier: Apache-2.0
 *
 * Whether the page's user may do what a button does, before it is pressed:
 * with Cockpit's administrative access (cockpit.permission: uid 0 or the
 * superuser bridge) the calls run as root, which the launcher allows without
 * asking polkit; otherwise polkit is asked for the bridge's own connection,
 * without interaction (CheckAuthorization flags 0), for each of the
 * launcher's actions, again whenever polkit's rules change. A call refused
 * anyway is still shown in words (ops.js describeError).
 */
/* global cockpit */
import { useEffect, useState } from "react";

import { polkitCheck } from "./bus.js";

export const ACTIONS = {
    configure: "org.platform.launcher1.configure",
    "manage-vm": "org.platform.launcher1.manage-vm",
    "read-logs": "org.platform.launcher1.read-logs",
    "check-updates": "org.platform.launcher1.check-updates",
    "apply-updates": "org.platform.launcher1.apply-updates",
};

const CHECKING = { allowed: false, why: "Checking whether you may do this…" };

function reason(answer, action) {
    if (answer === "challenge")
        return "Needs administrative access: turn on administrative access in Cockpit, or ask an administrator " +
               "(polkit asks for an administrator's password for " + action + ").";
    if (answer === "no")
        return "polkit does not allow this to your user (" + action + ").";
    return "polkit cannot be asked (" + answer + "): the launcher refuses without it.";
}

/* { configure: { allowed, why }, ... } for the user of this page. */
export function usePermissions(uniqueName) {
    const [admin, setAdmin] = useState(null);
    const [answers, setAnswers] = useState({});
    const [rulesVersion, setRulesVersion] = useState(0);

    useEffect(() => {
        const perm = cockpit.permission({ admin: true });
        const changed = () => setAdmin(perm.allowed);
        perm.addEventListener("changed", changed);
        changed();
        return () => {
            perm.removeEventListener("changed", changed);
            perm.close();
        };
    }, []);

    useEffect(() => {
        const bus = cockpit.dbus(null, { bus: "system", superuser: "try" });
        const sub = bus.subscribe({
            name: "org.freedesktop.PolicyKit1", path: "/org/freedesktop/PolicyKit1/Authority",
            interface: "org.freedesktop.PolicyKit1.Authority", member: "Changed"
        },
                                  () => setRulesVersion(v => v + 1));
        return () => sub.remove();
    }, []);

    useEffect(() => {
        if (admin !== false || !uniqueName)
            return;
        let live = true;
        for (const [name, id] of Object.entries(ACTIONS))
            polkitCheck(id).then(a => a, err => (err && (err.message || err.problem)) || String(err))
                    .then(answer => live && setAnswers(old => ({ ...old, [name]: answer })));
        return () => { live = false };
    }, [admin, uniqueName, rulesVersion]);

    const out = {};
    for (const [name, id] of Object.entries(ACTIONS)) {
        if (admin === true)
            out[name] = { allowed: true, why: "" };
        else if (admin === null || answers[name] === undefined)
            out[name] = CHECKING;
        else if (answers[name] === "yes")
            out[name] = { allowed: true, why: "" };
        else
            out[name] = { allowed: false, why: reason(answers[name], id) };
    }
    out.admin = admin;
    return out;
}
