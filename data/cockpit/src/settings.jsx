/* SPDX-License-Identifier: Apache-2.0
 *
 * A form of launcher settings (Config.SetSettings keys), used for the
 * launcher's own settings and for the Updater's. Only the fields the user
 * changed are sent, all in one call (the daemon applies all or none). The
 * daemon validates: its InvalidArgs message ("Setting 'X' ...") is shown at
 * the field it names, and what the user typed stays there to be corrected.
 */
import React, { useState } from "react";

import { Form, FormGroup, FormHelperText } from "@patternfly/react-core/dist/esm/components/Form/index.js";
import { FormSelect, FormSelectOption } from "@patternfly/react-core/dist/esm/components/FormSelect/index.js";
import { HelperText, HelperTextItem } from "@patternfly/react-core/dist/esm/components/HelperText/index.js";
import { TextArea } from "@patternfly/react-core/dist/esm/components/TextArea/index.js";
import { TextInput } from "@patternfly/react-core/dist/esm/components/TextInput/index.js";

import { callConfig } from "./bus.js";
import { argvToLine, lineToArgv } from "./format.js";
import { run, showAlert } from "./ops.js";
import { ActionButton } from "./ui.jsx";

/* Field kinds: s (text), sec (a `t` in µs, edited in seconds), select
 * (options), argv (`as`: one line of words), lines (`as`: one item a line),
 * argvv (`aas`: one command a line). */
function toText(kind, v) {
    if (v === undefined || v === null)
        return "";
    switch (kind) {
    case "sec": return String(v / 1e6);
    case "argv": return argvToLine(v);
    case "lines": return v.join("\n");
    case "argvv": return v.map(argvToLine).join("\n");
    default: return String(v);
    }
}

/* { variant } or { error } */
function fromText(kind, text) {
    switch (kind) {
    case "sec": {
        const n = Number(text.trim());
        if (text.trim() === "" || !isFinite(n) || n < 0)
            return { error: "Enter a number of seconds." };
        return { variant: { t: "t", v: Math.round(n * 1e6) } };
    }
    case "argv": {
        const r = lineToArgv(text);
        return r.error ? { error: "Cannot read the command: " + r.error + "." } : { variant: { t: "as", v: r.argv } };
    }
    case "lines":
        return { variant: { t: "as", v: text.split("\n").map(l => l.trim()).filter(l => l) } };
    case "argvv": {
        const cmds = [];
        const lines = text.split("\n");
        for (let i = 0; i < lines.length; i++) {
            const r = lineToArgv(lines[i]);
            if (r.error)
                return { error: "Line " + (i + 1) + ": " + r.error + "." };
            if (r.argv.length)
                cmds.push(r.argv);
        }
        return { variant: { t: "aas", v: cmds } };
    }
    default:
        return { variant: { t: "s", v: text } };
    }
}

/* The setting an InvalidArgs message names, if it is one of these fields. */
function fieldOf(message, fields) {
    const m = /Setting '([A-Za-z]+)'|Unknown setting ([A-Za-z]+)/.exec(message || "");
    const key = m && (m[1] || m[2]);
    return fields.find(f => f.key === key) ? key : null;
}

/* fields: [{ key, label, kind, prop, options, help }], prop: the property
 * holding the value in force (values[prop]). beforeSave(keys) may ask the
 * user first (resolves to whether to go on). */
export const SettingsForm = ({ id, fields, values, reason, saveId, saveLabel, what, beforeSave }) => {
    const [edits, setEdits] = useState({});
    const [errors, setErrors] = useState({});

    const current = f => toText(f.kind, values[f.prop || f.key]);
    const shown = f => f.key in edits ? edits[f.key] : current(f);

    const edit = (key, text) => {
        setEdits(e => ({ ...e, [key]: text }));
        setErrors(e => {
            const rest = { ...e };
            delete rest[key];
            return rest;
        });
    };

    const save = ev => {
        if (ev)
            ev.preventDefault();
        const settings = {};
        const problems = {};
        for (const f of fields) {
            if (!(f.key in edits) || edits[f.key] === current(f))
                continue;
            const r = fromText(f.kind, edits[f.key]);
            if (r.error)
                problems[f.key] = r.error;
            else
                settings[f.key] = r.variant;
        }
        setErrors(problems);
        if (Object.keys(problems).length)
            return;
        const keys = Object.keys(settings);
        if (keys.length === 0) {
            showAlert(id, "info", "No setting was changed.");
            return;
        }
        Promise.resolve(beforeSave ? beforeSave(keys, settings) : true).then(go => {
            if (!go)
                return;
            run(id, what, () => callConfig("SetSettings", [settings]),
                () => "Settings saved: " + keys.join(", ") + ".",
                err => {
                    const key = err && err.name === "org.freedesktop.DBus.Error.InvalidArgs" && fieldOf(err.message, fields);
                    if (!key)
                        return false;
                    setErrors({ [key]: err.message });
                    return true;
                })
                    .then(ok => {
                        if (ok)
                            setEdits({});
                    });
        });
    };

    return (
        <Form id={id + "-form"} onSubmit={save} isHorizontal className="pl-settings">
            {fields.map(f => {
                const fid = "set-" + f.key;
                const err = errors[f.key];
                const common = {
                    id: fid,
                    "data-setting": f.key,
                    value: shown(f),
                    validated: err ? "error" : "default",
                    isDisabled: !!reason,
                    onChange: (_ev, v) => edit(f.key, v),
                };
                let control;
                if (f.kind === "select")
                    control = (
                        <FormSelect {...common} aria-label={f.label}>
                            {f.options.map(([v, label]) => <FormSelectOption key={v} value={v} label={label} />)}
                        </FormSelect>);
                else if (f.kind === "lines" || f.kind === "argvv")
                    control = <TextArea {...common} autoResize resizeOrientation="vertical" spellCheck={false} />;
                else
                    control = <TextInput {...common} type={f.kind === "sec" ? "number" : "text"} spellCheck={false}
                                         min={f.kind === "sec" ? 0 : undefined} step="any" />;
                return (
                    <FormGroup key={f.key} label={f.label} fieldId={fid}>
                        {control}
                        {(err || f.help) &&
                            <FormHelperText>
                                <HelperText>
                                    <HelperTextItem id={fid + "-helper"} variant={err ? "error" : "default"}>
                                        {err || f.help}
                                    </HelperTextItem>
                                </HelperText>
                            </FormHelperText>}
                    </FormGroup>
                );
            })}
            <div className="pl-actions pl-form-actions">
                <ActionButton id={saveId} variant="primary" reason={reason} onClick={save}>
                    {saveLabel || "Save settings"}
                </ActionButton>
            </div>
        </Form>
    );
};
