/* SPDX-License-Identifier: Apache-2.0
 *
 * The confirmation dialog (ops.js confirm()): what the action will do, read
 * from the daemon while a spinner shows, then Confirm or Cancel. Cancel,
 * Escape and the close button call nothing.
 */
import React, { useEffect, useState } from "react";

import { Alert } from "@patternfly/react-core/dist/esm/components/Alert/index.js";
import { Button } from "@patternfly/react-core/dist/esm/components/Button/index.js";
import { Checkbox } from "@patternfly/react-core/dist/esm/components/Checkbox/index.js";
import { Modal, ModalBody, ModalFooter, ModalHeader } from "@patternfly/react-core/dist/esm/components/Modal/index.js";
import { Spinner } from "@patternfly/react-core/dist/esm/components/Spinner/index.js";

import { closeDialog } from "./ops.js";

export const ConfirmDialog = ({ dialog }) => {
    const [explained, setExplained] = useState(null);
    const [option, setOption] = useState(false);

    useEffect(() => {
        let live = true;
        setExplained(null);
        setOption(false);
        Promise.resolve()
                .then(() => dialog.explain ? dialog.explain() : { body: null })
                .then(e => live && setExplained(e),
                      err => live && setExplained({ body: null, error: (err && err.message) || String(err) }));
        return () => { live = false };
    }, [dialog]);

    const cancel = () => closeDialog({ confirmed: false });
    const loading = explained === null;
    const blocked = explained && explained.blocked;

    return (
        <Modal id="confirm-dialog" position="top" variant="medium" isOpen onClose={cancel}
               aria-labelledby="confirm-dialog-title" data-action={dialog.id}>
            <ModalHeader title={dialog.title} labelId="confirm-dialog-title"
                         titleIconVariant={dialog.danger ? "warning" : undefined} />
            <ModalBody id="confirm-dialog-body">
                {loading && <div className="pl-dialog-loading"><Spinner size="md" /> Asking the launcher what this will do…</div>}
                {explained && explained.body}
                {explained && explained.error &&
                    <Alert isInline isPlain variant="warning" title={"The launcher could not say what this will do: " +
                                                                      explained.error} />}
                {blocked && <Alert isInline variant="danger" title={blocked} id="confirm-dialog-blocked" />}
                {dialog.option && !loading &&
                    <Checkbox id="confirm-dialog-option" className="pl-dialog-option" label={dialog.option.label}
                              description={dialog.option.description} isChecked={option}
                              onChange={(_ev, checked) => setOption(checked)} />}
            </ModalBody>
            <ModalFooter>
                <Button id="confirm-ok" variant={dialog.danger ? "danger" : "primary"}
                        isDisabled={loading || !!blocked}
                        onClick={() => closeDialog({ confirmed: true, option })}>
                    {dialog.confirmLabel}
                </Button>
                <Button id="confirm-cancel" variant="link" onClick={cancel}>Cancel</Button>
            </ModalFooter>
        </Modal>
    );
};
