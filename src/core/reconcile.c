/* SPDX-License-Identifier: Apache-2.0 */
/* The reconciliation of one VM (updater.md), as one table: fetch the spec,
 * observe the VMM, decide, remove duplicates, run the plan's table, announce
 * the outcome, remove the VMs left under an old name. Automatic polls and
 * Vm.Update run it; only the operation's end answers anyone. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <glib.h>

#include "core/reconcile.h"
#include "core/deploy.h"
#include "core/operation.h"
#include "core/vm-steps.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/strv.h"

#define RESTART_BACKOFF_MIN_USEC (5 * USEC_PER_SEC)
#define RESTART_BACKOFF_MAX_USEC (3600 * USEC_PER_SEC)
#define RECHECK_USEC (1 * USEC_PER_SEC)

static bool is_update(const Operation *op) {
        return op->kind == OPERATION_UPDATE;
}

static uint64_t age_sec(uint64_t since) {
        uint64_t now = clock_usec(CLOCK_MONOTONIC);
        return since && now > since ? (uint64_t) ((now - since) / USEC_PER_SEC) : 0;
}

/* ---- fetch ---- */

static void on_fetched(Source *s, FetchOutcome outcome, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        op->fetching = false;
        op->fetch_answered = outcome != FETCH_UNREACHABLE;

        if (outcome == FETCH_NEW)
                managed_vm_spec_changed(mv);
        switch (outcome) {
        case FETCH_NEW:
        case FETCH_SAME:
                if (mv->last_error_cause == ERROR_CAUSE_API)
                        managed_vm_clear_error(mv);
                break;
        case FETCH_INVALID:
                break;
        case FETCH_UNREACHABLE:
                managed_vm_note_error(mv, ERROR_CAUSE_API, s->fetch_error);
                if (is_update(op)) {
                        vm_set_u64(mv->vm, &mv->vm->last_check_usec, clock_usec(CLOCK_REALTIME));
                        return step_fail_kind(op, RECONCILER_ERROR_API_UNAVAILABLE, s->fetch_error);
                }
                if (s->spec)
                        /* The last good spec is still what is wanted; a crashed VM is still restarted. */
                        log_warning("%s; going on with the last good spec.", s->fetch_error);
                break;
        }
        step_driver_done(op_driver(op));
}

static void fetch_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        if (source_fetch(op->mv->source, op_host(op)->http, on_fetched, op) < 0)
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot start fetching the spec");
        op->fetching = true;
}

static void fetch_cancel(void *userdata) {
        Operation *op = userdata;
        source_cancel(op->mv->source);
        op->fetching = false;
}

/* ---- observe ---- */

static ssize_t retired_find(const VmDeployState *st, const char *name) {
        for (size_t i = 0; st->retired_names && st->retired_names[i]; i++)
                if (streq(st->retired_names[i], name))
                        return (ssize_t) i;
        return -1;
}

/* A rename of vm_parameters.name is a replacement (issue 9 #7): the VM deployed
 * under the old name is retired (recorded, so a restart remembers it) and
 * removed once the VM under the new name runs. Renaming back takes the retired
 * VM up again and retires the other one. */
static bool name_taken(const ManagedVm *mv, const char *name) {
        for (guint i = 0; i < mv->host->vms->len; i++) {
                const ManagedVm *o = g_ptr_array_index(mv->host->vms, i);
                if (o != mv && streq(o->vm->name, name))
                        return true;
        }
        return false;
}

static void rename_vm(ManagedVm *mv, const char *name) {
        VmDeployState *st = mv->state;
        if (streq(mv->vm->name, name) || name_taken(mv, name))
                return;
        log_notice("The spec renames VM %s to %s.", mv->vm->name, name);
        if (!isempty(st->vm_id)) {
                (void) strv_extend(&st->retired_ids, st->vm_id);
                (void) strv_extend(&st->retired_names, mv->vm->name);
        }
        g_free(st->vm_id), st->vm_id = g_strdup("");
        g_free(st->compose_hash), st->compose_hash = g_strdup("");
        g_free(st->app_id), st->app_id = g_strdup("");
        g_free(st->env_fingerprint), st->env_fingerprint = g_strdup("");
        st->operator_stopped = false;
        vm_intent_free(st->intent), st->intent = NULL;

        ssize_t i = retired_find(st, name);
        if (i >= 0) {
                g_free(st->vm_id), st->vm_id = g_strdup(st->retired_ids[i]);
                strv_drop(st->retired_ids, (size_t) i);
                strv_drop(st->retired_names, (size_t) i);
        }
        g_free(st->name), st->name = g_strdup(name);
        (void) managed_vm_save_state(mv);
        managed_vm_rename(mv, name);
}

/* Honest reachability (dbus-api.md): when the VMM does not answer, State
 * stays what was last known, StateReason says since when (counted from the
 * start of the first failed call), and VmmStatus is "unreachable" once that
 * has lasted a poll interval. */
static void observe_failed(ManagedVm *mv, uint64_t failed_since, const char *msg) {
        uint64_t now = clock_usec(CLOCK_MONOTONIC), failing = failed_since && now > failed_since ? now - failed_since : 0;
        if (failing >= mv->host->settings->config->poll_interval_usec)
                vm_set_str(mv->vm, &mv->vm->vmm_status, "unreachable");
        uint64_t since_usec = clock_usec(CLOCK_REALTIME) - failing;
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc((gint64) (since_usec / USEC_PER_SEC));
        g_autofree char *since = t ? g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ") : g_strdup("?");
        g_autofree char *why = g_strdup_printf("cannot observe the VM since %s (%" PRIu64 " s), the state is as last "
                                               "seen: %s", since, (uint64_t) (failing / USEC_PER_SEC), msg);
        managed_vm_note_error(mv, ERROR_CAUSE_VMM, msg);
        managed_vm_set_state(mv, mv->vm->state, why);
}

static void on_observed(const VmmResult *res, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        const Observer *o = &op_host(op)->observer;
        uint64_t now = clock_usec(CLOCK_REALTIME);
        op->observe_wait = NULL;

        vm_set_u64(mv->vm, &mv->vm->last_check_usec, now);
        if (res) {
                observe_failed(mv, o->failed_usec, o->error);
                return step_fail_kind(op, steps_error_kind(res), o->error);
        }
        if (op->fetch_answered)
                vm_set_u64(mv->vm, &mv->vm->last_successful_check_usec, now);
        if (mv->last_error_cause == ERROR_CAUSE_VMM)
                managed_vm_clear_error(mv);
        step_driver_done(op_driver(op));
}

static void observe_request(Operation *op) {
        Host *h = op_host(op);
        if (observer_request(&h->observer, h->vmm, op->since_usec, on_observed, op, &op->observe_wait) < 0)
                step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot send Status");
}

static void observe_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        const Source *s = mv->source;
        if (!mv->decl && s->spec && !s->spec_error)
                rename_vm(mv, s->spec->vm.name);
        host_refresh_meta(mv->host);
        observe_request(op);
}

static uint64_t observe_timeout(void *userdata) {
        Operation *op = userdata;
        return op_host(op)->settings->config->poll_interval_usec;
}

/* Status has not answered within a poll interval: this check failed for
 * whoever watches (LastCheckTimestamp moves), though the call may still
 * answer (the HTTP client may be trying it again on another connection): it
 * is waited for on. */
static uint64_t observe_slow(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        const Observer *o = &op_host(op)->observer;
        uint64_t sent = o->call ? o->call_sent_usec : op->since_usec;
        g_autofree char *msg = g_strdup_printf("VMM unreachable: no answer to Status for %" PRIu64 " s", age_sec(sent));
        vm_set_u64(mv->vm, &mv->vm->last_check_usec, clock_usec(CLOCK_REALTIME));
        observe_failed(mv, o->failed_usec ?: sent, msg);
        managed_vm_flush(op->mv);
        observe_request(op);
        return observe_timeout(op);
}

static void observe_cancel(void *userdata) {
        Operation *op = userdata;
        observer_wait_cancel(&op_host(op)->observer, g_steal_pointer(&op->observe_wait));
}

/* ---- decide ---- */

/* A create, a replacement or a start must fit on the host: else the plan is
 * blocked, saying by how much, and looked at again at every poll. */
static void capacity_gate(Host *h, Plan *p, const DesiredVm *d) {
        g_autofree char *why = NULL;
        if (p->action == PLAN_CREATE || p->action == PLAN_RECREATE) {
                if (host_capacity_check(h, p->keep ?: p->replaced, &d->config, true, &why) >= 0)
                        return;
        } else if (p->action == PLAN_START) {
                if (host_capacity_check(h, p->keep, &p->keep->configuration, false, &why) >= 0)
                        return;
        } else
                return;
        p->action = PLAN_BLOCKED;
        g_free(p->reason);
        p->reason = g_steal_pointer(&why);
}

void decision_done(Decision *d) {
        desired_vm_free(d->desired);
        g_free(d->blocked_reason);
        plan_done(&d->plan);
        *d = (Decision) {};
}

int reconcile_decide(ManagedVm *mv, bool force, Decision *ret) {
        Host *h = mv->host;
        const Source *s = mv->source;
        Decision d = { .blocked_reason = source_blocked_reason(s) };

        DesiredOptions o = { .name = mv->decl ? mv->decl->name : NULL, .granted = managed_vm_granted(mv) };
        if (!d.blocked_reason && desired_vm_build(s->spec, h->settings->config, h->fp_key, &o, &d.desired,
                                                  &d.blocked_reason) < 0 && !d.blocked_reason)
                d.blocked_reason = g_strdup("cannot build the VM spec");
        if (d.desired && !streq(d.desired->name, mv->vm->name)) {
                /* The API's spec names a VM that is managed as another one. */
                d.blocked_reason = g_strdup_printf("vm_parameters.name '%.64s' is the name of another managed VM",
                                                   d.desired->name);
                g_clear_pointer(&d.desired, desired_vm_free);
        }
        PlanInput in = {
                .desired = d.desired,
                .blocked_reason = d.blocked_reason,
                .name = mv->vm->name,
                .vms = h->observer.status.vms,
                .n_vms = h->observer.status.n_vms,
                .state = mv->state,
                .in_place = streq(managed_vm_strategy(mv), "in-place"),
                .force = force,
                .hold = mv->decl && !mv->decl->autostart,
        };
        int q = plan_compute(&in, &d.plan);
        if (q < 0) {
                decision_done(&d);
                return q;
        }
        capacity_gate(h, &d.plan, d.desired);
        *ret = d;
        return 0;
}

static void log_not_allowed(ManagedVm *mv, const DesiredVm *d) {
        g_autofree char *k = d && d->not_allowed[0] ? g_strjoinv(", ", d->not_allowed) : NULL;
        if (streq_ptr(k, mv->not_allowed_logged))
                return; /* said already: a notice repeats only when its content changes */
        if (k)
                log_notice("Env keys not allowed by the compose are not sent: %s", k);
        g_free(mv->not_allowed_logged);
        mv->not_allowed_logged = g_steal_pointer(&k);
}

static void decide_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        Decision dec;

        if (reconcile_decide(mv, op->force, &dec) < 0)
                return step_fail_kind(op, RECONCILER_ERROR_FAILED, "cannot compute the plan");
        op->desired = g_steal_pointer(&dec.desired);
        op->blocked_reason = g_steal_pointer(&dec.blocked_reason);
        op->plan = dec.plan;
        op->have_plan = true;
        const Plan *p = &op->plan;
        log_debug("VM %s: plan %s%s%s (%zu VMs seen, %zu duplicates)", mv->vm->name, plan_action_to_string(p->action),
                  isempty(p->reason) ? "" : ": ", strempty(p->reason), op_host(op)->observer.status.n_vms,
                  p->n_extra);

        managed_vm_observe(mv, p->keep, p->keep_compose_hash);
        vm_set_str(mv->vm, &mv->vm->target_compose_hash, op->desired ? op->desired->compose_hash : "");
        managed_vm_flush(mv);
        if (op->desired)
                log_not_allowed(mv, op->desired);
        step_driver_done(d);
}

/* ---- duplicates ---- */

/* An Update, or AdoptPolicy=redeploy. */
static bool adopt_allowed(const Operation *op) {
        return is_update(op) || streq(managed_vm_adopt_policy(op->mv), "redeploy");
}

static void take_items(Operation *op, GPtrArray *ids) {
        g_strfreev(op->items);
        g_ptr_array_add(ids, NULL);
        op->items = (char **) g_ptr_array_free(ids, FALSE);
}

static bool act_on_item(Operation *op, size_t i) {
        g_clear_pointer(&op->act_id, g_free);
        if (!op->items || !op->items[i])
                return false;
        op->act_id = g_strdup(op->items[i]);
        op->act_stopped = false;
        return true;
}

/* Duplicates go only beside a VM of ours, or one being adopted now: VMs we
 * did not deploy are otherwise left alone. */
static bool next_duplicate(void *userdata, size_t i) {
        Operation *op = userdata;
        const Plan *p = &op->plan;
        if (i == 0) {
                GPtrArray *ids = g_ptr_array_new();
                if (p->action != PLAN_BLOCKED && (p->action != PLAN_ADOPT || adopt_allowed(op)))
                        for (size_t k = 0; k < p->n_extra; k++)
                                g_ptr_array_add(ids, g_strdup(p->extra[k]->id));
                take_items(op, ids);
        }
        if (!act_on_item(op, i))
                return false;
        log_notice("Removing duplicate VM %s left by an earlier run.", op->act_id);
        return true;
}

/* One that cannot be removed is tried again next time: it must not keep the
 * wanted VM from being deployed. */
static void duplicate_failed(void *userdata, int code, const char *message) {
        Operation *op = userdata;
        log_warning("Cannot remove duplicate VM %s: %s", op->act_id, message);
}

/* ---- the plan's table ---- */

static void start_failed(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        g_autofree char *msg = g_strdup_printf("cannot start the VM: %s", step_driver_failure_message(d));
        managed_vm_note_error(op->mv, ERROR_CAUSE_UPDATE, msg);
        managed_vm_set_state(op->mv, VM_STATE_FAILED, msg);
        g_free(op->failure);
        op->failure = g_steal_pointer(&msg);
        step_driver_done(d);
}

static const StepDef start_failed_steps[] = {
        { .name = "start-failed", .description = "noting the failure", .start = start_failed },
};
static const StepTable table_start_failed = STEP_TABLE("start-failed", start_failed_steps);
static const StepDef auto_start_steps[] = { STEP_START("starting the VM", VM_STATE_STARTING) };
static const StepTable table_auto_start = STEP_TABLE_ON_FAIL("start", auto_start_steps, table_start_failed);

/* 5 s doubling to 1 h between attempts, so a VM that keeps crashing is not hammered. */
static const StepTable *auto_start(Operation *op) {
        ManagedVm *mv = op->mv;
        uint64_t now = clock_usec(CLOCK_MONOTONIC);
        const VmInfo *vm = op->plan.keep;

        if (!is_update(op) && mv->next_restart_usec > now) {
                op->outcome = OUTCOME_BACKOFF;
                return NULL;
        }
        g_autofree char *why = NULL;
        if (host_capacity_check(mv->host, vm, &vm->configuration, false, &why) < 0) {
                g_free(op->plan.reason);
                op->plan.reason = g_steal_pointer(&why);
                op->outcome = OUTCOME_BLOCKED;
                return NULL;
        }
        mv->restart_backoff_usec = mv->restart_backoff_usec ? MIN(2 * mv->restart_backoff_usec, RESTART_BACKOFF_MAX_USEC)
                                                            : RESTART_BACKOFF_MIN_USEC;
        mv->next_restart_usec = now + mv->restart_backoff_usec;
        mv->state->restart_count++;
        (void) managed_vm_save_state(mv);
        vm_set_u32(mv->vm, &mv->vm->restart_count, mv->state->restart_count);
        log_notice("VM %s is %s, starting it (restart %u).", mv->vm->name, vm_status_to_string(vm->status),
                   mv->state->restart_count);
        g_free(op->act_id);
        op->act_id = g_strdup(vm->id);
        op->outcome = OUTCOME_STARTED;
        return &table_auto_start;
}

static const StepTable *deploy(Operation *op, const StepTable *t) {
        const Plan *p = &op->plan;
        const VmInfo *old = p->keep ?: p->replaced; /* a recreate stops and removes it first */
        if (old) {
                g_free(op->act_id);
                op->act_id = g_strdup(old->id);
                op->act_stopped = old->status == VM_STATUS_STOPPED;
        }
        /* The env is encrypted to the app id the VM will actually run with. */
        op->deploy.app_id = g_strdup(p->action == PLAN_UPDATE_IN_PLACE ? p->keep->app_id : op->desired->app_id);
        op->deploy.old_compose_hash = g_strdup(op->mv->vm->compose_hash);
        op->deploy_started_usec = clock_usec(CLOCK_REALTIME);
        op->outcome = OUTCOME_DEPLOYED;
        return t;
}

/* A crash cut a deployment short: the VM is the one meant. */
static const StepTable *interrupted(Operation *op) {
        VmIntent *in = op->mv->state->intent;
        const VmInfo *vm = op->plan.keep;
        if (!in || !vm || !op->desired || !streq(in->target_compose_hash, op->plan.keep_compose_hash))
                return NULL;
        if (streq(in->op, "in-place")) {
                /* UpdateVm took effect but the VM may still run the old compose: restart it. */
                log_notice("Finishing the interrupted in-place update of %s.", vm->id);
                op->plan.action = PLAN_UPDATE_IN_PLACE;
                return deploy(op, &table_in_place_resume);
        }
        if (vm->status != VM_STATUS_RUNNING)
                return NULL;
        op->deploy.app_id = g_strdup(vm->app_id);
        op->outcome = OUTCOME_DEPLOYED;
        return &table_adopt_created;
}

/* A VM with our name that we did not deploy (issue 10, migration from the
 * Rust launcher). Its env cannot be read, so it is never replaced silently:
 * an automatic check keeps it as it is (and starts it if it exited: keeping
 * a validator up is the launcher's job) and says so in StateReason; Update or
 * AdoptPolicy=redeploy redeploys it once, after which it is ours. */
static const StepTable *adopt(Operation *op) {
        ManagedVm *mv = op->mv;
        Plan *p = &op->plan;

        if (adopt_allowed(op)) {
                g_autofree char *why = NULL;
                if (p->adopt_action == PLAN_RECREATE &&
                    host_capacity_check(mv->host, p->keep, &op->desired->config, true, &why) < 0) {
                        g_free(p->reason);
                        p->reason = g_steal_pointer(&why);
                        op->outcome = OUTCOME_BLOCKED;
                        return NULL;
                }
                log_notice("Redeploying VM %s (%s), which this launcher did not deploy, with the local env%s.",
                           p->keep->id, mv->vm->name, is_update(op) ? "" : " (AdoptPolicy=redeploy)");
                p->action = p->adopt_action;
                return deploy(op, p->action == PLAN_UPDATE_IN_PLACE ? &table_in_place : &table_recreate);
        }
        if (!streq_ptr(mv->adopt_logged, p->keep->id)) {
                /* Said once per VM, not every poll. */
                log_notice("VM %s was not deployed by this launcher; keeping it as it is. %s", p->keep->id, p->reason);
                g_free(mv->adopt_logged);
                mv->adopt_logged = g_strdup(p->keep->id);
        }
        if (p->keep->status == VM_STATUS_EXITED || p->keep->status == VM_STATUS_STOPPED)
                return auto_start(op);
        op->outcome = OUTCOME_ADOPT_KEPT;
        return NULL;
}

static const StepTable *choose_plan(void *userdata) {
        Operation *op = userdata;
        const Plan *p = &op->plan;
        const VmDeployState *st = op->mv->state;
        const StepTable *t;

        switch (p->action) {
        case PLAN_NONE:
                if ((t = interrupted(op)))
                        return t;
                op->outcome = st->operator_stopped ? OUTCOME_OPERATOR_STOPPED : OUTCOME_RUNNING;
                return NULL;
        case PLAN_BLOCKED:
                /* Nothing new can be applied, but the VM that was deployed is kept
                 * running: it is started again if it exited (the API may be away).
                 * So is a VM with the name that we did not deploy (the Rust
                 * launcher's) while we have deployed none. */
                if (p->keep && p->keep->status == VM_STATUS_EXITED && !st->operator_stopped &&
                    (streq(st->vm_id, p->keep->id) || isempty(st->vm_id)))
                        return auto_start(op);
                op->outcome = OUTCOME_BLOCKED;
                return NULL;
        case PLAN_WAIT:
                op->outcome = OUTCOME_WAIT;
                return NULL;
        case PLAN_START:
                return interrupted(op) ?: auto_start(op);
        case PLAN_ADOPT:
                return adopt(op);
        case PLAN_CREATE:
                return deploy(op, &table_create);
        case PLAN_RECREATE:
                return deploy(op, &table_recreate);
        case PLAN_UPDATE_IN_PLACE:
                return interrupted(op) ?: deploy(op, &table_in_place);
        default:
                op->outcome = OUTCOME_BLOCKED;
                return NULL;
        }
}

/* ---- announce ---- */

static void announce_deployed(Operation *op) {
        ManagedVm *mv = op->mv;
        Host *h = mv->host;
        VmDeployState *st = mv->state;
        const DesiredVm *d = op->desired;
        Vm *vm = mv->vm;

        /* What the VMM now reports about the new VM, or else what was sent. */
        const VmInfo *k = NULL;
        for (size_t i = 0; i < h->observer.status.n_vms; i++)
                if (streq_ptr(h->observer.status.vms[i].id, st->vm_id))
                        k = &h->observer.status.vms[i];
        if (k)
                managed_vm_observe(mv, k, d->compose_hash);
        else {
                vm_set_str(vm, &vm->id, st->vm_id);
                vm_set_str(vm, &vm->compose_hash, d->compose_hash);
                vm_set_str(vm, &vm->app_id, st->app_id);
                vm_set_str(vm, &vm->vmm_status, "running");
                vm_set_str(vm, &vm->image, d->config.image);
                vm_set_u32(vm, &vm->vcpu, d->config.vcpu);
                vm_set_u32(vm, &vm->memory_mib, d->config.memory);
                vm_set_u32(vm, &vm->disk_gib, d->config.disk_size);
        }
        vm_set_u64(vm, &vm->last_update_usec, st->last_update_usec);
        vm_set_str(vm, &vm->kms_signer, st->kms_signer);
        vm_set_u32(vm, &vm->update_count, st->update_count);
        managed_vm_clear_error(mv);
        managed_vm_set_state(mv, VM_STATE_RUNNING, "");
        mv->fail_backoff_usec = 0;

        log_info("VM %s now runs compose %s (id %s).", vm->name, d->compose_hash, st->vm_id);
        if (h->ev.vm_updated)
                h->ev.vm_updated(vm, strempty(op->deploy.old_compose_hash), d->compose_hash, st->vm_id,
                                 h->ev.userdata);
        if (st->retired_ids && st->retired_ids[0])
                mv->rerun = true; /* the VM under its old name goes next */
}

static bool spec_known(const ManagedVm *mv) {
        return mv->source->spec || mv->source->spec_error;
}

static void announce_start(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        ManagedVm *mv = op->mv;
        const Plan *p = &op->plan;
        uint64_t now = clock_usec(CLOCK_MONOTONIC);

        switch (op->outcome) {
        case OUTCOME_DEPLOYED:
                announce_deployed(op);
                break;
        case OUTCOME_STARTED:
                vm_set_str(mv->vm, &mv->vm->vmm_status, "running");
                if (p->action == PLAN_ADOPT)
                        managed_vm_set_state(mv, VM_STATE_RUNNING, p->reason);
                else if (p->action == PLAN_BLOCKED)
                        /* Running again; still nothing newer can be applied. */
                        managed_vm_set_state(mv, spec_known(mv) ? VM_STATE_BLOCKED : VM_STATE_PENDING, p->reason);
                else
                        managed_vm_set_state(mv, VM_STATE_RUNNING, "");
                break;
        case OUTCOME_RUNNING:
                /* Equal and running: whatever went wrong with the VM is gone. An
                 * unreachable API is not: it was noted in this very poll, and it
                 * clears when the API answers. */
                if (mv->last_error_cause != ERROR_CAUSE_API)
                        managed_vm_clear_error(mv);
                managed_vm_set_state(mv, VM_STATE_RUNNING, "");
                mv->fail_backoff_usec = 0;
                op->settled = p->keep && p->keep->status == VM_STATUS_RUNNING;
                break;
        case OUTCOME_OPERATOR_STOPPED:
                managed_vm_set_state(mv, VM_STATE_STOPPED, p->reason);
                if (is_update(op))
                        return step_fail_kind(op, RECONCILER_ERROR_BLOCKED,
                                              "the VM was stopped by the operator; Start it first");
                break;
        case OUTCOME_BLOCKED:
                if (spec_known(mv))
                        managed_vm_note_error(mv, ERROR_CAUSE_BLOCKED, p->reason);
                managed_vm_set_state(mv, spec_known(mv) ? VM_STATE_BLOCKED : VM_STATE_PENDING, p->reason);
                if (is_update(op))
                        return step_fail_kind(op, RECONCILER_ERROR_BLOCKED, p->reason);
                break;
        case OUTCOME_WAIT:
                managed_vm_set_state(mv, p->keep ? VM_STATE_STOPPING : VM_STATE_UPDATING, p->reason);
                mv->recheck_usec = RECHECK_USEC;
                break;
        case OUTCOME_BACKOFF: {
                g_autofree char *why = g_strdup_printf(
                        "the VM is %s; next start attempt in %" PRIu64 " s", vm_status_to_string(p->keep->status),
                        (uint64_t) ((mv->next_restart_usec - now + USEC_PER_SEC - 1) / USEC_PER_SEC));
                managed_vm_set_state(mv, VM_STATE_FAILED, why);
                mv->recheck_usec = mv->next_restart_usec - now;
                break;
        }
        case OUTCOME_ADOPT_KEPT:
                managed_vm_set_state(mv, p->keep->status == VM_STATUS_RUNNING ? VM_STATE_RUNNING : VM_STATE_STOPPING,
                                     p->reason);
                mv->fail_backoff_usec = 0;
                break;
        }
        step_driver_done(d);
}

/* ---- VMs under an old name (a rename) go once the VM under the new name runs ---- */

static bool next_retired(void *userdata, size_t i) {
        Operation *op = userdata;
        VmDeployState *st = op->mv->state;
        if (i == 0) {
                GPtrArray *ids = g_ptr_array_new();
                for (size_t k = 0; op->settled && st->retired_ids && st->retired_ids[k]; k++)
                        if (op->plan.keep && streq(st->retired_ids[k], op->plan.keep->id)) {
                                /* Never the VM that is wanted now. */
                                strv_drop(st->retired_ids, k);
                                strv_drop(st->retired_names, k--);
                        } else
                                g_ptr_array_add(ids, g_strdup(st->retired_ids[k]));
                take_items(op, ids);
        }
        if (!act_on_item(op, i))
                return false;
        ssize_t k = -1;
        for (size_t n = 0; st->retired_ids && st->retired_ids[n]; n++)
                if (streq(st->retired_ids[n], op->act_id))
                        k = (ssize_t) n;
        log_notice("Removing VM %s, renamed from %s by the spec.", op->act_id, k >= 0 ? st->retired_names[k] : "?");
        return true;
}

static void retired_failed(void *userdata, int code, const char *message) {
        Operation *op = userdata;
        log_warning("Cannot remove VM %s (renamed): %s", op->act_id, message); /* tried again next time */
}

static void forget_retired(StepDriver *d, void *userdata) {
        Operation *op = userdata;
        VmDeployState *st = op->mv->state;
        log_notice("Removed VM %s, which ran under the old name.", op->act_id);
        for (size_t i = 0; st->retired_ids && st->retired_ids[i]; i++)
                if (streq(st->retired_ids[i], op->act_id)) {
                        strv_drop(st->retired_ids, i);
                        strv_drop(st->retired_names, i);
                        break;
                }
        (void) managed_vm_save_state(op->mv);
        step_driver_done(d);
}

static const StepDef remove_retired_steps[] = {
        STEP_STOP("stopping the VM under its old name", 0),
        STEP_REMOVE("removing the VM under its old name", 0),
        { .name = "forget", .description = "forgetting the VM under its old name", .start = forget_retired },
};
static const StepTable table_remove_renamed = STEP_TABLE("remove-renamed", remove_retired_steps);

/* ---- the table ---- */

static const StepDef reconcile_steps[] = {
        { .name = "fetch", .description = "fetching the spec", .start = fetch_start, .cancel = fetch_cancel },
        { .name = "observe", .description = "asking the VMM", .start = observe_start, .cancel = observe_cancel,
          .timeout = observe_timeout, .on_timeout = observe_slow },
        { .name = "decide", .description = "deciding", .start = decide_start },
        { .name = "duplicates", STEP_EACH(next_duplicate, table_remove_duplicate), .item_failed = duplicate_failed },
        { .name = "plan", STEP_CHOOSE(choose_plan) },
        { .name = "announce", .description = "announcing the outcome", .start = announce_start },
        { .name = "renamed", STEP_EACH(next_retired, table_remove_renamed), .item_failed = retired_failed },
};
const StepTable table_reconcile = STEP_TABLE("reconcile", reconcile_steps);
