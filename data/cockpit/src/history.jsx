/* SPDX-License-Identifier: Apache-2.0
 *
 * What was done, newest first: the VMs' and the Updater's entries (GetHistory
 * once, then HistoryAdded) in one table, a page at a time. Hashes show 12
 * digits; all of it on hover, and a button copies it.
 */
import React, { useState } from "react";

import { Card, CardBody, CardHeader, CardTitle } from "@patternfly/react-core/dist/esm/components/Card/index.js";
import { Content } from "@patternfly/react-core/dist/esm/components/Content/index.js";
import { Label } from "@patternfly/react-core/dist/esm/components/Label/index.js";
import { Pagination } from "@patternfly/react-core/dist/esm/components/Pagination/index.js";
import { Table, Tbody, Td, Th, Thead, Tr } from "@patternfly/react-table/dist/esm/components/Table/index.js";

import { ROOT } from "./bus.js";
import { actionWords, took, triggerWords, when } from "./format.js";
import { Hash } from "./ui.jsx";

export const HistoryCard = ({ history, vms }) => {
    const [page, setPage] = useState(1);
    const [perPage, setPerPage] = useState(10);
    const pages = Math.max(1, Math.ceil(history.length / perPage));
    const shownPage = Math.min(page, pages);
    const rows = history.slice((shownPage - 1) * perPage, shownPage * perPage);
    const of = e => e.kind === "updater" || e.path === ROOT ? "Updater" : (vms[e.path] && vms[e.path].Name) || "VM";

    return (
        <Card id="history-card">
            <CardHeader><CardTitle component="h2">History</CardTitle></CardHeader>
            <CardBody>
                {history.length === 0 && <Content component="p" id="history-empty" className="pl-subtle">Nothing yet.</Content>}
                {history.length > 0 &&
                    <>
                        <Table id="history-table" aria-label="History" variant="compact" gridBreakPoint="grid-lg">
                            <Thead>
                                <Tr><Th>When</Th><Th>Of</Th><Th>Action</Th><Th>Result</Th><Th>Who or what</Th><Th>From</Th>
                                    <Th>To</Th><Th>Took</Th></Tr>
                            </Thead>
                            <Tbody id="history-rows">
                                {rows.map(e =>
                                    <Tr key={[e.timestamp, e.kind, e.action, e.trigger, e.to, e.result, e.path].join("|")}
                                        data-kind={e.kind} data-action={e.action} data-result={e.result}>
                                        <Td dataLabel="When">{when(e.timestamp)}</Td>
                                        <Td dataLabel="Of">{of(e)}</Td>
                                        <Td dataLabel="Action">{actionWords(e.action)}</Td>
                                        <Td dataLabel="Result">
                                            <div>
                                                <Label isCompact color={e.result === "ok" ? "green" : e.result === "failed" ? "red" : "grey"}>
                                                    {e.result}
                                                </Label>
                                            </div>
                                            {e.reason && <div className="pl-subtle pl-break">{e.reason}</div>}
                                        </Td>
                                        <Td dataLabel="Who or what" data-trigger={e.trigger}>{triggerWords(e.trigger)}</Td>
                                        <Td dataLabel="From"><Hash value={e.from} /></Td>
                                        <Td dataLabel="To"><Hash value={e.to} /></Td>
                                        <Td dataLabel="Took">{took(e.duration)}</Td>
                                    </Tr>)}
                            </Tbody>
                        </Table>
                        <Pagination id="history-pagination" itemCount={history.length} perPage={perPage} page={shownPage}
                                    perPageOptions={[10, 20, 50, 100].map(n => ({ title: String(n), value: n }))}
                                    onSetPage={(_ev, p) => setPage(p)}
                                    onPerPageSelect={(_ev, n) => { setPerPage(n); setPage(1) }}
                                    variant="bottom" isCompact />
                    </>}
            </CardBody>
        </Card>
    );
};
