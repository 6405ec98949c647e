/* SPDX-License-Identifier: Apache-2.0 */
/* The VMM steps: stop, remove, start, each acting on op->act_id; and the
 * operator's Start, Stop and Restart as tables of them.
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

#include "core/operation.h"
#include "core/vm-steps.h"
#include "shared/log.h"
#include "shared/macro.h"

#define HARD_STOP_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define REMOVE_TIMEOUT_USEC (120 * USEC_PER_SEC)
#define BOOT_TIMEOUT_USEC (600 * USEC_PER_SEC)

ReconcilerError steps_error_kind(const VmmResult *res) {
        if (res->kind == VMM_ERROR_TRANSPORT || res->kind == VMM_ERROR_AUTH || res->kind == VMM_ERROR_HTTP)
                return RECONCILER_ERROR_VMM_UNAVAILABLE;
        return RECONCILER_ERROR_FAILED;
}

static bool transient(const VmmResult *res) {
        return res->kind == VMM_ERROR_TRANSPORT || res->kind == VMM_ERROR_HTTP;
}

static void step_fail_res(Operation *op, const VmmResult *res, const char *what) {
        g_autofree char *m = what ? g_strdup_printf("%s: %s", what, res->message) : g_strdup(res->message);
        step_fail_kind(op, steps_error_kind(res), m);
}

void step_cancel_call(void *userdata) {
        Operation *op = userdata;
        if (op->vmm_call)
                vmm_call_cancel(op->vmm_call);
        op->vmm_call = NULL;
}

/* Sends a VMM call whose callback reports; a call that cannot be sent fails the step. */
#define SEND(op, expr, what)                                                              \
        do {                                                                              \
                if ((expr) < 0)                                                           \
                        step_fail_kind((op), RECONCILER_ERROR_FAILED, "cannot send " what); \
        } while (0)

static VmmClient *vmm(Operation *op) {
        return op_host(op)->vmm;
}

/* ---- stop-graceful: ShutdownVm, StopVm as soon as the guest is down ---- */

static uint64_t stop_timeout(void *userdata) {
        Operation *op = userdata;
        return op_host(op)->settings->config->stop_timeout_usec;
}

static void on_down_stopped(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error < 0)
                return step_fail_res(op, res, NULL);
        /* No QEMU process and `started` cleared: stopped, and the VMM will not boot it again. */
        step_driver_done(op_driver(op));
}

static void on_hard_stop(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error < 0)
                return step_fail_res(op, res, NULL);
        step_driver_poll_fast(op_driver(op));
        step_driver_again(op_driver(op));
}

static void send_hard_stop(Operation *op) {
        op->step.stop.hard_stop_sent = true;
        SEND(op, vmm_stop_vm(vmm(op), op->act_id, on_hard_stop, op, &op->vmm_call), "StopVm");
}

static void on_stop_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        StepDriver *d = op_driver(op);
        op->vmm_call = NULL;
        if (res->error < 0) {
                if (transient(res))
                        return step_driver_again(d); /* until the deadline */
                return step_fail_res(op, res, NULL);
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
                log_debug("VM %s is down, sending StopVm.", op->act_id);
                SEND(op, vmm_stop_vm(vmm(op), op->act_id, on_down_stopped, op, &op->vmm_call), "StopVm");
                return;
        case VM_STATUS_RUNNING:
                if (op->step.stop.shutdown_refused && !op->step.stop.hard_stop_sent)
                        return send_hard_stop(op);
                return step_driver_again(d);
        default: /* stopping: QEMU is exiting after StopVm */
                return step_driver_again(d);
        }
}

void vm_step_stop_check(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        SEND(op, vmm_get_info(vmm(op), op->act_id, on_stop_info, op, &op->vmm_call), "GetInfo");
}

static void on_shutdown_sent(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error < 0) {
                /* A guest without a working agent, or one already down: look, then stop it hard. */
                log_warning("ShutdownVm of %s failed (%s), stopping it hard.", op->act_id, res->message);
                op->step.stop.shutdown_refused = true;
                return vm_step_stop_check(op_driver(op), op);
        }
        step_driver_again(op_driver(op));
}

void vm_step_stop_graceful_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        op->step.stop.shutdown_refused = op->step.stop.hard_stop_sent = false;
        if (op->act_stopped)
                return step_driver_done(d);
        op->deploy.touched = true;
        SEND(op, vmm_shutdown_vm(vmm(op), op->act_id, on_shutdown_sent, op, &op->vmm_call), "ShutdownVm");
}

uint64_t vm_step_stop_graceful_timeout(void *userdata) {
        return stop_timeout(userdata);
}

uint64_t vm_step_stop_graceful_on_timeout(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        if (op->step.stop.hard_stop_sent)
                return 0; /* "… timed out": StopVm did not stop it either */
        log_info("VM %s did not stop within the stop timeout, stopping it hard.", op->act_id);
        send_hard_stop(op);
        return HARD_STOP_TIMEOUT_USEC;
}

/* ---- stop-hard: a duplicate is not shut down politely ---- */

static uint64_t hard_stop_timeout(void *userdata) {
        return HARD_STOP_TIMEOUT_USEC;
}

static void stop_hard_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        op->step.stop.shutdown_refused = op->step.stop.hard_stop_sent = false;
        send_hard_stop(op);
}

/* ---- remove, then wait until the VMM no longer knows the VM ---- */

uint64_t vm_step_remove_timeout(void *userdata) {
        return REMOVE_TIMEOUT_USEC;
}

static void on_gone_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error < 0) {
                if (transient(res))
                        return step_driver_again(op_driver(op));
                return step_fail_res(op, res, NULL);
        }
        if (!res->info->found) {
                op->deploy.removed = true;
                return step_driver_done(op_driver(op));
        }
        step_driver_again(op_driver(op));
}

void vm_step_remove_check(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        SEND(op, vmm_get_info(vmm(op), op->act_id, on_gone_info, op, &op->vmm_call), "GetInfo");
}

static void on_refused_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error >= 0 && !res->info->found) {
                op->deploy.removed = true;
                return step_driver_done(op_driver(op)); /* gone already (a VM retired long ago, say) */
        }
        step_fail_kind(op, RECONCILER_ERROR_FAILED, op->step.remove.refused);
}

static void on_removed(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error < 0) {
                if (!transient(res)) {
                        /* Refused: fine if the VM is gone, else that is the failure. */
                        g_autofree char *b = text_bound(res->message);
                        g_strlcpy(op->step.remove.refused, b, sizeof op->step.remove.refused);
                        SEND(op, vmm_get_info(vmm(op), op->act_id, on_refused_info, op, &op->vmm_call), "GetInfo");
                        return;
                }
                return step_fail_res(op, res, NULL);
        }
        /* ≤0.5.6 removes at once, ≥0.5.7 shows "removing" first: look at once either way. */
        vm_step_remove_check(op_driver(op), op);
}

void vm_step_remove_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        op->deploy.touched = true;
        SEND(op, vmm_remove_vm(vmm(op), op->act_id, on_removed, op, &op->vmm_call), "RemoveVm");
}

/* ---- wait until a VM runs (or fails to boot); start ---- */

uint64_t vm_step_boot_timeout(void *userdata) {
        return BOOT_TIMEOUT_USEC;
}

static const char *boot_id(const Operation *op) {
        return op->deploy.new_id ?: op->act_id;
}

static void on_boot_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        StepDriver *d = op_driver(op);
        op->vmm_call = NULL;
        if (res->error < 0) {
                if (transient(res))
                        return step_driver_again(d);
                return step_fail_res(op, res, NULL);
        }
        if (!res->info->found)
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, "the VM disappeared while booting");

        const VmInfo *vm = res->info->info;
        if (!isempty(vm->boot_error)) {
                g_autofree char *m = g_strdup_printf("the VM failed to boot: %s", vm->boot_error);
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, m);
        }
        if (vm->status == VM_STATUS_RUNNING)
                return step_driver_done(d);
        if (vm->status == VM_STATUS_EXITED || vm->status == VM_STATUS_STOPPED)
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, "the VM stopped while booting");
        step_driver_again(d);
}

void vm_step_boot_check(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        SEND(op, vmm_get_info(vmm(op), boot_id(op), on_boot_info, op, &op->vmm_call), "GetInfo");
}

static void on_started(VmmCall *call, const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->vmm_call = NULL;
        if (res->error < 0)
                return step_fail_res(op, res, NULL);
        vm_step_boot_check(op_driver(op), op);
}

void vm_step_start_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        SEND(op, vmm_start_vm(vmm(op), op->act_id, on_started, op, &op->vmm_call), "StartVm");
}

/* ---- capacity: a VM the operator starts must fit ---- */

static void on_capacity_observed(const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        Host *h = op_host(op);
        op->observe_wait = NULL;
        if (res)
                return step_fail_kind(op, steps_error_kind(res), h->observer.error);
        const VmInfo *vm = NULL;
        for (size_t i = 0; i < h->observer.status.n_vms; i++)
                if (streq_ptr(h->observer.status.vms[i].id, op->act_id))
                        vm = &h->observer.status.vms[i];
        g_autofree char *why = NULL;
        if (vm && host_capacity_check(h, vm, &vm->configuration, false, &why) < 0)
                return step_fail_kind(op, RECONCILER_ERROR_BLOCKED, why);
        step_driver_done(op_driver(op));
}

static void capacity_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        Host *h = op_host(op);
        host_refresh_meta(h);
        if (observer_request(&h->observer, h->vmm, op->since_usec, on_capacity_observed, op, &op->observe_wait) < 0)
                step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot send Status");
}

static void observe_cancel(void *userdata) {
        Operation *op = userdata;
        observer_wait_cancel(&op_host(op)->observer, g_steal_pointer(&op->observe_wait));
}

/* ---- the tables ---- */

static const StepDef start_steps[] = {
        { .name = "capacity", .description = "checking the host's capacity", .start = capacity_start,
          .cancel = observe_cancel },
        STEP_START("starting the VM", VM_STATE_STARTING),
};
static const StepDef stop_steps[] = { STEP_STOP("stopping the VM", VM_STATE_STOPPING) };
static const StepDef restart_steps[] = {
        STEP_STOP("stopping the VM", VM_STATE_STOPPING),
        STEP_START("starting the VM", VM_STATE_STARTING),
};
static const StepDef remove_duplicate_steps[] = {
        { .name = "stop-hard", .description = "stopping a duplicate VM", .start = stop_hard_start,
          .check = vm_step_stop_check, .timeout = hard_stop_timeout, .cancel = step_cancel_call },
        STEP_REMOVE("removing a duplicate VM", 0),
};

const StepTable table_start = STEP_TABLE("start", start_steps);
const StepTable table_stop = STEP_TABLE("stop", stop_steps);
const StepTable table_restart = STEP_TABLE("restart", restart_steps);
const StepTable table_remove_duplicate = STEP_TABLE("remove-duplicate", remove_duplicate_steps);

/* ---- the operator's Start, Stop, Restart ---- */

static const StepTable *operate_choose(void *userdata) {
        Operation *op = userdata;
        switch (op->kind) {
        case OPERATION_STOP:
                return &table_stop;
        case OPERATION_RESTART:
                return &table_restart;
        default:
                return op->act_running ? NULL : &table_start;
        }
}

static void operate_settle(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        bool stop = op->kind == OPERATION_STOP;
        vm_set_str(mv->vm, &mv->vm->vmm_status, stop ? "stopped" : "running");
        if (mv->last_error_cause == ERROR_CAUSE_UPDATE)
                managed_vm_clear_error(mv);
        managed_vm_set_state(mv, stop ? VM_STATE_STOPPED : VM_STATE_RUNNING,
                             stop ? "stopped by the operator; Start it to resume" : "");
        step_driver_done(d);
}

static void operate_failed(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        const char *why = step_driver_failure_message(d);
        bool blocked = op->fail_kind == RECONCILER_ERROR_BLOCKED;
        managed_vm_note_error(op->mv, blocked ? ERROR_CAUSE_BLOCKED : ERROR_CAUSE_UPDATE, why);
        managed_vm_set_state(op->mv, blocked ? VM_STATE_BLOCKED : VM_STATE_FAILED, why);
        step_driver_done(d);
}

static const StepDef operate_failed_steps[] = {
        { .name = "failed", .description = "noting the failure", .start = operate_failed },
};
static const StepTable table_operate_failed = STEP_TABLE("failed", operate_failed_steps);

static const StepDef operate_steps[] = {
        { .name = "operate", STEP_CHOOSE(operate_choose) },
        { .name = "settle", .description = "noting the outcome", .start = operate_settle },
};
const StepTable table_operate = STEP_TABLE_ON_FAIL("operate", operate_steps, table_operate_failed);

/* ---- RemoveVm with destroy: every VM of the name goes ---- */

static void on_destroy_observed(const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        op->observe_wait = NULL;
        if (res)
                return step_fail_kind(op, steps_error_kind(res), op_host(op)->observer.error);
        step_driver_done(op_driver(op));
}

static void destroy_observe_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        Host *h = op_host(op);
        if (observer_request(&h->observer, h->vmm, op->since_usec, on_destroy_observed, op, &op->observe_wait) < 0)
                step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot send Status");
}

static void add_id(GPtrArray *ids, const char *id) {
        if (!isempty(id) && !g_ptr_array_find_with_equal_func(ids, id, g_str_equal, NULL))
                g_ptr_array_add(ids, g_strdup(id));
}

/* Whatever the VMM lists under the name (duplicates and a VM half created
 * included), the one deployed, and any left under an earlier name. */
static bool next_own_vm(void *userdata, size_t i) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        const VmmStatusReply *st = &op_host(op)->observer.status;
        if (i == 0) {
                GPtrArray *ids = g_ptr_array_new();
                for (size_t k = 0; k < st->n_vms; k++)
                        if (streq_ptr(st->vms[k].name, mv->vm->name))
                                add_id(ids, st->vms[k].id);
                add_id(ids, mv->state->vm_id);
                for (char **k = mv->state->retired_ids; k && *k; k++)
                        add_id(ids, *k);
                g_ptr_array_add(ids, NULL);
                g_strfreev(op->items);
                op->items = (char **) g_ptr_array_free(ids, FALSE);
        }
        g_clear_pointer(&op->act_id, g_free);
        if (!op->items[i])
                return false;
        op->act_id = g_strdup(op->items[i]);
        op->act_stopped = false;
        log_notice("Removing VM %s (%s) at the VMM.", op->act_id, mv->vm->name);
        return true;
}

static const StepDef destroy_one_steps[] = {
        STEP_STOP("stopping the VM", VM_STATE_STOPPING),
        STEP_REMOVE("removing the VM", VM_STATE_STOPPING),
};
static const StepTable table_destroy_one = STEP_TABLE("remove", destroy_one_steps);

static const StepDef destroy_steps[] = {
        { .name = "observe", .description = "asking the VMM", .start = destroy_observe_start,
          .cancel = observe_cancel },
        { .name = "vms", STEP_EACH(next_own_vm, table_destroy_one) },
};
const StepTable table_destroy = STEP_TABLE_ON_FAIL("destroy", destroy_steps, table_operate_failed);
