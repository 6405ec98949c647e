/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

#include "clients/vmm-json.h"
#include "core/desired.h"
#include "core/state.h"

/* The decision of one reconciliation: desired vs what the VMM reports vs what
 * the state store says was deployed. Pure: Plan() and the tick use the same. */

typedef enum PlanAction {
        PLAN_NONE,
        PLAN_CREATE,
        PLAN_RECREATE,
        PLAN_UPDATE_IN_PLACE,
        PLAN_START,
        PLAN_BLOCKED,
        PLAN_WAIT,          /* a VM with the name is stopping or being removed */
        PLAN_ADOPT,         /* a VM with the name that the state store has no record of
                             * deploying (the Rust launcher's): its env cannot be read, so
                             * it cannot be compared in full. Automatic checks keep it
                             * (and start it if it exited); Update, or AdoptPolicy=redeploy,
                             * redeploys it once as adopt_action says. */
        _PLAN_ACTION_MAX,
} PlanAction;

const char *plan_action_to_string(PlanAction a);

typedef struct Plan {
        PlanAction action;
        char *reason;               /* one line, for StateReason */
        char **changes;             /* NULL-terminated triples: field, current, target */
        const VmInfo *keep;         /* the VM acted on; NULL when there is none */
        const VmInfo **extra;       /* duplicates to remove (an earlier crash left them) */
        size_t n_extra;
        char *keep_compose_hash;    /* of keep's own compose_file; "" if unknown */
        char *keep_env_fingerprint; /* what we know was sent to keep; "" if unknown */
        PlanAction adopt_action;    /* PLAN_ADOPT: what redeploying means (recreate or in place) */
        const VmInfo *replaced;     /* PLAN_RECREATE without keep: a VM this deployment replaces
                                     * (one under an old name) whose host ports the new VM needs:
                                     * stopped and removed first, as keep would be */
} Plan;

typedef struct PlanInput {
        const DesiredVm *desired;   /* NULL: no usable spec (blocked_reason says why) */
        const char *blocked_reason;
        const char *name;           /* the VM's name, used when there is no desired VM */
        const VmInfo *vms;          /* what the VMM reports for the name (may hold others) */
        size_t n_vms;
        const VmDeployState *state;
        bool in_place;
        bool force;
        bool hold;                  /* declared with Autostart=false: none is created while operator_stopped */
} PlanInput;

/* Whether vm is one the state store records as ours: the deployed VM, or the
 * target of an interrupted deployment. */
bool plan_vm_is_ours(const VmInfo *vm, const char *vm_compose_hash, const VmDeployState *st);

int plan_compute(const PlanInput *in, Plan *ret);
void plan_done(Plan *p);
