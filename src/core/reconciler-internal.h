/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "clients/http.h"
#include "clients/platform-api.h"
#include "clients/vmm.h"
#include "core/desired.h"
#include "core/plan.h"
#include "core/reconciler.h"
#include "core/state.h"
#include "core/step-driver.h"

typedef enum JobKind {
        JOB_TICK,       /* automatic: poll timer, settings change, startup */
        JOB_UPDATE,     /* Vm.Update */
        JOB_START,
        JOB_STOP,
        JOB_RESTART,
} JobKind;

typedef struct Job Job;

/* What LastError is about, so it is cleared when that is over. */
typedef enum ErrorCause {
        ERROR_CAUSE_NONE,
        ERROR_CAUSE_API,        /* the Platform API did not answer */
        ERROR_CAUSE_VMM,        /* the VMM did not answer Status */
        ERROR_CAUSE_BLOCKED,    /* the spec cannot be applied */
        ERROR_CAUSE_UPDATE,     /* an update or operation failed */
} ErrorCause;
typedef void (*job_step_fn)(Job *j, ReconcilerError error, const char *message);

typedef struct Waiter {
        reconciler_done_cb done;
        void *userdata;
} Waiter;

/* An operator's call that arrived while the launcher's own check ran a step
 * table, which is never cut halfway: it runs when the table ends. */
typedef struct QueuedOp {
        JobKind kind;               /* JOB_TICK: none */
        bool force;
        Waiter waiter;
} QueuedOp;

struct Job {
        Reconciler *r;
        JobKind kind;
        bool force;
        GArray *waiters;            /* Waiter */
        char *trigger;              /* who made the settings change this check evaluates, NULL: a poll */

        VmmCall *vmm_call;
        PlatformCall *api_call;
        sd_event_source *timer;     /* Status has not answered within a poll interval */
        bool fetch_answered;        /* the Platform API answered this job's fetch */
        uint64_t observe_start_usec; /* CLOCK_MONOTONIC: when this job's Status was sent */

        DesiredVm *desired;         /* NULL when the spec cannot be applied */
        char *blocked_reason;
        Plan plan;
        bool have_plan;

        char *old_id;               /* the VM being replaced, stopped or started */
        char *old_compose_hash;
        char *new_id;
        char *encrypted_env;        /* hex; only the VM's KMS key opens it */
        char *app_id;               /* the app id the env is encrypted to */
        char *kms_signer;           /* ... under this verified KMS signer ("" = unsigned); NULL: none yet */

        /* The table running on r->driver: on what VM its VMM steps act, what
         * they learned, what comes after it. */
        char *act_id;               /* stop/remove/start act on this VM */
        bool act_stopped;           /* act_id is known to be stopped: no stop needed */
        bool shutdown_refused;      /* ShutdownVm failed: stop hard at once */
        bool hard_stop_sent;
        bool touched;               /* a destructive step began: the old VM is no longer intact */
        bool removed;               /* the old VM was removed */
        bool abandoned;             /* the job is being freed: the table's end is not acted on */
        ReconcilerError fail_kind;  /* set by the step that fails */
        char *remove_error;         /* RemoveVm refused: why, while checking the VM is not gone anyway */
        job_step_fn then;
        char **dup_ids;
        size_t dup_idx;
        bool update_ports;          /* in-place: the ports changed and go to UpdateVm */
        VmPort *send_ports;         /* ... each with a real address */
        size_t n_send_ports;
};

struct Reconciler {
        sd_event *event;
        SettingsStore *settings;
        char *state_dir;
        ReconcilerEvents ev;

        HttpContext *http;
        VmmClient *vmm;
        char *vmm_url;
        PlatformApi *api;
        char *api_url;
        uint8_t fp_key[32];

        PlatformVmSpec *spec;       /* the last valid spec */
        char *spec_error;           /* the last document was invalid: why (NULL when fine) */
        char **required_env;

        VmmStatusReply observed;
        bool have_observed;

        VmDeployState *state;
        Vm *vm;
        Vm *vms[2];

        sd_event_source *poll_timer;
        Job *job;
        StepDriver *driver;             /* runs every VM operation's step table */
        GArray *queued_updates;         /* Waiter: Update calls to run right after the running tick */
        QueuedOp queued_op;             /* Start, Stop, Restart or a forced Update, likewise */
        bool rerun;
        char *change_trigger;           /* who made the settings change not yet evaluated (NULL: none or SIGHUP) */

        uint64_t fail_backoff_usec;
        uint64_t restart_backoff_usec;
        uint64_t next_restart_usec;     /* CLOCK_MONOTONIC; 0 = at once */
        uint64_t running_since_usec;    /* CLOCK_MONOTONIC; 0 = not running */
        uint64_t recheck_usec;          /* look again sooner than the poll interval (0 = no) */
        uint32_t dirty;                 /* VmField bits changed and not yet announced */

        /* What is known, and since when (CLOCK_MONOTONIC; 0 = never). */
        uint64_t fetched_usec;          /* the last fetch that answered (200 or 304) */
        uint64_t observed_usec;         /* the last Status that answered */
        uint64_t fetch_failed_usec;     /* first of the current run of failed fetches */
        uint64_t observe_failed_usec;   /* start of the first of the current run of failed observations */
        char *fetch_error;
        char *observe_error;
        char *not_allowed_logged;       /* the keys last named in the "not allowed" notice */
        char *adopt_logged;             /* the id of the VM last reported as adopted */
        ErrorCause last_error_cause;
        char *spec_digest;              /* sha256 of the document kept in spec.json */
};

/* vm-steps.c: the VM operations as step tables (style.md "Long operations as
 * data"), run one at a time on r->driver. job_run_table() calls then(j, error,
 * message) when the table ends. */
extern const StepTable table_create, table_recreate, table_in_place, table_in_place_resume, table_start,
        table_stop, table_restart, table_remove_duplicate, table_remove_retired;
void job_run_table(Job *j, const StepTable *t, job_step_fn then);
void job_cancel_table(Job *j);
void step_fail_kind(Job *j, ReconcilerError kind, const char *message);
ReconcilerError steps_error_kind(const VmmResult *res);
uint64_t now_usec(clockid_t clock);

/* Steps defined by the reconciliation (reconciler-tick.c): they need the
 * desired VM. */
void prep_checks_start(StepDriver *d, void *userdata);
void prep_encrypt_start(StepDriver *d, void *userdata);
void prep_cross_check_start(StepDriver *d, void *userdata);
void create_start(StepDriver *d, void *userdata);
void update_vm_start(StepDriver *d, void *userdata);
void record_start(StepDriver *d, void *userdata);
void step_cancel_call(void *userdata);

/* Bounds a text from the VMM or the API for properties, signals and replies:
 * at most TEXT_BOUND bytes, cut on a UTF-8 boundary with "…", invalid UTF-8
 * replaced. Caller frees. */
#define TEXT_BOUND 512
char *text_bound(const char *s);

/* reconciler.c */
Job *job_new(Reconciler *r, JobKind kind, bool force, reconciler_done_cb done, void *userdata);
void job_finish(Job *j, ReconcilerError error, const char *message);
void job_update_failed(Job *j, ReconcilerError error, const char *message);
void schedule_tick(Reconciler *r, uint64_t delay);
int ensure_clients(Reconciler *r);
int reconciler_save_state(Reconciler *r);
void vm_set_str(Reconciler *r, char **field, const char *value, VmField bit);
void vm_set_u32(Reconciler *r, uint32_t *field, uint32_t value, VmField bit);
void vm_set_u64(Reconciler *r, uint64_t *field, uint64_t value, VmField bit);
void vm_set_allowed_env(Reconciler *r);
void vm_flush(Reconciler *r);
void vm_note_error(Reconciler *r, const char *message);
void vm_note_error_cause(Reconciler *r, ErrorCause cause, const char *message);
void vm_clear_error(Reconciler *r);
void reconciler_save_spec(Reconciler *r, const char *data, size_t len);
void vm_set_state(Reconciler *r, VmState state, const char *reason);
void vm_observe(Reconciler *r, const Plan *p);

/* reconciler-tick.c */
void job_run_tick(Reconciler *r);
void job_fetch(Job *j);

