/* SPDX-License-Identifier: Apache-2.0
 *
 * The launcher's configuration: its settings and the env values (names only:
 * values are secrets). Setting or removing a key that a VM receives replaces
 * that VM, and so may a setting that changes where its spec or its VMM is:
 * the page says so and waits for a yes first. A VM says which keys it
 * receives in its AllowedEnv property; without that property every key is
 * taken to reach every VM (always asked).
 *
 * An env value is read from its password field, the field is cleared at
 * once, and the value lives only in this closure until the SetEnv call (or
 * the user cancels): never in the DOM, never in React state.
 */
import React, { useRef } from "react";

import { Alert } from "@patternfly/react-core/dist/esm/components/Alert/index.js";
import { Card, CardBody, CardHeader, CardTitle } from "@patternfly/react-core/dist/esm/components/Card/index.js";
import { Content } from "@patternfly/react-core/dist/esm/components/Content/index.js";
import { Form, FormGroup } from "@patternfly/react-core/dist/esm/components/Form/index.js";
import { Label } from "@patternfly/react-core/dist/esm/components/Label/index.js";
import { List, ListItem } from "@patternfly/react-core/dist/esm/components/List/index.js";
import { TextInput } from "@patternfly/react-core/dist/esm/components/TextInput/index.js";
import { Title } from "@patternfly/react-core/dist/esm/components/Title/index.js";
import { Table, Tbody, Td, Th, Thead, Tr } from "@patternfly/react-table/dist/esm/components/Table/index.js";

import { callConfig, callVm } from "./bus.js";
import { confirm, run } from "./ops.js";
import { SettingsForm } from "./settings.jsx";
import { ActionButton, whyDisabled } from "./ui.jsx";
import { PlanText } from "./vm.jsx";

const GUEST_VMM_URL_KEY = "DSTACK_VMM_URL";

const FIELDS = [
    { key: "ApiUrl", label: "Platform API URL", kind: "s" },
    { key: "VmmUrl", label: "VMM URL", kind: "s" },
    { key: "GuestVmmUrl", label: "VMM URL seen by the VM", kind: "s", help: "Given to the VM as " + GUEST_VMM_URL_KEY + "." },
    { key: "PollIntervalUSec", label: "Poll interval (seconds)", kind: "sec" },
    { key: "StopTimeoutUSec", label: "Stop timeout (seconds)", kind: "sec" },
    {
        key: "UpdateStrategy", label: "Update strategy", kind: "select",
        options: [["recreate", "recreate (new VM, new app id)"], ["in-place", "in-place (keep app id and disk)"]]
    },
    {
        key: "AdoptPolicy", label: "A VM the launcher did not deploy", kind: "select",
        options: [["keep", "keep it as it is"], ["redeploy", "redeploy it with the local env"]]
    },
    { key: "MetricsPath", label: "Metrics file", kind: "s", help: "For node_exporter's textfile collector; empty: none." },
];

/* The VMs that receive key: [{ path, name, known }]; known false when the
 * VM does not say (no AllowedEnv): then it is taken to receive every key. */
export function receivers(vms, key) {
    const out = [];
    for (const path of Object.keys(vms).sort()) {
        const d = vms[path];
        if (!("AllowedEnv" in d))
            out.push({ path, name: d.Name, known: false });
        else if ((d.AllowedEnv || []).includes(key))
            out.push({ path, name: d.Name, known: true });
    }
    return out;
}

function strategyWords(config) {
    return config && config.UpdateStrategy === "in-place"
        ? "updated in place (same app id and disk) and restarted"
        : "replaced by a new VM (a new app id)";
}

/* What a change of key does, for the confirmation dialog. */
function explainEnv(key, vms, config, verb) {
    const who = receivers(vms, key);
    return () => Promise.all(who.map(w => callVm(w.path, "Plan", []).then(p => p, () => null)))
            .then(plans => ({
                body: <>
                    <Content component="p">
                        {verb === "Set" ? "Setting" : "Removing"} {key} changes what the VM receives: {who.length === 1 ? "the VM is " : "each of these VMs is "}
                        {strategyWords(config)}. The validator is offline meanwhile.
                    </Content>
                    <List id="confirm-vms">
                        {who.map((w, i) =>
                            <ListItem key={w.path}>
                                <strong>{w.name}</strong>{" "}
                                {w.known ? "receives " + key + "." : "does not say which keys it receives: taken to receive " + key + "."}
                                {plans[i] && plans[i][0] !== "none" &&
                                    <div className="pl-subtle">Already planned before this change:
                                        <PlanText action={plans[i][0]} changes={plans[i][1]} /></div>}
                            </ListItem>)}
                    </List>
                </>
            }));
}

/* Settings that redeploy: asked first, with what they do. */
function redeploying(keys, settings, vms, config) {
    const out = [];
    const hasVms = Object.keys(vms).length > 0;
    if (!hasVms)
        return out;
    if (keys.includes("ApiUrl"))
        out.push(["ApiUrl", "The VM's spec comes from the new URL from the next check on: when it differs, the VM is " +
                            strategyWords(config) + "."]);
    if (keys.includes("VmmUrl"))
        out.push(["VmmUrl", "The launcher manages the VMs at the new VMM from the next check on: a VM it does not " +
                            "find there is created there."]);
    if (keys.includes("GuestVmmUrl") && !(config.EnvKeys || []).includes(GUEST_VMM_URL_KEY)) {
        const who = receivers(vms, GUEST_VMM_URL_KEY);
        if (who.length)
            out.push(["GuestVmmUrl", who.map(w => w.name).join(", ") + " receive" + (who.length === 1 ? "s " : " ") +
                                     GUEST_VMM_URL_KEY + (who.some(w => !w.known) ? " (taken to: the VM does not say)" : "") +
                                     ": " + (who.length === 1 ? "it is " : "each is ") + strategyWords(config) + "."]);
    }
    if (keys.includes("AdoptPolicy") && settings.AdoptPolicy.v === "redeploy")
        out.push(["AdoptPolicy", "A VM the launcher found running but did not deploy is replaced at the next check, " +
                                 "with the local env."]);
    return out;
}

function confirmSettings(keys, settings, vms, config) {
    const effects = redeploying(keys, settings, vms, config);
    if (!effects.length)
        return true;
    return confirm({
        id: "settings",
        title: "Change settings that redeploy?",
        confirmLabel: "Save settings",
        danger: true,
        explain: () => ({
            body: <List id="confirm-settings">
                {effects.map(([k, text]) => <ListItem key={k}><strong>{k}</strong>: {text}</ListItem>)}
            </List>
        }),
    }).then(({ confirmed }) => confirmed);
}

/* Asks first when a VM receives key; resolves to whether to go on. */
function confirmEnv(id, key, vms, config, verb) {
    if (!receivers(vms, key).length)
        return Promise.resolve(true);
    return confirm({
        id,
        title: verb + " " + key + "?",
        confirmLabel: verb,
        danger: true,
        explain: explainEnv(key, vms, config, verb),
    }).then(({ confirmed }) => confirmed);
}

const EnvForm = ({ reason, vms, config }) => {
    const keyRef = useRef(null);
    const valueRef = useRef(null);

    const submit = ev => {
        ev.preventDefault();
        const key = keyRef.current.value.trim();
        let value = valueRef.current.value;
        valueRef.current.value = "";  /* never left in the DOM */
        if (!key)
            return;
        confirmEnv("env-set", key, vms, config, "Set").then(go => {
            if (!go) {
                value = null;
                return;
            }
            run("env-set", "set env value " + key, () => {
                const call = callConfig("SetEnv", [key, value]);
                value = null;
                return call;
            }, () => "Env value " + key + " set.").then(ok => {
                if (ok && keyRef.current)
                    keyRef.current.value = "";
            });
        });
    };

    return (
        <Form id="env-form" onSubmit={submit} autoComplete="off" className="pl-env-form">
            <FormGroup label="Key" fieldId="env-key">
                <TextInput id="env-key" ref={keyRef} isDisabled={!!reason} spellCheck={false} autoComplete="off"
                           pattern="[A-Za-z_][A-Za-z0-9_]*" />
            </FormGroup>
            <FormGroup label="Value" fieldId="env-value">
                <TextInput id="env-value" ref={valueRef} type="password" isDisabled={!!reason} autoComplete="new-password" />
            </FormGroup>
            <div className="pl-actions">
                <ActionButton id="env-set" variant="primary" reason={reason} onClick={submit}>Set value</ActionButton>
            </div>
        </Form>
    );
};

export const ConfigCard = ({ config, vms, perms, running }) => {
    const may = perms.configure.allowed ? "" : perms.configure.why;
    const required = config.RequiredEnv || [];
    const missing = config.MissingEnv || [];
    const keys = (config.EnvKeys || []).slice().sort();
    const removeBusy = running["env-remove"] ? "Wait: " + running["env-remove"] + " is running." : "";

    const remove = key => confirmEnv("env-remove", key, vms, config, "Remove").then(go => go &&
        run("env-remove", "remove env value " + key, () => callConfig("RemoveEnv", [key]),
            () => "Env value " + key + " removed."));

    return (
        <Card id="config-card">
            <CardHeader>
                <CardTitle component="h2">Configuration</CardTitle>
            </CardHeader>
            <CardBody>
                <Content component="p" className="pl-subtle pl-card-alert">
                    Kept in <span className="pl-mono pl-break" id="config-path">{config.ConfigPath}</span>
                </Content>
                {config.ConfigError &&
                    <Alert isInline variant="danger" id="config-error" className="pl-card-alert"
                           title={"The config file has a problem: " + config.ConfigError} />}
                <SettingsForm id="settings" what="change the settings" saveId="settings-save" fields={FIELDS}
                              values={config} reason={whyDisabled(may, running.settings ? "Saving…" : "")}
                              beforeSave={(k, s) => confirmSettings(k, s, vms, config)} />

                <Title headingLevel="h3" className="pl-subtitle">Environment</Title>
                <Content component="p" className="pl-subtle">Values are secrets: the page shows their names only.</Content>
                {missing.length > 0 &&
                    <Alert isInline variant="warning" id="env-missing" className="pl-card-alert"
                           title={"Missing env values (no VM is created until set): " + missing.join(", ")} />}
                {keys.length === 0 && <Content component="p" id="env-none">No env value is set.</Content>}
                {keys.length > 0 &&
                <Table id="env-table" aria-label="Env keys" variant="compact" gridBreakPoint="grid-md">
                    <Thead><Tr><Th>Key</Th><Th>Received by</Th><Th screenReaderText="Actions" /></Tr></Thead>
                    <Tbody id="env-keys">
                        {keys.map(key => {
                            const who = receivers(vms, key);
                            return (
                                <Tr key={key} data-key={key}>
                                    <Td dataLabel="Key" className="pl-mono pl-break">{key}{required.includes(key) &&
                                        <Label isCompact color="blue" className="pl-required">required</Label>}</Td>
                                    <Td dataLabel="Received by">{who.length ? who.map(w => w.name + (w.known ? "" : " (assumed)")).join(", ") : "no VM"}</Td>
                                    <Td isActionCell>
                                        <ActionButton id={"env-remove-" + key} variant="link" isInline
                                                      reason={whyDisabled(may, removeBusy)} onClick={() => remove(key)}>
                                            Remove
                                        </ActionButton>
                                    </Td>
                                </Tr>
                            );
                        })}
                    </Tbody>
                </Table>}
                <EnvForm reason={whyDisabled(may, running["env-set"] ? "Wait: " + running["env-set"] + " is running." : "")}
                         vms={vms} config={config} />
            </CardBody>
        </Card>
    );
};
