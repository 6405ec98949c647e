/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "clients/http.h"
#include "core/reconciler.h"
#include "shared/config-file.h"

/* The Updater's busy gates (updater.md, step 4): the validator's round
 * lockfile, the Validation API's active jobs, a VM operation in progress.
 * A closed gate defers an update; it never interrupts a round. */

typedef enum GateKind {
        GATE_ROUND_LOCK,
        GATE_VALIDATION_API,
        GATE_VM_OPERATION,
        _GATE_MAX,
} GateKind;

const char *gate_kind_to_string(GateKind k); /* "round-lock", "validation-api", "vm-operation" */

typedef enum RoundLockState {
        ROUND_LOCK_ABSENT,
        ROUND_LOCK_FRESH,       /* defers */
        ROUND_LOCK_STALE,       /* too old or naming a dead pid: logged, does not defer */
} RoundLockState;

/* Reads the lockfile (never blocking: a FIFO, a device, a directory, a
 * symbolic link or a file over ROUND_LOCK_FILE_MAX there is a closed gate
 * named as such) and asks the kernel about the pid it names. now_usec is
 * CLOCK_REALTIME. *ret_detail says why (NULL when absent); *ret_key (may be
 * NULL) identifies the file (path, inode, mtime) for logging it once. */
RoundLockState round_lock_check(const char *path, uint64_t max_age_usec, uint64_t now_usec, char **ret_detail,
                                char **ret_key);

typedef struct Gates Gates;
typedef struct GateCheck GateCheck;

/* closed[k] = detail text when gate k is closed, NULL when open. */
typedef void (*gates_done_cb)(GateCheck *check, char *const closed[_GATE_MAX], void *userdata);

int gates_new(sd_event *event, Gates **ret);
void gates_free(Gates *g);
/* Evaluates every configured gate; cb runs once from the loop. reconciler may be NULL. */
int gates_evaluate(Gates *g, const LauncherConfig *c, Reconciler *reconciler, gates_done_cb cb, void *userdata,
                   GateCheck **ret);
void gate_check_cancel(GateCheck *check);
