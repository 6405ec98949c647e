/* SPDX-License-Identifier: Apache-2.0 */
/* An operation's life (machined's operation.c): it is queued behind the one
 * running on its VM, runs its table on the VM's step driver, shows its steps
 * as Operation, Progress and State, and at its end, in the driver's done
 * callback and nowhere else, writes its history, answers whoever waits and
 * starts what comes next. Operations on different VMs run side by side. */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <string.h>

#include <glib.h>

#include "core/operation.h"
#include "core/reconcile.h"
#include "core/vm-steps.h"
#include "shared/log.h"
#include "shared/macro.h"

#define TRIGGER_POLL "poll"

static const char *const kind_names[_OPERATION_KIND_MAX] = {
        [OPERATION_POLL] = "poll",   [OPERATION_UPDATE] = "update",   [OPERATION_START] = "start",
        [OPERATION_STOP] = "stop",   [OPERATION_RESTART] = "restart", [OPERATION_REMOVE] = "remove",
};

/* What each kind of operation runs. */
static const StepTable *const kind_tables[_OPERATION_KIND_MAX] = {
        [OPERATION_POLL] = &table_reconcile,  [OPERATION_UPDATE] = &table_reconcile,
        [OPERATION_START] = &table_operate,   [OPERATION_STOP] = &table_operate,
        [OPERATION_RESTART] = &table_operate, [OPERATION_REMOVE] = &table_destroy,
};

const char *operation_kind_to_string(OperationKind k) {
        return k < _OPERATION_KIND_MAX ? kind_names[k] : NULL;
}

static void waiter_done(Waiter *w) {
        g_free(w->trigger);
        g_free(w->from);
}

Operation *operation_new(ManagedVm *mv, OperationKind kind, bool force) {
        Operation *op = g_new0(Operation, 1);
        op->mv = mv;
        op->kind = kind;
        op->force = force;
        op->waiters = g_array_new(FALSE, FALSE, sizeof(Waiter));
        g_array_set_clear_func(op->waiters, (GDestroyNotify) waiter_done);
        return op;
}

void waiter_add(Operation *op, const ReconcilerCaller *c) {
        if (!c || !c->done)
                return;
        Waiter w = {
                .done = c->done,
                .userdata = c->userdata,
                .trigger = g_strdup(c->trigger ?: "unknown"),
                .from = g_strdup(op->mv->vm->compose_hash),
                .asked_usec = clock_usec(CLOCK_REALTIME),
        };
        g_array_append_val(op->waiters, w);
}

static void operation_free(Operation *op) {
        if (!op)
                return;
        Host *h = op_host(op);
        if (op->vmm_call)
                vmm_call_cancel(op->vmm_call);
        observer_wait_cancel(&h->observer, op->observe_wait);
        if (op->fetching)
                source_cancel(op->mv->source);
        g_array_unref(op->waiters);
        g_free(op->trigger);
        g_free(op->failure);
        desired_vm_free(op->desired);
        g_free(op->blocked_reason);
        if (op->have_plan)
                plan_done(&op->plan);
        g_strfreev(op->items);
        g_free(op->act_id);
        g_free(op->deploy.app_id);
        g_free(op->deploy.kms_signer);
        if (op->deploy.encrypted_env)
                explicit_bzero(op->deploy.encrypted_env, strlen(op->deploy.encrypted_env));
        g_free(op->deploy.encrypted_env);
        g_free(op->deploy.new_id);
        g_free(op->deploy.old_compose_hash);
        for (size_t i = 0; op->deploy.send_ports && i < op->deploy.n_send_ports; i++)
                vm_port_done(&op->deploy.send_ports[i]);
        g_free(op->deploy.send_ports);
        g_free(op);
}

/* ---- the poll schedule ---- */

static void submit_poll(ManagedVm *mv, uint64_t round);

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ManagedVm *mv = userdata;
        mv->poll_timer = sd_event_source_disable_unref(mv->poll_timer);
        submit_poll(mv, usec);
        return 0;
}

static void arm_poll(ManagedVm *mv, uint64_t at) {
        Host *h = mv->host;
        mv->poll_timer = sd_event_source_disable_unref(mv->poll_timer);
        int q = sd_event_add_time(h->event, &mv->poll_timer, CLOCK_MONOTONIC, at, 10 * USEC_PER_MSEC, on_poll_timer,
                                  mv);
        if (q < 0)
                log_error_errno(q, "Cannot arm the poll timer: %m");
}

static uint64_t jitter(uint64_t delay) {
        /* ±10%, so that many hosts do not poll the API in step. */
        return delay - delay / 10 + g_random_int_range(0, (gint32) MIN(delay / 5 + 1, G_MAXINT32));
}

void operation_schedule_poll(ManagedVm *mv, uint64_t delay) {
        if (mv->host->shutting_down || mv->gone)
                return;
        arm_poll(mv, clock_usec(CLOCK_MONOTONIC) + (delay > 0 ? jitter(delay) : 0));
}

/* The regular poll joins the host's next round when that is between half an
 * interval and one and a half from now, so the VMs poll together and share
 * one look at the VMM (a round's operations take what the VMM reported since
 * the round began); else it begins the next round. VMs out of step fall into
 * one round after one interval. */
static void schedule_round(ManagedVm *mv, uint64_t delay) {
        Host *h = mv->host;
        uint64_t now = clock_usec(CLOCK_MONOTONIC);
        if (h->next_round_usec < now + delay / 2 || h->next_round_usec > now + delay + delay / 2)
                h->next_round_usec = now + jitter(delay);
        arm_poll(mv, h->next_round_usec);
}

static void schedule_next(ManagedVm *mv) {
        uint64_t interval = mv->host->settings->config->poll_interval_usec;
        uint64_t delay = MAX(interval, mv->fail_backoff_usec);
        if (mv->rerun)
                operation_schedule_poll(mv, 0);
        else if (mv->recheck_usec && mv->recheck_usec < delay)
                operation_schedule_poll(mv, mv->recheck_usec);
        else if (delay == interval)
                schedule_round(mv, delay);
        else
                operation_schedule_poll(mv, delay);
        mv->rerun = false;
        mv->recheck_usec = 0;
}

/* ---- Operation, Progress and State follow the steps ---- */

/* The operation's own outer rows (fetch, decide, announce...) and a
 * compensation are bookkeeping: Operation shows the tables it runs. */
static bool shown(StepDriver *d) {
        return step_driver_table(d) != step_driver_outer_table(d) && !step_driver_compensating(d);
}

static void on_progress(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        if (step_driver_table(d) != step_driver_outer_table(d))
                op->committed = true;
        if (!shown(d))
                return;
        vm_set_str(mv->vm, &mv->vm->operation, step_driver_step_name(d));
        vm_set_u32(mv->vm, &mv->vm->progress, step_driver_progress(d));
        VmState s = step_driver_step(d)->vm_state;
        if (s == 0)
                return managed_vm_flush(mv);
        g_autofree char *why = step_driver_describe(d);
        managed_vm_set_state(mv, s, why);
}

static void on_table_done(StepDriver *d, const StepTable *t, int code, void *userdata) {
        Operation *op = userdata;
        Vm *vm = op->mv->vm;
        vm_set_str(vm, &vm->operation, "");
        if (code == 0)
                vm_set_u32(vm, &vm->progress, 100);
        managed_vm_flush(op->mv);
}

/* ---- the end ---- */

static const HistoryEntry *last_entry_of(History *h, const char *vm_name) {
        for (size_t i = history_size(h); i > 0; i--) {
                const HistoryEntry *e = history_get(h, i - 1);
                if (e->kind == HISTORY_KIND_VM && streq(e->subject, vm_name))
                        return e;
        }
        return NULL;
}

/* A deployment's entry: asked for by the first caller waiting, else by
 * whoever made the settings change the poll evaluates (SetEnv...), else the
 * poll's own. */
static void record_deploy(Operation *op, bool ok, const char *reason) {
        Host *h = op_host(op);
        Vm *vm = op->mv->vm;
        Waiter *w = op->waiters->len > 0 ? &g_array_index(op->waiters, Waiter, 0) : NULL;
        uint64_t start = w ? w->asked_usec : op->deploy_started_usec, now = clock_usec(CLOCK_REALTIME);
        const char *to = ok || !op->desired ? vm->compose_hash : op->desired->compose_hash;
        const char *trigger = w ? w->trigger : op->trigger ?: TRIGGER_POLL;
        HistoryEntry e = {
                .kind = HISTORY_KIND_VM,
                .subject = vm->name,
                .action = "deploy",
                .trigger = trigger,
                .from = ok ? op->deploy.old_compose_hash : vm->compose_hash,
                .to = to,
                .ok = ok,
                .reason = reason,
                .duration_usec = start > 0 && now > start ? now - start : 0,
        };
        if (streq(trigger, TRIGGER_POLL) && !ok) {
                /* A failure the poll meets again after its backoff is not news. */
                const HistoryEntry *last = last_entry_of(h->history, vm->name);
                if (last && !last->ok && streq(last->action, "deploy") && streq(last->trigger, TRIGGER_POLL) &&
                    streq(last->to, strempty(to)) && streq(last->reason, strempty(reason)))
                        return;
        }
        if (w)
                w->recorded = true;
        int q = history_append(h->history, &e);
        if (q < 0)
                log_warning_errno(q, "Cannot write the history file: %m");
}

static void record_history(Operation *op, ReconcilerError error, const char *message) {
        Host *h = op_host(op);
        Vm *vm = op->mv->vm;
        if (!h->history || error == RECONCILER_ERROR_SHUTDOWN)
                return;
        if (op->deploy.done || op->deploy.failed)
                record_deploy(op, op->deploy.done && error == RECONCILER_OK, op->failure ?: message);
        /* Callers joining a poll asked for an Update. */
        const char *action = operation_kind_to_string(op->kind == OPERATION_POLL ? OPERATION_UPDATE : op->kind);
        /* An Update that deployed is recorded as the deploy; one that found
         * nothing to do changed nothing, and the history is of changes. */
        bool nothing_done = error == RECONCILER_OK && streq(action, "update");
        for (guint i = 0; i < op->waiters->len; i++) {
                Waiter *w = &g_array_index(op->waiters, Waiter, i);
                if (w->recorded || nothing_done)
                        continue;
                uint64_t now = clock_usec(CLOCK_REALTIME);
                HistoryEntry e = {
                        .kind = HISTORY_KIND_VM,
                        .subject = vm->name,
                        .action = action,
                        .trigger = w->trigger,
                        .from = w->from,
                        .to = vm->compose_hash,
                        .ok = error == RECONCILER_OK,
                        .reason = message,
                        .duration_usec = now > w->asked_usec ? now - w->asked_usec : 0,
                };
                int q = history_append(h->history, &e);
                if (q < 0)
                        log_warning_errno(q, "Cannot write the history file: %m");
        }
}

static void run(Operation *op);

/* The operation goes, then whoever waited for it hears how it ended. */
static void free_and_answer(Operation *op, ReconcilerError error, const char *message) {
        g_autoptr(GArray) waiters = g_array_ref(op->waiters);
        bool deployed = op->deploy.done || op->deploy.failed;
        operation_free(op);
        /* A deployment is rare and leaves the heap with holes (the spec, the
         * plan, the encryption's own tables): give their pages back to the
         * system rather than keep them dirty until the next one. */
        if (deployed)
                (void) malloc_trim(0);
        for (guint i = 0; i < waiters->len; i++) {
                Waiter *w = &g_array_index(waiters, Waiter, i);
                w->done(error, message, w->userdata);
        }
}

static void finish(Operation *op, ReconcilerError error, const char *message_in) {
        ManagedVm *mv = op->mv;
        Host *h = mv->host;
        /* The message often lives in the operation (its plan, its reason): keep a copy past its end. */
        g_autofree char *message = message_in ? text_bound(message_in) : NULL;

        mv->op = NULL;
        if (op->gave_way) {
                /* It runs again after the call it gave way to, evaluating the same change. */
                mv->rerun = true;
                if (!mv->change_trigger)
                        mv->change_trigger = g_steal_pointer(&op->trigger);
        } else if (error != RECONCILER_OK && error != RECONCILER_ERROR_SHUTDOWN)
                log_full(op->kind == OPERATION_POLL ? LOG_WARNING : LOG_NOTICE, "%s", strempty(message));
        vm_set_str(mv->vm, &mv->vm->operation, "");
        managed_vm_flush(mv);
        if (!op->gave_way)
                record_history(op, error, message);

        free_and_answer(op, error, message);

        if (h->shutting_down || mv->gone)
                return;
        Operation *next = g_queue_pop_head(&mv->queue);
        if (next) {
                if (next->kind == OPERATION_UPDATE)
                        mv->rerun = false; /* it looks at everything a poll would */
                return run(next);
        }
        schedule_next(mv);
}

static void on_done(StepDriver *d, int code, const char *message, void *userdata) {
        Operation *op = userdata;
        if (op->cancelled != RECONCILER_OK)
                return finish(op, op->cancelled, message);
        if (code == 0)
                return finish(op, RECONCILER_OK, NULL);
        finish(op, op->fail_kind, op->failure ?: message);
}

static const StepDriverEvents operation_events = {
        .progress = on_progress,
        .table_done = on_table_done,
        .done = on_done,
};

/* Start, Stop and Restart act on the VM there is when they run (a deploy they
 * waited for may have replaced it). */
static bool bind_vm(Operation *op) {
        Vm *vm = op->mv->vm;
        if (op->kind != OPERATION_START && op->kind != OPERATION_STOP && op->kind != OPERATION_RESTART)
                return true;
        if (isempty(vm->id))
                return false;
        g_free(op->act_id);
        op->act_id = g_strdup(vm->id);
        op->act_stopped = streq(vm->vmm_status, "stopped");
        op->act_running = streq(vm->vmm_status, "running");
        return true;
}

static void run(Operation *op) {
        ManagedVm *mv = op->mv;
        Host *h = mv->host;
        mv->op = op;
        mv->poll_timer = sd_event_source_disable_unref(mv->poll_timer); /* the end schedules the next */
        if (!op->since_usec)
                op->since_usec = clock_usec(CLOCK_MONOTONIC);
        op->fail_kind = RECONCILER_ERROR_FAILED;
        if ((op->kind == OPERATION_POLL || op->kind == OPERATION_UPDATE) && !op->trigger)
                op->trigger = g_steal_pointer(&mv->change_trigger); /* it evaluates the change */
        if (!bind_vm(op)) {
                g_autofree char *m = g_strdup_printf("VM %s does not exist at the VMM.", mv->vm->name);
                return finish(op, RECONCILER_ERROR_NOT_FOUND, m);
        }
        if (op->kind != OPERATION_POLL && op->kind != OPERATION_UPDATE) {
                /* Recorded first: a restart of the daemon must not undo the operator's choice. */
                mv->state->operator_stopped = op->kind == OPERATION_STOP || op->kind == OPERATION_REMOVE;
                (void) managed_vm_save_state(mv);
        }
        int q = mv->driver ? 0 : step_driver_new(h->event, &mv->driver);
        if (q >= 0)
                q = step_driver_run(mv->driver, kind_tables[op->kind], &operation_events, op);
        if (q < 0)
                finish(op, RECONCILER_ERROR_FAILED, "internal error: cannot start the operation");
}

void operation_submit(Operation *op) {
        ManagedVm *mv = op->mv;
        if (mv->op)
                g_queue_push_tail(&mv->queue, op);
        else
                run(op);
}

static void submit_poll(ManagedVm *mv, uint64_t round) {
        if (mv->op)
                return; /* the running operation's end schedules the next poll */
        Operation *op = operation_new(mv, OPERATION_POLL, false);
        op->since_usec = round;
        operation_submit(op);
}

bool operation_give_way(Operation *poll, Operation *next) {
        ManagedVm *mv = poll->mv;
        if (poll != mv->op || poll->kind != OPERATION_POLL || poll->committed)
                return false;
        log_debug("VM %s: the running check gives way to an operator's call.", mv->vm->name);
        g_queue_push_head(&mv->queue, next);
        poll->gave_way = true;
        step_driver_abort(mv->driver, -ECANCELED, "gave way to an operator's call");
        return true;
}

char *operation_describe_pending(ManagedVm *mv) {
        const Operation *oldest = NULL;
        const Waiter *ow = NULL;
        g_autoptr(GPtrArray) ops = g_ptr_array_new();
        if (mv->op)
                g_ptr_array_add(ops, mv->op);
        for (GList *l = mv->queue.head; l; l = l->next)
                g_ptr_array_add(ops, l->data);
        for (guint i = 0; i < ops->len; i++) {
                const Operation *op = g_ptr_array_index(ops, i);
                const Waiter *w = op->waiters->len > 0 ? &g_array_index(op->waiters, Waiter, 0) : NULL;
                if (op->kind != OPERATION_POLL && w && (!ow || w->asked_usec < ow->asked_usec))
                        oldest = op, ow = w;
        }
        if (!oldest)
                return NULL;
        uint64_t now = clock_usec(CLOCK_REALTIME);
        return g_strdup_printf("the %s asked by %s %" PRIu64 " s ago", operation_kind_to_string(oldest->kind),
                               ow->trigger, (uint64_t) (now > ow->asked_usec ? (now - ow->asked_usec) / USEC_PER_SEC : 0));
}

void operation_end_unrun(Operation *op, ReconcilerError error, const char *message) {
        free_and_answer(op, error, message);
}

void operation_cancel_all(ManagedVm *mv, ReconcilerError error, const char *message) {
        Operation *op;
        mv->gone = true;
        while ((op = g_queue_pop_head(&mv->queue)))
                operation_end_unrun(op, error, message);
        if (mv->op) {
                mv->op->cancelled = error;
                step_driver_abort(mv->driver, -ECANCELED, message);
        }
        mv->poll_timer = sd_event_source_disable_unref(mv->poll_timer);
}
