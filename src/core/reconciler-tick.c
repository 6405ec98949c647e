/* SPDX-License-Identifier: Apache-2.0 */
/* One reconciliation (updater.md): fetch → validate → build the desired VM →
 * observe the VMM → decide → prepare everything → only then disturb the old VM
 * → verify → record. Every step is a callback on the event loop. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <glib.h>

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
static void prepare(Job *j);
static void create_vm(Job *j);
static void restart_after_in_place(Job *j);

static bool is_update(const Job *j) {
        return j->kind == JOB_UPDATE;
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

        if (res->error >= 0 && !res->unchanged) {
                platform_vm_spec_free(r->spec);
                r->spec = g_steal_pointer(&res->spec);
                g_clear_pointer(&r->spec_error, g_free);
                required_env_update(r, r->spec->required_env);
        } else if (res->error >= 0)
                /* 304 against the validators of the last good document: that one is back. */
                g_clear_pointer(&r->spec_error, g_free);
        else if (res->error == -EINVAL) {
                g_free(r->spec_error);
                r->spec_error = g_strdup(res->message);
        } else if (res->error < 0) {
                g_autofree char *msg = g_strdup_printf("Platform API unreachable: %s", res->message);
                vm_note_error(r, msg);
                if (is_update(j))
                        return job_finish(j, RECONCILER_ERROR_API_UNAVAILABLE, msg);
                if (!r->spec) {
                        vm_set_state(r, VM_STATE_PENDING, msg);
                        return job_finish(j, RECONCILER_OK, NULL);
                }
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

static void on_status(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        Reconciler *r = j->r;
        j->vmm_call = NULL;

        if (res->error < 0) {
                g_autofree char *msg = g_strdup_printf("VMM unreachable: %s", res->message);
                vm_note_error(r, msg);
                return job_finish(j, steps_error_kind(res), msg);
        }
        vmm_status_reply_done(&r->observed);
        vmm_result_take_status(res, &r->observed);
        r->have_observed = true;
        decide(j);
}

static void rename_vm(Reconciler *r, const char *name) {
        if (streq(r->vm->name, name))
                return;
        if (r->ev.vm_removed)
                r->ev.vm_removed(r, r->vm, r->ev.userdata);
        g_free(r->vm->name);
        r->vm->name = g_strdup(name);
        g_free(r->state->name);
        r->state->name = g_strdup(name);
        if (r->ev.vm_added)
                r->ev.vm_added(r, r->vm, r->ev.userdata);
}

static void observe(Job *j) {
        Reconciler *r = j->r;
        if (r->spec)
                rename_vm(r, r->spec->vm.name);
        int q = vmm_status(r->vmm, NULL, r->vm->name, on_status, j, &j->vmm_call);
        if (q < 0)
                job_finish(j, RECONCILER_ERROR_FAILED, "cannot send Status");
}

/* ---- decide ---- */

static void after_duplicates(Job *j, ReconcilerError error, const char *message) {
        dispatch(j);
}

static void decide(Job *j) {
        Reconciler *r = j->r;

        if (r->spec_error)
                j->blocked_reason = g_strdup_printf("invalid spec from the Platform API: %s", r->spec_error);
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

        vm_observe(r, &j->plan);
        vm_set_str(r, &r->vm->target_compose_hash, j->desired ? j->desired->compose_hash : "",
                   VM_FIELD_TARGET_COMPOSE_HASH);
        vm_flush(r);
        if (j->desired && j->desired->not_allowed[0]) {
                g_autofree char *k = g_strjoinv(", ", j->desired->not_allowed);
                log_notice("Env keys not allowed by the compose are not sent: %s", k);
        }

        if (j->plan.n_extra > 0 && j->plan.action != PLAN_BLOCKED) {
                GPtrArray *ids = g_ptr_array_new();
                for (size_t i = 0; i < j->plan.n_extra; i++)
                        g_ptr_array_add(ids, g_strdup(j->plan.extra[i]->id));
                g_ptr_array_add(ids, NULL);
                j->dup_ids = (char **) g_ptr_array_free(ids, FALSE);
                return steps_remove_duplicates(j, after_duplicates);
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
        vm_set_u32(r, &vm->update_count, st->update_count, VM_FIELD_UPDATE_COUNT);
        vm_set_str(r, &vm->last_error, "", VM_FIELD_LAST_ERROR);
        vm_set_state(r, VM_STATE_RUNNING, "");
        r->fail_backoff_usec = 0;

        log_info("VM %s now runs compose %s (id %s).", vm->name, d->compose_hash, st->vm_id);
        if (r->ev.vm_updated)
                r->ev.vm_updated(r, vm, strempty(j->old_compose_hash), d->compose_hash, st->vm_id, r->ev.userdata);
        job_finish(j, RECONCILER_OK, NULL);
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
        }
        announce_deployed(j);
}

static void record_deployed(Job *j, const char *id, const char *app_id) {
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
        st->last_update_usec = now_usec(CLOCK_REALTIME);
        st->update_count++;
        st->operator_stopped = false;
        vm_intent_free(st->intent), st->intent = NULL;
        (void) reconciler_save_state(r);

        if (vmm_status(r->vmm, NULL, r->vm->name, on_final_status, j, &j->vmm_call) < 0)
                announce_deployed(j);
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
        vm_set_state(r, VM_STATE_STARTING, "starting the VM again");
        steps_start(j, vm->id, after_auto_start);
}

/* A crash between CreateVm and recording it: the VM is the one we meant. */
static bool adopt_interrupted(Job *j) {
        VmIntent *in = j->r->state->intent;
        const VmInfo *vm = j->plan.keep;
        if (!in || !vm || !streq(in->target_compose_hash, j->plan.keep_compose_hash))
                return false;
        if (streq(in->op, "in-place")) {
                /* UpdateVm took effect but the VM may still run the old compose: restart it. */
                log_notice("Finishing the interrupted in-place update of %s.", vm->id);
                j->old_id = g_strdup(vm->id);
                j->app_id = g_strdup(vm->app_id);
                restart_after_in_place(j);
                return true;
        }
        if (vm->status != VM_STATUS_RUNNING)
                return false;
        log_notice("Adopting VM %s created before an interruption.", vm->id);
        record_deployed(j, vm->id, vm->app_id);
        return true;
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
                } else
                        vm_set_state(r, VM_STATE_RUNNING, "");
                r->fail_backoff_usec = 0;
                return job_finish(j, RECONCILER_OK, NULL);
        case PLAN_BLOCKED:
                vm_note_error(r, p->reason);
                vm_set_state(r, VM_STATE_BLOCKED, p->reason);
                return job_finish(j, is_update(j) ? RECONCILER_ERROR_BLOCKED : RECONCILER_OK, p->reason);
        case PLAN_WAIT:
                vm_set_state(r, p->keep ? VM_STATE_STOPPING : VM_STATE_UPDATING, p->reason);
                r->recheck_usec = RECHECK_USEC;
                return job_finish(j, RECONCILER_OK, NULL);
        case PLAN_START:
                if (adopt_interrupted(j))
                        return;
                return auto_start(j);
        default:
                return prepare(j);
        }
}

/* ---- prepare: nothing is touched until all of this succeeded ---- */

static void on_compose_hash(VmmCall *call, const VmmResult *res, void *userdata);

static void on_pubkey(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("cannot get the env encryption key for app %s: %s", j->app_id,
                                                     res->message);
                return job_update_failed(j, steps_error_kind(res), m);
        }

        g_auto(GStrv) dropped = NULL;
        g_autofree char *why = NULL;
        int q = env_encrypt(&j->desired->env, j->desired->allowed_envs, res->pubkey->public_key, &j->encrypted_env,
                            &dropped, &why);
        if (q < 0) {
                g_autofree char *m = g_strdup_printf("cannot encrypt the env: %s", why ?: strerror(-q));
                return job_update_failed(j, RECONCILER_ERROR_FAILED, m);
        }
        q = vmm_get_compose_hash(j->r->vmm, &j->desired->config, on_compose_hash, j, &j->vmm_call);
        if (q < 0)
                job_update_failed(j, RECONCILER_ERROR_FAILED, "cannot send GetComposeHash");
}

static void apply(Job *j);

static void on_compose_hash(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("compose hash cross-check failed: %s", res->message);
                return job_update_failed(j, steps_error_kind(res), m);
        }
        if (!streq(res->hash, j->desired->compose_hash)) {
                g_autofree char *m = g_strdup_printf("the VMM computes compose hash %s, the launcher %s", res->hash,
                                                     j->desired->compose_hash);
                return job_update_failed(j, RECONCILER_ERROR_FAILED, m);
        }
        apply(j);
}

static void prepare(Job *j) {
        const Plan *p = &j->plan;
        /* The env is encrypted to the app id the VM will actually run with. */
        const char *app_id = p->action == PLAN_UPDATE_IN_PLACE ? p->keep->app_id : j->desired->app_id;
        j->app_id = g_strdup(app_id);
        j->old_compose_hash = g_strdup(j->r->vm->compose_hash);
        if (isempty(app_id))
                return job_update_failed(j, RECONCILER_ERROR_FAILED, "the VM to update has no app id");
        int q = vmm_get_app_env_encrypt_pubkey(j->r->vmm, app_id, on_pubkey, j, &j->vmm_call);
        if (q < 0)
                job_update_failed(j, RECONCILER_ERROR_FAILED, "cannot send GetAppEnvEncryptPubKey");
}

/* ---- apply ---- */

static int record_intent(Job *j, const char *op, const char *old_id) {
        Reconciler *r = j->r;
        vm_intent_free(r->state->intent);
        r->state->intent = vm_intent_new(op, old_id, j->desired->compose_hash, j->desired->env_fingerprint,
                                         j->desired->resources);
        return reconciler_save_state(r);
}

static void after_booted(Job *j, ReconcilerError error, const char *message) {
        Reconciler *r = j->r;
        if (error != RECONCILER_OK) {
                g_autofree char *m = g_strdup_printf("%s%s", message,
                                                     j->old_id ? "; the old VM was removed" : "");
                vm_set_state(r, VM_STATE_FAILED, m);
                return job_update_failed(j, error, m);
        }
        record_deployed(j, j->new_id, j->app_id);
}

static void on_created(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("CreateVm failed: %s%s", res->message,
                                                     j->old_id ? "; the old VM was removed" : "");
                vm_set_state(j->r, VM_STATE_FAILED, m);
                return job_update_failed(j, steps_error_kind(res), m);
        }
        j->new_id = g_strdup(res->id);
        vm_set_str(j->r, &j->r->vm->id, j->new_id, VM_FIELD_ID);
        vm_set_state(j->r, VM_STATE_STARTING, "waiting for the new VM to boot");
        steps_wait_running(j, j->new_id, after_booted);
}

static void create_vm(Job *j) {
        _cleanup_free_ uint8_t *env = NULL;
        size_t env_len = 0;
        if (hex_decode(j->encrypted_env, &env, &env_len) < 0)
                return job_update_failed(j, RECONCILER_ERROR_FAILED, "internal error: bad encrypted env");

        VmConfiguration conf = j->desired->config; /* borrowed: freed with desired */
        conf.encrypted_env = env;
        conf.encrypted_env_len = env_len;
        conf.app_id = NULL; /* the VMM derives it from the compose: the app id we encrypted to */

        vm_set_state(j->r, VM_STATE_CREATING, "creating the VM");
        int q = vmm_create_vm(j->r->vmm, &conf, on_created, j, &j->vmm_call);
        if (q < 0)
                job_update_failed(j, RECONCILER_ERROR_FAILED, "cannot send CreateVm");
}

static void after_old_removed(Job *j, ReconcilerError error, const char *message) {
        if (error != RECONCILER_OK) {
                g_autofree char *m = g_strdup_printf("cannot remove the old VM (it is stopped): %s", message);
                vm_set_state(j->r, VM_STATE_FAILED, m);
                return job_update_failed(j, error, m);
        }
        create_vm(j);
}

static void after_old_stopped(Job *j, ReconcilerError error, const char *message) {
        if (error != RECONCILER_OK) {
                g_autofree char *m = g_strdup_printf("cannot stop the old VM: %s", message);
                return job_update_failed(j, error, m);
        }
        vm_set_state(j->r, VM_STATE_UPDATING, "removing the old VM");
        steps_remove(j, j->old_id, after_old_removed);
}

static void recreate(Job *j) {
        const VmInfo *old = j->plan.keep;
        j->old_id = g_strdup(old->id);
        if (record_intent(j, "recreate", old->id) < 0)
                return job_update_failed(j, RECONCILER_ERROR_FAILED, "cannot record the intent in the state store");
        if (old->status == VM_STATUS_STOPPED)
                return after_old_stopped(j, RECONCILER_OK, NULL);
        vm_set_state(j->r, VM_STATE_UPDATING, "stopping the old VM");
        steps_graceful_stop(j, j->old_id, after_old_stopped);
}

/* in-place: UpdateVm → read back → graceful stop → StartVm → running */

static void after_in_place_start(Job *j, ReconcilerError error, const char *message) {
        if (error != RECONCILER_OK) {
                vm_set_state(j->r, VM_STATE_FAILED, message);
                return job_update_failed(j, error, message);
        }
        record_deployed(j, j->old_id, j->app_id);
}

static void after_in_place_stop(Job *j, ReconcilerError error, const char *message) {
        if (error != RECONCILER_OK) {
                g_autofree char *m = g_strdup_printf("cannot stop the VM to apply the update: %s", message);
                return job_update_failed(j, error, m);
        }
        vm_set_state(j->r, VM_STATE_STARTING, "starting the updated VM");
        steps_start(j, j->old_id, after_in_place_start);
}

static void restart_after_in_place(Job *j) {
        vm_set_state(j->r, VM_STATE_UPDATING, "restarting the VM to apply the update");
        steps_graceful_stop(j, j->old_id, after_in_place_stop);
}

static void on_read_back(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        char hash[COMPOSE_HASH_HEX_LEN + 1] = "";
        if (res->error < 0)
                return job_update_failed(j, steps_error_kind(res), res->message);
        const VmInfo *vm = res->info->found ? res->info->info : NULL;
        if (vm && vm->has_configuration && vm->configuration.compose_file)
                (void) compose_hash(vm->configuration.compose_file, strlen(vm->configuration.compose_file), hash);
        if (!streq(hash, j->desired->compose_hash)) {
                g_autofree char *m = g_strdup_printf("after UpdateVm the VM has compose hash %s, not %s",
                                                     hash[0] ? hash : "(none)", j->desired->compose_hash);
                return job_update_failed(j, RECONCILER_ERROR_FAILED, m);
        }
        restart_after_in_place(j);
}

static void on_updated(VmmCall *call, const VmmResult *res, void *userdata) {
        Job *j = userdata;
        j->vmm_call = NULL;
        if (res->error < 0) {
                g_autofree char *m = g_strdup_printf("%s; the VM is unchanged", res->message);
                return job_update_failed(j, steps_error_kind(res), m);
        }
        int q = vmm_get_info(j->r->vmm, j->old_id, on_read_back, j, &j->vmm_call);
        if (q < 0)
                job_update_failed(j, RECONCILER_ERROR_FAILED, "cannot send GetInfo");
}

static void update_in_place(Job *j) {
        const VmInfo *vm = j->plan.keep;
        const DesiredVm *d = j->desired;
        _cleanup_free_ uint8_t *env = NULL;
        size_t env_len = 0;

        j->old_id = g_strdup(vm->id);
        if (hex_decode(j->encrypted_env, &env, &env_len) < 0)
                return job_update_failed(j, RECONCILER_ERROR_FAILED, "internal error: bad encrypted env");
        if (record_intent(j, "in-place", vm->id) < 0)
                return job_update_failed(j, RECONCILER_ERROR_FAILED, "cannot record the intent in the state store");

        VmmUpdateRequest u = {
                .id = vm->id,
                .compose_file = d->compose,
                .encrypted_env = env,
                .encrypted_env_len = env_len,
                .user_config = d->config.user_config,
                .update_ports = true,
                .ports = d->config.ports,
                .n_ports = d->config.n_ports,
        };
        vm_set_state(j->r, VM_STATE_UPDATING, "updating the VM in place");
        int q = vmm_update_vm(j->r->vmm, &u, on_updated, j, &j->vmm_call);
        if (q < 0)
                job_update_failed(j, RECONCILER_ERROR_FAILED, "cannot send UpdateVm");
}

static void apply(Job *j) {
        switch (j->plan.action) {
        case PLAN_CREATE:
                if (record_intent(j, "create", "") < 0)
                        return job_update_failed(j, RECONCILER_ERROR_FAILED,
                                                 "cannot record the intent in the state store");
                return create_vm(j);
        case PLAN_RECREATE:
                return recreate(j);
        case PLAN_UPDATE_IN_PLACE:
                return update_in_place(j);
        default:
                return job_finish(j, RECONCILER_ERROR_FAILED, "internal error: nothing to apply");
        }
}
