/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "core/history.h"
#include "core/host-view.h"
#include "core/settings.h"
#include "core/vm.h"

/* The VM reconciler: keeps each managed VM equal to its spec through the
 * dstack VMM (updater.md, "VM reconciliation"). Policy and state machines
 * only; it knows nothing of D-Bus. The bus layer reads each Vm, starts
 * operations, and is told of changes through ReconcilerEvents. */

typedef struct Reconciler Reconciler;

typedef struct ReconcilerEvents {
        void (*vm_added)(Vm *vm, void *userdata);
        void (*vm_removed)(Vm *vm, void *userdata);
        /* Fields of vm changed; called before any signal or completion that
         * follows from the same event. */
        void (*vm_changed)(Vm *vm, void *userdata);
        void (*vm_updated)(Vm *vm, const char *old_compose_hash, const char *new_compose_hash, const char *vm_id,
                           void *userdata);
        void (*update_failed)(Vm *vm, const char *target_compose_hash, const char *reason, void *userdata);
        /* A VM's required_env changed: reconciler_required_env() may differ
         * (Config.RequiredEnv / MissingEnv). */
        void (*required_env_changed)(void *userdata);
        /* The host's figures changed (reconciler_host_view()). */
        void (*host_changed)(void *userdata);
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
        RECONCILER_ERROR_SHUTDOWN,         /* the launcher is stopping: the operation did not finish */
} ReconcilerError;

typedef void (*reconciler_done_cb)(ReconcilerError error, const char *message, void *userdata);

/* Who waits for an operation: told once when it ends (also on failure, and
 * at shutdown), and named in its history entry. */
typedef struct ReconcilerCaller {
        const char *trigger;        /* "uid 0 (platformctl)" */
        reconciler_done_cb done;
        void *userdata;
} ReconcilerCaller;

/* history: where operations are recorded (may be NULL). */
int reconciler_new(sd_event *event, SettingsStore *settings, const char *state_dir, History *history,
                   const ReconcilerEvents *events, Reconciler **ret);
void reconciler_free(Reconciler *r);

/* Adopts what the state store and the VMM say and starts polling. */
int reconciler_start(Reconciler *r);
/* Ends every operation (their callers are told RECONCILER_ERROR_SHUTDOWN) and
 * stops polling. */
void reconciler_shutdown(Reconciler *r);

/* Settings or env changed (SetEnv, RemoveEnv, SetSettings, Reload, AddVm,
 * RemoveVm): re-evaluate now, without waiting for the next poll. trigger:
 * who made the change ("uid 0 (platformctl)"), or NULL (SIGHUP); the check
 * that evaluates it names it in the history of a deploy it causes. */
void reconciler_settings_changed(Reconciler *r, const char *trigger);

/* The managed VMs, the API's first: the API's while ApiUrl is set, and one
 * for each VM declared in the settings (config.json "vms"), which
 * reconciler_settings_changed() follows. NULL-terminated, owned by r. */
Vm *const *reconciler_vms(Reconciler *r);
Vm *reconciler_find_vm(Reconciler *r, const char *name);
/* Where vm's spec comes from (ApiUrl for the API's VM). */
const char *reconciler_vm_source(Reconciler *r, const Vm *vm);
/* vm was declared in the settings (not the API's). */
bool reconciler_vm_declared(Reconciler *r, const Vm *vm);
/* What is wrong with a declared VM's source, or NULL: its syntax, and for a
 * file:// source the file itself (root's, writable by no one else, not too
 * large). Caller frees. */
char *reconciler_source_problem(const char *source);
/* The host: capacity, what the VMs take, how it fares. */
const HostView *reconciler_host_view(Reconciler *r);
/* The keys the VMs' specs say they need, all VMs together. Caller frees. */
char **reconciler_required_env(Reconciler *r);
/* A VM operation is in progress (the Updater's "vm-operation" gate): an
 * operator operation, or a VM being created, started, updated or stopped. */
bool reconciler_busy(Reconciler *r);

/* What Update would do, from the last fetched spec and the last observation;
 * no I/O, no side effects. When that data is older than a poll, or the last
 * fetch or observation failed, changes hold a ("data", "<how old, why>", "")
 * triple saying so. action: none create recreate update-in-place start
 * blocked wait adopt. changes: NULL-terminated triples field, current, target
 * (env by key name only). Caller frees with g_strfreev. */
int reconciler_plan(Reconciler *r, Vm *vm, char **ret_action, char ***ret_changes);

/* Operations. Each returns -EBUSY at once if another operator's call on the
 * VM is running or waiting, -ENOENT (Start, Stop, Restart) if the VM does not
 * exist at the VMM, else 0, and tells caller when it ends. The launcher's own
 * work never makes them busy: a check that is only reading (the spec, the
 * VMM's Status) ends at once and runs again afterwards; a table it runs (a
 * deploy, a crashed VM's restart, a duplicate's removal) is never cut
 * halfway, the call runs right after it. */
int reconciler_update(Reconciler *r, Vm *vm, bool force, const ReconcilerCaller *caller);
/* For a Busy reply: the operator's call on vm running or waiting, "the stop
 * asked by uid 0 (platformctl) 3 s ago"; NULL when there is none. Caller frees. */
char *reconciler_describe_pending(Reconciler *r, const Vm *vm);
int reconciler_start_vm(Reconciler *r, Vm *vm, const ReconcilerCaller *caller);
int reconciler_stop_vm(Reconciler *r, Vm *vm, const ReconcilerCaller *caller);
int reconciler_restart_vm(Reconciler *r, Vm *vm, const ReconcilerCaller *caller);
/* Config.RemoveVm with destroy: after the operation running on vm (queued
 * ones are answered at once), every VM of its name at the VMM is stopped and
 * removed; then the caller drops vm from the settings. -EINVAL for the API's
 * VM. Removing without destroy is only a change of the settings. */
int reconciler_destroy_vm(Reconciler *r, Vm *vm, const ReconcilerCaller *caller);
