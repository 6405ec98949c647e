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
 * A step (a row, written with designated initializers) is one of
 *
 *   a leaf:
 *     start(d, ud)  begin: send the request, spawn the command. NULL = go
 *                   straight to check.
 *     check(d, ud)  ask whether the step is complete. NULL = the step is
 *                   complete when start reports done.
 *   a loop, STEP_EACH(each, table): for item i = 0, 1, ... while each(ud, i)
 *     says there is one (and has made it the one the table acts on), run the
 *     table. A failing item fails the loop, unless .item_failed is set: it is
 *     told, and the loop goes on with the next item.
 *   a choice, STEP_CHOOSE(choose): run the table choose(ud) returns; NULL =
 *     nothing to run, the step is complete.
 * each and choose answer at once and never report.
 *
 * A leaf reports, now or later from a callback, exactly once per call through
 *   step_driver_done(d)             the step is complete: run the next one;
 *   step_driver_again(d)            not yet: call check again after the poll
 *                                   interval (20 ms, growing to 250 ms after
 *                                   5 s), never later than the deadline;
 *   step_driver_fail(d, code, msg)  the table fails here.
 *
 * A failing table whose .on_fail names a compensating table runs that table
 * first (a forward path and its reverse); the failure then goes on up with
 * its own message (and, if the compensation failed too, what it said). A
 * failure reaching the outermost table ends the run.
 *
 * Deadline: timeout(ud) from the leaf's start (0 = none). When it passes while
 * the step waits for a check, or while a start/check is still outstanding
 * (then cancel(ud) is called first so no late report arrives), on_timeout(d, ud)
 * decides: it may escalate (send StopVm, kill a process group) and return a
 * new timeout from now, or return 0 to fail with "<description>: timed out
 * after N s". on_timeout NULL = fail.
 *
 * .state (also spelled .vm_state and .updater_state, for the table's owner):
 * the state its owner shows while the leaf runs, 0 = leave it as it is. The
 * driver only carries it, so no owner compares step names.
 *
 * progress(d, ud) runs when a leaf begins and then once a second while a leaf
 * with a deadline runs, so StateReason can read "stopping the old VM: 12 s of
 * 60 s". table_done(d, table, code, ud) runs when a table run by a loop or a
 * choice ends (code 0: it ran through; a compensation is not reported).
 * done(d, code, message, ud) runs once when the outermost table ends: code 0
 * and message NULL on success. The driver may be freed or rerun from done. */

typedef struct StepDriver StepDriver;
typedef struct StepTable StepTable;

typedef struct StepDef {
        const char *name;          /* machine name, shown as Operation: "stop-graceful", "build" */
        const char *description;   /* for a person: "stopping the old VM" */
        void (*start)(StepDriver *d, void *userdata);
        void (*check)(StepDriver *d, void *userdata);
        uint64_t (*timeout)(void *userdata);
        uint64_t (*on_timeout)(StepDriver *d, void *userdata);
        void (*cancel)(void *userdata);
        bool (*each)(void *userdata, size_t item);
        const StepTable *(*choose)(void *userdata);
        const StepTable *sub;      /* STEP_EACH's table */
        void (*item_failed)(void *userdata, int code, const char *message);
        union {
                int state;
                int vm_state;
                int updater_state;
        };
} StepDef;

struct StepTable {
        const char *name;          /* "recreate", "update" */
        const StepDef *steps;
        size_t n_steps;
        const StepTable *on_fail;  /* run when a step of this table fails */
};

#define STEP_TABLE(n, array) { .name = (n), .steps = (array), .n_steps = sizeof(array) / sizeof((array)[0]) }
#define STEP_TABLE_ON_FAIL(n, array, compensation) \
        { .name = (n), .steps = (array), .n_steps = sizeof(array) / sizeof((array)[0]), .on_fail = &(compensation) }
/* Row fragments: { .name = "duplicates", STEP_EACH(next_duplicate, remove_duplicate) } */
#define STEP_EACH(each_fn, table) .each = (each_fn), .sub = &(table)
#define STEP_CHOOSE(choose_fn) .choose = (choose_fn)

/* Tables nest at most this deep. */
#define STEP_DEPTH_MAX 8

typedef struct StepDriverEvents {
        void (*progress)(StepDriver *d, void *userdata);
        void (*table_done)(StepDriver *d, const StepTable *table, int code, void *userdata);
        void (*done)(StepDriver *d, int code, const char *message, void *userdata);
} StepDriverEvents;

int step_driver_new(sd_event *event, StepDriver **ret);
/* Cancels a running table without calling done. */
void step_driver_free(StepDriver *d);

/* -EBUSY if a table is running. The first step starts from the event loop
 * (a deferred source), never inside this call. */
int step_driver_run(StepDriver *d, const StepTable *table, const StepDriverEvents *events, void *userdata);
/* Stops the running table: cancel() of the current leaf, then done(code,
 * message); no compensating table runs. */
void step_driver_abort(StepDriver *d, int code, const char *message);

void step_driver_done(StepDriver *d);
void step_driver_again(StepDriver *d);
void step_driver_fail(StepDriver *d, int code, const char *message);

/* Resets the poll interval to its minimum (after an escalation, say). */
void step_driver_poll_fast(StepDriver *d);

bool step_driver_running(const StepDriver *d);
/* The leaf running now and the table it belongs to (the innermost); NULL when idle. */
const StepDef *step_driver_step(const StepDriver *d);
const StepTable *step_driver_table(const StepDriver *d);
/* The outermost table, as given to step_driver_run(). */
const StepTable *step_driver_outer_table(const StepDriver *d);
/* The innermost table is a compensation (some table's .on_fail) running; then
 * the failure that started it. */
bool step_driver_compensating(const StepDriver *d);
const char *step_driver_failure_message(const StepDriver *d);
const char *step_driver_table_name(const StepDriver *d);      /* innermost; "" when idle */
const char *step_driver_step_name(const StepDriver *d);       /* "" when idle */
const char *step_driver_step_description(const StepDriver *d);
size_t step_driver_step_index(const StepDriver *d);           /* in the innermost table */
size_t step_driver_n_steps(const StepDriver *d);              /* of the innermost table */
/* 0–100: the share of the innermost table's steps completed. */
unsigned step_driver_progress(const StepDriver *d);
/* CLOCK_MONOTONIC µs: when the current leaf began, its deadline (0 = none). */
uint64_t step_driver_step_started(const StepDriver *d);
uint64_t step_driver_step_deadline(const StepDriver *d);
/* "stopping the old VM: 12 s of 60 s" (or "… : 12 s" without a deadline). Caller frees. */
char *step_driver_describe(const StepDriver *d);
