/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "core/settings.h"

/* The VM reconciler: keeps the validator VM equal to the Platform API's spec
 * through the dstack VMM (updater.md, "VM reconciliation"). Policy and state
 * machines only; it knows nothing of D-Bus. The bus layer reads Vm, starts
 * operations, and is told of changes through ReconcilerEvents. */

typedef struct Reconciler Reconciler;

typedef enum VmState {
        VM_STATE_PENDING,   /* no spec yet */
        VM_STATE_BLOCKED,   /* spec cannot be applied: missing env, invalid spec, capacity */
        VM_STATE_CREATING,
        VM_STATE_STARTING,
        VM_STATE_RUNNING,
        VM_STATE_UPDATING,
        VM_STATE_STOPPING,
        VM_STATE_STOPPED,
        VM_STATE_FAILED,
        _VM_STATE_MAX,
} VmState;

const char *vm_state_to_string(VmState s);

/* Bits naming Vm fields, for change notification. */
typedef enum VmField {
        VM_FIELD_ID = 1u << 0,
        VM_FIELD_STATE = 1u << 1,
        VM_FIELD_STATE_REASON = 1u << 2,
        VM_FIELD_VMM_STATUS = 1u << 3,
        VM_FIELD_APP_ID = 1u << 4,
        VM_FIELD_COMPOSE_HASH = 1u << 5,
        VM_FIELD_TARGET_COMPOSE_HASH = 1u << 6,
        VM_FIELD_IMAGE = 1u << 7,
        VM_FIELD_IMAGE_VERSION = 1u << 8,
        VM_FIELD_VCPU = 1u << 9,
        VM_FIELD_MEMORY = 1u << 10,
        VM_FIELD_DISK = 1u << 11,
        VM_FIELD_LAST_CHECK = 1u << 12,
        VM_FIELD_LAST_UPDATE = 1u << 13,
        VM_FIELD_UPDATE_COUNT = 1u << 14,
        VM_FIELD_RESTART_COUNT = 1u << 15,
        VM_FIELD_LAST_ERROR = 1u << 16,
        VM_FIELD_OPERATION = 1u << 17,
        VM_FIELD_PROGRESS = 1u << 18,
        VM_FIELD_ALLOWED_ENV = 1u << 19,
        VM_FIELD_LAST_SUCCESSFUL_CHECK = 1u << 20,
        VM_FIELD_KMS_SIGNER = 1u << 21,
} VmField;

/* One managed VM, as the bus shows it. Read-only outside the core; strings are
 * never NULL ("" when unknown). */
typedef struct Vm {
        char *name;
        char *id;
        VmState state;
        char *state_reason;
        char *vmm_status;
        char *app_id;
        char *compose_hash;         /* deployed */
        char *target_compose_hash;  /* desired */
        char *image;
        char *image_version;
        uint32_t vcpu;
        uint32_t memory_mib;
        uint32_t disk_gib;
        uint64_t last_check_usec;   /* CLOCK_REALTIME, 0 = never: the last check, whether it succeeded or not */
        uint64_t last_successful_check_usec; /* the last check both the API and the VMM answered */
        uint64_t last_update_usec;
        uint32_t update_count;
        uint32_t restart_count;
        char *last_error;
        char *operation;            /* the step running now ("stop-graceful"), "" when none */
        uint32_t progress;          /* 0–100: share of the operation's steps completed */
        char **allowed_env;         /* the spec's allowed_envs, sorted; empty without a spec; never NULL */
        char *kms_signer;           /* the KMS signer the deployed env was encrypted under, "" = unsigned */
} Vm;

typedef struct ReconcilerEvents {
        void (*vm_added)(Reconciler *r, Vm *vm, void *userdata);
        void (*vm_removed)(Reconciler *r, Vm *vm, void *userdata);
        /* Fields that changed (VmField bits); called before any signal or
         * completion that follows from the same event. */
        void (*vm_changed)(Reconciler *r, Vm *vm, uint32_t fields, void *userdata);
        void (*vm_updated)(Reconciler *r, Vm *vm, const char *old_compose_hash, const char *new_compose_hash,
                           const char *vm_id, void *userdata);
        void (*update_failed)(Reconciler *r, Vm *vm, const char *target_compose_hash, const char *reason,
                              void *userdata);
        /* The API's required_env changed (Config.RequiredEnv / MissingEnv). */
        void (*required_env_changed)(Reconciler *r, char **required_env, void *userdata);
        void *userdata;
} ReconcilerEvents;

/* Why an operation failed, for the bus layer to name: */
typedef enum ReconcilerError {
        RECONCILER_OK,
        RECONCILER_ERROR_BUSY,             /* another operation on this VM is running */
        RECONCILER_ERROR_BLOCKED,          /* missing env, invalid spec, stopped by the operator */
        RECONCILER_ERROR_VMM_UNAVAILABLE,
        RECONCILER_ERROR_API_UNAVAILABLE,
        RECONCILER_ERROR_NOT_FOUND,        /* no such VM at the VMM */
        RECONCILER_ERROR_FAILED,
} ReconcilerError;

typedef void (*reconciler_done_cb)(Reconciler *r, ReconcilerError error, const char *message, void *userdata);

int reconciler_new(sd_event *event, SettingsStore *settings, const char *state_dir, const ReconcilerEvents *events,
                   Reconciler **ret);
void reconciler_free(Reconciler *r);

/* Adopts what the state store and the VMM say and starts the poll timer. */
int reconciler_start(Reconciler *r);

/* Settings or env changed (SetEnv, RemoveEnv, SetSettings, Reload): re-evaluate
 * now, without waiting for the next poll. trigger: who made the change
 * ("uid 0 (platformctl)"), or NULL (SIGHUP); the check that evaluates it
 * carries it, for the history of a deploy it causes. */
void reconciler_settings_changed(Reconciler *r, const char *trigger);

/* The managed VMs (at most one today). NULL-terminated, owned by r. */
Vm *const *reconciler_vms(Reconciler *r);
Vm *reconciler_find_vm(Reconciler *r, const char *name);
/* For the history, whose entries name who asked: true when the job running
 * on vm is an operator's call (Update, Start, Stop, Restart); false for the
 * launcher's own check (or none), and then *ret_trigger is who made the
 * settings change that check evaluates, NULL for a poll. */
bool reconciler_running_operator_call(Reconciler *r, const Vm *vm, const char **ret_trigger);
/* A VM operation is in progress (the Updater's "vm-operation" gate): an
 * operator operation, or a VM being created, started, updated or stopped. */
bool reconciler_busy(Reconciler *r);

/* What Update would do, from the last fetched spec and the last observation;
 * no I/O, no side effects. When that data is older than a poll, or the last
 * fetch or observation failed, changes hold a ("data", "<how old, why>", "")
 * triple saying so. action: none create recreate update-in-place start
 * blocked wait. changes: NULL-terminated triples field, current, target (env by
 * key name only). Caller frees with g_strfreev. */
int reconciler_plan(Reconciler *r, Vm *vm, char **ret_action, char ***ret_changes);

/* Operations. Each returns -EBUSY at once if another operator's call on the
 * VM is running or waiting, else 0 and calls done when finished (also on
 * failure). The launcher's own work never makes them busy: a check that is
 * only reading (the spec, the VMM's Status) is cancelled and runs again
 * afterwards; a step table it runs (a deploy, the restart of a crashed VM, a
 * duplicate's removal) is never cut halfway, the call runs right after it. */
int reconciler_update(Reconciler *r, Vm *vm, bool force, reconciler_done_cb done, void *userdata);
int reconciler_start_vm(Reconciler *r, Vm *vm, reconciler_done_cb done, void *userdata);
int reconciler_stop_vm(Reconciler *r, Vm *vm, reconciler_done_cb done, void *userdata);
int reconciler_restart_vm(Reconciler *r, Vm *vm, reconciler_done_cb done, void *userdata);

typedef void (*reconciler_logs_cb)(Reconciler *r, ReconcilerError error, const char *message, const char *text,
                                   void *userdata);
/* channel: serial, stdout or stderr; lines 1..10000. Not an operation: never Busy. */
int reconciler_get_logs(Reconciler *r, Vm *vm, const char *channel, unsigned lines, reconciler_logs_cb done,
                        void *userdata);
