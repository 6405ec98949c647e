/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "clients/http.h"
#include "clients/platform-api.h"
#include "clients/vmm.h"
#include "core/desired.h"
#include "core/plan.h"
#include "core/reconciler.h"
#include "core/state.h"

typedef enum JobKind {
        JOB_TICK,       /* automatic: poll timer, settings change, startup */
        JOB_UPDATE,     /* Vm.Update */
        JOB_START,
        JOB_STOP,
        JOB_RESTART,
} JobKind;

typedef struct Job Job;
typedef void (*job_step_fn)(Job *j, ReconcilerError error, const char *message);

typedef struct Waiter {
        reconciler_done_cb done;
        void *userdata;
} Waiter;

struct Job {
        Reconciler *r;
        JobKind kind;
        bool force;
        GArray *waiters;            /* Waiter */

        VmmCall *vmm_call;
        PlatformCall *api_call;
        sd_event_source *timer;

        DesiredVm *desired;         /* NULL when the spec cannot be applied */
        char *blocked_reason;
        Plan plan;
        bool have_plan;

        char *old_id;               /* the VM being replaced, stopped or started */
        char *old_compose_hash;
        char *new_id;
        char *encrypted_env;        /* hex; only the VM's KMS key opens it */
        char *app_id;               /* the app id the env is encrypted to */

        /* The running step sequence: on what VM, until when, what comes next. */
        char *seq_id;
        uint64_t seq_deadline;      /* CLOCK_MONOTONIC */
        bool seq_hard_stop_sent;
        uint64_t seq_poll_usec;     /* 20 ms, growing to 250 ms after STEP_POLL_FAST_USEC */
        uint64_t seq_started;       /* CLOCK_MONOTONIC */
        job_step_fn seq_next;
        char **dup_ids;
        size_t dup_idx;
        job_step_fn dup_next;
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
        GArray *queued_updates;         /* Waiter: Update calls to run right after the running tick */
        bool rerun;

        uint64_t fail_backoff_usec;
        uint64_t restart_backoff_usec;
        uint64_t next_restart_usec;     /* CLOCK_MONOTONIC; 0 = at once */
        uint64_t running_since_usec;    /* CLOCK_MONOTONIC; 0 = not running */
        uint64_t recheck_usec;          /* look again sooner than the poll interval (0 = no) */
        uint32_t dirty;                 /* VmField bits changed and not yet announced */
};

/* vm-steps.c: VMM step sequences. Each ends by calling next(j, error, message). */
void steps_graceful_stop(Job *j, const char *id, job_step_fn next);
void steps_hard_stop(Job *j, const char *id, job_step_fn next);
void steps_remove(Job *j, const char *id, job_step_fn next);
void steps_wait_running(Job *j, const char *id, job_step_fn next);
void steps_start(Job *j, const char *id, job_step_fn next);
void steps_remove_duplicates(Job *j, job_step_fn next);
ReconcilerError steps_error_kind(const VmmResult *res);
uint64_t now_usec(clockid_t clock);

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
void vm_flush(Reconciler *r);
void vm_note_error(Reconciler *r, const char *message);
void vm_set_state(Reconciler *r, VmState state, const char *reason);
void vm_observe(Reconciler *r, const Plan *p);

/* reconciler-tick.c */
void job_run_tick(Reconciler *r);
void job_fetch(Job *j);
void job_resume_in_place(Job *j, const char *id);
