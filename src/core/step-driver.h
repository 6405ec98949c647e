/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

/* Long operations as data (style.md): an operation is a table of named steps,
 * and one driver with one timer runs every table, for the VM reconciler and
 * for the Updater alike. The driver knows nothing of the VMM, git or D-Bus.
 *
 * A step is
 *   start(d, ud)  begin: send the request, spawn the command. NULL = go
 *                 straight to check.
 *   check(d, ud)  ask whether the step is complete. NULL = the step is complete
 *                 when start reports done.
 * Both report, now or later from a callback, exactly once per call through
 *   step_driver_done(d)             the step is complete: run the next one;
 *   step_driver_again(d)            not yet: call check again after the poll
 *                                   interval (20 ms, growing to 250 ms after
 *                                   5 s), never later than the deadline;
 *   step_driver_fail(d, code, msg)  the operation fails here.
 *
 * Deadline: timeout(ud) from the step's start (0 = none). When it passes while
 * the step waits for a check, or while a start/check is still outstanding
 * (then cancel(ud) is called first so no late report arrives), on_timeout(d, ud)
 * decides: it may escalate (send StopVm, kill a process group) and return a
 * new timeout from now, or return 0 to fail the operation with "<description>:
 * timed out after N s". on_timeout NULL = fail.
 *
 * progress(d, ud) runs when a step begins and then once a second while a step
 * with a deadline runs, so StateReason can read "stopping the old VM: 12 s of
 * 60 s". done(d, code, message, ud) runs once when the table ends: code 0 and
 * message NULL on success. The driver may be freed or rerun from done. */

typedef struct StepDriver StepDriver;

typedef struct StepDef {
        const char *name;          /* machine name, shown as Operation: "stop-graceful", "build" */
        const char *description;   /* for a person: "stopping the old VM" */
        void (*start)(StepDriver *d, void *userdata);
        void (*check)(StepDriver *d, void *userdata);
        uint64_t (*timeout)(void *userdata);
        uint64_t (*on_timeout)(StepDriver *d, void *userdata);
        void (*cancel)(void *userdata);
} StepDef;

typedef struct StepTable {
        const char *name;          /* "recreate", "update" */
        const StepDef *steps;
        size_t n_steps;
} StepTable;

#define STEP_TABLE(n, array) { .name = (n), .steps = (array), .n_steps = sizeof(array) / sizeof((array)[0]) }

typedef struct StepDriverEvents {
        void (*progress)(StepDriver *d, void *userdata);
        void (*done)(StepDriver *d, int code, const char *message, void *userdata);
} StepDriverEvents;

int step_driver_new(sd_event *event, StepDriver **ret);
/* Cancels a running table without calling done. */
void step_driver_free(StepDriver *d);

/* -EBUSY if a table is running. The first step starts from the event loop
 * (a deferred source), never inside this call. */
int step_driver_run(StepDriver *d, const StepTable *table, const StepDriverEvents *events, void *userdata);
/* Stops the running table: cancel() of the current step, then done(code, message). */
void step_driver_abort(StepDriver *d, int code, const char *message);

void step_driver_done(StepDriver *d);
void step_driver_again(StepDriver *d);
void step_driver_fail(StepDriver *d, int code, const char *message);

/* Resets the poll interval to its minimum (after an escalation, say). */
void step_driver_poll_fast(StepDriver *d);

bool step_driver_running(const StepDriver *d);
const char *step_driver_table_name(const StepDriver *d);      /* "" when idle */
const char *step_driver_step_name(const StepDriver *d);       /* "" when idle */
const char *step_driver_step_description(const StepDriver *d);
size_t step_driver_step_index(const StepDriver *d);
size_t step_driver_n_steps(const StepDriver *d);
/* 0–100: the share of steps completed. */
unsigned step_driver_progress(const StepDriver *d);
/* CLOCK_MONOTONIC µs: when the current step began, its deadline (0 = none). */
uint64_t step_driver_step_started(const StepDriver *d);
uint64_t step_driver_step_deadline(const StepDriver *d);
/* "stopping the old VM: 12 s of 60 s" (or "… : 12 s" without a deadline). Caller frees. */
char *step_driver_describe(const StepDriver *d);
