/* SPDX-License-Identifier: Apache-2.0
 *
 * The page: the launcher's state from the bus (bus.js), what the user may do
 * (permissions.js), the alerts and the confirmation dialog (ops.js).
 */
import React, { useEffect, useState, useSyncExternalStore } from "react";

import { Alert, AlertActionCloseButton, AlertGroup } from "@patternfly/react-core/dist/esm/components/Alert/index.js";
import { Content } from "@patternfly/react-core/dist/esm/components/Content/index.js";
import { Title } from "@patternfly/react-core/dist/esm/components/Title/index.js";
import { Gallery } from "@patternfly/react-core/dist/esm/layouts/Gallery/index.js";
import { Stack, StackItem } from "@patternfly/react-core/dist/esm/layouts/Stack/index.js";

import * as bus from "./bus.js";
import { ConfigCard } from "./config.jsx";
import { ConfirmDialog } from "./dialog.jsx";
import { HistoryCard } from "./history.jsx";
import { LogsCard } from "./logs.jsx";
import { dismissAlert, useOps } from "./ops.js";
import { usePermissions } from "./permissions.js";
import { UpdaterCard } from "./updater.jsx";
import { NoVm, VmCard, VmList } from "./vm.jsx";

const VM_ACTIONS = ["vm-update", "vm-start", "vm-stop", "vm-restart"];

/* The one notice a user without any right gets, instead of a page of
 * buttons that all fail. */
const ReadOnly = ({ perms }) => {
    const names = ["configure", "manage-vm", "read-logs", "check-updates", "apply-updates"];
    if (perms.admin !== false || names.some(n => perms[n].allowed) ||
        names.some(n => perms[n].why.startsWith("Checking")))
        return null;
    return (
        <Alert isInline variant="info" id="read-only" title="Read-only: you can see the launcher but not change it."
               className="pl-card-alert">
            {perms["manage-vm"].why}
        </Alert>
    );
};

export const App = () => {
    const s = useSyncExternalStore(bus.subscribe, bus.snapshot);
    const ops = useOps();
    const perms = usePermissions(s.uniqueName);
    const [selected, setSelected] = useState(null);

    useEffect(() => { bus.start() }, []);

    const paths = Object.keys(s.vms).sort((a, b) => (s.vms[a].Name || "").localeCompare(s.vms[b].Name || ""));
    const path = selected && s.vms[selected] ? selected : paths[0];
    const vm = path ? s.vms[path] : null;
    const vmRunning = VM_ACTIONS.map(k => ops.running[k]).find(x => x) || "";

    return (
        <main id="page" data-ready={s.ready ? "true" : "false"} className="pl-page">
            <header className="pl-page-header">
                <Title headingLevel="h1">Platform Launcher</Title>
                <Content component="p" id="daemon-status" className="pl-subtle">{s.status}</Content>
            </header>
            <div className="pl-body">
                <AlertGroup id="alerts" aria-live="polite" className="pl-alerts">
                    {ops.alerts.map(a =>
                        <Alert key={a.key} data-action={a.key} variant={a.variant} isInline title={a.text}
                               actionClose={<AlertActionCloseButton onClose={() => dismissAlert(a.key)} />} />)}
                </AlertGroup>
                <ReadOnly perms={perms} />
                <Stack hasGutter>
                    {paths.length > 1 &&
                        <StackItem><VmList vms={s.vms} selected={path} onSelect={setSelected} /></StackItem>}
                    <StackItem>
                        <Gallery hasGutter minWidths={{ default: "100%", xl: "30rem" }} className="pl-cards">
                            {vm
                                ? <VmCard key={path} path={path} d={vm} config={s.config} perms={perms} running={vmRunning} />
                                : <NoVm />}
                            {s.updater && <UpdaterCard d={s.updater} perms={perms} running={ops.running} />}
                        </Gallery>
                    </StackItem>
                    {s.config &&
                        <StackItem><ConfigCard config={s.config} vms={s.vms} perms={perms} running={ops.running} /></StackItem>}
                    <StackItem><HistoryCard history={s.history} vms={s.vms} /></StackItem>
                    {vm && <StackItem><LogsCard key={path} path={path} d={vm} perms={perms} running={ops.running} /></StackItem>}
                </Stack>
            </div>
            {ops.dialog && <ConfirmDialog dialog={ops.dialog} />}
        </main>
    );
};
