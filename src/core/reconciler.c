/* SPDX-License-Identifier: Apache-2.0 */
/* The managed VMs and what they share: the settings, the HTTP context, the
 * VMM client and what the VMM reports. The entry points start operations
 * (operation.c) and answer Plan() from what is already known. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <glib.h>

#include "core/host.h"
#include "core/managed-vm.h"
#include "core/operation.h"
#include "core/reconcile.h"
#include "core/vm-steps.h"
#include "shared/log.h"
#include "shared/macro.h"

#define DEFAULT_VM_NAME "validator_vm"

struct Reconciler {
        Host host;
        GPtrArray *vms;             /* ManagedVm *, the API's first */
        Vm **vm_list;               /* NULL-terminated, for reconciler_vms() */
        GList *logs;                /* GetLogs requests in flight */
};
#define DATA_FRESH_USEC (60 * USEC_PER_SEC)  /* Plan() says how old its data is beyond this */

static ManagedVm *managed(Reconciler *r, const Vm *vm) {
        for (guint i = 0; vm && i < r->vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->vms, i);
                if (mv->vm == vm)
                        return mv;
        }
        return NULL;
}

static ManagedVm *api_vm(Reconciler *r) {
        return r->vms->len > 0 ? g_ptr_array_index(r->vms, 0) : NULL;
}

static void list_vms(Reconciler *r) {
        g_free(r->vm_list);
        r->vm_list = g_new0(Vm *, r->vms->len + 1);
        for (guint i = 0; i < r->vms->len; i++)
                r->vm_list[i] = ((ManagedVm *) g_ptr_array_index(r->vms, i))->vm;
}

/* ---- clients follow the settings ---- */

static bool any_operation(Reconciler *r) {
        for (guint i = 0; i < r->vms->len; i++)
                if (((ManagedVm *) g_ptr_array_index(r->vms, i))->op)
                        return true;
        return false;
}

static int ensure_clients(Reconciler *r) {
        int q = host_follow_settings(&r->host, !any_operation(r));
        if (q < 0)
                return q;
        ManagedVm *mv = api_vm(r);
        if (mv && !mv->source->call)
                return source_set_url(mv->source, r->host.http, r->host.settings->config->api_url);
        return 0;
}

/* ---- life cycle ---- */

static void load_kept_spec(ManagedVm *mv) {
        g_autofree char *why = NULL;
        int q = source_load_kept(mv->source, &why);
        if (q == -ENOENT)
                return;
        if (q < 0) {
                log_warning("The kept spec in %s cannot be used (%s); waiting for the Platform API.", mv->state_dir,
                            why ?: strerror(-q));
                return;
        }
        const PlatformVmSpec *spec = mv->source->spec;
        g_strfreev(mv->required_env);
        mv->required_env = g_strdupv(spec->required_env);
        /* The name the spec gives is the VM's name, as before the restart. */
        VmDeployState *st = mv->state;
        if (!isempty(spec->vm.name) && isempty(st->vm_id) && !streq(st->name, spec->vm.name)) {
                g_free(st->name);
                st->name = g_strdup(spec->vm.name);
                vm_set_name(mv->vm, spec->vm.name);
                mv->vm->changed = false;
        }
}

int reconciler_new(sd_event *event, SettingsStore *settings, const char *state_dir, History *history,
                   const ReconcilerEvents *events, Reconciler **ret) {
        Reconciler *r = g_new0(Reconciler, 1);
        r->vms = g_ptr_array_new_with_free_func((GDestroyNotify) managed_vm_free);
        int q = host_init(&r->host, event, settings, state_dir, history, events);
        if (q < 0) {
                reconciler_free(r);
                return q;
        }

        ManagedVm *mv = managed_vm_new(&r->host, DEFAULT_VM_NAME, state_dir, settings->config->api_url);
        mv->named_by_spec = true;
        g_ptr_array_add(r->vms, mv);
        load_kept_spec(mv);
        list_vms(r);
        *ret = r;
        return 0;
}

static void logs_cancel_all(Reconciler *r);

void reconciler_shutdown(Reconciler *r) {
        if (r->host.shutting_down)
                return;
        r->host.shutting_down = true;
        for (guint i = 0; i < r->vms->len; i++)
                operation_cancel_all(g_ptr_array_index(r->vms, i), RECONCILER_ERROR_SHUTDOWN, "shutting down");
        logs_cancel_all(r);
}

void reconciler_free(Reconciler *r) {
        if (!r)
                return;
        if (r->vms)
                reconciler_shutdown(r);
        g_clear_pointer(&r->vms, g_ptr_array_unref);
        g_free(r->vm_list);
        host_done(&r->host);
        g_free(r);
}

int reconciler_start(Reconciler *r) {
        int q = ensure_clients(r);
        if (q < 0)
                log_warning_errno(q, "Cannot set up the VMM or API client: %m");
        for (guint i = 0; i < r->vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->vms, i);
                if (r->host.ev.vm_added)
                        r->host.ev.vm_added(mv->vm, r->host.ev.userdata);
                if (mv->state->intent)
                        log_notice("Resuming after an interrupted '%s' of VM %s.", mv->state->intent->op, mv->vm->name);
                operation_schedule_poll(mv, 0);
        }
        if (r->host.ev.required_env_changed)
                r->host.ev.required_env_changed(r->host.ev.userdata);
        return 0;
}

void reconciler_settings_changed(Reconciler *r) {
        int q = ensure_clients(r);
        if (q < 0)
                log_warning_errno(q, "Cannot set up the VMM or API client: %m");
        for (guint i = 0; i < r->vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->vms, i);
                if (mv->op)
                        mv->rerun = true; /* look again as soon as the running operation ends */
                else
                        operation_schedule_poll(mv, 0);
        }
}

Vm *const *reconciler_vms(Reconciler *r) {
        return r->vm_list;
}

Vm *reconciler_find_vm(Reconciler *r, const char *name) {
        for (guint i = 0; i < r->vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->vms, i);
                if (streq(mv->vm->name, name))
                        return mv->vm;
        }
        return NULL;
}

char **reconciler_required_env(Reconciler *r) {
        g_autoptr(GPtrArray) keys = g_ptr_array_new();
        for (guint i = 0; i < r->vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->vms, i);
                for (char **k = mv->required_env; k && *k; k++)
                        if (!g_ptr_array_find_with_equal_func(keys, *k, g_str_equal, NULL))
                                g_ptr_array_add(keys, g_strdup(*k));
        }
        g_ptr_array_add(keys, NULL);
        return (char **) g_ptr_array_free(g_steal_pointer(&keys), FALSE);
}

bool reconciler_busy(Reconciler *r) {
        for (guint i = 0; i < r->vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->vms, i);
                if (mv->op && mv->op->kind != OPERATION_POLL)
                        return true;
                VmState s = mv->vm->state;
                if (s == VM_STATE_CREATING || s == VM_STATE_STARTING || s == VM_STATE_UPDATING ||
                    s == VM_STATE_STOPPING)
                        return true;
        }
        return false;
}

/* ---- Plan: the same decision as a poll, from what is already known ---- */

/* NULL when the spec and the observation are fresh; else how old, and why. */
static char *data_age(Reconciler *r, const ManagedVm *mv) {
        const Source *src = mv->source;
        const Observer *o = &r->host.observer;
        uint64_t now = clock_usec(CLOCK_MONOTONIC);
        GString *s = g_string_new(NULL);
        if (src->fetch_error)
                g_string_append_printf(s, "spec: %s (failing for %" PRIu64 " s); ", src->fetch_error,
                                       (uint64_t) (src->fetch_failed_usec ? (now - src->fetch_failed_usec) / USEC_PER_SEC : 0));
        if (!src->fetched_usec)
                g_string_append(s, src->spec ? "spec: kept from an earlier run, not fetched since the start; "
                                             : "spec: never fetched; ");
        else if (now - src->fetched_usec > DATA_FRESH_USEC)
                g_string_append_printf(s, "spec fetched %" PRIu64 " s ago; ",
                                       (uint64_t) ((now - src->fetched_usec) / USEC_PER_SEC));
        if (o->error)
                g_string_append_printf(s, "VMM: %s (failing for %" PRIu64 " s); ", o->error,
                                       (uint64_t) (o->failed_usec ? (now - o->failed_usec) / USEC_PER_SEC : 0));
        if (!o->observed_usec)
                g_string_append(s, "VMM: never observed; ");
        else if (now - o->observed_usec > DATA_FRESH_USEC)
                g_string_append_printf(s, "VMM observed %" PRIu64 " s ago; ",
                                       (uint64_t) ((now - o->observed_usec) / USEC_PER_SEC));
        if (s->len == 0) {
                g_string_free(s, TRUE);
                return NULL;
        }
        g_string_truncate(s, s->len - 2);
        g_autofree char *t = g_string_free(s, FALSE);
        return text_bound(t);
}

static void changes_append(char ***changes, const char *a, char *b, const char *c) {
        size_t n = g_strv_length(*changes);
        *changes = g_renew(char *, *changes, n + 4);
        (*changes)[n] = g_strdup(a);
        (*changes)[n + 1] = b;
        (*changes)[n + 2] = g_strdup(c);
        (*changes)[n + 3] = NULL;
}

int reconciler_plan(Reconciler *r, Vm *vm, char **ret_action, char ***ret_changes) {
        ManagedVm *mv = managed(r, vm);
        Decision dec;
        if (!mv)
                return -ENOENT;
        int q = reconcile_decide(mv, false, &dec);
        if (q < 0)
                return q;
        Plan *p = &dec.plan;
        *ret_action = g_strdup(plan_action_to_string(p->action));
        if (p->action == PLAN_ADOPT) {
                /* Why, first: a row ("reason", "", text) that platformctl shows as such. */
                size_t n = g_strv_length(p->changes);
                char **c = g_new0(char *, n + 4);
                c[0] = g_strdup("reason");
                c[1] = g_strdup("");
                c[2] = g_strdup(p->reason);
                memcpy(c + 3, p->changes, n * sizeof(char *));
                g_free(p->changes);
                p->changes = c;
        }
        *ret_changes = g_steal_pointer(&p->changes);
        decision_done(&dec);

        char *age = data_age(r, mv);
        if (age)
                changes_append(ret_changes, "data", age, "");
        return 0;
}

/* ---- operations ---- */

int reconciler_update(Reconciler *r, Vm *vm, bool force, const ReconcilerCaller *caller) {
        ManagedVm *mv = managed(r, vm);
        if (!mv)
                return -ENOENT;
        Operation *running = mv->op;
        if (running && (running->kind != OPERATION_POLL || force || !caller))
                return -EBUSY;
        if (running && running->fetching) {
                /* An Update without force asks for what an automatic check does:
                 * join it while it is still fetching... */
                waiter_add(running, caller);
                return 0;
        }
        Operation *queued = g_queue_peek_tail(&mv->queue);
        if (running && queued && queued->kind == OPERATION_UPDATE && !queued->force) {
                /* ... else run right after it, with the others who asked. */
                waiter_add(queued, caller);
                return 0;
        }
        Operation *op = operation_new(mv, OPERATION_UPDATE, force);
        waiter_add(op, caller);
        operation_submit(op);
        return 0;
}

static int operate(Reconciler *r, Vm *vm, OperationKind kind, const ReconcilerCaller *caller) {
        ManagedVm *mv = managed(r, vm);
        if (!mv)
                return -ENOENT;
        if (mv->op)
                return -EBUSY;
        if (isempty(vm->id))
                return -ENOENT;
        int q = ensure_clients(r);
        if (q < 0)
                return q;
        Operation *op = operation_new(mv, kind, false);
        op->act_id = g_strdup(vm->id);
        op->act_stopped = streq(vm->vmm_status, "stopped");
        op->act_running = streq(vm->vmm_status, "running");
        waiter_add(op, caller);
        operation_submit(op);
        return 0;
}

int reconciler_start_vm(Reconciler *r, Vm *vm, const ReconcilerCaller *caller) {
        return operate(r, vm, OPERATION_START, caller);
}

int reconciler_stop_vm(Reconciler *r, Vm *vm, const ReconcilerCaller *caller) {
        return operate(r, vm, OPERATION_STOP, caller);
}

int reconciler_restart_vm(Reconciler *r, Vm *vm, const ReconcilerCaller *caller) {
        return operate(r, vm, OPERATION_RESTART, caller);
}

/* ---- logs ---- */

typedef struct LogsRequest {
        Reconciler *r;
        VmmCall *call;
        reconciler_logs_cb done;
        void *userdata;
} LogsRequest;

static void on_logs(VmmCall *call, const VmmResult *res, void *userdata) {
        LogsRequest *lr = userdata;
        Reconciler *r = lr->r;
        r->logs = g_list_remove(r->logs, lr);
        if (res->error < 0)
                lr->done(steps_error_kind(res), res->message, NULL, lr->userdata);
        else
                lr->done(RECONCILER_OK, NULL, strempty(res->text), lr->userdata);
        g_free(lr);
}

static void logs_cancel_all(Reconciler *r) {
        GList *logs = g_steal_pointer(&r->logs);
        for (GList *l = logs; l; l = l->next) {
                LogsRequest *lr = l->data;
                vmm_call_cancel(lr->call);
                lr->done(RECONCILER_ERROR_SHUTDOWN, "shutting down", NULL, lr->userdata);
                g_free(lr);
        }
        g_list_free(logs);
}

int reconciler_get_logs(Reconciler *r, Vm *vm, const char *channel, unsigned lines, reconciler_logs_cb done,
                        void *userdata) {
        if (isempty(vm->id))
                return -ENOENT;
        int q = ensure_clients(r);
        if (q < 0)
                return q;
        LogsRequest *lr = g_new0(LogsRequest, 1);
        *lr = (LogsRequest) { r, NULL, done, userdata };
        q = vmm_logs(r->host.vmm, vm->id, lines, channel, on_logs, lr, &lr->call);
        if (q < 0) {
                g_free(lr);
                return q;
        }
        r->logs = g_list_prepend(r->logs, lr);
        return 0;
}
