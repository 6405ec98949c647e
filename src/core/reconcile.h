/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>

#include "core/desired.h"
#include "core/managed-vm.h"
#include "core/plan.h"
#include "core/step-driver.h"

/* The reconciliation of one VM as one table (reconcile.c). */

extern const StepTable table_reconcile;
typedef struct Decision {
        DesiredVm *desired;
        char *blocked_reason;
        Plan plan;
} Decision;
/* The same decision the reconciliation takes, from what is known now. */
int reconcile_decide(ManagedVm *mv, bool force, Decision *ret);
void decision_done(Decision *d);
