/* SPDX-License-Identifier: Apache-2.0
 *
 * The managed VMs: a list as soon as the launcher exports more than one (as
 * cockpit-machines lists its VMs), and the card of the VM chosen (the only
 * one, or the one clicked in the list) with its actions. Stop, Restart and
 * Update say what they will do (Update from Vm.Plan) and wait for a yes.
 */
import React from "react";

import { Alert } from "@patternfly/react-core/dist/esm/components/Alert/index.js";
import { Button } from "@patternfly/react-core/dist/esm/components/Button/index.js";
import { Card, CardBody, CardFooter, CardHeader, CardTitle } from "@patternfly/react-core/dist/esm/components/Card/index.js";
import { Content } from "@patternfly/react-core/dist/esm/components/Content/index.js";
import { DescriptionList } from "@patternfly/react-core/dist/esm/components/DescriptionList/index.js";
import { EmptyState, EmptyStateBody } from "@patternfly/react-core/dist/esm/components/EmptyState/index.js";
import { Progress } from "@patternfly/react-core/dist/esm/components/Progress/index.js";
import { Table, Tbody, Td, Th, Thead, Tr } from "@patternfly/react-table/dist/esm/components/Table/index.js";

import { callVm } from "./bus.js";
import { capitalize, number, planWords, relative, seconds, stepWords, when } from "./format.js";
import { confirm, run } from "./ops.js";
import { ActionButton, Hash, Row, StateLabel, VmmLabel, unreachable, useNow, whyDisabled } from "./ui.jsx";

const BUSY = ["creating", "starting", "updating", "stopping"];

function resources(d) {
    const mem = d.MemoryMiB % 1024 === 0 ? number(d.MemoryMiB / 1024) + " GiB" : number(d.MemoryMiB) + " MiB";
    return number(d.Vcpu) + " vCPU, " + mem + " memory, " + number(d.DiskGiB) + " GiB disk";
}

/* The last check that reached the VMM, when the launcher reports it
 * (LastSuccessfulCheckTimestamp); else the last attempt. */
export function lastCheck(d) {
    if ("LastSuccessfulCheckTimestamp" in d)
        return { label: "Last successful check", usec: d.LastSuccessfulCheckTimestamp, successful: true };
    return { label: "Last check attempt", usec: d.LastCheckTimestamp, successful: false };
}

/* Why this VM's operations cannot be started now ("" = they can). */
function vmBusy(d, running) {
    if (running)
        return "Wait: " + running + " is running.";
    if (d.Operation)
        return d.Name + " is busy: " + stepWords(d.Operation).toLowerCase() + ".";
    if (BUSY.includes(d.State))
        return d.Name + " is " + d.State + ".";
    return "";
}

/* ---- what an action will do ---- */

export const PlanText = ({ action, changes }) => {
    const data = changes.filter(c => c[0] === "data" || c[0] === "reason");
    const rest = changes.filter(c => c[0] !== "data" && c[0] !== "reason");
    return (
        <div id="confirm-plan" data-plan={action}>
            <Content component="p"><strong>{planWords(action)}</strong></Content>
            {rest.length > 0 &&
                <Table variant="compact" aria-label="Changes" gridBreakPoint="">
                    <Thead><Tr><Th>What</Th><Th>Now</Th><Th>After</Th></Tr></Thead>
                    <Tbody>
                        {rest.map(([field, current, target]) =>
                            <Tr key={field}>
                                <Td>{field}</Td>
                                <Td className="pl-break">{current || "–"}</Td>
                                <Td className="pl-break">{target || "–"}</Td>
                            </Tr>)}
                    </Tbody>
                </Table>}
            {data.map(([field, detail, extra]) =>
                <Content component="p" key={field} className="pl-subtle">
                    {field === "data" ? "From what the launcher last saw: " + detail : capitalize(extra || detail)}
                </Content>)}
        </div>
    );
};

function explainPlan(path, intro) {
    return () => callVm(path, "Plan", []).then(([action, changes]) => ({
        body: <>
            <Content component="p">{intro}</Content>
            <PlanText action={action} changes={changes} />
        </>
    }));
}

function stopWords(name, config) {
    const t = config && config.StopTimeoutUSec ? seconds(config.StopTimeoutUSec) + " s" : "the stop timeout";
    return name + " is shut down gracefully (up to " + t + ", then stopped hard). The validator is offline " +
           "meanwhile.";
}

function doUpdate(d, path) {
    confirm({
        id: "vm-update",
        title: "Update " + d.Name + "?",
        confirmLabel: "Update",
        danger: true,
        explain: explainPlan(path, "The launcher fetches the spec now and applies it if anything differs. " +
                                   "From the spec it fetched last:"),
        option: {
            label: "Replace the VM even if nothing changed (force)",
            description: "A new VM is created from the spec and the current one removed.",
        },
    }).then(({ confirmed, option }) => {
        if (!confirmed)
            return;
        const options = option ? { force: { t: "b", v: true } } : {};
        run("vm-update", (option ? "replace " : "update ") + d.Name, () => callVm(path, "Update", [options]));
    });
}

function doStop(d, path, config) {
    confirm({
        id: "vm-stop",
        title: "Stop " + d.Name + "?",
        confirmLabel: "Stop",
        danger: true,
        explain: () => ({
            body: <Content component="p">{stopWords(d.Name, config)} It stays stopped until you start it: the
                launcher does not start it again by itself.</Content>
        }),
    }).then(({ confirmed }) => confirmed && run("vm-stop", "stop " + d.Name, () => callVm(path, "Stop", [])));
}

function doRestart(d, path, config) {
    confirm({
        id: "vm-restart",
        title: "Restart " + d.Name + "?",
        confirmLabel: "Restart",
        danger: true,
        explain: () => ({
            body: <Content component="p">{stopWords(d.Name, config)} Then it is started again.</Content>
        }),
    }).then(({ confirmed }) => confirmed && run("vm-restart", "restart " + d.Name, () => callVm(path, "Restart", [])));
}

/* ---- the card of one VM ---- */

export const VmCard = ({ path, d, config, perms, running }) => {
    const now = useNow(5000);
    const busy = vmBusy(d, running);
    const may = perms["manage-vm"].allowed ? "" : perms["manage-vm"].why;
    const vmmDown = unreachable(d.VmmStatus);
    const check = lastCheck(d);
    const op = d.Operation || "";

    return (
        <Card id="vm-card" data-path={path}>
            <CardHeader actions={{ actions: <StateLabel id="vm-state" state={d.State} vmmStatus={d.VmmStatus} />,
                                   hasNoOffset: true }}>
                <CardTitle component="h2">Virtual machine <span id="vm-name" className="pl-mono">{d.Name}</span></CardTitle>
            </CardHeader>
            <CardBody>
                {vmmDown &&
                    <Alert isInline variant="warning" id="vm-unreachable" className="pl-card-alert"
                           title={"The VMM does not answer: " + d.Name + " may not be " + (d.State || "what it was") +
                                  " any more."}>
                        {d.StateReason && <p>{d.StateReason}</p>}
                        <p id="vm-unreachable-age">
                            {check.successful
                                ? (check.usec
                                    ? "Last successful check " + relative(check.usec, now) + " (" + when(check.usec) + ")."
                                    : "No check has reached the VMM yet.")
                                : "The launcher does not report when a check last reached the VMM."}
                        </p>
                    </Alert>}
                {!vmmDown && d.StateReason && <p id="vm-reason" className="pl-reason">{d.StateReason}</p>}
                {op &&
                    <Progress id="vm-progress" value={d.Progress || 0} title={stepWords(op)} size="sm"
                              measureLocation="outside" data-operation={op} className="pl-progress" />}
                <DescriptionList isHorizontal isCompact isFluid id="vm-props" className="pl-props">
                    <Row label="Compose hash" id="vm-compose-hash"><Hash value={d.ComposeHash} /></Row>
                    {d.TargetComposeHash && d.TargetComposeHash !== d.ComposeHash &&
                        <Row label="Target compose hash" id="vm-target-hash"><Hash value={d.TargetComposeHash} /></Row>}
                    <Row label="Image" id="vm-image">{d.Image ? d.Image + (d.ImageVersion ? " (" + d.ImageVersion + ")" : "") : ""}</Row>
                    <Row label="Resources" id="vm-resources">{d.Vcpu ? resources(d) : ""}</Row>
                    <Row label="VMM status" id="vm-vmm-status"><VmmLabel status={d.VmmStatus} /></Row>
                    <Row label="VM id" id="vm-id">{d.Id ? <span className="pl-mono pl-break">{d.Id}</span> : ""}</Row>
                    <Row label="App id" id="vm-app-id">{d.AppId ? <span className="pl-mono pl-break">{d.AppId}</span> : ""}</Row>
                    <Row label={check.label} id="vm-last-check">
                        {check.usec ? when(check.usec) + " (" + relative(check.usec, now) + ")" : "never"}
                    </Row>
                    {check.successful &&
                        <Row label="Last check attempt" id="vm-last-attempt">
                            {d.LastCheckTimestamp ? when(d.LastCheckTimestamp) + " (" + relative(d.LastCheckTimestamp, now) + ")" : "never"}
                        </Row>}
                    <Row label="Last update" id="vm-last-update">{when(d.LastUpdateTimestamp)}</Row>
                    <Row label="Updates, restarts" id="vm-counts">{number(d.UpdateCount) + ", " + number(d.RestartCount)}</Row>
                    {d.LastError && <Row label="Last error" id="vm-last-error">{d.LastError}</Row>}
                </DescriptionList>
            </CardBody>
            <CardFooter>
                <div className="pl-actions">
                    <ActionButton id="vm-update" variant="primary" reason={whyDisabled(may, busy)}
                                  onClick={() => doUpdate(d, path)}>Update now</ActionButton>
                    <ActionButton id="vm-start"
                                  reason={whyDisabled(may, busy, d.State === "running" && !vmmDown ? d.Name + " is already running." : "")}
                                  onClick={() => run("vm-start", "start " + d.Name, () => callVm(path, "Start", []))}>
                        Start
                    </ActionButton>
                    <ActionButton id="vm-stop" variant="danger"
                                  reason={whyDisabled(may, busy, d.State === "stopped" ? d.Name + " is already stopped." : "")}
                                  onClick={() => doStop(d, path, config)}>Stop</ActionButton>
                    <ActionButton id="vm-restart" variant="danger" reason={whyDisabled(may, busy)}
                                  onClick={() => doRestart(d, path, config)}>Restart</ActionButton>
                </div>
            </CardFooter>
        </Card>
    );
};

export const NoVm = () => (
    <Card id="vm-card">
        <CardHeader actions={{ actions: <StateLabel id="vm-state" state="none" />, hasNoOffset: true }}>
            <CardTitle component="h2">Virtual machine</CardTitle>
        </CardHeader>
        <CardBody>
            <EmptyState variant="xs" titleText="No VM yet" headingLevel="h3" id="vm-empty">
                <EmptyStateBody>The launcher manages no VM yet.</EmptyStateBody>
            </EmptyState>
        </CardBody>
    </Card>
);

/* ---- the list (more than one VM) ---- */

export const VmList = ({ vms, selected, onSelect }) => {
    const now = useNow(5000);
    const paths = Object.keys(vms).sort((a, b) => (vms[a].Name || "").localeCompare(vms[b].Name || ""));
    return (
        <Card id="vm-list-card">
            <CardHeader><CardTitle component="h2">Virtual machines</CardTitle></CardHeader>
            <Table id="vm-list" aria-label="Virtual machines" variant="compact" gridBreakPoint="grid-md">
                <Thead>
                    <Tr><Th>Name</Th><Th>State</Th><Th>VMM</Th><Th>Deployed</Th><Th>Checked</Th><Th>Operation</Th></Tr>
                </Thead>
                <Tbody>
                    {paths.map(path => {
                        const d = vms[path];
                        const check = lastCheck(d);
                        return (
                            <Tr key={path} data-path={path} data-name={d.Name} isRowSelected={path === selected}
                                className="pl-vm-row">
                                <Td dataLabel="Name">
                                    <Button variant="link" isInline onClick={() => onSelect(path)}
                                            className="pl-vm-select">{d.Name}</Button>
                                </Td>
                                <Td dataLabel="State"><StateLabel state={d.State} vmmStatus={d.VmmStatus} /></Td>
                                <Td dataLabel="VMM"><VmmLabel status={d.VmmStatus} /></Td>
                                <Td dataLabel="Deployed"><Hash value={d.ComposeHash} /></Td>
                                <Td dataLabel="Checked">{check.usec ? relative(check.usec, now) : "never"}</Td>
                                <Td dataLabel="Operation">{d.Operation ? stepWords(d.Operation) : "–"}</Td>
                            </Tr>
                        );
                    })}
                </Tbody>
            </Table>
        </Card>
    );
};
