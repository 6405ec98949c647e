/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "clients/vmm.h"
#include "core/desired.h"
#include "core/managed-vm.h"
#include "core/plan.h"
#include "core/reconciler.h"
#include "core/step-driver.h"

/* An operation on one VM, and what its tables keep in it (operation.c runs it). */

typedef enum OperationKind {
        OPERATION_POLL,         /* automatic: poll timer, settings change, startup */
        OPERATION_UPDATE,       /* Vm.Update */
        OPERATION_START,
        OPERATION_STOP,
        OPERATION_RESTART,
        OPERATION_REMOVE,       /* Config.RemoveVm with destroy: every VM of the name stopped and removed */
        _OPERATION_KIND_MAX,
} OperationKind;

const char *operation_kind_to_string(OperationKind k);

/* What a reconciliation comes to, for its announce step. */
typedef enum ReconcileOutcome {
        OUTCOME_RUNNING,            /* as wanted */
        OUTCOME_OPERATOR_STOPPED,   /* stopped by the operator: left so */
        OUTCOME_BLOCKED,            /* nothing can be applied */
        OUTCOME_WAIT,               /* a VM with the name is going away */
        OUTCOME_BACKOFF,            /* exited, started again later */
        OUTCOME_ADOPT_KEPT,         /* not ours: kept as it is */
        OUTCOME_STARTED,            /* started again */
        OUTCOME_DEPLOYED,           /* created, replaced or updated */
} ReconcileOutcome;

/* A caller waiting for the operation, with its own history entry. */
typedef struct Waiter {
        reconciler_done_cb done;
        void *userdata;
        char *trigger;              /* who asked: "uid 0 (platformctl)" */
        char *from;                 /* ComposeHash when asked */
        uint64_t asked_usec;        /* CLOCK_REALTIME */
        bool recorded;              /* a deploy entry already says how it ended */
} Waiter;

struct Operation {
        ManagedVm *mv;
        OperationKind kind;
        bool force;
        GArray *waiters;            /* Waiter */
        char *trigger;              /* a poll: who made the settings change it evaluates, NULL: none */
        bool committed;             /* it ran a table of its plan: never cut halfway from now on */
        bool gave_way;              /* ended for an operator's call, to run again after it */
        bool fetch_answered;        /* the spec's source answered this operation's fetch */
        uint64_t since_usec;        /* CLOCK_MONOTONIC: what it observes is no older (its start, or its poll round's) */
        ReconcilerError fail_kind;  /* set by the step that fails */
        ReconcilerError cancelled;  /* ended from outside (shutdown): answer with this */
        char *failure;              /* the failure as a compensating row restated it */
        uint64_t deploy_started_usec;   /* CLOCK_REALTIME: a deploy table began, for the history */

        /* In flight; the row's cancel() drops it. */
        VmmCall *vmm_call;
        ObserverWait *observe_wait;
        bool fetching;

        /* What the reconciliation found, for the plan's table. */
        DesiredVm *desired;         /* NULL when the spec cannot be applied */
        char *blocked_reason;
        Plan plan;
        bool have_plan;
        ReconcileOutcome outcome;   /* what the plan's table (or its absence) means */
        bool settled;               /* the VM runs as wanted: VMs under old names may go */
        char **items;               /* a loop's items (VM ids), taken when it begins */

        /* The VM a VMM step acts on. */
        char *act_id;
        bool act_stopped;           /* known to be stopped: no stop needed */
        bool act_running;           /* known to run: Start has nothing to do */

        /* A deployment, from its checks to its record. */
        struct {
                char *app_id;               /* the app id the env is encrypted to */
                char *kms_signer;           /* ... under this verified KMS signer ("" = unsigned); NULL: none yet */
                char *encrypted_env;        /* hex; only the VM's KMS key opens it */
                char *new_id;
                char *old_compose_hash;
                bool update_ports;          /* in-place: the ports changed and go to UpdateVm */
                VmPort *send_ports;         /* ... each with a real address */
                size_t n_send_ports;
                bool touched;               /* a destructive step began: the old VM is no longer intact */
                bool removed;               /* the old VM was removed */
                bool done;                  /* recorded: announce says so */
                bool failed;                /* a deploy table failed: UpdateFailed was sent */
        } deploy;

        /* One step's scratch, set up by its start. */
        union {
                struct {
                        bool shutdown_refused;  /* ShutdownVm failed: stop hard at once */
                        bool hard_stop_sent;
                } stop;
                struct {
                        char refused[TEXT_BOUND + 1];   /* RemoveVm refused: why, while looking whether it is gone */
                } remove;
        } step;
};

static inline StepDriver *op_driver(const Operation *op) {
        return op->mv->driver;
}

static inline Host *op_host(const Operation *op) {
        return op->mv->host;
}

/* The step fails, and the operation with kind. */
static inline void step_fail_kind(Operation *op, ReconcilerError kind, const char *message) {
        op->fail_kind = kind;
        step_driver_fail(op_driver(op), -EIO, message);
}

Operation *operation_new(ManagedVm *mv, OperationKind kind, bool force);
/* Runs op now if its VM is idle, else queues it. */
void operation_submit(Operation *op);
/* An automatic check of mv after delay (jittered). */
void operation_schedule_poll(ManagedVm *mv, uint64_t delay);
/* An operation that never ran: its waiters are answered with error. */
void operation_end_unrun(Operation *op, ReconcilerError error, const char *message);
/* Ends every operation of mv, answering its waiters with error; nothing
 * more runs on mv. */
void operation_cancel_all(ManagedVm *mv, ReconcilerError error, const char *message);
void waiter_add(Operation *op, const ReconcilerCaller *caller);
/* An automatic check that is only reading (no table of its plan begun) ends
 * at once so that next runs now; it runs again right after next. Returns
 * false (and does nothing) when it is past reading. */
bool operation_give_way(Operation *poll, Operation *next);
/* "the stop asked by uid 0 (platformctl) 3 s ago": the oldest operator's call
 * on mv, running or queued; NULL when there is none. Caller frees. */
char *operation_describe_pending(ManagedVm *mv);
