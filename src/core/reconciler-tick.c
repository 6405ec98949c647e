/* SPDX-License-Identifier: Apache-2.0 */
/* One reconciliation (updater.md): fetch → validate → build the desired VM →
 * observe the VMM → decide → run the plan's step table (vm-steps.c), whose
 * first steps prepare everything before the old VM is disturbed → record. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include <glib.h>

#include "core/kms-trust.h"
#include "core/reconciler-internal.h"
#include "shared/hex.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/strv.h"

#define RESTART_BACKOFF_MIN_USEC (5 * USEC_PER_SEC)
#define RESTART_BACKOFF_MAX_USEC (3600 * USEC_PER_SEC)
#define RECHECK_USEC (1 * USEC_PER_SEC)

static void observe(Job *j);
static void decide(Job *j);
static void dispatch(Job *j);

static bool is_update(const Job *j) {
        return j->kind == JOB_UPDATE;
}

static uint64_t age_sec(uint64_t since) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        return since && now > since ? (uint64_t) ((now - since) / USEC_PER_SEC) : 0;
}

static void required_env_update(Reconciler *r, char **required) {
        if (g_strv_equal((const char *const *) r->required_env, (const char *const *) required))
                return;
        g_strfreev(r->required_env);
        r->required_env = g_strdupv(required);
        if (r->ev.required_env_changed)
                r->ev.required_env_changed(r, r->required_env, r->ev.userdata);
}

/* ---- fetch ---- */

static void on_spec(PlatformCall *call, PlatformSpecResult *res, void *userdata) {
        Job *j = userdata;
        Reconciler *r = j->r;
        j->api_call = NULL;

        j->fetch_answered = res->error >= 0 || res->error == -EINVAL;
        if (res->error >= 0) {
                r->fetched_usec = now_usec(CLOCK_MONOTONIC);
                r->fetch_failed_usec = 0;
                g_clear_pointer(&r->fetch_error, g_free);
                if (r->last_error_cause == ERROR_CAUSE_API)
                        vm_clear_error(r);
        }
        if (res->error >= 0 && !res->unchanged) {
                platform_vm_spec_free(r->spec);
                r->spec = g_steal_pointer(&res->spec);
                g_clear_pointer(&r->spec_error, g_free);
                required_env_update(r, r->spec->required_env);
                vm_set_allowed_env(r);
                reconciler_save_spec(r, res->body, res->body_len);
        } else if (res->error >= 0) {
                if (r->spec)
                        /* 304 against the validators of the last good document: that one is back. */
                        g_clear_pointer(&r->spec_error, g_free);
                else {
                        /* A 304 with no good document to be "not modified" from: there is
                         * still no spec, and the next request asks for the whole document. */
                        platform_api_forget_validators(r->api);
                        g_free(r->fetch_error);
                        r->fetch_error = g_strdup("the Platform API answered 304 Not Modified, but no valid "
                                                  "document was ever received");
                }
        } else if (res->error == -EINVAL) {
                g_free(r->spec_error);
                r->spec_error = text_bound(res->message);
        } else {
                g_autofree char *b = text_bound(res->message);
                g_autofree char *msg = g_strdup_printf("Platform API unreachable: %s", b);
                if (!r->fetch_failed_usec)
                        r->fetch_failed_usec = now_usec(CLOCK_MONOTONIC);
                g_free(r->fetch_error);
                r->fetch_error = g_strdup(msg);
                vm_note_error_cause(r, ERROR_CAUSE_API, msg);
                if (is_update(j)) {
                        vm_set_u64(r, &r->vm->last_check_usec, now_usec(CLOCK_REALTIME), VM_FIELD_LAST_CHECK);
                        return job_finish(j, RECONCILER_ERROR_API_UNAVAILABLE, msg);
                }
                if (r->spec)
                        /* The last good spec is still what is wanted; a crashed VM is still restarted. */
                        log_warning("%s; going on with the last good spec.", msg);
        }
        observe(j);
}

void job_fetch(Job *j) {
        int q = ensure_clients(j->r);
        if (q >= 0)
                q = platform_api_fetch_spec(j->r->api, on_spec, j, &j->api_call);
        if (q < 0)
                job_finish(j, RECONCILER_ERROR_FAILED, "cannot start fetching the spec");
}

void job_run_tick(Reconciler *r) {
        r->poll_timer = sd_event_source_disable_unref(r->poll_timer);
        if (r->job)
                return; /* the job's end schedules the next tick */
        job_fetch(job_new(r, JOB_TICK, false, NULL, NULL));
}

/* ---- observe ---- */

/* Honest reachability (dbus-api.md): when the VMM does not answer, State
 * stays what was last known, StateReason says since when (counted from the
 * first failed call), and VmmStatus is "unreachable" once that has lasted
 * longer than a poll interval. */
static void observe_failed(Job *j, const char *msg) {
        Reconciler *r = j->r;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        if (!r->observe_failed_usec)
                r->observe_failed_usec = j->observe_start_usec ?: now;
        g_free(r->observe_error);
        r->observe_error = g_strdup(msg);

        uint64_t failing = now - r->observe_failed_usec;
        if (failing >= r->settings->config->poll_interval_usec)
                vm_set_str(r, &r->vm->vmm_status, "unreachable", VM_FIELD_VMM_STATUS);
        uint64_t since_usec = now_usec(CLOCK_REALTIME) - failing;
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc((gint64) (since_usec / USEC_PER_SEC));
        g_autofree char *since = t ? g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ") : g_strdup("?");
        g_autofree char *why = g_strdup_printf("cannot observe the VM since %s (%" PRIu64 " s), the state is as last "
                                               "seen: %s", since, (uint64_t) (failing / USEC_PER_SEC), msg);
        vm_note_error_cause(r, ERROR_CAUSE_VMM, msg);
        vm_set_state(r, r->vm->state, why);
}

/* Status has not answered within a poll interval: as good as failed for
 * whoever watches, though the call may still answer. */
static int on_status_slow(sd_event_source *s, uint64_t usec, void *userdata) {
        Job *j = userdata;
        j->timer = sd_event_source_disable_unref(j->timer);
        g_autofree char *msg = g_strdup_printf("VMM unreachable: no answer to Status for %" PRIu64 " s",
                                               age_sec(j->observe_start_usec));
        observe_failed(j, msg);
        return 0;
}

static void on_status(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        Reconciler *r = j->r;
        j->vmm_call = NULL;
        j->timer = sd_event_source_disable_unref(j->timer);
        uint64_t now = now_usec(CLOCK_REALTIME);
        vm_set_u64(r, &r->vm->last_check_usec, now, VM_FIELD_LAST_CHECK);

        if (res->error < 0) {
                g_autofree char *b = text_bound(res->message);
                g_autofree char *msg = g_strdup_printf("VMM unreachable: %s", b);
                observe_failed(j, msg);
                return job_finish(j, steps_error_kind(res), msg);
        }
        if (j->fetch_answered)
                vm_set_u64(r, &r->vm->last_successful_check_usec, now, VM_FIELD_LAST_SUCCESSFUL_CHECK);
        r->observed_usec = now_usec(CLOCK_MONOTONIC);
        r->observe_failed_usec = 0;
        g_clear_pointer(&r->observe_error, g_free);
        if (r->last_error_cause == ERROR_CAUSE_VMM)
                vm_clear_error(r);
        vmm_status_reply_done(&r->observed);
        vmm_result_take_status(res, &r->observed);
        r->have_observed = true;
        decide(j);
}

static void strv_drop(char **l, size_t i) {
        size_t n = strv_length(l);
        free(l[i]);
        memmove(&l[i], &l[i + 1], (n - i) * sizeof(char *));
}

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
static void rename_vm(Reconciler *r, const char *name) {
        VmDeployState *st = r->state;
        if (streq(r->vm->name, name))
                return;
        log_notice("The spec renames VM %s to %s.", r->vm->name, name);
        if (!isempty(st->vm_id)) {
                (void) strv_extend(&st->retired_ids, st->vm_id);
                (void) strv_extend(&st->retired_names, r->vm->name);
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
        (void) reconciler_save_state(r);

        if (r->ev.vm_removed)
                r->ev.vm_removed(r, r->vm, r->ev.userdata);
        g_free(r->vm->name);
        r->vm->name = g_strdup(name);
        if (r->ev.vm_added)
                r->ev.vm_added(r, r->vm, r->ev.userdata);
}

static void observe(Job *j) {
        Reconciler *r = j->r;
        if (r->spec && !r->spec_error)
                rename_vm(r, r->spec->vm.name);
        j->observe_start_usec = now_usec(CLOCK_MONOTONIC);
        /* VMs under an old name are looked at too: their host ports may be needed (plan.c). */
        const char *keyword = r->state->retired_ids && r->state->retired_ids[0] ? NULL : r->vm->name;
        int q = vmm_status(r->vmm, NULL, keyword, on_status, j, &j->vmm_call);
        if (q < 0)
                return job_finish(j, RECONCILER_ERROR_FAILED, "cannot send Status");
        q = sd_event_add_time(r->event, &j->timer, CLOCK_MONOTONIC,
                              j->observe_start_usec + r->settings->config->poll_interval_usec, 100 * USEC_PER_MSEC,
                              on_status_slow, j);
        if (q < 0)
                log_debug_errno(q, "Cannot arm the Status watchdog: %m");
}

/* ---- decide ---- */

static void remove_next_duplicate(Job *j);

static void after_duplicate(Job *j, ReconcilerError error, const char *message) {
        if (error != RECONCILER_OK)
                log_warning("Cannot remove duplicate VM %s: %s", j->act_id, message);
        remove_next_duplicate(j);
}

/* A duplicate that cannot be removed is logged and tried again next time: it
 * must not keep the wanted VM from being deployed. */
static void remove_next_duplicate(Job *j) {
        if (!j->dup_ids || !j->dup_ids[j->dup_idx]) {
                g_clear_pointer(&j->act_id, g_free);
                return dispatch(j);
        }
        const char *id = j->dup_ids[j->dup_idx++];
        log_notice("Removing duplicate VM %s left by an earlier run.", id);
        g_free(j->act_id);
        j->act_id = g_strdup(id);
        j->act_stopped = false;
        job_run_table(j, &table_remove_duplicate, after_duplicate);
}

static void log_not_allowed(Reconciler *r, const DesiredVm *d) {
        g_autofree char *k = d && d->not_allowed[0] ? g_strjoinv(", ", d->not_allowed) : NULL;
        if (streq_ptr(k, r->not_allowed_logged))
                return; /* said already: a notice repeats only when its content changes */
        if (k)
                log_notice("Env keys not allowed by the compose are not sent: %s", k);
        g_free(r->not_allowed_logged);
        r->not_allowed_logged = g_steal_pointer(&k);
}

static bool adopt_allowed(const Job *j);

static void decide(Job *j) {
        Reconciler *r = j->r;

        if (r->spec_error)
                j->blocked_reason = g_strdup_printf("invalid spec from the Platform API: %s", r->spec_error);
        else if (!r->spec)
                j->blocked_reason = r->fetch_error ? g_strdup_printf("no spec yet: %s", r->fetch_error)
                                                   : g_strdup("no spec fetched yet");
        else if (desired_vm_build(r->spec, r->settings->config, r->fp_key, &j->desired, &j->blocked_reason) < 0 &&
                 !j->blocked_reason)
                j->blocked_reason = g_strdup("cannot build the VM spec");

        PlanInput in = {
                .desired = j->desired,
                .blocked_reason = j->blocked_reason,
                .name = r->vm->name,
                .vms = r->observed.vms,
                .n_vms = r->observed.n_vms,
                .state = r->state,
                .in_place = streq(r->settings->config->update_strategy, "in-place"),
                .force = j->force,
        };
        if (plan_compute(&in, &j->plan) < 0)
                return job_finish(j, RECONCILER_ERROR_FAILED, "cannot compute the plan");
        j->have_plan = true;
        log_debug("VM %s: plan %s%s%s (%zu VMs seen, %zu duplicates)", r->vm->name,
                  plan_action_to_string(j->plan.action), isempty(j->plan.reason) ? "" : ": ",
                  strempty(j->plan.reason), r->observed.n_vms, j->plan.n_extra);

        vm_observe(r, &j->plan);
        vm_set_str(r, &r->vm->target_compose_hash, j->desired ? j->desired->compose_hash : "",
                   VM_FIELD_TARGET_COMPOSE_HASH);
        vm_flush(r);
        if (j->desired)
                log_not_allowed(r, j->desired);

        /* Duplicates go only beside a VM of ours, or one being adopted now:
         * VMs we did not deploy are otherwise left alone. */
        if (j->plan.n_extra > 0 && j->plan.action != PLAN_BLOCKED &&
            (j->plan.action != PLAN_ADOPT || adopt_allowed(j))) {
                GPtrArray *ids = g_ptr_array_new();
                for (size_t i = 0; i < j->plan.n_extra; i++)
                        g_ptr_array_add(ids, g_strdup(j->plan.extra[i]->id));
                g_ptr_array_add(ids, NULL);
                j->dup_ids = (char **) g_ptr_array_free(ids, FALSE);
                j->dup_idx = 0;
                return remove_next_duplicate(j);
        }
        dispatch(j);
}

/* ---- record ---- */

static void announce_deployed(Job *j) {
        Reconciler *r = j->r;
        VmDeployState *st = r->state;
        const DesiredVm *d = j->desired;
        Vm *vm = r->vm;

        /* What the VMM now reports about the new VM, or else what was sent. */
        const VmInfo *k = NULL;
        for (size_t i = 0; i < r->observed.n_vms; i++)
                if (streq_ptr(r->observed.vms[i].id, st->vm_id))
                        k = &r->observed.vms[i];
        if (k) {
                Plan seen = { .keep = k, .keep_compose_hash = (char *) d->compose_hash };
                vm_observe(r, &seen);
        } else {
                vm_set_str(r, &vm->id, st->vm_id, VM_FIELD_ID);
                vm_set_str(r, &vm->compose_hash, d->compose_hash, VM_FIELD_COMPOSE_HASH);
                vm_set_str(r, &vm->app_id, st->app_id, VM_FIELD_APP_ID);
                vm_set_str(r, &vm->vmm_status, "running", VM_FIELD_VMM_STATUS);
                vm_set_str(r, &vm->image, d->config.image, VM_FIELD_IMAGE);
                vm_set_u32(r, &vm->vcpu, d->config.vcpu, VM_FIELD_VCPU);
                vm_set_u32(r, &vm->memory_mib, d->config.memory, VM_FIELD_MEMORY);
                vm_set_u32(r, &vm->disk_gib, d->config.disk_size, VM_FIELD_DISK);
        }
        vm_set_u64(r, &vm->last_update_usec, st->last_update_usec, VM_FIELD_LAST_UPDATE);
        vm_set_str(r, &vm->kms_signer, st->kms_signer, VM_FIELD_KMS_SIGNER);
        vm_set_u32(r, &vm->update_count, st->update_count, VM_FIELD_UPDATE_COUNT);
        vm_clear_error(r);
        vm_set_state(r, VM_STATE_RUNNING, "");
        r->fail_backoff_usec = 0;

        log_info("VM %s now runs compose %s (id %s).", vm->name, d->compose_hash, st->vm_id);
        if (r->ev.vm_updated)
                r->ev.vm_updated(r, vm, strempty(j->old_compose_hash), d->compose_hash, st->vm_id, r->ev.userdata);
        if (st->retired_ids && st->retired_ids[0])
                r->rerun = true; /* the VM under its old name goes next */
        job_finish(j, RECONCILER_OK, NULL);
}

static void save_deployed(Job *j, const char *id, const char *app_id) {
        Reconciler *r = j->r;
        VmDeployState *st = r->state;
        const DesiredVm *d = j->desired;

        if (isempty(j->old_compose_hash)) {
                g_free(j->old_compose_hash);
                j->old_compose_hash = g_strdup(st->compose_hash);
        }
        g_free(st->vm_id), st->vm_id = g_strdup(id);
        g_free(st->compose_hash), st->compose_hash = g_strdup(d->compose_hash);
        g_free(st->app_id), st->app_id = g_strdup(app_id);
        g_free(st->env_fingerprint), st->env_fingerprint = g_strdup(d->env_fingerprint);
        g_free(st->resources), st->resources = g_strdup(d->resources);
        if (j->kms_signer)
                g_free(st->kms_signer), st->kms_signer = g_strdup(j->kms_signer);
        st->last_update_usec = now_usec(CLOCK_REALTIME);
        st->update_count++;
        st->operator_stopped = false;
        vm_intent_free(st->intent), st->intent = NULL;
        (void) reconciler_save_state(r);
}

/* After a change, look once more before announcing it, so that Plan() and
 * the next decision start from what the VMM now reports. */
static void on_final_status(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        Reconciler *r = j->r;
        j->vmm_call = NULL;
        if (res->error >= 0) {
                vmm_status_reply_done(&r->observed);
                vmm_result_take_status(res, &r->observed);
                r->observed_usec = now_usec(CLOCK_MONOTONIC);
        }
        step_driver_done(r->driver);
}

void record_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        save_deployed(j, j->new_id ?: j->act_id, j->app_id);
        if (vmm_status(j->r->vmm, NULL, j->r->vm->name, on_final_status, j, &j->vmm_call) < 0)
                step_driver_done(d);
}

/* A VM under an old name that the deployment removed to free its host ports. */
static void forget_retired(Reconciler *r, Job *j) {
        VmDeployState *st = r->state;
        for (size_t i = 0; j->removed && j->act_id && st->retired_ids && st->retired_ids[i]; i++)
                if (streq(st->retired_ids[i], j->act_id)) {
                        log_notice("Removed VM %s, which ran under the old name %s, before creating its "
                                   "replacement.", j->act_id, st->retired_names[i]);
                        strv_drop(st->retired_ids, i);
                        strv_drop(st->retired_names, i);
                        (void) reconciler_save_state(r);
                        return;
                }
}

static void after_deploy(Job *j, ReconcilerError error, const char *message) {
        Reconciler *r = j->r;
        if (error == RECONCILER_OK) {
                forget_retired(r, j);
                return announce_deployed(j);
        }
        if (error == RECONCILER_ERROR_BLOCKED) {
                vm_set_state(r, VM_STATE_BLOCKED, message);
                return job_update_failed(j, error, message);
        }
        if (!j->touched)
                return job_update_failed(j, error, message);
        g_autofree char *m = g_strdup_printf("%s%s", message, j->removed ? "; the old VM was removed" : "");
        vm_set_state(r, VM_STATE_FAILED, m);
        job_update_failed(j, error, m);
}

/* ---- dispatch ---- */

static void after_auto_start(Job *j, ReconcilerError error, const char *message) {
        Reconciler *r = j->r;
        if (error != RECONCILER_OK) {
                g_autofree char *msg = g_strdup_printf("cannot start the VM: %s", message);
                vm_note_error(r, msg);
                vm_set_state(r, VM_STATE_FAILED, msg);
                return job_finish(j, error, msg);
        }
        vm_set_str(r, &r->vm->vmm_status, "running", VM_FIELD_VMM_STATUS);
        if (j->plan.action == PLAN_ADOPT)
                vm_set_state(r, VM_STATE_RUNNING, j->plan.reason);
        else if (j->plan.action == PLAN_BLOCKED)
                /* Running again; still nothing newer can be applied. */
                vm_set_state(r, r->spec || r->spec_error ? VM_STATE_BLOCKED : VM_STATE_PENDING, j->plan.reason);
        else
                vm_set_state(r, VM_STATE_RUNNING, "");
        job_finish(j, RECONCILER_OK, NULL);
}

static void auto_start(Job *j) {
        Reconciler *r = j->r;
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        const VmInfo *vm = j->plan.keep;

        if (!is_update(j) && r->next_restart_usec > now) {
                g_autofree char *why = g_strdup_printf("the VM is %s; next start attempt in %" PRIu64 " s",
                                                       vm_status_to_string(vm->status),
                                                       (uint64_t) ((r->next_restart_usec - now + USEC_PER_SEC - 1) / USEC_PER_SEC));
                vm_set_state(r, VM_STATE_FAILED, why);
                r->recheck_usec = r->next_restart_usec - now;
                return job_finish(j, RECONCILER_OK, NULL);
        }

        /* 5 s doubling to 1 h between attempts, so a VM that keeps crashing is not hammered. */
        r->restart_backoff_usec = r->restart_backoff_usec ? MIN(2 * r->restart_backoff_usec, RESTART_BACKOFF_MAX_USEC)
                                                          : RESTART_BACKOFF_MIN_USEC;
        r->next_restart_usec = now + r->restart_backoff_usec;
        r->state->restart_count++;
        (void) reconciler_save_state(r);
        vm_set_u32(r, &r->vm->restart_count, r->state->restart_count, VM_FIELD_RESTART_COUNT);
        log_notice("VM %s is %s, starting it (restart %u).", r->vm->name, vm_status_to_string(vm->status),
                   r->state->restart_count);
        g_free(j->act_id);
        j->act_id = g_strdup(vm->id);
        job_run_table(j, &table_start, after_auto_start);
}

static void start_deploy(Job *j, const StepTable *t) {
        const Plan *p = &j->plan;
        const VmInfo *old = p->keep ?: p->replaced; /* stopped and removed first by a recreate */
        if (old) {
                j->act_id = g_strdup(old->id);
                j->act_stopped = old->status == VM_STATUS_STOPPED;
        }
        /* The env is encrypted to the app id the VM will actually run with. */
        j->app_id = g_strdup(p->action == PLAN_UPDATE_IN_PLACE ? p->keep->app_id : j->desired->app_id);
        j->old_compose_hash = g_strdup(j->r->vm->compose_hash);
        job_run_table(j, t, after_deploy);
}

/* A crash between CreateVm and recording it: the VM is the one we meant. */
static bool adopt_interrupted(Job *j) {
        VmIntent *in = j->r->state->intent;
        const VmInfo *vm = j->plan.keep;
        if (!in || !vm || !j->desired || !streq(in->target_compose_hash, j->plan.keep_compose_hash))
                return false;
        if (streq(in->op, "in-place")) {
                /* UpdateVm took effect but the VM may still run the old compose: restart it. */
                log_notice("Finishing the interrupted in-place update of %s.", vm->id);
                j->act_id = g_strdup(vm->id);
                j->act_stopped = vm->status == VM_STATUS_STOPPED;
                j->app_id = g_strdup(vm->app_id);
                j->old_compose_hash = g_strdup(j->r->vm->compose_hash);
                job_run_table(j, &table_in_place_resume, after_deploy);
                return true;
        }
        if (vm->status != VM_STATUS_RUNNING)
                return false;
        log_notice("Adopting VM %s created before an interruption.", vm->id);
        save_deployed(j, vm->id, vm->app_id);
        announce_deployed(j);
        return true;
}

/* An Update, or AdoptPolicy=redeploy. */
static bool adopt_allowed(const Job *j) {
        return is_update(j) || streq(j->r->settings->config->adopt_policy, "redeploy");
}

/* A VM with our name that we did not deploy (issue 10, migration from the
 * Rust launcher). Its env cannot be read, so it is never replaced silently:
 * an automatic check keeps it as it is (and starts it if it exited: keeping
 * a validator up is the launcher's job) and says so in StateReason; Update or
 * AdoptPolicy=redeploy redeploys it once, after which it is ours. */
static void adopt(Job *j) {
        Reconciler *r = j->r;
        Plan *p = &j->plan;

        if (adopt_allowed(j)) {
                log_notice("Redeploying VM %s (%s), which this launcher did not deploy, with the local env%s.",
                           p->keep->id, r->vm->name, is_update(j) ? "" : " (AdoptPolicy=redeploy)");
                p->action = p->adopt_action;
                return start_deploy(j, p->action == PLAN_UPDATE_IN_PLACE ? &table_in_place : &table_recreate);
        }
        if (!streq_ptr(r->adopt_logged, p->keep->id)) {
                /* Said once per VM, not every poll. */
                log_notice("VM %s was not deployed by this launcher; keeping it as it is. %s", p->keep->id,
                           p->reason);
                g_free(r->adopt_logged);
                r->adopt_logged = g_strdup(p->keep->id);
        }
        if (p->keep->status == VM_STATUS_EXITED || p->keep->status == VM_STATUS_STOPPED)
                return auto_start(j);
        vm_set_state(r, p->keep->status == VM_STATUS_RUNNING ? VM_STATE_RUNNING : VM_STATE_STOPPING, p->reason);
        r->fail_backoff_usec = 0;
        job_finish(j, RECONCILER_OK, NULL);
}

/* ---- VMs under an old name (a rename) go once the VM under the new name runs ---- */

static void remove_next_retired(Job *j);

static void after_retired(Job *j, ReconcilerError error, const char *message) {
        Reconciler *r = j->r;
        VmDeployState *st = r->state;
        if (error != RECONCILER_OK) {
                log_warning("Cannot remove VM %s (renamed): %s", j->act_id, message);
                return job_finish(j, RECONCILER_OK, NULL); /* tried again next time */
        }
        log_notice("Removed VM %s, which ran under the old name.", j->act_id);
        for (size_t i = 0; st->retired_ids && st->retired_ids[i]; i++)
                if (streq(st->retired_ids[i], j->act_id)) {
                        strv_drop(st->retired_ids, i);
                        strv_drop(st->retired_names, i);
                        break;
                }
        (void) reconciler_save_state(r);
        remove_next_retired(j);
}

static void remove_next_retired(Job *j) {
        VmDeployState *st = j->r->state;
        if (!st->retired_ids || !st->retired_ids[0])
                return job_finish(j, RECONCILER_OK, NULL);
        if (j->plan.keep && streq(st->retired_ids[0], j->plan.keep->id)) {
                /* Never the VM that is wanted now. */
                strv_drop(st->retired_ids, 0);
                strv_drop(st->retired_names, 0);
                return remove_next_retired(j);
        }
        log_notice("Removing VM %s, renamed from %s by the spec.", st->retired_ids[0], st->retired_names[0]);
        g_free(j->act_id);
        j->act_id = g_strdup(st->retired_ids[0]);
        j->act_stopped = false;
        job_run_table(j, &table_remove_retired, after_retired);
}

static void dispatch(Job *j) {
        Reconciler *r = j->r;
        const Plan *p = &j->plan;

        switch (p->action) {
        case PLAN_NONE:
                if (adopt_interrupted(j))
                        return;
                if (r->state->operator_stopped) {
                        vm_set_state(r, VM_STATE_STOPPED, p->reason);
                        if (is_update(j))
                                return job_finish(j, RECONCILER_ERROR_BLOCKED,
                                                  "the VM was stopped by the operator; Start it first");
                        return job_finish(j, RECONCILER_OK, NULL);
                }
                /* Equal and running: whatever went wrong with the VM is gone. An
                 * unreachable API is not: it was noted in this very tick, and it
                 * clears when the API answers (on_spec). */
                if (r->last_error_cause != ERROR_CAUSE_API)
                        vm_clear_error(r);
                vm_set_state(r, VM_STATE_RUNNING, "");
                r->fail_backoff_usec = 0;
                if (p->keep && p->keep->status == VM_STATUS_RUNNING)
                        return remove_next_retired(j);
                return job_finish(j, RECONCILER_OK, NULL);
        case PLAN_BLOCKED:
                /* Nothing new can be applied, but the VM that was deployed is kept
                 * running: it is started again if it exited (the API may be away).
                 * So is a VM with the name that we did not deploy (the Rust
                 * launcher's) while we have deployed none. */
                if (p->keep && p->keep->status == VM_STATUS_EXITED && !r->state->operator_stopped &&
                    (streq(r->state->vm_id, p->keep->id) || isempty(r->state->vm_id)))
                        return auto_start(j);
                if (r->spec || r->spec_error)
                        vm_note_error_cause(r, ERROR_CAUSE_BLOCKED, p->reason);
                vm_set_state(r, r->spec || r->spec_error ? VM_STATE_BLOCKED : VM_STATE_PENDING, p->reason);
                return job_finish(j, is_update(j) ? RECONCILER_ERROR_BLOCKED : RECONCILER_OK, p->reason);
        case PLAN_WAIT:
                vm_set_state(r, p->keep ? VM_STATE_STOPPING : VM_STATE_UPDATING, p->reason);
                r->recheck_usec = RECHECK_USEC;
                return job_finish(j, RECONCILER_OK, NULL);
        case PLAN_START:
                if (adopt_interrupted(j))
                        return;
                return auto_start(j);
        case PLAN_ADOPT:
                return adopt(j);
        case PLAN_CREATE:
                return start_deploy(j, &table_create);
        case PLAN_RECREATE:
                return start_deploy(j, &table_recreate);
        case PLAN_UPDATE_IN_PLACE:
                if (adopt_interrupted(j))
                        return;
                return start_deploy(j, &table_in_place);
        default:
                return job_finish(j, RECONCILER_ERROR_FAILED, "internal error: unknown plan");
        }
}

/* ---- prepare-checks: what can be known before anything is touched ---- */

static bool is_ip_address(const char *s) {
        unsigned char buf[sizeof(struct in6_addr)];
        return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* VM names (HEAD main_service.rs validate_label; v0.5.5 is stricter). */
static const char *name_problem(const char *name, const VmmVersion *v) {
        bool old = v && vmm_version_compare(v, &(VmmVersion) { 0, 5, 6 }) < 0;
        if (isempty(name))
                return "it is empty";
        for (const char *c = name; *c; c++) {
                if (g_ascii_isalnum(*c) || *c == '-' || *c == '_')
                        continue;
                if (!old && strchr(". @~!$^()", *c))
                        continue;
                return old ? "this VMM (before 0.5.6) accepts only letters, digits, '-' and '_'"
                           : "the VMM accepts only letters, digits and - _ . space @ ~ ! $ ^ ( )";
        }
        return NULL;
}

static void block(Job *j, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void block(Job *j, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        g_autofree char *m = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        step_fail_kind(j, RECONCILER_ERROR_BLOCKED, m);
}

static void check_name(Job *j, const VmmVersion *v) {
        const char *why = name_problem(j->desired->name, v);
        if (why)
                return block(j, "vm_parameters.name '%.64s' cannot be used: %s", j->desired->name, why);
        step_driver_done(j->r->driver);
}

static void on_version(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        VmmVersion v;
        /* A VMM that cannot say its version is held to the newer rules. */
        check_name(j, res->error >= 0 && vmm_client_get_version(j->r->vmm, &v) ? &v : NULL);
}

/* In-place: ports go to UpdateVm only when they changed, and then each with a
 * real address, since UpdateVm has no default for "" (dstack.md §2). */
static int in_place_ports(Job *j, char **ret_error) {
        const VmConfiguration *want = &j->desired->config, *have = &j->plan.keep->configuration;
        j->update_ports = !vm_ports_match(want->ports, want->n_ports, have->ports, have->n_ports);
        if (!j->update_ports)
                return 0;
        j->send_ports = g_new0(VmPort, MAX(want->n_ports, 1));
        j->n_send_ports = want->n_ports;
        for (size_t i = 0; i < want->n_ports; i++) {
                const VmPort *w = &want->ports[i];
                const char *addr = w->host_address;
                if (isempty(addr)) {
                        /* The address the VMM resolved for this very mapping. */
                        for (size_t k = 0; k < have->n_ports && isempty(addr); k++)
                                if (streq_ptr(have->ports[k].protocol, w->protocol) &&
                                    have->ports[k].host_port == w->host_port && have->ports[k].vm_port == w->vm_port)
                                        addr = have->ports[k].host_address;
                }
                if (isempty(addr)) {
                        *ret_error = g_strdup_printf(
                                "vm_parameters.ports[%zu].host_address is empty, and UpdateVm needs an IP address "
                                "for a new port mapping: set host_address in the spec, or use the recreate strategy",
                                i);
                        return -EINVAL;
                }
                j->send_ports[i] = (VmPort) { .protocol = g_strdup(w->protocol), .host_port = w->host_port,
                                              .vm_port = w->vm_port, .host_address = g_strdup(addr) };
        }
        return 0;
}

void prep_checks_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        Reconciler *r = j->r;
        const VmConfiguration *c = &j->desired->config;

        if (c->n_ports > 0 && !r->observed.port_mapping_enabled)
                return block(j, "the spec maps %zu port(s) (vm_parameters.ports), but port mapping is disabled at "
                                "the VMM: set [cvm.port_mapping] enabled = true in vmm.toml, or drop the ports",
                             c->n_ports);
        for (size_t i = 0; i < c->n_ports; i++)
                if (!isempty(c->ports[i].host_address) && !is_ip_address(c->ports[i].host_address))
                        return block(j, "vm_parameters.ports[%zu].host_address '%.64s' is not an IP address", i,
                                     c->ports[i].host_address);
        if (j->plan.action == PLAN_UPDATE_IN_PLACE) {
                g_autofree char *why = NULL;
                if (in_place_ports(j, &why) < 0)
                        return block(j, "%s", why);
        }

        VmmVersion v;
        if (vmm_client_get_version(r->vmm, &v))
                return check_name(j, &v);
        if (vmm_version(r->vmm, on_version, j, &j->vmm_call) < 0)
                check_name(j, NULL);
}

/* ---- encrypt, cross-check: the old VM is still untouched ---- */

/* Only a key from a trusted KMS gets the secrets (core/kms-trust.h). Returns
 * false when the job is blocked. */
static bool kms_trusted(Job *j, const VmmPubKeyReply *k) {
        Reconciler *r = j->r;
        const LauncherConfig *c = r->settings->config;
        KmsTrustInput in = { .app_id = j->app_id, .reply = k, .trusted = c->trusted_kms_signers,
                             .max_age_usec = c->kms_signature_max_age_usec, .pinned = r->state->kms_signer_pinned,
                             .now_sec = now_usec(CLOCK_REALTIME) / USEC_PER_SEC };
        _cleanup_(kms_trust_result_done) KmsTrustResult t = {};
        if (kms_trust_check(&in, &t) < 0 || t.blocked) {
                step_fail_kind(j, RECONCILER_ERROR_BLOCKED, t.blocked ?: "internal error: bad app id");
                return false;
        }
        if (t.warning)
                log_warning("%s", t.warning);
        if (t.pin) {
                log_notice("Pinning KMS signer %s (first use; TrustedKmsSigners is empty).", t.signer);
                g_free(r->state->kms_signer_pinned), r->state->kms_signer_pinned = g_strdup(t.signer);
                (void) reconciler_save_state(r);
        }
        g_free(j->kms_signer), j->kms_signer = g_strdup(t.signer);
        return true;
}

static void on_pubkey(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("cannot get the env encryption key for app %s: %s", j->app_id,
                                                     res->message);
                return step_fail_kind(j, steps_error_kind(res), m);
        }
        if (!kms_trusted(j, res->pubkey))
                return;

        g_auto(GStrv) dropped = NULL;
        g_autofree char *why = NULL;
        int q = env_encrypt(&j->desired->env, j->desired->allowed_envs, res->pubkey->public_key, &j->encrypted_env,
                            &dropped, &why);
        if (q < 0) {
                g_autofree char *m = g_strdup_printf("cannot encrypt the env: %s", why ?: strerror(-q));
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, m);
        }
        step_driver_done(j->r->driver);
}

void prep_encrypt_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        if (isempty(j->app_id))
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, "the VM to update has no app id");
        if (vmm_get_app_env_encrypt_pubkey(j->r->vmm, j->app_id, on_pubkey, j, &j->vmm_call) < 0)
                step_fail_kind(j, RECONCILER_ERROR_FAILED, "cannot send GetAppEnvEncryptPubKey");
}

static int record_intent(Job *j, const char *op, const char *old_id) {
        Reconciler *r = j->r;
        vm_intent_free(r->state->intent);
        r->state->intent = vm_intent_new(op, old_id, j->desired->compose_hash, j->desired->env_fingerprint,
                                         j->desired->resources);
        return reconciler_save_state(r);
}

static void on_compose_hash(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("compose hash cross-check failed: %s", res->message);
                return step_fail_kind(j, steps_error_kind(res), m);
        }
        if (!streq(res->hash, j->desired->compose_hash)) {
                g_autofree char *m = g_strdup_printf("the VMM computes compose hash %s, the launcher %s", res->hash,
                                                     j->desired->compose_hash);
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, m);
        }
        /* Before the first destructive step: what is about to happen. */
        const char *op = j->plan.action == PLAN_UPDATE_IN_PLACE ? "in-place"
                         : j->plan.action == PLAN_RECREATE      ? "recreate"
                                                                : "create";
        if (record_intent(j, op, strempty(j->act_id)) < 0)
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, "cannot record the intent in the state store");
        step_driver_done(j->r->driver);
}

void prep_cross_check_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        if (vmm_get_compose_hash(j->r->vmm, &j->desired->config, on_compose_hash, j, &j->vmm_call) < 0)
                step_fail_kind(j, RECONCILER_ERROR_FAILED, "cannot send GetComposeHash");
}

/* ---- create ---- */

static void on_created(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("CreateVm failed: %s", res->message);
                return step_fail_kind(j, steps_error_kind(res), m);
        }
        j->new_id = g_strdup(res->id);
        vm_set_str(j->r, &j->r->vm->id, j->new_id, VM_FIELD_ID);
        step_driver_done(j->r->driver);
}

void create_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        _cleanup_free_ uint8_t *env = NULL;
        size_t env_len = 0;
        if (hex_decode(j->encrypted_env, &env, &env_len) < 0)
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, "internal error: bad encrypted env");

        VmConfiguration conf = j->desired->config; /* borrowed: freed with desired */
        conf.encrypted_env = env;
        conf.encrypted_env_len = env_len;
        conf.app_id = NULL; /* the VMM derives it from the compose: the app id we encrypted to */
        j->touched = true;
        if (vmm_create_vm(j->r->vmm, &conf, on_created, j, &j->vmm_call) < 0)
                step_fail_kind(j, RECONCILER_ERROR_FAILED, "cannot send CreateVm");
}

/* ---- update in place: UpdateVm, then read back what the VM will boot ---- */

static void on_read_back(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        char hash[COMPOSE_HASH_HEX_LEN + 1] = "";
        if (res->error < 0)
                return step_fail_kind(j, steps_error_kind(res), res->message);
        const VmInfo *vm = res->info->found ? res->info->info : NULL;
        if (vm && vm->has_configuration && vm->configuration.compose_file)
                (void) compose_hash(vm->configuration.compose_file, strlen(vm->configuration.compose_file), hash);
        if (!streq(hash, j->desired->compose_hash)) {
                g_autofree char *m = g_strdup_printf("after UpdateVm the VM has compose hash %s, not %s",
                                                     hash[0] ? hash : "(none)", j->desired->compose_hash);
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, m);
        }
        step_driver_done(j->r->driver);
}

static void on_updated(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("%s; the VM is unchanged", res->message);
                return step_fail_kind(j, steps_error_kind(res), m);
        }
        /* The reply's id is the new compose's hash prefix, or "": not the VM's
         * app id (dstack.md §2), so it is not used. */
        j->touched = true;
        if (vmm_get_info(j->r->vmm, j->act_id, on_read_back, j, &j->vmm_call) < 0)
                step_fail_kind(j, RECONCILER_ERROR_FAILED, "cannot send GetInfo");
}

void update_vm_start(StepDriver *d, void *userdata) {
        Job *j = userdata;
        const DesiredVm *dv = j->desired;
        _cleanup_free_ uint8_t *env = NULL;
        size_t env_len = 0;

        if (hex_decode(j->encrypted_env, &env, &env_len) < 0)
                return step_fail_kind(j, RECONCILER_ERROR_FAILED, "internal error: bad encrypted env");
        VmmUpdateRequest u = {
                .id = j->act_id,
                .compose_file = dv->compose,
                .encrypted_env = env,
                .encrypted_env_len = env_len,
                .user_config = dv->config.user_config,
                .update_ports = j->update_ports,
                .ports = j->send_ports,
                .n_ports = j->update_ports ? j->n_send_ports : 0,
        };
        if (vmm_update_vm(j->r->vmm, &u, on_updated, j, &j->vmm_call) < 0)
                step_fail_kind(j, RECONCILER_ERROR_FAILED, "cannot send UpdateVm");
}
