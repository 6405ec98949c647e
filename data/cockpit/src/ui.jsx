/* SPDX-License-Identifier: Apache-2.0
 *
 * Small pieces the cards share: a button that says why it is disabled, the
 * status labels, description-list rows, shortened hashes.
 */
import React, { useState } from "react";

import { Button } from "@patternfly/react-core/dist/esm/components/Button/index.js";
import {
    DescriptionListDescription, DescriptionListGroup, DescriptionListTerm
} from "@patternfly/react-core/dist/esm/components/DescriptionList/index.js";
import { Label } from "@patternfly/react-core/dist/esm/components/Label/index.js";
import { Tooltip } from "@patternfly/react-core/dist/esm/components/Tooltip/index.js";
import CheckIcon from "@patternfly/react-icons/dist/esm/icons/check-icon.js";
import CopyIcon from "@patternfly/react-icons/dist/esm/icons/copy-icon.js";
import ExclamationTriangleIcon from "@patternfly/react-icons/dist/esm/icons/exclamation-triangle-icon.js";
import InProgressIcon from "@patternfly/react-icons/dist/esm/icons/in-progress-icon.js";

import { shortHash } from "./format.js";

/* The first reason that applies, or "" (enabled). */
export function whyDisabled(...reasons) {
    return reasons.find(r => r) || "";
}

/* A button disabled with a reason keeps focus and hover (aria-disabled), so
 * its tooltip says why; data-reason holds the same words. */
export const ActionButton = ({ id, reason, variant, onClick, children, isInline, size }) => {
    const button = (
        <Button id={id} variant={variant || "secondary"} isAriaDisabled={!!reason} data-reason={reason || undefined}
                onClick={reason ? undefined : onClick} isInline={isInline} size={size}>
            {children}
        </Button>
    );
    return reason ? <Tooltip content={reason}>{button}</Tooltip> : button;
};

const BUSY_STATES = ["creating", "starting", "updating", "stopping", "checking", "applying", "verifying",
    "rolling-back"];

export function unreachable(vmmStatus) {
    return vmmStatus === "unknown" || vmmStatus === "unreachable";
}

/* A VM's or the Updater's state as a PatternFly label. A VM whose VMM does
 * not answer is never green: its state is only what was last known. */
export const StateLabel = ({ id, state, vmmStatus }) => {
    const s = state || "unknown";
    let color = "grey";
    let icon;
    let text = s;
    if (unreachable(vmmStatus)) {
        color = "orange";
        icon = <ExclamationTriangleIcon />;
        text = s + " (last known)";
    } else if (s === "running" || s === "idle") {
        color = "green";
    } else if (s === "failed") {
        color = "red";
    } else if (s === "blocked" || s === "deferred") {
        color = "orange";
    } else if (BUSY_STATES.includes(s)) {
        color = "blue";
        icon = <InProgressIcon />;
    }
    return <Label id={id} color={color} icon={icon} data-state={s}>{text}</Label>;
};

export const VmmLabel = ({ id, status }) => {
    if (unreachable(status))
        return <Label id={id} color="orange" icon={<ExclamationTriangleIcon />} data-state={status}>unreachable</Label>;
    if (!status)
        return <span id={id}>–</span>;
    return <Label id={id} color={status === "running" ? "green" : "grey"} data-state={status}>{status}</Label>;
};

export const Row = ({ label, id, children }) => (
    <DescriptionListGroup>
        <DescriptionListTerm>{label}</DescriptionListTerm>
        <DescriptionListDescription id={id}>
            {children === "" || children === undefined || children === null ? "–" : children}
        </DescriptionListDescription>
    </DescriptionListGroup>
);

function copyText(text) {
    if (navigator.clipboard && window.isSecureContext)
        return navigator.clipboard.writeText(text);
    /* http:// (no secure context): a hidden field and the copy command */
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "pl-offscreen";
    document.body.appendChild(area);
    area.select();
    const ok = document.execCommand("copy");
    area.remove();
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
}

/* A commit or compose hash: 12 digits shown, all of it on hover, a button
 * copies all of it. */
export const Hash = ({ value, id, full }) => {
    const [copied, setCopied] = useState(false);
    if (!value)
        return <span id={id}>–</span>;
    return (
        <span className="pl-hash" id={id} data-full={value}>
            <Tooltip content={<span className="pl-break">{value}</span>}>
                <span className="pl-mono" tabIndex={0}>{full ? value : shortHash(value)}</span>
            </Tooltip>
            <Button variant="plain" size="sm" aria-label={"Copy " + value} className="pl-copy"
                    icon={copied ? <CheckIcon /> : <CopyIcon />}
                    onClick={() => copyText(value).then(() => {
                        setCopied(true);
                        window.setTimeout(() => setCopied(false), 1500);
                    }, () => {})} />
        </span>
    );
};

/* Now, in ms, moving every few seconds: ages on the page count live. */
export function useNow(intervalMs) {
    const [now, setNow] = useState(Date.now());
    React.useEffect(() => {
        const t = window.setInterval(() => setNow(Date.now()), intervalMs || 5000);
        return () => window.clearInterval(t);
    }, [intervalMs]);
    return now;
}
