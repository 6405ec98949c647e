/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "core/host.h"
#include "core/source.h"
#include "core/state.h"
#include "core/step-driver.h"
#include "core/vm.h"
#include "shared/vm-decl.h"

/* One managed VM (managed-vm.c): the Vm the bus shows, where its spec comes
 * from, what the state store says was deployed, its operations and its
 * schedule. */

typedef struct ManagedVm ManagedVm;
typedef struct Operation Operation;

/* What LastError is about, so it is cleared when that is over. */
typedef enum ErrorCause {
        ERROR_CAUSE_NONE,
        ERROR_CAUSE_API,        /* the spec's source did not answer */
        ERROR_CAUSE_VMM,        /* the VMM did not answer Status */
        ERROR_CAUSE_BLOCKED,    /* the spec cannot be applied */
        ERROR_CAUSE_UPDATE,     /* an update or operation failed */
} ErrorCause;

struct ManagedVm {
        Vm *vm;                     /* as the bus shows it */
        Host *host;
        VmDecl *decl;               /* declared with AddVm; NULL for the API's VM, named by its spec */
        Source *source;
        char *state_dir;
        VmDeployState *state;

        StepDriver *driver;         /* runs this VM's operations, one at a time */
        Operation *op;              /* running, NULL when idle */
        GQueue queue;               /* Operation *, waiting for op */
        sd_event_source *poll_timer;
        VmmCall *sysinfo_call;      /* resources.c: the guest's figures, asked for */
        bool rerun;                 /* look again as soon as op ends */
        char *change_trigger;       /* who made the settings change not yet evaluated (NULL: none, or SIGHUP) */
        bool gone;                  /* no longer managed: nothing more runs */
        uint64_t recheck_usec;      /* look again sooner than the poll interval (0 = no) */

        uint64_t fail_backoff_usec;
        uint64_t restart_backoff_usec;
        uint64_t next_restart_usec;     /* CLOCK_MONOTONIC; 0 = at once */
        uint64_t running_since_usec;    /* CLOCK_MONOTONIC; 0 = not running */
        ErrorCause last_error_cause;
        char *not_allowed_logged;       /* the keys last named in the "not allowed" notice */
        char *adopt_logged;             /* the id of the VM last reported as adopted */
};

/* decl NULL: the API's VM, from ApiUrl. */
ManagedVm *managed_vm_new(Host *host, const VmDecl *decl, const char *name, const char *state_dir,
                          const char *source_url);
void managed_vm_free(ManagedVm *mv);
/* Tells the bus what changed (ReconcilerEvents.vm_changed), if anything did. */
void managed_vm_flush(ManagedVm *mv);
void managed_vm_set_state(ManagedVm *mv, VmState state, const char *reason);
void managed_vm_note_error(ManagedVm *mv, ErrorCause cause, const char *message);
void managed_vm_clear_error(ManagedVm *mv);
int managed_vm_save_state(ManagedVm *mv);
/* What the VMM reports about the VM kept (NULL: none), with its compose hash. */
void managed_vm_observe(ManagedVm *mv, const VmInfo *keep, const char *keep_compose_hash);
/* The spec's name for the API's VM changed: the bus object follows. */
void managed_vm_rename(ManagedVm *mv, const char *name);
/* The source's spec changed: AllowedEnv, RequiredEnv (and MissingEnv) follow it. */
void managed_vm_spec_changed(ManagedVm *mv);
/* The spec's required_env; MissingEnv follows it and the local env. */
void managed_vm_required_env(ManagedVm *mv, char **required);
void managed_vm_env_changed(ManagedVm *mv);
/* Its own options, else the settings'. */
const char *managed_vm_strategy(const ManagedVm *mv);
const char *managed_vm_adopt_policy(const ManagedVm *mv);
/* The local env keys it may receive; NULL: every one (the API's VM). */
char *const *managed_vm_granted(const ManagedVm *mv);
