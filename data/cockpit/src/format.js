/* SPDX-License-Identifier: Apache-2.0
 *
 * Dates, durations and numbers in the browser's locale (Intl), and the
 * daemon's internal words (step ids, states, history actions) as words a
 * person reads.
 */

const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const numberFormat = new Intl.NumberFormat(undefined);
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const oneDecimal = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });

export function number(n) {
    return numberFormat.format(n || 0);
}

/* A CLOCK_REALTIME µs timestamp; 0 = never. */
export function when(usec) {
    return usec ? dateFormat.format(new Date(usec / 1000)) : "never";
}

const UNITS = [["year", 365 * 86400], ["month", 30 * 86400], ["week", 7 * 86400], ["day", 86400], ["hour", 3600],
    ["minute", 60], ["second", 1]];

/* "5 minutes ago" from a µs timestamp of the past and now (ms); a moment
 * after now (the page's clock ticks every few seconds) is "now". */
export function relative(usec, nowMs) {
    const s = Math.min(0, Math.round((usec / 1000 - nowMs) / 1000));
    const abs = Math.abs(s);
    for (const [unit, size] of UNITS)
        if (abs >= size || unit === "second")
            return relativeFormat.format(Math.trunc(s / size), unit);
}

/* A duration in ms as words: "45 s", "5 min", "3 h", "2 days". */
export function age(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    const fmt = (n, unit) => new Intl.NumberFormat(undefined, { style: "unit", unit, unitDisplay: "short" }).format(n);
    if (s < 120)
        return fmt(s, "second");
    if (s < 7200)
        return fmt(Math.round(s / 60), "minute");
    if (s < 172800)
        return fmt(Math.round(s / 3600), "hour");
    return fmt(Math.round(s / 86400), "day");
}

/* µs a step took: "850 ms", "12.5 s". */
export function took(usec) {
    if (!usec)
        return "–";
    if (usec < 1e6)
        return new Intl.NumberFormat(undefined, { style: "unit", unit: "millisecond", unitDisplay: "short" })
                .format(Math.round(usec / 1000));
    return new Intl.NumberFormat(undefined, { style: "unit", unit: "second", unitDisplay: "short", maximumFractionDigits: 1 })
            .format(usec / 1e6);
}

export function seconds(usec) {
    return oneDecimal.format((usec || 0) / 1e6);
}

export function shortHash(h) {
    return h ? h.substring(0, 12) : "";
}

export function capitalize(s) {
    return s ? s.charAt(0).toUpperCase() + s.slice(1) : s;
}

/* The steps of a VM operation (Vm.Operation) and of an update (Updater.Operation). */
const STEPS = {
    "prepare-checks": "Checking the spec and the env values",
    encrypt: "Encrypting the env values",
    "cross-check": "Checking the VMM's answer",
    "stop-graceful": "Shutting the VM down",
    "stop-hard": "Stopping the VM",
    remove: "Removing the old VM",
    create: "Creating the VM",
    "wait-running": "Waiting for the VM to run",
    start: "Starting the VM",
    update: "Updating the VM in place",
    record: "Recording the result",
    fetch: "Fetching the branch",
    gates: "Checking that nothing is busy",
    checkout: "Checking out the new commit",
    build: "Building",
    restart: "Restarting the services",
    health: "Checking health",
    rollback: "Rolling back",
};

export function stepWords(id) {
    return STEPS[id] || capitalize((id || "").replace(/-/g, " "));
}

const ACTIONS = {
    deploy: "Deploy",
    update: "Update",
    start: "Start",
    stop: "Stop",
    restart: "Restart",
    apply: "Update applied",
    rollback: "Rollback",
};

export function actionWords(id) {
    return ACTIONS[id] || capitalize(id);
}

const TRIGGERS = {
    poll: "The launcher's own check",
    "auto-update": "Automatic update",
    resume: "Finished after a restart",
};

export function triggerWords(t) {
    return TRIGGERS[t] || t;
}

const GATES = {
    "round-lock": "A validation round is running",
    "validation-api": "The Validation API is busy",
    "vm-operation": "A VM operation is running",
};

export function gateWords(g) {
    return GATES[g] || capitalize((g || "").replace(/-/g, " "));
}

/* Plan actions (Vm.Plan). */
const PLAN = {
    none: "Nothing to change",
    create: "Creates the VM",
    recreate: "Replaces the VM (a new VM and app id)",
    "update-in-place": "Updates the VM in place (keeps its app id and disk, restarts it)",
    start: "Starts the VM",
    blocked: "Cannot apply the spec",
    wait: "Waits for the VM's current operation",
    adopt: "Keeps the VM the launcher found",
};

export function planWords(action) {
    return PLAN[action] || capitalize(action);
}

/* An argv list as one line: words separated by spaces, a word with a space,
 * quote or backslash (or an empty one) in double quotes. */
export function argvToLine(argv) {
    return (argv || []).map(w => /^[^\s"'\\]+$/.test(w) ? w : '"' + w.replace(/(["\\])/g, "\\$1") + '"').join(" ");
}

/* The inverse: words separated by whitespace; "..." and '...' group, a
 * backslash escapes the next character (outside single quotes). Returns
 * { argv } or { error }. */
export function lineToArgv(line) {
    const argv = [];
    let word = null;
    let quote = null;
    for (let i = 0; i < line.length; i++) {
        const c = line[i];
        if (quote) {
            if (c === quote)
                quote = null;
            else if (c === "\\" && quote === '"' && i + 1 < line.length)
                word += line[++i];
            else
                word += c;
        } else if (/\s/.test(c)) {
            if (word !== null)
                argv.push(word);
            word = null;
        } else if (c === '"' || c === "'") {
            quote = c;
            word = word || "";
        } else if (c === "\\" && i + 1 < line.length) {
            word = (word || "") + line[++i];
        } else {
            word = (word || "") + c;
        }
    }
    if (quote)
        return { error: "a quote is not closed" };
    if (word !== null)
        argv.push(word);
    return { argv };
}
