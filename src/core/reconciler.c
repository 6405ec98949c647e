/* SPDX-License-Identifier: Apache-2.0 */
/* The managed VMs: the API's (from ApiUrl, named by its spec) and the ones
 * declared in config.json "vms" (Config.AddVm), kept equal to the settings,
 * and what they share (host.c). The entry points start operations
 * (operation.c) and answer Plan() from what is already known. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <glib.h>

#include "core/fileio.h"
#include "core/host.h"
#include "core/managed-vm.h"
#include "core/operation.h"
#include "core/reconcile.h"
#include "core/resources.h"
#include "core/vm-steps.h"
#include "shared/log.h"
#include "shared/macro.h"

#define DEFAULT_VM_NAME "validator_vm"

struct Reconciler {
        Host host;                  /* host.vms: the managed VMs, the API's first */
        Vm **vm_list;               /* NULL-terminated, for reconciler_vms() */
        GList *gone;                /* ManagedVm * no longer managed, freed from the loop */
        sd_event_source *reap;
        bool started;               /* polls run, the bus is told */
};
#define DATA_FRESH_USEC (60 * USEC_PER_SEC)  /* Plan() says how old its data is beyond this */

static ManagedVm *managed(Reconciler *r, const Vm *vm) {
        for (guint i = 0; vm && i < r->host.vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->host.vms, i);
                if (mv->vm == vm)
                        return mv;
        }
        return NULL;
}

static ManagedVm *api_vm(Reconciler *r) {
        ManagedVm *mv = r->host.vms->len > 0 ? g_ptr_array_index(r->host.vms, 0) : NULL;
        return mv && !mv->decl ? mv : NULL;
}

static ManagedVm *declared(Reconciler *r, const char *name) {
        for (guint i = 0; i < r->host.vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->host.vms, i);
                if (mv->decl && streq(mv->decl->name, name))
                        return mv;
        }
        return NULL;
}

static void list_vms(Reconciler *r) {
        g_free(r->vm_list);
        r->vm_list = g_new0(Vm *, r->host.vms->len + 1);
        for (guint i = 0; i < r->host.vms->len; i++)
                r->vm_list[i] = ((ManagedVm *) g_ptr_array_index(r->host.vms, i))->vm;
}

/* ---- the VMs follow the settings ---- */

static bool any_operation(Reconciler *r) {
        for (guint i = 0; i < r->host.vms->len; i++)
                if (((ManagedVm *) g_ptr_array_index(r->host.vms, i))->op)
                        return true;
        return false;
}

static void load_kept_spec(ManagedVm *mv) {
        g_autofree char *why = NULL;
        int q = source_load_kept(mv->source, &why);
        if (q == -ENOENT)
                return;
        if (q < 0) {
                log_warning("The kept spec in %s cannot be used (%s); waiting for its source.", mv->state_dir,
                            why ?: strerror(-q));
                return;
        }
        const PlatformVmSpec *spec = mv->source->spec;
        managed_vm_spec_changed(mv);
        /* The name the API's spec gives is the VM's name, as before the restart. */
        VmDeployState *st = mv->state;
        if (!mv->decl && !isempty(spec->vm.name) && isempty(st->vm_id) && !streq(st->name, spec->vm.name)) {
                g_free(st->name);
                st->name = g_strdup(spec->vm.name);
                vm_set_name(mv->vm, spec->vm.name);
        }
        mv->vm->changed = false;
}

/* A declared VM's state store and kept spec: <state_dir>/vms/<name, escaped>. */
static char *declared_state_dir(Reconciler *r, const char *name) {
        GString *s = g_string_new(NULL);
        for (const char *c = name; *c; c++)
                if (g_ascii_isalnum(*c) || *c == '-' || *c == '_')
                        g_string_append_c(s, *c);
                else
                        g_string_append_printf(s, "%%%02X", (unsigned char) *c);
        g_autofree char *label = g_string_free(s, FALSE);
        return g_build_filename(r->host.state_dir, "vms", label, NULL);
}

static void added(Reconciler *r, ManagedVm *mv) {
        load_kept_spec(mv);
        list_vms(r);
        if (r->host.ev.vm_added && r->started)
                r->host.ev.vm_added(mv->vm, r->host.ev.userdata);
        if (r->started)
                operation_schedule_poll(mv, 0);
}

static ManagedVm *add_api_vm(Reconciler *r) {
        const LauncherConfig *c = r->host.settings->config;
        ManagedVm *mv = managed_vm_new(&r->host, NULL, DEFAULT_VM_NAME, r->host.state_dir, c->api_url);
        g_ptr_array_insert(r->host.vms, 0, mv);
        added(r, mv);
        return mv;
}

static ManagedVm *add_declared(Reconciler *r, const VmDecl *d) {
        g_autofree char *dir = declared_state_dir(r, d->name);
        int q = mkdir_p(dir, 0700);
        if (q < 0) {
                log_error_errno(q, "Cannot make the state directory %s of VM %s: %m", dir, d->name);
                return NULL;
        }
        ManagedVm *mv = managed_vm_new(&r->host, d, d->name, dir, d->source);
        if (!d->autostart && !mv->state->operator_stopped && isempty(mv->state->vm_id)) {
                /* Declared, not started: Start creates it. */
                mv->state->operator_stopped = true;
                (void) managed_vm_save_state(mv);
        }
        g_ptr_array_add(r->host.vms, mv);
        added(r, mv);
        return mv;
}

static int on_reap(sd_event_source *s, void *userdata) {
        Reconciler *r = userdata;
        g_list_free_full(g_steal_pointer(&r->gone), (GDestroyNotify) managed_vm_free);
        return 0;
}

/* No longer managed: its operations end (their callers are told why), the
 * bus object goes, and it is freed from the event loop, not under a caller. */
static void forget(Reconciler *r, ManagedVm *mv, const char *why) {
        operation_cancel_all(mv, RECONCILER_ERROR_FAILED, why);
        if (mv->sysinfo_call)
                vmm_call_cancel(g_steal_pointer(&mv->sysinfo_call));
        guint i;
        if (g_ptr_array_find(r->host.vms, mv, &i))
                (void) g_ptr_array_steal_index(r->host.vms, i);
        list_vms(r);
        if (r->host.ev.vm_removed)
                r->host.ev.vm_removed(mv->vm, r->host.ev.userdata);
        if (r->host.ev.required_env_changed)
                r->host.ev.required_env_changed(r->host.ev.userdata);
        r->gone = g_list_prepend(r->gone, mv);
        (void) sd_event_source_set_enabled(r->reap, SD_EVENT_ONESHOT);
}

static bool declared_in(const LauncherConfig *c, const char *name, const VmDecl **ret) {
        for (guint i = 0; i < c->vms->len; i++) {
                const VmDecl *d = g_ptr_array_index(c->vms, i);
                if (streq(d->name, name)) {
                        *ret = d;
                        return true;
                }
        }
        return false;
}

/* The managed VMs are what the settings say: the API's while ApiUrl is set,
 * and each one of "vms". */
static void follow_settings(Reconciler *r) {
        const LauncherConfig *c = r->host.settings->config;
        int q = host_follow_settings(&r->host, !any_operation(r));
        if (q < 0)
                log_warning_errno(q, "Cannot set up the VMM client: %m");

        ManagedVm *api = api_vm(r);
        if (isempty(c->api_url) && api)
                forget(r, api, "the API's VM is no longer managed (ApiUrl is empty)");
        else if (!isempty(c->api_url) && !api)
                api = add_api_vm(r);
        if (api && !api->source->call && source_set_url(api->source, r->host.http, c->api_url) < 0)
                log_warning("Cannot follow ApiUrl %s.", c->api_url);

        for (guint i = r->host.vms->len; i > 0; i--) {
                ManagedVm *mv = g_ptr_array_index(r->host.vms, i - 1);
                const VmDecl *d;
                if (!mv->decl)
                        continue;
                if (!declared_in(c, mv->decl->name, &d))
                        forget(r, mv, "the VM is no longer managed");
                else if (!vm_decl_equal(d, mv->decl)) {
                        vm_decl_free(mv->decl);
                        mv->decl = vm_decl_copy(d);
                        if (!mv->source->call)
                                (void) source_set_url(mv->source, r->host.http, d->source);
                }
        }
        for (guint i = 0; i < c->vms->len; i++) {
                const VmDecl *d = g_ptr_array_index(c->vms, i);
                if (!declared(r, d->name))
                        (void) add_declared(r, d);
        }
}

/* ---- life cycle ---- */

int reconciler_new(sd_event *event, SettingsStore *settings, const char *state_dir, History *history,
                   const ReconcilerEvents *events, Reconciler **ret) {
        Reconciler *r = g_new0(Reconciler, 1);
        int q = host_init(&r->host, event, settings, state_dir, history, events);
        r->host.vms = g_ptr_array_new_with_free_func((GDestroyNotify) managed_vm_free);
        if (q >= 0)
                q = sd_event_add_defer(event, &r->reap, on_reap, r);
        if (q >= 0)
                q = sd_event_source_set_enabled(r->reap, SD_EVENT_OFF);
        if (q < 0) {
                reconciler_free(r);
                return q;
        }
        follow_settings(r);
        *ret = r;
        return 0;
}

void reconciler_shutdown(Reconciler *r) {
        if (r->host.shutting_down)
                return;
        r->host.shutting_down = true;
        for (guint i = 0; i < r->host.vms->len; i++)
                operation_cancel_all(g_ptr_array_index(r->host.vms, i), RECONCILER_ERROR_SHUTDOWN, "shutting down");
}

void reconciler_free(Reconciler *r) {
        if (!r)
                return;
        if (r->host.vms)
                reconciler_shutdown(r);
        g_clear_pointer(&r->host.vms, g_ptr_array_unref);
        g_list_free_full(r->gone, (GDestroyNotify) managed_vm_free);
        sd_event_source_disable_unref(r->reap);
        g_free(r->vm_list);
        host_done(&r->host);
        g_free(r);
}

int reconciler_start(Reconciler *r) {
        r->started = true;
        for (guint i = 0; i < r->host.vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->host.vms, i);
                if (r->host.ev.vm_added)
                        r->host.ev.vm_added(mv->vm, r->host.ev.userdata);
                if (mv->state->intent)
                        log_notice("Resuming after an interrupted '%s' of VM %s.", mv->state->intent->op, mv->vm->name);
                operation_schedule_poll(mv, 0);
        }
        if (r->host.ev.required_env_changed)
                r->host.ev.required_env_changed(r->host.ev.userdata);
        resources_now(&r->host);
        return 0;
}

void reconciler_settings_changed(Reconciler *r, const char *trigger) {
        follow_settings(r);
        host_view_refresh(&r->host, false); /* a capacity may have changed */
        if (r->started)
                resources_schedule(&r->host); /* and the interval */
        for (guint i = 0; i < r->host.vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->host.vms, i);
                managed_vm_env_changed(mv);
                managed_vm_flush(mv);
                if (trigger) {
                        g_free(mv->change_trigger);
                        mv->change_trigger = g_strdup(trigger);
                }
                if (mv->op)
                        mv->rerun = true; /* look again as soon as the running operation ends */
                else if (r->started)
                        operation_schedule_poll(mv, 0);
        }
}

Vm *const *reconciler_vms(Reconciler *r) {
        return r->vm_list;
}

Vm *reconciler_find_vm(Reconciler *r, const char *name) {
        for (guint i = 0; i < r->host.vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->host.vms, i);
                if (streq(mv->vm->name, name))
                        return mv->vm;
        }
        return NULL;
}

const HostView *reconciler_host_view(Reconciler *r) {
        return &r->host.view;
}

const char *reconciler_vm_source(Reconciler *r, const Vm *vm) {
        ManagedVm *mv = managed(r, vm);
        return mv ? mv->source->url : "";
}

bool reconciler_vm_declared(Reconciler *r, const Vm *vm) {
        ManagedVm *mv = managed(r, vm);
        return mv && mv->decl;
}

char *reconciler_source_problem(const char *source) {
        const char *why = vm_source_problem(source), *path = vm_source_file_path(source);
        if (why)
                return g_strdup(why);
        return path ? source_file_problem(path) : NULL;
}

char **reconciler_required_env(Reconciler *r) {
        g_autoptr(GPtrArray) keys = g_ptr_array_new();
        for (guint i = 0; i < r->host.vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->host.vms, i);
                for (char **k = mv->vm->required_env; *k; k++)
                        if (!g_ptr_array_find_with_equal_func(keys, *k, g_str_equal, NULL))
                                g_ptr_array_add(keys, g_strdup(*k));
        }
        g_ptr_array_add(keys, NULL);
        return (char **) g_ptr_array_free(g_steal_pointer(&keys), FALSE);
}

bool reconciler_busy(Reconciler *r) {
        for (guint i = 0; i < r->host.vms->len; i++) {
                ManagedVm *mv = g_ptr_array_index(r->host.vms, i);
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

/* Busy (dbus-api.md): the launcher's own work never makes an operator's
 * call fail; only another operator's call on the VM, running or waiting,
 * does. */
static bool operator_call_pending(const ManagedVm *mv) {
        return (mv->op && mv->op->kind != OPERATION_POLL) || !g_queue_is_empty((GQueue *) &mv->queue);
}

char *reconciler_describe_pending(Reconciler *r, const Vm *vm) {
        ManagedVm *mv = managed(r, vm);
        return mv ? operation_describe_pending(mv) : NULL;
}

/* Runs an operator's call: now, when the VM is idle or its automatic check
 * is only reading (that check gives way and runs again afterwards); right
 * after the check's table (a deploy, a crashed VM's restart, a duplicate's
 * removal is never cut halfway); -EBUSY behind another operator's call,
 * except an Update without force joining one queued likewise. */
static int admit(ManagedVm *mv, OperationKind kind, bool force, const ReconcilerCaller *caller) {
        Operation *running = mv->op;
        if (operator_call_pending(mv)) {
                Operation *queued = g_queue_peek_tail(&mv->queue);
                if (kind != OPERATION_UPDATE || force || !running || running->kind != OPERATION_POLL || !queued ||
                    queued->kind != OPERATION_UPDATE || queued->force)
                        return -EBUSY;
                waiter_add(queued, caller); /* they all ask for the same: one run serves them */
                return 0;
        }
        Operation *op = operation_new(mv, kind, force);
        waiter_add(op, caller);
        if (running && operation_give_way(running, op))
                return 0; /* it runs as the check ends, now */
        if (running)
                log_info("VM %s: an operator's %s waits for the running %s to finish.", mv->vm->name,
                         operation_kind_to_string(kind), step_driver_table_name(mv->driver));
        operation_submit(op);
        return 0;
}

int reconciler_update(Reconciler *r, Vm *vm, bool force, const ReconcilerCaller *caller) {
        ManagedVm *mv = managed(r, vm);
        if (!mv)
                return -ENOENT;
        return admit(mv, OPERATION_UPDATE, force, caller);
}

static int operate(Reconciler *r, Vm *vm, OperationKind kind, const ReconcilerCaller *caller) {
        ManagedVm *mv = managed(r, vm);
        if (!mv)
                return -ENOENT;
        if (operator_call_pending(mv))
                return -EBUSY;
        if (isempty(vm->id) && kind == OPERATION_START && mv->decl && !mv->decl->autostart) {
                /* Declared with Autostart=false and never started: Start creates it. */
                mv->state->operator_stopped = false;
                (void) managed_vm_save_state(mv);
                return admit(mv, OPERATION_UPDATE, false, caller);
        }
        if (isempty(vm->id))
                return -ENOENT;
        return admit(mv, kind, false, caller);
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

int reconciler_destroy_vm(Reconciler *r, Vm *vm, const ReconcilerCaller *caller) {
        ManagedVm *mv = managed(r, vm);
        if (!mv)
                return -ENOENT;
        if (!mv->decl)
                return -EINVAL;
        Operation *q;
        while ((q = g_queue_pop_head(&mv->queue)))
                operation_end_unrun(q, RECONCILER_ERROR_FAILED, "the VM is being removed");
        Operation *op = operation_new(mv, OPERATION_REMOVE, false);
        waiter_add(op, caller);
        operation_submit(op);
        return 0;
}
