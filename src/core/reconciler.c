/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "core/reconciler-internal.h"
#include "shared/compose.h"
#include "shared/hex.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/strv.h"

#define DEFAULT_VM_NAME "validator_vm"
#define BACKOFF_MIN_USEC (5 * USEC_PER_SEC)
#define BACKOFF_MAX_USEC (3600 * USEC_PER_SEC)
#define STABLE_RUNNING_USEC (600 * USEC_PER_SEC)  /* running this long resets the restart backoff */
#define DATA_FRESH_USEC (60 * USEC_PER_SEC)  /* Plan() says how old its data is beyond this */

static const char *const state_names[_VM_STATE_MAX] = {
        [VM_STATE_PENDING] = "pending",   [VM_STATE_BLOCKED] = "blocked", [VM_STATE_CREATING] = "creating",
        [VM_STATE_STARTING] = "starting", [VM_STATE_RUNNING] = "running", [VM_STATE_UPDATING] = "updating",
        [VM_STATE_STOPPING] = "stopping", [VM_STATE_STOPPED] = "stopped", [VM_STATE_FAILED] = "failed",
};

const char *vm_state_to_string(VmState s) {
        return s < _VM_STATE_MAX ? state_names[s] : NULL;
}

/* ---- texts from outside (issue 9 #13) ---- */

char *text_bound(const char *s) {
        g_autofree char *valid = g_utf8_make_valid(strempty(s), -1);
        size_t len = strlen(valid);
        if (len <= TEXT_BOUND)
                return g_steal_pointer(&valid);
        static const char ellipsis[] = "…";
        size_t cut = TEXT_BOUND - (sizeof ellipsis - 1);
        while (cut > 0 && ((unsigned char) valid[cut] & 0xC0) == 0x80)
                cut--; /* never inside a character */
        return g_strdup_printf("%.*s%s", (int) cut, valid, ellipsis);
}

/* ---- the Vm as the bus sees it: setters collect changed fields, flush emits once ---- */

void vm_set_str(Reconciler *r, char **field, const char *value, VmField bit) {
        if (streq(*field, strempty(value)))
                return;
        g_free(*field);
        *field = g_strdup(strempty(value));
        r->dirty |= bit;
}

void vm_set_u32(Reconciler *r, uint32_t *field, uint32_t value, VmField bit) {
        if (*field != value) {
                *field = value;
                r->dirty |= bit;
        }
}

void vm_set_u64(Reconciler *r, uint64_t *field, uint64_t value, VmField bit) {
        if (*field != value) {
                *field = value;
                r->dirty |= bit;
        }
}

/* The keys the VM receives (its spec's allowed_envs): clients ask before a
 * change of one of them replaces the VM. */
void vm_set_allowed_env(Reconciler *r) {
        char **l = NULL;
        if (!r->spec || compose_allowed_envs(r->spec, &l) < 0)
                l = calloc(1, sizeof(char *));
        if (!l || g_strv_equal((const char *const *) r->vm->allowed_env, (const char *const *) l)) {
                strv_free(l);
                return;
        }
        strv_free(r->vm->allowed_env);
        r->vm->allowed_env = l;
        r->dirty |= VM_FIELD_ALLOWED_ENV;
}

void vm_flush(Reconciler *r) {
        uint32_t fields = r->dirty;
        r->dirty = 0;
        if (fields && r->ev.vm_changed)
                r->ev.vm_changed(r, r->vm, fields, r->ev.userdata);
}

void vm_set_state(Reconciler *r, VmState state, const char *reason) {
        if (r->vm->state != state) {
                r->vm->state = state;
                r->dirty |= VM_FIELD_STATE;
        }
        g_autofree char *b = text_bound(reason);
        vm_set_str(r, &r->vm->state_reason, b, VM_FIELD_STATE_REASON);
        vm_flush(r);
}

void vm_note_error_cause(Reconciler *r, ErrorCause cause, const char *message) {
        g_autofree char *b = text_bound(message);
        vm_set_str(r, &r->vm->last_error, b, VM_FIELD_LAST_ERROR);
        r->last_error_cause = isempty(message) ? ERROR_CAUSE_NONE : cause;
}

void vm_note_error(Reconciler *r, const char *message) {
        vm_note_error_cause(r, ERROR_CAUSE_UPDATE, message);
}

void vm_clear_error(Reconciler *r) {
        vm_note_error_cause(r, ERROR_CAUSE_NONE, "");
}

static Vm *vm_new(const char *name) {
        Vm *vm = g_new0(Vm, 1);
        vm->name = g_strdup(name);
        char **strs[] = { &vm->id, &vm->state_reason, &vm->vmm_status, &vm->app_id, &vm->compose_hash,
                          &vm->target_compose_hash, &vm->image, &vm->image_version, &vm->last_error,
                          &vm->operation, &vm->kms_signer };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                *strs[i] = g_strdup("");
        vm->allowed_env = calloc(1, sizeof(char *));
        vm->state = VM_STATE_PENDING;
        return vm;
}

static void vm_free(Vm *vm) {
        if (!vm)
                return;
        char *strs[] = { vm->name, vm->id, vm->state_reason, vm->vmm_status, vm->app_id, vm->compose_hash,
                         vm->target_compose_hash, vm->image, vm->image_version, vm->last_error, vm->operation,
                         vm->kms_signer };
        for (size_t i = 0; i < ELEMENTSOF(strs); i++)
                g_free(strs[i]);
        strv_free(vm->allowed_env);
        g_free(vm);
}

/* What the VMM reports about the VM we keep. */
void vm_observe(Reconciler *r, const Plan *p) {
        Vm *vm = r->vm;
        const VmInfo *k = p->keep;
        vm_set_str(r, &vm->id, k ? k->id : "", VM_FIELD_ID);
        vm_set_str(r, &vm->vmm_status, k ? vm_status_to_string(k->status) : "", VM_FIELD_VMM_STATUS);
        vm_set_str(r, &vm->app_id, k ? k->app_id : "", VM_FIELD_APP_ID);
        vm_set_str(r, &vm->compose_hash, p->keep_compose_hash, VM_FIELD_COMPOSE_HASH);
        vm_set_str(r, &vm->image, k ? k->configuration.image : "", VM_FIELD_IMAGE);
        vm_set_str(r, &vm->image_version, k ? k->image_version : "", VM_FIELD_IMAGE_VERSION);
        vm_set_u32(r, &vm->vcpu, k ? k->configuration.vcpu : 0, VM_FIELD_VCPU);
        vm_set_u32(r, &vm->memory_mib, k ? k->configuration.memory : 0, VM_FIELD_MEMORY);
        vm_set_u32(r, &vm->disk_gib, k ? k->configuration.disk_size : 0, VM_FIELD_DISK);

        uint64_t now = now_usec(CLOCK_MONOTONIC);
        if (k && k->status == VM_STATUS_RUNNING) {
                if (!r->running_since_usec)
                        r->running_since_usec = now;
                else if (now - r->running_since_usec >= STABLE_RUNNING_USEC)
                        r->restart_backoff_usec = 0;
        } else
                r->running_since_usec = 0;
}

int reconciler_save_state(Reconciler *r) {
        int q = vm_deploy_state_save(r->state_dir, r->state);
        if (q < 0)
                log_error_errno(q, "Cannot write the state store in %s: %m", r->state_dir);
        return q;
}

/* ---- scheduling ---- */

static int on_poll_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        job_run_tick(userdata);
        return 0;
}

void schedule_tick(Reconciler *r, uint64_t delay) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        /* ±10% jitter, so that many hosts do not poll the API in step. */
        if (delay > 0)
                delay = delay - delay / 10 + g_random_int_range(0, (gint32) MIN(delay / 5 + 1, G_MAXINT32));
        r->poll_timer = sd_event_source_disable_unref(r->poll_timer);
        int q = sd_event_add_time(r->event, &r->poll_timer, CLOCK_MONOTONIC, now + delay, 10 * USEC_PER_MSEC,
                                  on_poll_timer, r);
        if (q < 0)
                log_error_errno(q, "Cannot arm the poll timer: %m");
}

static uint64_t next_delay(Reconciler *r) {
        return MAX(r->settings->config->poll_interval_usec, r->fail_backoff_usec);
}

/* ---- jobs ---- */

static void job_free(Job *j) {
        if (!j)
                return;
        job_cancel_table(j);
        if (j->vmm_call)
                vmm_call_cancel(j->vmm_call);
        if (j->api_call)
                platform_call_cancel(j->api_call);
        sd_event_source_disable_unref(j->timer);
        g_array_unref(j->waiters);
        g_free(j->trigger);
        desired_vm_free(j->desired);
        g_free(j->blocked_reason);
        if (j->have_plan)
                plan_done(&j->plan);
        g_free(j->old_id);
        g_free(j->old_compose_hash);
        g_free(j->new_id);
        if (j->encrypted_env)
                explicit_bzero(j->encrypted_env, strlen(j->encrypted_env));
        g_free(j->encrypted_env);
        g_free(j->app_id);
        g_free(j->kms_signer);
        g_free(j->act_id);
        g_free(j->remove_error);
        g_strfreev(j->dup_ids);
        for (size_t i = 0; j->send_ports && i < j->n_send_ports; i++)
                vm_port_done(&j->send_ports[i]);
        g_free(j->send_ports);
        g_free(j);
}

Job *job_new(Reconciler *r, JobKind kind, bool force, reconciler_done_cb done, void *userdata) {
        Job *j = g_new0(Job, 1);
        j->r = r;
        j->kind = kind;
        j->force = force;
        j->waiters = g_array_new(FALSE, FALSE, sizeof(Waiter));
        if (done)
                g_array_append_val(j->waiters, ((Waiter) { done, userdata }));
        if (kind == JOB_TICK || kind == JOB_UPDATE)
                j->trigger = g_steal_pointer(&r->change_trigger); /* this job evaluates the change */
        r->job = j;
        return j;
}

static void job_next(Reconciler *r);

void job_finish(Job *j, ReconcilerError error, const char *message_in) {
        Reconciler *r = j->r;
        /* The message often lives in the job (its plan, its reason): keep a copy past job_free(). */
        g_autofree char *message = message_in ? text_bound(message_in) : NULL;
        r->job = NULL;
        if (error != RECONCILER_OK)
                log_full(j->kind == JOB_TICK ? LOG_WARNING : LOG_NOTICE, "%s", strempty(message));
        vm_flush(r);

        g_autoptr(GArray) waiters = g_array_ref(j->waiters);
        job_free(j);
        for (guint i = 0; i < waiters->len; i++) {
                Waiter *w = &g_array_index(waiters, Waiter, i);
                w->done(r, error, message, w->userdata);
        }

        job_next(r);
}

/* An update that did not happen: the old VM is in place unless the reason says otherwise. */
void job_update_failed(Job *j, ReconcilerError error, const char *message) {
        Reconciler *r = j->r;
        g_autofree char *b = text_bound(message);
        r->fail_backoff_usec = r->fail_backoff_usec ? MIN(2 * r->fail_backoff_usec, BACKOFF_MAX_USEC) : BACKOFF_MIN_USEC;
        vm_note_error_cause(r, error == RECONCILER_ERROR_BLOCKED ? ERROR_CAUSE_BLOCKED : ERROR_CAUSE_UPDATE, b);
        vm_flush(r);
        if (r->ev.update_failed)
                r->ev.update_failed(r, r->vm, j->desired ? j->desired->compose_hash : "", b, r->ev.userdata);
        job_finish(j, error, message);
}

/* ---- clients follow the settings ---- */

int ensure_clients(Reconciler *r) {
        const char *vmm_url = settings_store_vmm_url(r->settings);
        if (!r->vmm || !streq(r->vmm_url, vmm_url)) {
                VmmClient *c = NULL;
                int q = vmm_client_new(r->http, vmm_url, &c);
                if (q < 0)
                        return q;
                vmm_client_free(r->vmm);
                r->vmm = c;
                g_free(r->vmm_url);
                r->vmm_url = g_strdup(vmm_url);
        }
        const char *api_url = r->settings->config->api_url;
        if (!r->api || !streq(r->api_url, api_url)) {
                PlatformApi *a = NULL;
                int q = platform_api_new(r->http, api_url, &a);
                if (q >= 0)
                        q = platform_api_set_spec_url(a, api_url);
                if (q < 0) {
                        platform_api_free(a);
                        return q;
                }
                platform_api_free(r->api);
                r->api = a;
                g_free(r->api_url);
                r->api_url = g_strdup(api_url);
        }
        return 0;
}


/* ---- the last good spec survives a restart ---- */

void reconciler_save_spec(Reconciler *r, const char *data, size_t len) {
        if (!data)
                return;
        g_autofree char *digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *) data, len);
        if (streq_ptr(digest, r->spec_digest))
                return; /* no write per poll against an API without validators */
        int q = state_spec_save(r->state_dir, data, len);
        if (q < 0)
                return (void) log_warning_errno(q, "Cannot keep the spec in %s: %m", r->state_dir);
        g_free(r->spec_digest);
        r->spec_digest = g_steal_pointer(&digest);
}

static void load_spec(Reconciler *r) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        g_autofree char *why = NULL;
        int q = state_spec_load(r->state_dir, API_DOC_MAX, &data, &len);
        if (q == -ENOENT)
                return;
        if (q >= 0)
                q = platform_vm_spec_parse(data, len, &r->spec, &why);
        if (q < 0) {
                log_warning("The kept spec in %s cannot be used (%s); waiting for the Platform API.", r->state_dir,
                            why ?: strerror(-q));
                return;
        }
        r->spec_digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *) data, len);
        g_strfreev(r->required_env);
        r->required_env = g_strdupv(r->spec->required_env);
        /* The name the spec gives is the VM's name, as before the restart. */
        if (!isempty(r->spec->vm.name) && isempty(r->state->vm_id) && !streq(r->state->name, r->spec->vm.name)) {
                g_free(r->state->name);
                r->state->name = g_strdup(r->spec->vm.name);
        }
}

/* ---- life cycle ---- */

int reconciler_new(sd_event *event, SettingsStore *settings, const char *state_dir, const ReconcilerEvents *events,
                   Reconciler **ret) {
        Reconciler *r = g_new0(Reconciler, 1);
        r->event = sd_event_ref(event);
        r->settings = settings;
        r->state_dir = g_strdup(state_dir);
        r->ev = *events;
        r->required_env = g_new0(char *, 1);
        r->queued_updates = g_array_new(FALSE, FALSE, sizeof(Waiter));

        int q = http_context_new(event, &r->http);
        if (q >= 0)
                q = step_driver_new(event, &r->driver);
        if (q >= 0)
                q = state_fingerprint_key(state_dir, r->fp_key);
        if (q < 0) {
                reconciler_free(r);
                return q;
        }

        g_autofree char *why = NULL;
        if (vm_deploy_state_load(state_dir, DEFAULT_VM_NAME, &r->state, &why) < 0)
                log_error("State store was corrupt: %s", why);
        load_spec(r);
        r->vm = vm_new(r->state->name);
        vm_set_str(r, &r->vm->id, r->state->vm_id, VM_FIELD_ID);
        vm_set_str(r, &r->vm->compose_hash, r->state->compose_hash, VM_FIELD_COMPOSE_HASH);
        vm_set_str(r, &r->vm->app_id, r->state->app_id, VM_FIELD_APP_ID);
        vm_set_str(r, &r->vm->kms_signer, r->state->kms_signer, VM_FIELD_KMS_SIGNER);
        r->vm->last_update_usec = r->state->last_update_usec;
        r->vm->update_count = r->state->update_count;
        r->vm->restart_count = r->state->restart_count;
        vm_set_allowed_env(r);
        r->dirty = 0;
        r->vms[0] = r->vm;
        *ret = r;
        return 0;
}

void reconciler_free(Reconciler *r) {
        if (!r)
                return;
        if (r->job) {
                Job *j = r->job;
                g_array_set_size(j->waiters, 0); /* the bus is going away: nobody to answer */
                g_array_set_size(r->queued_updates, 0);
                r->queued_op = (QueuedOp) { .kind = JOB_TICK };
                job_finish(j, RECONCILER_ERROR_FAILED, "shutting down");
        }
        g_array_set_size(r->queued_updates, 0);
        g_array_unref(r->queued_updates);
        step_driver_free(r->driver);
        sd_event_source_disable_unref(r->poll_timer);
        platform_api_free(r->api);
        vmm_client_free(r->vmm);
        http_context_free(r->http);
        platform_vm_spec_free(r->spec);
        vmm_status_reply_done(&r->observed);
        vm_deploy_state_free(r->state);
        vm_free(r->vm);
        g_free(r->spec_error);
        g_free(r->fetch_error);
        g_free(r->observe_error);
        g_free(r->not_allowed_logged);
        g_free(r->adopt_logged);
        g_free(r->change_trigger);
        g_free(r->spec_digest);
        g_strfreev(r->required_env);
        g_free(r->vmm_url);
        g_free(r->api_url);
        g_free(r->state_dir);
        explicit_bzero(r->fp_key, sizeof r->fp_key);
        sd_event_unref(r->event);
        g_free(r);
}

int reconciler_start(Reconciler *r) {
        if (r->ev.vm_added)
                r->ev.vm_added(r, r->vm, r->ev.userdata);
        if (r->spec && r->ev.required_env_changed)
                r->ev.required_env_changed(r, r->required_env, r->ev.userdata);
        if (r->state->intent)
                log_notice("Resuming after an interrupted '%s' of VM %s.", r->state->intent->op, r->vm->name);
        schedule_tick(r, 0);
        return 0;
}

void reconciler_settings_changed(Reconciler *r, const char *trigger) {
        if (trigger) {
                g_free(r->change_trigger);
                r->change_trigger = g_strdup(trigger);
        }
        if (r->job)
                r->rerun = true; /* look again as soon as the running job ends */
        else
                schedule_tick(r, 0);
}

Vm *const *reconciler_vms(Reconciler *r) {
        return r->vms;
}

static bool operator_call_pending(Reconciler *r);

bool reconciler_busy(Reconciler *r) {
        if (operator_call_pending(r))
                return true;
        VmState s = r->vm->state;
        return s == VM_STATE_CREATING || s == VM_STATE_STARTING || s == VM_STATE_UPDATING || s == VM_STATE_STOPPING;
}

bool reconciler_running_operator_call(Reconciler *r, const Vm *vm, const char **ret_trigger) {
        bool running = vm == r->vm && r->job;
        if (ret_trigger)
                *ret_trigger = running && r->job->kind == JOB_TICK ? r->job->trigger : NULL;
        return running && r->job->kind != JOB_TICK;
}

Vm *reconciler_find_vm(Reconciler *r, const char *name) {
        return streq(r->vm->name, name) ? r->vm : NULL;
}

/* ---- Plan: the same decision as a tick, from what is already known ---- */

/* NULL when the spec and the observation are fresh; else how old, and why. */
static char *data_age(Reconciler *r) {
        uint64_t now = now_usec(CLOCK_MONOTONIC);
        GString *s = g_string_new(NULL);
        if (r->fetch_error)
                g_string_append_printf(s, "spec: %s (failing for %" PRIu64 " s); ", r->fetch_error,
                                       (uint64_t) (r->fetch_failed_usec ? (now - r->fetch_failed_usec) / USEC_PER_SEC : 0));
        if (!r->fetched_usec)
                g_string_append(s, r->spec ? "spec: kept from an earlier run, not fetched since the start; "
                                           : "spec: never fetched; ");
        else if (now - r->fetched_usec > DATA_FRESH_USEC)
                g_string_append_printf(s, "spec fetched %" PRIu64 " s ago; ", (uint64_t) ((now - r->fetched_usec) / USEC_PER_SEC));
        if (r->observe_error)
                g_string_append_printf(s, "VMM: %s (failing for %" PRIu64 " s); ", r->observe_error,
                                       (uint64_t) (r->observe_failed_usec ? (now - r->observe_failed_usec) / USEC_PER_SEC : 0));
        if (!r->observed_usec)
                g_string_append(s, "VMM: never observed; ");
        else if (now - r->observed_usec > DATA_FRESH_USEC)
                g_string_append_printf(s, "VMM observed %" PRIu64 " s ago; ", (uint64_t) ((now - r->observed_usec) / USEC_PER_SEC));
        if (s->len == 0) {
                g_string_free(s, TRUE);
                return NULL;
        }
        g_string_truncate(s, s->len - 2);
        g_autofree char *t = g_string_free(s, FALSE);
        return text_bound(t);
}

int reconciler_plan(Reconciler *r, Vm *vm, char **ret_action, char ***ret_changes) {
        DesiredVm *d = NULL;
        g_autofree char *why = NULL;

        if (r->spec_error)
                why = g_strdup_printf("invalid spec from the Platform API: %s", r->spec_error);
        else if (!r->spec)
                why = r->fetch_error ? g_strdup_printf("no spec yet: %s", r->fetch_error) : g_strdup("no spec fetched yet");
        else if (desired_vm_build(r->spec, r->settings->config, r->fp_key, &d, &why) < 0 && !why)
                why = g_strdup("cannot build the VM spec");

        PlanInput in = {
                .desired = d,
                .blocked_reason = why,
                .name = vm->name,
                .vms = r->observed.vms,
                .n_vms = r->observed.n_vms,
                .state = r->state,
                .in_place = streq(r->settings->config->update_strategy, "in-place"),
        };
        Plan p;
        int q = plan_compute(&in, &p);
        desired_vm_free(d);
        if (q < 0)
                return q;
        *ret_action = g_strdup(plan_action_to_string(p.action));
        if (p.action == PLAN_ADOPT) {
                /* Why, first: a row ("reason", "", text) that platformctl shows as such. */
                size_t n = g_strv_length(p.changes);
                char **c = g_new0(char *, n + 4);
                c[0] = g_strdup("reason");
                c[1] = g_strdup("");
                c[2] = g_strdup(p.reason);
                memcpy(c + 3, p.changes, n * sizeof(char *));
                g_free(p.changes);
                p.changes = c;
        }
        *ret_changes = g_steal_pointer(&p.changes);
        plan_done(&p);

        g_autofree char *age = data_age(r);
        if (age) {
                size_t n = g_strv_length(*ret_changes);
                *ret_changes = g_renew(char *, *ret_changes, n + 4);
                (*ret_changes)[n] = g_strdup("data");
                (*ret_changes)[n + 1] = g_steal_pointer(&age);
                (*ret_changes)[n + 2] = g_strdup("");
                (*ret_changes)[n + 3] = NULL;
        }
        return 0;
}

/* ---- operations ---- */

/* Busy (dbus-api.md): the launcher's own work never makes an operator's call
 * fail; only another operator's call, running or waiting, does. */
static bool operator_call_pending(Reconciler *r) {
        return (r->job && r->job->kind != JOB_TICK) || r->queued_op.kind != JOB_TICK || r->queued_updates->len > 0;
}

/* The launcher's own check while it only reads (the spec, the VMM's Status):
 * harmless to stop. It runs again as soon as the operator's call ends. */
static void tick_cancel(Reconciler *r) {
        Job *j = r->job;
        log_debug("VM %s: the running check gives way to an operator's call.", r->vm->name);
        r->job = NULL;
        r->rerun = true;
        if (!r->change_trigger)
                r->change_trigger = g_steal_pointer(&j->trigger); /* the check that runs again evaluates it */
        job_free(j);
}

/* 0: run the call now; 1: it waits behind the launcher's own step table and
 * done is called when it has run; -EBUSY: another operator's call. */
static int admit(Reconciler *r, JobKind kind, bool force, reconciler_done_cb done, void *userdata) {
        /* Updates without force all ask for the same: one run after the check serves them all. */
        bool joins = kind == JOB_UPDATE && !force;
        if (operator_call_pending(r)) {
                if (!joins || r->queued_updates->len == 0 || !r->job || r->job->kind != JOB_TICK)
                        return -EBUSY;
                g_array_append_val(r->queued_updates, ((Waiter) { done, userdata }));
                return 1;
        }
        if (!r->job)
                return 0;
        if (!step_driver_running(r->driver)) {
                tick_cancel(r);
                return 0;
        }
        /* A deploy, a restart of a crashed VM or a duplicate's removal is
         * never cut halfway: the call runs right after it. */
        log_info("VM %s: an operator's %s waits for the running %s to finish.", r->vm->name,
                 kind == JOB_UPDATE ? "update" : kind == JOB_START ? "start" : kind == JOB_STOP ? "stop" : "restart",
                 step_driver_table_name(r->driver));
        if (joins)
                g_array_append_val(r->queued_updates, ((Waiter) { done, userdata }));
        else
                r->queued_op = (QueuedOp) { .kind = kind, .force = force, .waiter = { done, userdata } };
        return 1;
}

static void update_run(Reconciler *r, bool force, reconciler_done_cb done, void *userdata) {
        r->poll_timer = sd_event_source_disable_unref(r->poll_timer);
        job_fetch(job_new(r, JOB_UPDATE, force, done, userdata));
}

int reconciler_update(Reconciler *r, Vm *vm, bool force, reconciler_done_cb done, void *userdata) {
        int q = admit(r, JOB_UPDATE, force, done, userdata);
        if (q == 0)
                update_run(r, force, done, userdata);
        return MIN(q, 0);
}

static void op_done(Job *j, ReconcilerError error, const char *message) {
        Reconciler *r = j->r;
        if (error != RECONCILER_OK) {
                vm_note_error(r, message);
                vm_set_state(r, VM_STATE_FAILED, message);
                return job_finish(j, error, message);
        }
        vm_set_str(r, &r->vm->vmm_status, j->kind == JOB_STOP ? "stopped" : "running", VM_FIELD_VMM_STATUS);
        if (r->last_error_cause == ERROR_CAUSE_UPDATE)
                vm_clear_error(r);
        if (j->kind == JOB_STOP)
                vm_set_state(r, VM_STATE_STOPPED, "stopped by the operator; Start it to resume");
        else
                vm_set_state(r, VM_STATE_RUNNING, "");
        job_finish(j, RECONCILER_OK, NULL);
}

static void operator_op_run(Reconciler *r, JobKind kind, reconciler_done_cb done, void *userdata) {
        Vm *vm = r->vm;

        /* Recorded first: a restart of the daemon must not undo the operator's choice. */
        r->state->operator_stopped = kind == JOB_STOP;
        (void) reconciler_save_state(r);

        r->poll_timer = sd_event_source_disable_unref(r->poll_timer);
        Job *j = job_new(r, kind, false, done, userdata);
        j->act_id = g_strdup(vm->id);
        j->act_stopped = streq(vm->vmm_status, "stopped");
        if (ensure_clients(r) < 0)
                return job_finish(j, RECONCILER_ERROR_FAILED, "cannot set up the VMM client");

        switch (kind) {
        case JOB_STOP:
                return job_run_table(j, &table_stop, op_done);
        case JOB_START:
                if (streq(vm->vmm_status, "running"))
                        return op_done(j, RECONCILER_OK, NULL);
                return job_run_table(j, &table_start, op_done);
        default:
                return job_run_table(j, &table_restart, op_done);
        }
}

static int operator_op(Reconciler *r, Vm *vm, JobKind kind, reconciler_done_cb done, void *userdata) {
        if (isempty(vm->id))
                return -ENOENT;
        int q = admit(r, kind, false, done, userdata);
        if (q == 0)
                operator_op_run(r, kind, done, userdata);
        return MIN(q, 0);
}

/* After a job: the operator's call that waited for it, else the next check. */
static void job_next(Reconciler *r) {
        if (r->queued_op.kind != JOB_TICK) {
                QueuedOp op = r->queued_op;
                r->queued_op = (QueuedOp) { .kind = JOB_TICK };
                if (op.kind == JOB_UPDATE)
                        return update_run(r, op.force, op.waiter.done, op.waiter.userdata);
                if (!isempty(r->vm->id))
                        return operator_op_run(r, op.kind, op.waiter.done, op.waiter.userdata);
                g_autofree char *m = g_strdup_printf("VM %s does not exist at the VMM.", r->vm->name);
                op.waiter.done(r, RECONCILER_ERROR_NOT_FOUND, m, op.waiter.userdata);
        }
        if (r->queued_updates->len > 0) {
                Job *next = job_new(r, JOB_UPDATE, false, NULL, NULL);
                g_array_append_vals(next->waiters, r->queued_updates->data, r->queued_updates->len);
                g_array_set_size(r->queued_updates, 0);
                r->rerun = false;
                return job_fetch(next);
        }
        uint64_t delay = r->recheck_usec ? MIN(r->recheck_usec, next_delay(r)) : next_delay(r);
        schedule_tick(r, r->rerun ? 0 : delay);
        r->rerun = false;
        r->recheck_usec = 0;
}

int reconciler_start_vm(Reconciler *r, Vm *vm, reconciler_done_cb done, void *userdata) {
        return operator_op(r, vm, JOB_START, done, userdata);
}

int reconciler_stop_vm(Reconciler *r, Vm *vm, reconciler_done_cb done, void *userdata) {
        return operator_op(r, vm, JOB_STOP, done, userdata);
}

int reconciler_restart_vm(Reconciler *r, Vm *vm, reconciler_done_cb done, void *userdata) {
        return operator_op(r, vm, JOB_RESTART, done, userdata);
}

/* ---- logs ---- */

typedef struct LogsRequest {
        Reconciler *r;
        reconciler_logs_cb done;
        void *userdata;
} LogsRequest;

static void on_logs(VmmCall *call, const VmmResult *res, void *userdata) {
        g_autofree LogsRequest *lr = userdata;
        if (res->error < 0)
                lr->done(lr->r, steps_error_kind(res), res->message, NULL, lr->userdata);
        else
                lr->done(lr->r, RECONCILER_OK, NULL, strempty(res->text), lr->userdata);
}

int reconciler_get_logs(Reconciler *r, Vm *vm, const char *channel, unsigned lines, reconciler_logs_cb done,
                        void *userdata) {
        if (isempty(vm->id))
                return -ENOENT;
        int q = ensure_clients(r);
        if (q < 0)
                return q;
        LogsRequest *lr = g_new0(LogsRequest, 1);
        *lr = (LogsRequest) { r, done, userdata };
        q = vmm_logs(r->vmm, vm->id, lines, channel, on_logs, lr, NULL);
        if (q < 0)
                g_free(lr);
        return q;
}
