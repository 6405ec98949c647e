/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "clients/http.h"
#include "clients/step-runner.h"
#include "clients/systemd.h"
#include "core/step-driver.h"
#include "core/updater.h"

/* Shared by updater.c (object, state store, public API, timers) and
 * updater-steps.c (the step tables of one transaction). */

typedef enum TxKind {
        TX_NONE,
        TX_CHECK,
        TX_APPLY,
        TX_ROLLBACK,   /* the operator's Rollback */
        TX_RESUME,     /* a transaction found in the state store at start-up */
} TxKind;

typedef struct Tx {
        TxKind kind;
        TxKind origin;           /* for TX_RESUME: what was interrupted (apply or rollback) */
        bool force, dry_run, automatic;
        UpdaterState prev_state;     /* before the transaction (a dry run restores it) */
        LauncherConfig *cfg;     /* the settings this transaction runs with */
        StepUser *user;          /* who runs its commands (UpdaterUser, resolved by the first step) */
        bool lock_created;       /* the lock file was missing and made once, as the user */
        int lock_fd;
        char *from;              /* HEAD before; what a rollback returns to */
        char *to;                /* the pinned target */
        char *requested;         /* Rollback's argument */
        bool skip;               /* nothing to do: the remaining steps pass */
        bool available;
        bool forward;            /* the update table (or the verification after a self-restart) began */
        bool reverse;            /* the rollback table began: the update's compensation, or a resumed one */
        bool rolled_back;        /* ... and ran through */
        char *fail_reason;       /* why the forward table failed */
        size_t index;            /* the command or unit within a step */
        int sub;
        bool self_unit_pending;  /* the launcher's own unit restarts last */
        uint64_t start_usec;     /* CLOCK_MONOTONIC, for the history */
        updater_done_cb done;
        void *userdata;
} Tx;

typedef void (*proc_next_fn)(Updater *u, const StepResult *res);

/* The owner probe (updater-steps.c): resolves UpdaterUser when the owner of
 * the repository cannot be read here. */
typedef struct UserProbe UserProbe;
/* user: owned by the callee; NULL with why on refusal (code < 0). */
typedef void (*user_next_fn)(Updater *u, int code, StepUser *user, const char *why);

struct Updater {
        sd_event *event;
        sd_bus *bus;
        SettingsStore *settings;
        char *state_dir;
        char *state_path;
        Reconciler *reconciler;
        UpdaterEvents events;
        UpdaterStatus st;
        uint32_t changed;

        StepDriver *driver;
        Gates *gates;
        GateCheck *gate_check;
        SystemdClient *systemd;
        SystemdCall *unit_call;
        StepRunner *runner;
        StepRunnerBackend runner_backend;
        StepRun *proc;
        proc_next_fn proc_next;
        UserProbe *tx_probe;
        uint64_t proc_timeout;
        HttpContext *http;
        HttpCall *http_call;
        sd_event_source *auto_timer;
        sd_event_source *head_timer;
        StepRun *head_proc;
        UserProbe *head_probe;
        char *own_unit;
        /* What the automatic check was armed for. */
        char *armed_repository;
        char *armed_user;
        bool armed_auto;
        uint64_t armed_interval;          /* the unit this daemon runs in ("" when none) */

        /* The transaction recorded in the state store ("" kind = none). */
        char *rec_kind, *rec_from, *rec_to, *rec_phase;

        Tx tx;
        uint64_t unit_started;
        uint64_t health_deadline;      /* CLOCK_MONOTONIC */
        char *health_last_why;         /* the last failed attempt's reason, logged once per change */
        char *spawn_why;               /* why updater_spawn_command refused, for the failure message */
        uint64_t process_usec;   /* time spent in child processes and unit jobs during the transaction */
};

/* updater.c */
uint64_t updater_now_realtime(void);
void updater_set_str(Updater *u, char **field, const char *value, UpdaterField bit);
void updater_set_state(Updater *u, UpdaterState s);
void updater_flush(Updater *u);
int updater_save_state(Updater *u);
/* phase "" clears the record. */
int updater_record(Updater *u, const char *kind, const char *from, const char *to, const char *phase);
void updater_quarantine(Updater *u, const char *commit);
/* Tells the bus layer (events.finished) how the transaction ended. */
void updater_report(Updater *u, const char *to, bool ok, const char *reason, bool rolled_back);
void defer_reason_free(gpointer p);

/* updater-steps.c */
extern const StepTable updater_check_table;
extern const StepTable updater_apply_table;
extern const StepTable updater_rollback_table;   /* the operator's Rollback: lock, resolve, verify, dirty, record */
extern const StepTable updater_resume_table;     /* a recorded transaction: the user and the lock, then its phase */
void updater_steps_cancel_all(Updater *u);
int updater_spawn_git(Updater *u, const char *name, char *const *args, proc_next_fn next);
int updater_spawn_command(Updater *u, const char *name, char *const *argv, uint64_t timeout, proc_next_fn next);
void updater_fail_proc(Updater *u, const char *what, const StepResult *res);
/* "git fetch: exited with status 128: fatal: ..." (valid UTF-8, bounded). Caller frees. */
char *updater_proc_failure(const char *what, const StepResult *res, uint64_t timeout);
void updater_fail_spawn(Updater *u, const char *what, int r);
void updater_cancel_proc(void *ud);
void updater_record_phase(Updater *u, const char *phase);

/* updater-health.c: the health wait, a row whose check is one attempt */
#define UPDATER_HEALTH_RETRY_USEC (500 * USEC_PER_MSEC)
void updater_health_start(StepDriver *d, void *ud);
void updater_health_check(StepDriver *d, void *ud);
uint64_t updater_health_timeout(void *ud);
void updater_health_cancel(void *ud);

/* updater-access.c: the first steps of a transaction, who and the lock */
void updater_user_start(StepDriver *d, void *ud);
void updater_user_cancel(void *ud);
void updater_lock_start(StepDriver *d, void *ud);
int updater_lock(Updater *u, char **ret_error);
void updater_unlock(Updater *u);
/* 0: *ret_user decided now; -EINPROGRESS: the owner probe runs and next is
 * called later (*ret_probe set); < 0: refused, *ret_why says why. */
int updater_resolve_user(Updater *u, const LauncherConfig *cfg, StepUser **ret_user, char **ret_why, user_next_fn next,
                         UserProbe **ret_probe);
void updater_user_probe_cancel(UserProbe *p);
/* The user check without the probe: sets or clears ConfigError and State=failed. */
int updater_check_config(Updater *u);
void updater_set_config_error(Updater *u, const char *why);
