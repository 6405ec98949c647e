/* SPDX-License-Identifier: Apache-2.0
 *
 * The Updater (org.platform.Launcher1.Updater): its state, the commits, the
 * actions, and its settings (Config.SetSettings Updater* keys, shown from the
 * Updater's properties of the same names without the prefix). Apply says
 * what it would do from a dry run first, Rollback what it returns to;
 * turning automatic updates on says that updates then apply by themselves.
 */
import React from "react";

import { Alert } from "@patternfly/react-core/dist/esm/components/Alert/index.js";
import { Card, CardBody, CardFooter, CardHeader, CardTitle } from "@patternfly/react-core/dist/esm/components/Card/index.js";
import { Content } from "@patternfly/react-core/dist/esm/components/Content/index.js";
import { DescriptionList } from "@patternfly/react-core/dist/esm/components/DescriptionList/index.js";
import { ExpandableSection } from "@patternfly/react-core/dist/esm/components/ExpandableSection/index.js";
import { List, ListItem } from "@patternfly/react-core/dist/esm/components/List/index.js";
import { Progress } from "@patternfly/react-core/dist/esm/components/Progress/index.js";
import { Switch } from "@patternfly/react-core/dist/esm/components/Switch/index.js";
import { Tooltip } from "@patternfly/react-core/dist/esm/components/Tooltip/index.js";

import { callUpdater } from "./bus.js";
import { age, argvToLine, gateWords, relative, shortHash, stepWords, when } from "./format.js";
import { confirm, run } from "./ops.js";
import { SettingsForm } from "./settings.jsx";
import { ActionButton, Hash, Row, StateLabel, useNow, whyDisabled } from "./ui.jsx";

const FIELDS = [
    { key: "UpdaterRepository", prop: "Repository", label: "Repository", kind: "s", help: "Absolute path of the git working tree; empty: the updater is off." },
    { key: "UpdaterRemote", prop: "Remote", label: "Remote", kind: "s" },
    { key: "UpdaterBranch", prop: "Branch", label: "Branch", kind: "s" },
    { key: "UpdaterIntervalUSec", prop: "IntervalUSec", label: "Check interval (seconds)", kind: "sec" },
    { key: "UpdaterRoundLockFile", prop: "RoundLockFile", label: "Round lock file", kind: "s", help: "While it exists, no update starts; empty: not checked." },
    { key: "UpdaterRoundLockMaxAgeUSec", prop: "RoundLockMaxAgeUSec", label: "Round lock stale after (seconds)", kind: "sec" },
    { key: "UpdaterValidationApiUrl", prop: "ValidationApiUrl", label: "Validation API URL", kind: "s", help: "While it lists active jobs, no update starts; empty: not asked." },
    {
        key: "UpdaterApiUnreachable", prop: "ApiUnreachable", label: "Validation API unreachable means", kind: "select",
        options: [["busy", "busy (wait)"], ["idle", "idle (update)"]]
    },
    { key: "UpdaterBuildCommands", prop: "BuildCommands", label: "Build commands", kind: "argvv", help: "One command a line, run in the repository (no shell; quote words with spaces)." },
    { key: "UpdaterRestartUnits", prop: "RestartUnits", label: "systemd units to restart", kind: "lines", help: "One unit a line, restarted in this order." },
    { key: "UpdaterRestartCommands", prop: "RestartCommands", label: "Restart commands", kind: "argvv", help: "One command a line, after the units." },
    { key: "UpdaterHealthCommand", prop: "HealthCommand", label: "Health command", kind: "argv", help: "Exit 0 = healthy; retried until the health timeout." },
    { key: "UpdaterHealthUrl", prop: "HealthUrl", label: "Health URL", kind: "s", help: "HTTP 2xx = healthy." },
    { key: "UpdaterHealthTimeoutUSec", prop: "HealthTimeoutUSec", label: "Health timeout (seconds)", kind: "sec" },
    { key: "UpdaterCommandTimeoutUSec", prop: "CommandTimeoutUSec", label: "Command timeout (seconds)", kind: "sec" },
    { key: "UpdaterAllowedSignersFile", prop: "AllowedSignersFile", label: "Allowed signers file", kind: "s", help: "When set, a commit must carry an SSH signature by one of them." },
];

/* What an update runs, in words, from the settings in force. */
function transactionWords(d) {
    const steps = ["checks out the new commit"];
    if ((d.BuildCommands || []).length)
        steps.push("runs " + d.BuildCommands.map(argvToLine).join("; "));
    if ((d.RestartUnits || []).length)
        steps.push("restarts " + d.RestartUnits.join(", "));
    if ((d.RestartCommands || []).length)
        steps.push("runs " + d.RestartCommands.map(argvToLine).join("; "));
    if ((d.HealthCommand || []).length || d.HealthUrl)
        steps.push("checks health (" + [argvToLine(d.HealthCommand), d.HealthUrl].filter(x => x).join(", ") + ")");
    return steps.join(", then ") + "; an unhealthy result is rolled back automatically.";
}

function doApply(d) {
    confirm({
        id: "updater-apply",
        title: "Apply the update to " + d.Repository + "?",
        confirmLabel: "Apply",
        danger: true,
        explain: () => callUpdater("Apply", [{ "dry-run": { t: "b", v: true } }])
                .then(([from, to]) => {
                    if (from === to)
                        return { body: <Content component="p" id="confirm-dry-run">Already at {shortHash(to)}: nothing to apply.</Content>, blocked: "Nothing to apply." };
                    return {
                        body: <>
                            <Content component="p" id="confirm-dry-run">
                                Moves {d.Repository} from <Hash value={from} /> to <Hash value={to} />: it {transactionWords(d)}
                            </Content>
                            {to === d.QuarantinedCommit &&
                                <Alert isInline variant="warning" title={shortHash(to) + " is quarantined (it failed before): it is applied only with force."} />}
                        </>
                    };
                }, err => {
                    if (err && err.name === "org.platform.Launcher1.Error.Deferred")
                        return { body: <Alert isInline variant="warning" id="confirm-dry-run" title={"Not now: " + err.message} /> };
                    throw err;
                }),
        option: {
            label: "Skip the busy gates and the quarantine (force)",
            description: "Applies even while a validation round runs or the Validation API is busy.",
        },
    }).then(({ confirmed, option }) => {
        if (!confirmed)
            return;
        run("updater-apply", "apply the update", () => callUpdater("Apply", [option ? { force: { t: "b", v: true } } : {}]),
            ([from, to]) => from === to ? "Already current (" + shortHash(to) + ")." : "Updated " + shortHash(from) +
                                                                                    " → " + shortHash(to) + ".");
    });
}

function doRollback(d) {
    confirm({
        id: "updater-rollback",
        title: "Roll back " + d.Repository + "?",
        confirmLabel: "Roll back",
        danger: true,
        explain: () => d.PreviousCommit
            ? {
                body: <Content component="p" id="confirm-rollback">
                    Returns from <Hash value={d.CurrentCommit} /> to <Hash value={d.PreviousCommit} />: it
                    {" " + transactionWords(d).replace("checks out the new commit", "checks out that commit")}{" "}
                    {shortHash(d.CurrentCommit)} is quarantined: automatic updates skip it until the branch moves.
                </Content>
            }
            : { body: null, blocked: "There is no previous commit to return to." },
    }).then(({ confirmed }) => confirmed &&
        run("updater-rollback", "roll back", () => callUpdater("Rollback", [""]),
            ([from, to]) => "Rolled back " + shortHash(from) + " → " + shortHash(to) + "."));
}

function setAuto(on) {
    const go = on
        ? confirm({
            id: "updater-auto",
            title: "Turn automatic updates on?",
            confirmLabel: "Turn on",
            explain: () => ({
                body: <Content component="p">The updater checks within 10 seconds and then at every interval, and
                    applies what it finds unless a validation round or the Validation API is busy.</Content>
            }),
        }).then(r => r.confirmed)
        : Promise.resolve(true);
    go.then(yes => yes && run("updater-auto", (on ? "turn automatic updates on" : "turn automatic updates off"),
                              () => callUpdater("SetAutoUpdate", [on])));
}

export const UpdaterCard = ({ d, perms, running }) => {
    const now = useNow(5000);
    const disabled = d.State === "disabled";
    const ours = ["updater-check", "updater-apply", "updater-dry-run", "updater-rollback"].find(k => running[k]);
    const busy = ours
        ? "Wait: " + running[ours] + " is running."
        : d.Operation ? "The updater is busy: " + stepWords(d.Operation).toLowerCase() + "." : "";
    const off = disabled ? "The updater is off: set its repository below." : "";
    const mayCheck = perms["check-updates"].allowed ? "" : perms["check-updates"].why;
    const mayApply = perms["apply-updates"].allowed ? "" : perms["apply-updates"].why;
    const mayConfigure = perms.configure.allowed ? "" : perms.configure.why;
    const autoReason = whyDisabled(mayApply, off, running["updater-auto"] ? "Saving…" : "");

    return (
        <Card id="updater-card">
            <CardHeader actions={{ actions: <StateLabel id="updater-state" state={d.State} />, hasNoOffset: true }}>
                <CardTitle component="h2">Updater</CardTitle>
            </CardHeader>
            <CardBody>
                <List id="updater-defer" isPlain>
                    {(d.DeferReasons || []).map(([gate, detail, since]) => {
                        const t = Date.parse(since);
                        return <ListItem key={gate} data-gate={gate}>
                            {gateWords(gate)}: {detail}{isNaN(t) ? "" : " (for " + age(now - t) + ")"}
                        </ListItem>;
                    })}
                </List>
                {d.Operation &&
                    <Progress id="updater-progress" value={d.Progress || 0} title={stepWords(d.Operation)} size="sm"
                              measureLocation="outside" data-operation={d.Operation} className="pl-progress" />}
                <DescriptionList isHorizontal isCompact isFluid id="updater-props" className="pl-props">
                    <Row label="Repository" id="updater-repository">
                        {d.Repository ? <span className="pl-mono pl-break">{d.Repository}</span> : "none (off)"}
                    </Row>
                    <Row label="Following">{(d.Remote || "") + "/" + (d.Branch || "")}</Row>
                    <Row label="Current commit" id="updater-current"><Hash value={d.CurrentCommit} /></Row>
                    <Row label="Target commit" id="updater-target"><Hash value={d.TargetCommit} /></Row>
                    {d.QuarantinedCommit && <Row label="Quarantined commit" id="updater-quarantined"><Hash value={d.QuarantinedCommit} /></Row>}
                    {d.PreviousCommit && <Row label="Previous commit" id="updater-previous"><Hash value={d.PreviousCommit} /></Row>}
                    <Row label="Automatic updates" id="updater-auto">
                        <Tooltip content={autoReason || "Checks and applies updates by itself."}>
                            <Switch id="updater-auto-switch" isChecked={!!d.AutoUpdate} isDisabled={!!autoReason}
                                    label={d.AutoUpdate ? "on" : "off"} data-reason={autoReason || undefined}
                                    onChange={(_ev, on) => setAuto(on)} />
                        </Tooltip>
                    </Row>
                    <Row label="Last check">{d.LastCheckTimestamp ? when(d.LastCheckTimestamp) + " (" + relative(d.LastCheckTimestamp, now) + ")" : "never"}</Row>
                    <Row label="Last update">{when(d.LastUpdateTimestamp)}</Row>
                    {d.NextCheckTimestamp > 0 && <Row label="Next check">{when(d.NextCheckTimestamp)}</Row>}
                    {d.LastError && <Row label="Last error" id="updater-last-error">{d.LastError}</Row>}
                </DescriptionList>
                <ExpandableSection toggleText="Updater settings" id="updater-settings" className="pl-settings-section"
                                   isIndented>
                    <SettingsForm id="updater-settings" what="change the updater's settings" saveId="updater-settings-save"
                                  saveLabel="Save updater settings" fields={FIELDS} values={d}
                                  reason={whyDisabled(mayConfigure, running["updater-settings"] ? "Saving…" : "")} />
                </ExpandableSection>
            </CardBody>
            <CardFooter>
                <div className="pl-actions">
                    <ActionButton id="updater-check" variant="primary" reason={whyDisabled(mayCheck, off, busy)}
                                  onClick={() => run("updater-check", "check for updates", () => callUpdater("Check", []),
                                                     ([available, commit]) => available ? "Update available: " + commit + "." : "Up to date.")}>
                        Check
                    </ActionButton>
                    <ActionButton id="updater-apply" reason={whyDisabled(mayApply, off, busy)} onClick={() => doApply(d)}>
                        Apply
                    </ActionButton>
                    <ActionButton id="updater-dry-run" reason={whyDisabled(mayApply, off, busy)}
                                  onClick={() => run("updater-dry-run", "try the update",
                                                     () => callUpdater("Apply", [{ "dry-run": { t: "b", v: true } }]),
                                                     ([from, to]) => "Dry run: would go " + shortHash(from) + " → " + shortHash(to) + ".")}>
                        Dry run
                    </ActionButton>
                    <ActionButton id="updater-rollback" variant="danger"
                                  reason={whyDisabled(mayApply, off, busy, d.PreviousCommit ? "" : "There is no previous commit to return to.")}
                                  onClick={() => doRollback(d)}>
                        Roll back
                    </ActionButton>
                </div>
            </CardFooter>
        </Card>
    );
};
