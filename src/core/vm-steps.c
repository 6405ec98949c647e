/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <time.h>

#include <glib.h>

#include "core/reconciler-internal.h"
#include "shared/log.h"
#include "shared/macro.h"

/* How often a wait asks the VMM: every 20 ms for the first seconds (most steps
 * end quickly, and every millisecond here is downtime of the validator; the
 * bench measured ~2% of a CPU for it), then backing off to 250 ms. */
#define STEP_POLL_MIN_USEC (20 * USEC_PER_MSEC)
#define STEP_POLL_MAX_USEC (250 * USEC_PER_MSEC)
#define STEP_POLL_FAST_USEC (5 * USEC_PER_SEC)
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

static void seq_begin(Job *j, const char *id, uint64_t timeout, job_step_fn next) {
        char *copy = g_strdup(id); /* id may point into j->seq_id itself */
        g_free(j->seq_id);
        j->seq_id = copy;
        j->seq_deadline = now_usec(CLOCK_MONOTONIC) + timeout;
        j->seq_hard_stop_sent = false;
        j->seq_poll_usec = STEP_POLL_MIN_USEC;
        j->seq_started = now_usec(CLOCK_MONOTONIC);
        j->seq_next = next;
}

static void seq_end(Job *j, ReconcilerError error, const char *message) {
        job_step_fn next = j->seq_next;
        j->seq_next = NULL;
        next(j, error, message);
}

/* Arms the job's timer to call fn after the current poll interval, and exactly
 * at the deadline if that comes first: a timeout is acted on when due, not later. */
static void seq_poll_later(Job *j, sd_event_time_handler_t fn) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        uint64_t when = MIN(now + j->seq_poll_usec, MAX(j->seq_deadline, now));
        if (now - j->seq_started >= STEP_POLL_FAST_USEC)
                j->seq_poll_usec = MIN(2 * j->seq_poll_usec, STEP_POLL_MAX_USEC);
        j->timer = sd_event_source_disable_unref(j->timer);
        int r = sd_event_add_time(j->r->event, &j->timer, CLOCK_MONOTONIC, when, 1000, fn, j);
        if (r < 0)
                seq_end(j, RECONCILER_ERROR_FAILED, "cannot arm a timer");
}

static void seq_fail(Job *j, const VmmResult *res, const char *what) {
        g_autofree char *msg = g_strdup_printf("%s: %s", what, res->message);
        seq_end(j, steps_error_kind(res), msg);
}

/* ---- wait until a VM has left running/stopping ---- */

static void wait_stopped_query(Job *j);

static int on_wait_stopped_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        wait_stopped_query(userdata);
        return 0;
}

static void on_hard_stopped(VmmCall *call, const VmmResult *res, void *userdata);

static void on_wait_stopped_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0)
                return seq_fail(j, res, "GetInfo");
        if (!res->info->found)
                return seq_end(j, RECONCILER_OK, NULL); /* gone: stopped enough */

        VmStatus st = res->info->info->status;
        if (st == VM_STATUS_STOPPED || (st == VM_STATUS_EXITED && j->seq_hard_stop_sent))
                return seq_end(j, RECONCILER_OK, NULL);

        if (now_usec(CLOCK_MONOTONIC) >= j->seq_deadline) {
                if (j->seq_hard_stop_sent)
                        return seq_end(j, RECONCILER_ERROR_FAILED, "the VM did not stop after StopVm");
                /* The guest did not shut down in time: stop it hard. An exited
                 * VM is stopped hard too, so the VMM will not restart it. */
                log_info("VM %s did not stop within the stop timeout, stopping it hard.", j->seq_id);
                j->seq_hard_stop_sent = true;
                j->seq_poll_usec = STEP_POLL_MIN_USEC;
                j->seq_deadline = now_usec(CLOCK_MONOTONIC) + HARD_STOP_TIMEOUT_USEC;
                int r = vmm_stop_vm(j->r->vmm, j->seq_id, on_hard_stopped, j, &j->vmm_call);
                if (r < 0)
                        seq_end(j, RECONCILER_ERROR_FAILED, "cannot send StopVm");
                return;
        }
        seq_poll_later(j, on_wait_stopped_timer);
}

static void wait_stopped_query(Job *j) {
        j->timer = sd_event_source_disable_unref(j->timer);
        int r = vmm_get_info(j->r->vmm, j->seq_id, on_wait_stopped_info, j, &j->vmm_call);
        if (r < 0)
                seq_end(j, RECONCILER_ERROR_FAILED, "cannot send GetInfo");
}

static void on_hard_stopped(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0)
                return seq_fail(j, res, "StopVm");
        wait_stopped_query(j);
}

static void on_shutdown_sent(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                /* A guest without a working agent refuses: go straight to the hard stop. */
                log_warning("ShutdownVm of %s failed (%s), stopping it hard.", j->seq_id, res->message);
                j->seq_deadline = now_usec(CLOCK_MONOTONIC);
        }
        wait_stopped_query(j);
}

void steps_graceful_stop(Job *j, const char *id, job_step_fn next) {
        uint64_t timeout = j->r->settings->config->stop_timeout_usec;
        seq_begin(j, id, timeout, next);
        int r = vmm_shutdown_vm(j->r->vmm, j->seq_id, on_shutdown_sent, j, &j->vmm_call);
        if (r < 0)
                seq_end(j, RECONCILER_ERROR_FAILED, "cannot send ShutdownVm");
}

void steps_hard_stop(Job *j, const char *id, job_step_fn next) {
        seq_begin(j, id, HARD_STOP_TIMEOUT_USEC, next);
        j->seq_hard_stop_sent = true;
        int r = vmm_stop_vm(j->r->vmm, j->seq_id, on_hard_stopped, j, &j->vmm_call);
        if (r < 0)
                seq_end(j, RECONCILER_ERROR_FAILED, "cannot send StopVm");
}

/* ---- remove, then wait until the VMM no longer knows the VM ---- */

static void wait_gone_query(Job *j);

static int on_wait_gone_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        wait_gone_query(userdata);
        return 0;
}

static void on_wait_gone_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0)
                return seq_fail(j, res, "GetInfo");
        if (!res->info->found)
                return seq_end(j, RECONCILER_OK, NULL);
        if (now_usec(CLOCK_MONOTONIC) >= j->seq_deadline)
                return seq_end(j, RECONCILER_ERROR_FAILED, "the VM was not removed in time");
        seq_poll_later(j, on_wait_gone_timer);
}

static void wait_gone_query(Job *j) {
        j->timer = sd_event_source_disable_unref(j->timer);
        int r = vmm_get_info(j->r->vmm, j->seq_id, on_wait_gone_info, j, &j->vmm_call);
        if (r < 0)
                seq_end(j, RECONCILER_ERROR_FAILED, "cannot send GetInfo");
}

static void on_removed(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0)
                return seq_fail(j, res, "RemoveVm");
        /* ≤0.5.6 removes at once, ≥0.5.7 shows "removing" first: ask either way. */
        wait_gone_query(j);
}

void steps_remove(Job *j, const char *id, job_step_fn next) {
        seq_begin(j, id, REMOVE_TIMEOUT_USEC, next);
        int r = vmm_remove_vm(j->r->vmm, j->seq_id, on_removed, j, &j->vmm_call);
        if (r < 0)
                seq_end(j, RECONCILER_ERROR_FAILED, "cannot send RemoveVm");
}

/* ---- wait until a VM runs (or fails to boot) ---- */

static void wait_running_query(Job *j);

static int on_wait_running_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        wait_running_query(userdata);
        return 0;
}

static void on_wait_running_info(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0)
                return seq_fail(j, res, "GetInfo");
        if (!res->info->found)
                return seq_end(j, RECONCILER_ERROR_FAILED, "the VM disappeared while booting");

        const VmInfo *vm = res->info->info;
        if (!isempty(vm->boot_error)) {
                g_autofree char *m = g_strdup_printf("the VM failed to boot: %s", vm->boot_error);
                return seq_end(j, RECONCILER_ERROR_FAILED, m);
        }
        if (vm->status == VM_STATUS_RUNNING)
                return seq_end(j, RECONCILER_OK, NULL);
        if (vm->status == VM_STATUS_EXITED || vm->status == VM_STATUS_STOPPED)
                return seq_end(j, RECONCILER_ERROR_FAILED, "the VM stopped while booting");
        if (now_usec(CLOCK_MONOTONIC) >= j->seq_deadline)
                return seq_end(j, RECONCILER_ERROR_FAILED, "the VM did not reach running in time");
        seq_poll_later(j, on_wait_running_timer);
}

static void wait_running_query(Job *j) {
        j->timer = sd_event_source_disable_unref(j->timer);
        int r = vmm_get_info(j->r->vmm, j->seq_id, on_wait_running_info, j, &j->vmm_call);
        if (r < 0)
                seq_end(j, RECONCILER_ERROR_FAILED, "cannot send GetInfo");
}

void steps_wait_running(Job *j, const char *id, job_step_fn next) {
        seq_begin(j, id, BOOT_TIMEOUT_USEC, next);
        wait_running_query(j);
}

static void on_started(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0)
                return seq_fail(j, res, "StartVm");
        wait_running_query(j);
}

void steps_start(Job *j, const char *id, job_step_fn next) {
        seq_begin(j, id, BOOT_TIMEOUT_USEC, next);
        int r = vmm_start_vm(j->r->vmm, j->seq_id, on_started, j, &j->vmm_call);
        if (r < 0)
                seq_end(j, RECONCILER_ERROR_FAILED, "cannot send StartVm");
}

/* ---- duplicates left by a crash: stop hard, remove, one after the other ---- */

static void remove_next_duplicate(Job *j);

static void on_duplicate_removed(Job *j, ReconcilerError error, const char *message) {
        if (error != RECONCILER_OK)
                log_warning("Cannot remove duplicate VM %s: %s", j->dup_ids[j->dup_idx - 1], message);
        remove_next_duplicate(j);
}

static void on_duplicate_stopped(Job *j, ReconcilerError error, const char *message) {
        if (error != RECONCILER_OK)
                return on_duplicate_removed(j, error, message);
        steps_remove(j, j->dup_ids[j->dup_idx - 1], on_duplicate_removed);
}

static void remove_next_duplicate(Job *j) {
        if (!j->dup_ids || !j->dup_ids[j->dup_idx]) {
                job_step_fn next = j->dup_next;
                j->dup_next = NULL;
                return next(j, RECONCILER_OK, NULL);
        }
        const char *id = j->dup_ids[j->dup_idx++];
        log_notice("Removing duplicate VM %s left by an earlier run.", id);
        steps_hard_stop(j, id, on_duplicate_stopped);
}

/* A duplicate that cannot be removed is logged and tried again next time: it
 * must not keep the wanted VM from being deployed. */
void steps_remove_duplicates(Job *j, job_step_fn next) {
        j->dup_idx = 0;
        j->dup_next = next;
        remove_next_duplicate(j);
}
