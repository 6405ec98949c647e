/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "core/gates.h"
#include "core/reconciler.h"
#include "clients/step-runner.h"
#include "core/settings.h"

/* The update engine (updater.md, "Update engine"): keeps a git deployment at
 * the head of a release branch, one transaction at a time, on the step
 * driver. Knows nothing of the bus API; the bus layer reads UpdaterStatus and
 * is told of changes through UpdaterEvents. */

typedef struct Updater Updater;

typedef enum UpdaterState {
        UPDATER_STATE_DISABLED,
        UPDATER_STATE_IDLE,
        UPDATER_STATE_CHECKING,
        UPDATER_STATE_DEFERRED,
        UPDATER_STATE_APPLYING,
        UPDATER_STATE_VERIFYING,
        UPDATER_STATE_ROLLING_BACK,
        UPDATER_STATE_FAILED,
        _UPDATER_STATE_MAX,
} UpdaterState;

const char *updater_state_to_string(UpdaterState s);

typedef enum UpdaterField {
        UPDATER_FIELD_STATE = 1u << 0,
        UPDATER_FIELD_CURRENT = 1u << 1,
        UPDATER_FIELD_TARGET = 1u << 2,
        UPDATER_FIELD_LAST_GOOD = 1u << 3,
        UPDATER_FIELD_PREVIOUS = 1u << 4,
        UPDATER_FIELD_QUARANTINED = 1u << 5,
        UPDATER_FIELD_DEFER_REASONS = 1u << 6,
        UPDATER_FIELD_OPERATION = 1u << 7,
        UPDATER_FIELD_PROGRESS = 1u << 8,
        UPDATER_FIELD_LAST_CHECK = 1u << 9,
        UPDATER_FIELD_LAST_UPDATE = 1u << 10,
        UPDATER_FIELD_NEXT_CHECK = 1u << 11,
        UPDATER_FIELD_LAST_ERROR = 1u << 12,
        UPDATER_FIELD_CONFIG_ERROR = 1u << 13,
} UpdaterField;

typedef struct DeferReason {
        char *gate;     /* round-lock, validation-api, vm-operation */
        char *detail;
        char *since;    /* RFC 3339 */
} DeferReason;

/* What the bus shows; strings never NULL. */
typedef struct UpdaterStatus {
        UpdaterState state;
        char *current_commit;
        char *target_commit;
        char *last_good_commit;
        char *previous_commit;
        char *quarantined_commit;
        GPtrArray *defer_reasons;   /* of DeferReason */
        char *operation;
        unsigned progress;
        uint64_t last_check_usec, last_update_usec, next_check_usec; /* CLOCK_REALTIME, 0 = never */
        char *last_error;
        char *config_error;         /* why the settings cannot run ("" = they can): UpdaterUser refused */
} UpdaterStatus;

/* A transaction that changed (or tried to change) the deployment, for the
 * history: an update applied, failed (rolled back or not, or refused by the
 * signature policy), an operator rollback and how it ended. A deferral or an
 * Apply with nothing to do is not one. */
typedef struct UpdaterTransaction {
        const char *action;      /* "apply" or "rollback" */
        bool automatic;          /* started by the updater itself (the automatic check) */
        bool resumed;            /* finished at start-up after an interruption */
        const char *from;        /* the commit before */
        const char *to;          /* the commit after, or the target that failed */
        bool ok;
        const char *reason;      /* why it failed, NULL when ok */
        bool rolled_back;        /* it failed and the previous commit runs again */
        uint64_t duration_usec;  /* from its start (CLOCK_MONOTONIC) */
} UpdaterTransaction;

typedef struct UpdaterEvents {
        /* Fields that changed; called before any signal or reply that follows. */
        void (*changed)(Updater *u, uint32_t fields, void *userdata);
        void (*deferred)(Updater *u, const char *reason, const char *target, void *userdata);
        void (*applied)(Updater *u, const char *old_commit, const char *new_commit, void *userdata);
        void (*failed)(Updater *u, const char *target, const char *reason, bool rolled_back, void *userdata);
        /* After applied or failed, before the reply to the call that started it. */
        void (*finished)(Updater *u, const UpdaterTransaction *t, void *userdata);
        void *userdata;
} UpdaterEvents;

typedef enum UpdaterError {
        UPDATER_OK,
        UPDATER_ERROR_BUSY,
        UPDATER_ERROR_DEFERRED,
        UPDATER_ERROR_DIRTY_TREE,
        UPDATER_ERROR_DISABLED,
        UPDATER_ERROR_INVALID,
        UPDATER_ERROR_FAILED,
} UpdaterError;

/* from/to: the commits (equal when nothing changed); available for Check. */
typedef void (*updater_done_cb)(Updater *u, UpdaterError error, const char *message, const char *from,
                                const char *to, bool available, void *userdata);

/* runner: where the commands run (STEP_RUNNER_AUTO: systemd when booted with it). */
int updater_new(sd_event *event, sd_bus *bus, SettingsStore *settings, const char *state_dir, Reconciler *reconciler,
                StepRunnerBackend runner, const UpdaterEvents *events, Updater **ret);
void updater_free(Updater *u);

/* Loads the state store, finishes a transaction a crash or a self-restart
 * left, arms the automatic check. */
int updater_start(Updater *u);
/* Settings changed (SetSettings, Reload). */
void updater_settings_changed(Updater *u);

const UpdaterStatus *updater_status(Updater *u);

/* Each returns -EBUSY at once when a transaction runs, -EACCES when the
 * settings cannot run (UpdaterUser refused: status->config_error says why),
 * else 0 and calls done. */
int updater_check(Updater *u, updater_done_cb done, void *userdata);
int updater_apply(Updater *u, bool force, bool dry_run, updater_done_cb done, void *userdata);
/* commit "" = PreviousCommit. */
int updater_rollback(Updater *u, const char *commit, updater_done_cb done, void *userdata);
int updater_set_auto_update(Updater *u, bool enabled, char **ret_error);
