/* SPDX-License-Identifier: Apache-2.0
 *
 * The chosen VM's log (Vm.GetLogs, the last lines of a channel), as text.
 */
import React, { useState } from "react";

import { Card, CardBody, CardHeader, CardTitle } from "@patternfly/react-core/dist/esm/components/Card/index.js";
import { CodeBlock, CodeBlockCode } from "@patternfly/react-core/dist/esm/components/CodeBlock/index.js";
import { FormSelect, FormSelectOption } from "@patternfly/react-core/dist/esm/components/FormSelect/index.js";

import { callVm } from "./bus.js";
import { run } from "./ops.js";
import { ActionButton, whyDisabled } from "./ui.jsx";

const LOG_LINES = 200;

export const LogsCard = ({ path, d, perms, running }) => {
    const [channel, setChannel] = useState("serial");
    const [text, setText] = useState(null);
    const may = perms["read-logs"].allowed ? "" : perms["read-logs"].why;

    const show = () => run("logs", "read the logs of " + d.Name,
                           () => callVm(path, "GetLogs", [channel, LOG_LINES]).then(([t]) => setText(t || "(empty)")),
                           () => "Logs of " + d.Name + " (" + channel + ") shown.");

    return (
        <Card id="logs-card">
            <CardHeader><CardTitle component="h2">Logs of {d.Name}</CardTitle></CardHeader>
            <CardBody>
                <div className="pl-actions">
                    
                        <FormSelect id="logs-channel" aria-label="Channel" value={channel}
                                    onChange={(_ev, v) => setChannel(v)} className="pl-channel">
                            {["serial", "stdout", "stderr"].map(c => <FormSelectOption key={c} value={c} label={c} />)}
                        </FormSelect>
                    
                    
                        <ActionButton id="logs-show" reason={whyDisabled(may, running.logs ? "Reading…" : "")}
                                      onClick={show}>Show logs</ActionButton>
                    
                </div>
                {text !== null &&
                    <CodeBlock id="logs-block" className="pl-logs"><CodeBlockCode id="logs-text">{text}</CodeBlockCode></CodeBlock>}
            </CardBody>
        </Card>
    );
};
