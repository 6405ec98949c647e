/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "clients/vmm.h"
#include "core/reconciler.h"
#include "core/step-driver.h"

/* The VMM steps (vm-steps.c) as rows for any table; each acts on the
 * operation's act_id (or, waiting for a boot, on the VM just created). */

void vm_step_stop_graceful_start(StepDriver *d, void *userdata);
void vm_step_stop_check(StepDriver *d, void *userdata);
uint64_t vm_step_stop_graceful_timeout(void *userdata);
uint64_t vm_step_stop_graceful_on_timeout(StepDriver *d, void *userdata);
void vm_step_remove_start(StepDriver *d, void *userdata);
void vm_step_remove_check(StepDriver *d, void *userdata);
uint64_t vm_step_remove_timeout(void *userdata);
void vm_step_start_start(StepDriver *d, void *userdata);
void vm_step_boot_check(StepDriver *d, void *userdata);
uint64_t vm_step_boot_timeout(void *userdata);
void step_cancel_call(void *userdata);

extern const StepTable table_operate, table_start, table_stop, table_restart, table_remove_duplicate, table_destroy;
/* How a failed VMM call fails an operation. */
ReconcilerError steps_error_kind(const VmmResult *res);

/* ShutdownVm, then StopVm as soon as the guest is down or at StopTimeoutUSec. */
#define STEP_STOP(desc, state)                                                                              \
        { .name = "stop-graceful", .description = (desc), .start = vm_step_stop_graceful_start,           \
          .check = vm_step_stop_check, .timeout = vm_step_stop_graceful_timeout,                          \
          .on_timeout = vm_step_stop_graceful_on_timeout, .cancel = step_cancel_call, .vm_state = (state) }
/* RemoveVm, then until the VMM no longer lists it. */
#define STEP_REMOVE(desc, state)                                                                            \
        { .name = "remove", .description = (desc), .start = vm_step_remove_start,                         \
          .check = vm_step_remove_check, .timeout = vm_step_remove_timeout, .cancel = step_cancel_call,   \
          .vm_state = (state) }
/* StartVm, then until it runs. */
#define STEP_START(desc, state)                                                                             \
        { .name = "start", .description = (desc), .start = vm_step_start_start, .check = vm_step_boot_check, \
          .timeout = vm_step_boot_timeout, .cancel = step_cancel_call, .vm_state = (state) }
/* Until the VM just created runs. */
#define STEP_WAIT_RUNNING(desc, state)                                                                      \
        { .name = "wait-running", .description = (desc), .check = vm_step_boot_check,                    \
          .timeout = vm_step_boot_timeout, .cancel = step_cancel_call, .vm_state = (state) }
