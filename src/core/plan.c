/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "core/plan.h"
#include "core/port-conflict.h"
#include "shared/macro.h"

static const char *const action_names[_PLAN_ACTION_MAX] = {
        [PLAN_NONE] = "none",
        [PLAN_CREATE] = "create",
        [PLAN_RECREATE] = "recreate",
        [PLAN_UPDATE_IN_PLACE] = "update-in-place",
        [PLAN_START] = "start",
        [PLAN_BLOCKED] = "blocked",
        [PLAN_WAIT] = "wait",
        [PLAN_ADOPT] = "adopt",
};

const char *plan_action_to_string(PlanAction a) {
        return a < _PLAN_ACTION_MAX ? action_names[a] : NULL;
}

void plan_done(Plan *p) {
        g_free(p->reason);
        g_strfreev(p->changes);
        g_free(p->extra);
        g_free(p->keep_compose_hash);
        g_free(p->keep_env_fingerprint);
        memset(p, 0, sizeof *p);
}

static char *vm_compose_hash(const VmInfo *vm) {
        char hash[COMPOSE_HASH_HEX_LEN + 1];
        if (!vm->has_configuration || !vm->configuration.compose_file ||
            compose_hash(vm->configuration.compose_file, strlen(vm->configuration.compose_file), hash) < 0)
                return g_strdup("");
        return g_strdup(hash);
}

/* The env fingerprint we know was sent to vm: recorded after deploying it, or
 * recorded as the intent before a crash cut the deployment short. */
static char *known_fingerprint(const VmInfo *vm, const char *vm_hash, const VmDeployState *st) {
        if (st && !isempty(st->vm_id) && streq(st->vm_id, vm->id))
                return g_strdup(st->env_fingerprint);
        if (st && st->intent && !isempty(vm_hash) && streq(st->intent->target_compose_hash, vm_hash))
                return g_strdup(st->intent->target_env_fingerprint);
        return g_strdup("");
}

bool plan_vm_is_ours(const VmInfo *vm, const char *vm_hash, const VmDeployState *st) {
        if (!st)
                return false;
        if (!isempty(st->vm_id) && streq(st->vm_id, vm->id))
                return true;
        return st->intent && !isempty(vm_hash) && streq(st->intent->target_compose_hash, vm_hash);
}

static int score(const VmInfo *vm, const char *hash, const PlanInput *in) {
        int s = 0;
        if (in->state && streq(in->state->vm_id, vm->id))
                s += 4;
        if (in->desired && streq(hash, in->desired->compose_hash))
                s += 2;
        if (vm->status == VM_STATUS_RUNNING)
                s += 1;
        return s;
}

/* Among the VMs with the name, the one to keep; the others are duplicates. */
static void choose(const PlanInput *in, const char *name, Plan *p) {
        int best = -1;
        p->extra = g_new0(const VmInfo *, in->n_vms + 1);
        for (size_t i = 0; i < in->n_vms; i++) {
                const VmInfo *vm = &in->vms[i];
                if (!streq_ptr(vm->name, name) || vm->status == VM_STATUS_REMOVING)
                        continue;
                g_autofree char *h = vm_compose_hash(vm);
                int s = score(vm, h, in);
                if (s > best) {
                        if (p->keep)
                                p->extra[p->n_extra++] = p->keep;
                        p->keep = vm;
                        best = s;
                } else
                        p->extra[p->n_extra++] = vm;
        }
}

static bool any_removing(const PlanInput *in, const char *name) {
        for (size_t i = 0; i < in->n_vms; i++)
                if (streq_ptr(in->vms[i].name, name) && in->vms[i].status == VM_STATUS_REMOVING)
                        return true;
        return false;
}

static void add_change(GPtrArray *a, const char *field, const char *cur, const char *target) {
        g_ptr_array_add(a, g_strdup(field));
        g_ptr_array_add(a, g_strdup(strempty(cur)));
        g_ptr_array_add(a, g_strdup(strempty(target)));
}

static void add_change_u(GPtrArray *a, const char *field, uint32_t cur, uint32_t target) {
        if (cur == target)
                return;
        g_autofree char *c = g_strdup_printf("%u", cur), *t = g_strdup_printf("%u", target);
        add_change(a, field, c, t);
}

static bool is_retired(const VmDeployState *st, const char *id) {
        for (size_t i = 0; st && st->retired_ids && st->retired_ids[i]; i++)
                if (streq(st->retired_ids[i], id))
                        return true;
        return false;
}

/* A VM the new one replaces (retired by a rename) and could not run beside:
 * the VMM refuses the CreateVm (HEAD "host port mapping conflicts with VM"),
 * or the new QEMU cannot bind its hostfwd (up to v0.5.11). So it goes first,
 * as in a recreate (issue 18). */
static bool replace_conflicting(const PlanInput *in, const char *name, Plan *p, GPtrArray *changes) {
        const VmConfiguration *want = &in->desired->config;
        for (size_t i = 0; i < in->n_vms; i++) {
                const VmInfo *vm = &in->vms[i];
                g_autofree char *which = NULL;
                if (!is_retired(in->state, vm->id) || !vm->has_configuration ||
                    !port_mappings_conflict(want->ports, want->n_ports, vm->configuration.ports,
                                            vm->configuration.n_ports, &which))
                        continue;
                if (vm->status == VM_STATUS_REMOVING) {
                        /* Still holds the port at HEAD until it is gone. */
                        p->action = PLAN_WAIT;
                        p->reason = g_strdup_printf("VM %s, which this one replaces, is being removed", vm->id);
                        return true;
                }
                p->action = PLAN_RECREATE;
                p->replaced = vm;
                p->reason = g_strdup_printf("VM %s (%s), which this one replaces, maps host port %s too: it is "
                                            "stopped and removed first", vm->id, strempty(vm->name), which);
                add_change(changes, "vm", vm->name, name);
                return true;
        }
        return false;
}

/* Field by field; returns whether only what UpdateVm can change differs. */
static bool compare(const Plan *p, const DesiredVm *d, GPtrArray *a) {
        const VmConfiguration *cur = &p->keep->configuration, *want = &d->config;
        bool in_place_ok = true;

        if (!streq(p->keep_compose_hash, d->compose_hash))
                add_change(a, "compose_hash", isempty(p->keep_compose_hash) ? "unknown" : p->keep_compose_hash,
                           d->compose_hash);
        if (!streq_ptr(cur->image, want->image)) {
                add_change(a, "image", cur->image, want->image);
                in_place_ok = false;
        }
        size_t before = a->len;
        add_change_u(a, "vcpu", cur->vcpu, want->vcpu);
        add_change_u(a, "memory", cur->memory, want->memory);
        add_change_u(a, "disk_size", cur->disk_size, want->disk_size);
        if (a->len != before || cur->hugepages != want->hugepages || cur->pin_numa != want->pin_numa)
                in_place_ok = false;

        if (!vm_ports_match(want->ports, want->n_ports, cur->ports, cur->n_ports)) {
                g_autofree char *pc = vm_ports_text(cur->ports, cur->n_ports),
                                *pw = vm_ports_text(want->ports, want->n_ports);
                add_change(a, "ports", pc, pw);
        }
        if (!streq_ptr(strempty(cur->user_config), strempty(want->user_config)))
                add_change(a, "user_config", "(differs)", "(from the API)");

        if (!streq(p->keep_env_fingerprint, d->env_fingerprint)) {
                g_autofree char *keys = NULL;
                GString *k = g_string_new(NULL);
                for (size_t i = 0; i < d->env.n; i++)
                        g_string_append_printf(k, "%s%s", i ? " " : "", d->env.entries[i].key);
                keys = g_string_free(k, FALSE);
                add_change(a, "env", isempty(p->keep_env_fingerprint) ? "unknown" : "differs", keys);
        }
        return in_place_ok;
}

static void decide_existing(const PlanInput *in, Plan *p, GPtrArray *changes) {
        const VmInfo *vm = p->keep;
        if (in->state && in->state->operator_stopped && !in->force) {
                p->action = PLAN_NONE;
                p->reason = g_strdup("stopped by the operator; Start it to resume updates");
                return;
        }

        bool in_place_ok = compare(p, in->desired, changes);
        const VmIntent *intent = in->state ? in->state->intent : NULL;
        if (intent && streq(intent->op, "in-place") && streq(intent->target_compose_hash, p->keep_compose_hash)) {
                /* UpdateVm took effect before an interruption, but the VM may
                 * still run the old compose: the tick restarts it. Say so. */
                p->action = PLAN_UPDATE_IN_PLACE;
                p->reason = g_strdup("finishing an interrupted in-place update");
                return;
        }
        if (!plan_vm_is_ours(vm, p->keep_compose_hash, in->state)) {
                /* Not deployed by us (the Rust launcher's VM, or a lost state
                 * store): never replaced silently (issue 10). Update redeploys. */
                p->action = PLAN_ADOPT;
                p->adopt_action = in->in_place && in_place_ok ? PLAN_UPDATE_IN_PLACE : PLAN_RECREATE;
                if (vm->status == VM_STATUS_EXITED || vm->status == VM_STATUS_STOPPED)
                        p->reason = g_strdup_printf(
                                "adopt: the VM was not deployed by this launcher and is %s; it is started as it "
                                "is. Its env cannot be read; it will be redeployed once with the local env (run "
                                "'platformctl vm update' or set AdoptPolicy=redeploy)",
                                vm_status_to_string(vm->status));
                else
                        p->reason = g_strdup(
                                "adopt: the env of the running VM cannot be read; it will be redeployed once with "
                                "the local env (run 'platformctl vm update' or set AdoptPolicy=redeploy)");
                return;
        }
        /* A VM stuck in "stopping" (a guest that never finishes) is replaced
         * all the same: the stop goes hard at StopTimeoutUSec. */
        if (vm->status == VM_STATUS_STOPPING && changes->len == 0 && !in->force) {
                p->action = PLAN_WAIT;
                p->reason = g_strdup("the VM is stopping");
                return;
        }
        if (changes->len > 0 || in->force) {
                p->action = in->in_place && in_place_ok ? PLAN_UPDATE_IN_PLACE : PLAN_RECREATE;
                p->reason = g_strdup(changes->len > 0 ? "the VM differs from the spec" : "forced");
                return;
        }
        if (vm->status == VM_STATUS_RUNNING) {
                p->action = PLAN_NONE;
                p->reason = g_strdup("");
                return;
        }
        p->action = PLAN_START;
        p->reason = g_strdup_printf("the VM is %s", vm_status_to_string(vm->status));
}

int plan_compute(const PlanInput *in, Plan *ret) {
        Plan p = {};
        g_autoptr(GPtrArray) changes = g_ptr_array_new_with_free_func(g_free);
        const char *name = in->desired ? in->desired->name : in->name;

        /* Whatever is decided, the VM that runs is observed: a blocked spec
         * must not blank what Id, ComposeHash and friends say about it. */
        if (name)
                choose(in, name, &p);
        if (p.keep) {
                p.keep_compose_hash = vm_compose_hash(p.keep);
                p.keep_env_fingerprint = known_fingerprint(p.keep, p.keep_compose_hash, in->state);
        }

        if (!in->desired) {
                p.action = PLAN_BLOCKED;
                p.reason = g_strdup(strempty(in->blocked_reason));
                goto finish;
        }
        if (in->desired->not_granted && in->desired->not_granted[0]) {
                g_autofree char *m = g_strjoinv(", ", in->desired->not_granted);
                p.action = PLAN_BLOCKED;
                p.reason = g_strdup_printf("not granted: %s (add them to the VM's EnvKeys)", m);
                goto finish;
        }
        if (in->desired->missing_env[0]) {
                g_autofree char *m = g_strjoinv(", ", in->desired->missing_env);
                p.action = PLAN_BLOCKED;
                p.reason = g_strdup_printf("missing env: %s", m);
                goto finish;
        }
        if (!p.keep && in->hold && in->state && in->state->operator_stopped && !in->force) {
                p.action = PLAN_NONE;
                p.reason = g_strdup("declared with Autostart=false: Start creates it");
                goto finish;
        }
        if (!p.keep) {
                if (!any_removing(in, name) && replace_conflicting(in, name, &p, changes))
                        goto finish;
                p.action = any_removing(in, name) ? PLAN_WAIT : PLAN_CREATE;
                p.reason = g_strdup(p.action == PLAN_WAIT ? "an old VM is being removed" : "no VM yet");
                if (p.action == PLAN_CREATE)
                        add_change(changes, "vm", "", name);
                goto finish;
        }
        decide_existing(in, &p, changes);

finish:
        g_ptr_array_add(changes, NULL);
        p.changes = (char **) g_ptr_array_steal(changes, NULL);
        if (!p.keep_compose_hash)
                p.keep_compose_hash = g_strdup("");
        if (!p.keep_env_fingerprint)
                p.keep_env_fingerprint = g_strdup("");
        if (!p.extra)
                p.extra = g_new0(const VmInfo *, 1);
        *ret = p;
        return 0;
}
