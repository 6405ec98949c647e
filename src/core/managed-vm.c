/* SPDX-License-Identifier: Apache-2.0 */
/* One managed VM: the Vm the bus shows, the state store that says what was
 * deployed, and the notes (LastError and its cause) that outlive an
 * operation. */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "core/managed-vm.h"
#include "shared/compose.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/strv.h"

#define STABLE_RUNNING_USEC (600 * USEC_PER_SEC)  /* running this long resets the restart backoff */

ManagedVm *managed_vm_new(Host *host, const VmDecl *decl, const char *name, const char *state_dir,
                          const char *source_url) {
        ManagedVm *mv = g_new0(ManagedVm, 1);
        mv->host = host;
        mv->decl = decl ? vm_decl_copy(decl) : NULL;
        mv->state_dir = g_strdup(state_dir);
        mv->source = source_new(source_url, state_dir, !decl);
        g_queue_init(&mv->queue);

        g_autofree char *why = NULL;
        if (vm_deploy_state_load(state_dir, name, &mv->state, &why) < 0)
                log_error("State store was corrupt: %s", why);
        mv->vm = vm_new(mv->state->name);
        Vm *vm = mv->vm;
        vm_set_str(vm, &vm->id, mv->state->vm_id);
        vm_set_str(vm, &vm->compose_hash, mv->state->compose_hash);
        vm_set_str(vm, &vm->app_id, mv->state->app_id);
        vm_set_str(vm, &vm->kms_signer, mv->state->kms_signer);
        vm->last_update_usec = mv->state->last_update_usec;
        vm->update_count = mv->state->update_count;
        vm->restart_count = mv->state->restart_count;
        vm->changed = false;
        return mv;
}

void managed_vm_free(ManagedVm *mv) {
        if (!mv)
                return;
        step_driver_free(mv->driver);
        sd_event_source_disable_unref(mv->poll_timer);
        if (mv->sysinfo_call)
                vmm_call_cancel(mv->sysinfo_call);
        source_free(mv->source);
        vm_deploy_state_free(mv->state);
        vm_free(mv->vm);
        vm_decl_free(mv->decl);
        g_free(mv->state_dir);
        g_free(mv->change_trigger);
        g_free(mv->not_allowed_logged);
        g_free(mv->adopt_logged);
        g_free(mv);
}

void managed_vm_flush(ManagedVm *mv) {
        const ReconcilerEvents *ev = &mv->host->ev;
        if (!mv->vm->changed)
                return;
        mv->vm->changed = false;
        if (ev->vm_changed)
                ev->vm_changed(mv->vm, ev->userdata);
}

void managed_vm_set_state(ManagedVm *mv, VmState state, const char *reason) {
        vm_set_state(mv->vm, state, reason);
        managed_vm_flush(mv);
}

void managed_vm_note_error(ManagedVm *mv, ErrorCause cause, const char *message) {
        g_autofree char *b = text_bound(message);
        vm_set_str(mv->vm, &mv->vm->last_error, b);
        mv->last_error_cause = isempty(message) ? ERROR_CAUSE_NONE : cause;
}

void managed_vm_clear_error(ManagedVm *mv) {
        managed_vm_note_error(mv, ERROR_CAUSE_NONE, "");
}

int managed_vm_save_state(ManagedVm *mv) {
        int q = vm_deploy_state_save(mv->state_dir, mv->state);
        if (q < 0)
                log_error_errno(q, "Cannot write the state store in %s: %m", mv->state_dir);
        return q;
}

void managed_vm_observe(ManagedVm *mv, const VmInfo *k, const char *keep_compose_hash) {
        Vm *vm = mv->vm;
        vm_set_str(vm, &vm->id, k ? k->id : "");
        vm_set_str(vm, &vm->vmm_status, k ? vm_status_to_string(k->status) : "");
        vm_set_str(vm, &vm->app_id, k ? k->app_id : "");
        vm_set_str(vm, &vm->compose_hash, keep_compose_hash);
        vm_set_str(vm, &vm->image, k ? k->configuration.image : "");
        vm_set_str(vm, &vm->image_version, k ? k->image_version : "");
        vm_set_u32(vm, &vm->vcpu, k ? k->configuration.vcpu : 0);
        vm_set_u32(vm, &vm->memory_mib, k ? k->configuration.memory : 0);
        vm_set_u32(vm, &vm->disk_gib, k ? k->configuration.disk_size : 0);

        uint64_t now = clock_usec(CLOCK_MONOTONIC);
        if (k && k->status == VM_STATUS_RUNNING) {
                if (!mv->running_since_usec)
                        mv->running_since_usec = now;
                else if (now - mv->running_since_usec >= STABLE_RUNNING_USEC)
                        mv->restart_backoff_usec = 0;
        } else
                mv->running_since_usec = 0;
}

void managed_vm_rename(ManagedVm *mv, const char *name) {
        const ReconcilerEvents *ev = &mv->host->ev;
        if (ev->vm_removed)
                ev->vm_removed(mv->vm, ev->userdata);
        vm_set_name(mv->vm, name);
        mv->vm->changed = false;
        if (ev->vm_added)
                ev->vm_added(mv->vm, ev->userdata);
}

void managed_vm_env_changed(ManagedVm *mv) {
        const LauncherConfig *c = mv->host->settings->config;
        g_autoptr(GPtrArray) missing = g_ptr_array_new();
        for (char **k = mv->vm->required_env; *k; k++)
                if (!launcher_config_env_get(c, *k))
                        g_ptr_array_add(missing, *k);
        g_ptr_array_add(missing, NULL);
        vm_set_strv(mv->vm, &mv->vm->missing_env, (char **) missing->pdata);
}

void managed_vm_spec_changed(ManagedVm *mv) {
        const PlatformVmSpec *spec = mv->source->spec;
        char **allowed = NULL;
        if (!spec || compose_allowed_envs(spec, &allowed) < 0)
                allowed = NULL;
        vm_set_strv(mv->vm, &mv->vm->allowed_env, allowed);
        strv_free(allowed);
        managed_vm_required_env(mv, spec ? spec->required_env : NULL);
}

void managed_vm_required_env(ManagedVm *mv, char **required) {
        const ReconcilerEvents *ev = &mv->host->ev;
        char *const none[] = { NULL };
        if (!required)
                required = (char **) none;
        if (g_strv_equal((const char *const *) mv->vm->required_env, (const char *const *) required))
                return;
        vm_set_strv(mv->vm, &mv->vm->required_env, required);
        managed_vm_env_changed(mv);
        if (ev->required_env_changed)
                ev->required_env_changed(ev->userdata);
}

const char *managed_vm_strategy(const ManagedVm *mv) {
        return mv->decl && !isempty(mv->decl->update_strategy) ? mv->decl->update_strategy
                                                               : mv->host->settings->config->update_strategy;
}

const char *managed_vm_adopt_policy(const ManagedVm *mv) {
        return mv->decl && !isempty(mv->decl->adopt_policy) ? mv->decl->adopt_policy
                                                            : mv->host->settings->config->adopt_policy;
}

char *const *managed_vm_granted(const ManagedVm *mv) {
        return mv->decl ? mv->decl->env_keys : NULL;
}
