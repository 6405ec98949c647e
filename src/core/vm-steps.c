/* SPDX-License-Identifier: Apache-2.0 */
/* The VM operations as data: each is a table of named steps run by the one
 * step driver (core/step-driver.h) with its one poll timer. A new strategy is
 * one table here and one plan action.
 *
 * Stopping follows dstack's own status rules (dstack.md §2; v0.5.5 and HEAD
 * main_service.rs shutdown_vm, app.rs vm_event_report, app/vm_info.rs):
 * ShutdownVm asks the guest agent to power off and returns. Normally the agent
 * reports "powering off" first (v0.5.5 agents after stopping the app, up to
 * ~90 s), the VMM clears `started`, and the VM ends `stopped`: done. Only when
 * that report is lost does a guest that powered off read `exited` (`started`
 * still set), and the VMM's auto-restart would boot it again unless StopVm
 * clears the flag: so StopVm goes out the moment an `exited` guest is seen,
 * and at the deadline (StopTimeoutUSec) for a guest still running. */
#include <errno.h>
#include <time.h>

#include <glib.h>

#include "core/reconciler-internal.h"
#include "shared/log.h"
#include "shared/macro.h"

#define HARD_STOP_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define REMOVE_TIMEOUT_USEC (120 * USEC_PER_SEC)
#define BOOT_TIMEOUT_USEC (600 * USEC_PER_SEC)

uint64_t now_usec(clockid_t clock) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

ReconcilerError steps_error_kind(const VmmResult *res) {
        if (res->kind == VMM_ERROR_TRANSPORT || res->kind == VMM_ERROR_AUTH || res->kind == VMM_ERROR_HTTP)
                return RECONCILER_ERROR_VMM_UNAVAILABLE;
        return RECONCILER_ERROR_FAILED;
}

static bool transient(const VmmResult *res) {
        return res->kind == VMM_ERROR_TRANSPORT || res->kind == VMM_ERROR_HTTP;
}

void step_fail_kind(Job *j, ReconcilerError kind, const char *message) {
        j->fail_kind = kind;
        step_driver_fail(j->r->driver, -EIO, message);
}

static void step_fail_res(Job *j, const VmmResult *res, const char *what) {
        g_autofree char *m = what ? g_strdup_printf("%s: %s", what, res->message) : g_strdup(res->message);
        step_fail_kind(j, steps_error_kind(res), m);
}

void step_cancel_call(void *userdata) {
        Job *j = userdata;
        if (j->vmm_call)
                vmm_call_cancel(j->vmm_call);
        j->vmm_call = NULL;
}

/* Sends a VMM call whose callback reports; a call that cannot be sent fails the step. */
#define SEND(j, expr, what)                                                              \
        do {                                                                             \
                if ((expr) < 0)                                                          \
                        step_fail_kind((j), RECONCILER_ERROR_FAILED, "cannot send " what); \
        } while (0)

/* ---- stop-graceful: ShutdownVm, StopVm as soon as the guest is down ---- */

static uint64_t stop_timeout(void *userdata) {
        Job *j = userdata;
        return j->r->settings->config->stop_timeout_usec;
}

static void stop_check(StepDriver *d, void *userdata);

static void on_down_stopped(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0)
                return step_fail_res(j, res, NULL);
        /* No QEMU process and `started` cleared: stopped, and the VMM will not boot it again. */
        step_driver_done(j->r->driver);
}

static void on_hard_stop(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0)
                return step_fail_res(j, res, NULL);
        step_driver_poll_fast(j->r->driver);
        step_driver_again(j->r->driver);
}

static void send_hard_stop(Job *j) {
        j->hard_stop_sent = true;
        SEND(j, vmm_stop_vm(j->r->vmm, j->act_id, on_hard_stop, j, &j->vmm_call), "StopVm");
}

static void on_stop_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        StepDriver *d = j->r->driver;
        j->vmm_call = NULL;
        if (res->error < 0) {
                if (transient(res))
                        return step_driver_again(d); /* until the deadline */
                return step_fail_res(j, res, NULL);
        }
        if (!res->info->found)
                return step_driver_done(d);

        switch (res->info->info->status) {
        case VM_STATUS_STOPPED:
        case VM_STATUS_REMOVING:
                return step_driver_done(d);
        case VM_STATUS_EXITED:
                /* The guest is down and `started` is still set: StopVm now, or
                 * the VMM's auto-restart boots the old VM again. */
                log_debug("VM %s is down, sending StopVm.", j->act_id);
                SEND(j, vmm_stop_vm(j->r->vmm, j->act_id, on_down_stopped, j, &j->vmm_call), "StopVm");
                return;
        case VM_STATUS_RUNNING:
                if (j->shutdown_refused && !j->hard_stop_sent)
                        return send_hard_stop(j);
                return step_driver_again(d);
        default: /* stopping: QEMU is exiting after StopVm */
                return step_driver_again(d);
        }
}

static void stop_check(StepDriver *d, void *userdata) {
        Job *j = userdata;
        SEND(j, vmm_get_info(j->r->vmm, j->act_id, on_stop_info, j, &j->vmm_call), "GetInfo");
}

static void on_shutdown_sent(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                /* A guest without a working agent, or one already down: look, then stop it hard. */
                log_warning("ShutdownVm of %s failed (%s), stopping it hard.", j->act_id, res->message);
                j->shutdown_refused = true;
                return stop_check(j->r->driver, j);
        }
        step_driver_again(j->r->driver);
}

static void stop_graceful_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        j->shutdown_refused = j->hard_stop_sent = false;
        if (j->act_stopped)
                return step_driver_done(d);
        j->touched = true;
        SEND(j, vmm_shutdown_vm(j->r->vmm, j->act_id, on_shutdown_sent, j, &j->vmm_call), "ShutdownVm");
}

static uint64_t stop_graceful_on_timeout(StepDriver *d, void *userdata) {
        Job *j = userdata;
        if (j->hard_stop_sent)
                return 0; /* "… timed out": StopVm did not stop it either */
        log_info("VM %s did not stop within the stop timeout, stopping it hard.", j->act_id);
        send_hard_stop(j);
        return HARD_STOP_TIMEOUT_USEC;
}

/* ---- stop-hard: a duplicate is not shut down politely ---- */

static uint64_t hard_stop_timeout(void *userdata) {
        return HARD_STOP_TIMEOUT_USEC;
}

static void stop_hard_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        j->shutdown_refused = false;
        send_hard_stop(j);
}

/* ---- remove, then wait until the VMM no longer knows the VM ---- */

static uint64_t remove_timeout(void *userdata) {
        return REMOVE_TIMEOUT_USEC;
}

static void on_gone_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                if (transient(res))
                        return step_driver_again(j->r->driver);
                return step_fail_res(j, res, NULL);
        }
        if (!res->info->found) {
                j->removed = true;
                return step_driver_done(j->r->driver);
        }
        step_driver_again(j->r->driver);
}

static void remove_check(StepDriver *d, void *userdata) {
        Job *j = userdata;
        SEND(j, vmm_get_info(j->r->vmm, j->act_id, on_gone_info, j, &j->vmm_call), "GetInfo");
}

static void on_refused_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        g_autofree char *why = g_steal_pointer(&j->remove_error);
        j->vmm_call = NULL;
        if (res->error >= 0 && !res->info->found) {
                j->removed = true;
                return step_driver_done(j->r->driver); /* gone already (a VM retired long ago, say) */
        }
        step_fail_kind(j, RECONCILER_ERROR_FAILED, why);
}

static void on_removed(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                if (!transient(res)) {
                        /* Refused: fine if the VM is gone, else that is the failure. */
                        g_free(j->remove_error);
                        j->remove_error = g_strdup(res->message);
                        SEND(j, vmm_get_info(j->r->vmm, j->act_id, on_refused_info, j, &j->vmm_call), "GetInfo");
                        return;
                }
                return step_fail_res(j, res, NULL);
        }
        /* ≤0.5.6 removes at once, ≥0.5.7 shows "removing" first: look at once either way. */
        remove_check(j->r->driver, j);
}

static void remove_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        j->touched = true;
        SEND(j, vmm_remove_vm(j->r->vmm, j->act_id, on_removed, j, &j->vmm_call), "RemoveVm");
}

/* ---- wait until a VM runs (or fails to boot); start ---- */

static uint64_t boot_timeout(void *userdata) {
        return BOOT_TIMEOUT_USEC;
}

static const char *boot_id(const Job *j) {
        return j->new_id ?: j->act_id;
}

static void on_boot_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        StepDriver *d = j->r->driver;
        j->vmm_call = NULL;
        if (res->error < 0) {
                if (transient(res))
                        return step_driver_again(d);
                return step_fail_res(j, res, NULL);
        }
        if (!res->info->found)
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, "the VM disappeared while booting");

        const VmInfo *vm = res->info->info;
        if (!isempty(vm->boot_error)) {
                g_autofree char *m = g_strdup_printf("the VM failed to boot: %s", vm->boot_error);
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, m);
        }
        if (vm->status == VM_STATUS_RUNNING)
                return step_driver_done(d);
        if (vm->status == VM_STATUS_EXITED || vm->status == VM_STATUS_STOPPED)
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, "the VM stopped while booting");
        step_driver_again(d);
}

static void boot_check(StepDriver *d, void *userdata) {
        Job *j = userdata;
        SEND(j, vmm_get_info(j->r->vmm, boot_id(j), on_boot_info, j, &j->vmm_call), "GetInfo");
}

static void on_started(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0)
                return step_fail_res(j, res, NULL);
        boot_check(j->r->driver, j);
}

static void start_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        SEND(j, vmm_start_vm(j->r->vmm, j->act_id, on_started, j, &j->vmm_call), "StartVm");
}

/* ---- the tables ---- */

#define STEP_CHECKS { "prepare-checks", "checking the spec against the VMM", prep_checks_start, NULL, NULL, NULL, step_cancel_call }
#define STEP_ENCRYPT { "encrypt", "encrypting the env to the VM's key", prep_encrypt_start, NULL, NULL, NULL, step_cancel_call }
#define STEP_CROSS_CHECK { "cross-check", "cross-checking the compose hash with the VMM", prep_cross_check_start, NULL, NULL, NULL, step_cancel_call }
#define STEP_STOP(desc) { "stop-graceful", desc, stop_graceful_start, stop_check, stop_timeout, stop_graceful_on_timeout, step_cancel_call }
#define STEP_STOP_HARD(desc) { "stop-hard", desc, stop_hard_start, stop_check, hard_stop_timeout, NULL, step_cancel_call }
#define STEP_REMOVE(desc) { "remove", desc, remove_start, remove_check, remove_timeout, NULL, step_cancel_call }
#define STEP_CREATE { "create", "creating the VM", create_start, NULL, NULL, NULL, step_cancel_call }
#define STEP_WAIT_RUNNING { "wait-running", "waiting for the new VM to boot", NULL, boot_check, boot_timeout, NULL, step_cancel_call }
#define STEP_START(desc) { "start", desc, start_start, boot_check, boot_timeout, NULL, step_cancel_call }
#define STEP_UPDATE { "update", "updating the VM in place", update_vm_start, NULL, NULL, NULL, step_cancel_call }
#define STEP_RECORD { "record", "recording the deployment", record_start, NULL, NULL, NULL, step_cancel_call }

static const StepDef create_steps[] = {
        STEP_CHECKS, STEP_ENCRYPT, STEP_CROSS_CHECK, STEP_CREATE, STEP_WAIT_RUNNING, STEP_RECORD,
};
static const StepDef recreate_steps[] = {
        STEP_CHECKS, STEP_ENCRYPT, STEP_CROSS_CHECK, STEP_STOP("stopping the old VM"), STEP_REMOVE("removing the old VM"),
        STEP_CREATE, STEP_WAIT_RUNNING, STEP_RECORD,
};
static const StepDef in_place_steps[] = {
        STEP_CHECKS, STEP_ENCRYPT, STEP_CROSS_CHECK, STEP_UPDATE, STEP_STOP("stopping the VM to apply the update"),
        STEP_START("starting the updated VM"), STEP_RECORD,
};
static const StepDef in_place_resume_steps[] = {
        STEP_STOP("stopping the VM to apply the update"), STEP_START("starting the updated VM"), STEP_RECORD,
};
static const StepDef start_steps[] = { STEP_START("starting the VM") };
static const StepDef stop_steps[] = { STEP_STOP("stopping the VM") };
static const StepDef restart_steps[] = { STEP_STOP("stopping the VM"), STEP_START("starting the VM") };
static const StepDef remove_duplicate_steps[] = {
        STEP_STOP_HARD("stopping a duplicate VM"), STEP_REMOVE("removing a duplicate VM"),
};
static const StepDef remove_retired_steps[] = {
        STEP_STOP("stopping the VM under its old name"), STEP_REMOVE("removing the VM under its old name"),
};

const StepTable table_create = STEP_TABLE("create", create_steps);
const StepTable table_recreate = STEP_TABLE("recreate", recreate_steps);
const StepTable table_in_place = STEP_TABLE("update-in-place", in_place_steps);
const StepTable table_in_place_resume = STEP_TABLE("update-in-place", in_place_resume_steps);
const StepTable table_start = STEP_TABLE("start", start_steps);
const StepTable table_stop = STEP_TABLE("stop", stop_steps);
const StepTable table_restart = STEP_TABLE("restart", restart_steps);
const StepTable table_remove_duplicate = STEP_TABLE("remove-duplicate", remove_duplicate_steps);
const StepTable table_remove_retired = STEP_TABLE("remove-renamed", remove_retired_steps);

/* ---- running a table for a job ---- */

/* State while a step runs; -1: leave State and StateReason alone (the VM is
 * not disturbed by preparing or cleaning up). */
static int step_state(const Job *j, const char *step) {
        bool operator_op = j->kind == JOB_STOP || j->kind == JOB_RESTART || j->kind == JOB_START;
        if (streq(step, "stop-graceful"))
                return operator_op ? VM_STATE_STOPPING : VM_STATE_UPDATING;
        if (streq(step, "remove") || streq(step, "update"))
                return VM_STATE_UPDATING;
        if (streq(step, "create"))
                return VM_STATE_CREATING;
        if (streq(step, "wait-running") || streq(step, "start"))
                return VM_STATE_STARTING;
        return -1;
}

static void on_table_progress(StepDriver *d, void *userdata) {
        Job *j = userdata;
        Reconciler *r = j->r;
        bool cleanup = streq(step_driver_table_name(d), "remove-duplicate") ||
                       streq(step_driver_table_name(d), "remove-renamed");

        vm_set_str(r, &r->vm->operation, step_driver_step_name(d), VM_FIELD_OPERATION);
        vm_set_u32(r, &r->vm->progress, step_driver_progress(d), VM_FIELD_PROGRESS);
        int s = cleanup ? -1 : step_state(j, step_driver_step_name(d));
        if (s < 0)
                return vm_flush(r);
        g_autofree char *why = step_driver_describe(d);
        vm_set_state(r, (VmState) s, why);
}

static void on_table_done(StepDriver *d, int code, const char *message, void *userdata) {
        Job *j = userdata;
        if (j->abandoned)
                return;
        Reconciler *r = j->r;
        vm_set_str(r, &r->vm->operation, "", VM_FIELD_OPERATION);
        if (code == 0)
                vm_set_u32(r, &r->vm->progress, 100, VM_FIELD_PROGRESS);
        job_step_fn then = j->then;
        j->then = NULL;
        then(j, code == 0 ? RECONCILER_OK : j->fail_kind, message);
}

static const StepDriverEvents table_events = {
        .progress = on_table_progress,
        .done = on_table_done,
};

void job_run_table(Job *j, const StepTable *t, job_step_fn then) {
        j->then = then;
        j->fail_kind = RECONCILER_ERROR_FAILED;
        vm_set_u32(j->r, &j->r->vm->progress, 0, VM_FIELD_PROGRESS);
        int q = step_driver_run(j->r->driver, t, &table_events, j);
        if (q < 0) {
                j->then = NULL;
                then(j, RECONCILER_ERROR_FAILED, "internal error: cannot start the operation");
        }
}

/* The job goes away (shutdown): stop its table without acting on its end. */
void job_cancel_table(Job *j) {
        if (!step_driver_running(j->r->driver))
                return;
        j->abandoned = true;
        step_driver_abort(j->r->driver, -ECANCELED, "cancelled");
}
