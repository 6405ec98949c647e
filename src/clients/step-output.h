/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "clients/step-runner.h"

/* A step's stdout and stderr, read from two pipes on the loop. Shared by
 * both back ends of the step runner.
 *
 * A child printing as fast as it can must not starve the loop: each pipe is
 * read at idle priority (bus calls and timers go first), at most
 * STEP_OUTPUT_SLICE bytes per loop iteration and at most
 * STEP_OUTPUT_BYTES_PER_SEC (beyond that the pipes are not read until the
 * next tenth of a second: the child waits on a full pipe, the loop does
 * not); memory stays bounded (the
 * last STEP_OUTPUT_TAIL_MAX bytes of everything, the first
 * STEP_OUTPUT_DATA_MAX bytes of stdout, plus byte counts); lines go to the
 * log with PLATFORM_LAUNCHER_STEP=<name>, at most STEP_OUTPUT_LINES_PER_SEC
 * per second (the drop is counted and said). */

#define STEP_OUTPUT_SLICE (64u * 1024u)
#define STEP_OUTPUT_LINES_PER_SEC 50u
#define STEP_OUTPUT_BYTES_PER_SEC (4u * 1024u * 1024u)

typedef struct StepOutput StepOutput;

/* Both pipes reached end of file. */
typedef void (*step_output_eof_cb)(StepOutput *o, void *userdata);

/* Takes the read ends (made non-blocking here). */
int step_output_new(sd_event *event, const char *name, bool quiet, int out_fd, int err_fd, step_output_eof_cb cb,
                    void *userdata, StepOutput **ret);
bool step_output_eof(const StepOutput *o);
/* The step is over: one last bounded read of what the pipes hold, then
 * both are closed (a grandchild keeping a pipe open cannot hold us). */
void step_output_finish(StepOutput *o);
/* Sets res->output, res->data and res->output_bytes; valid until the next
 * call or step_output_free. */
void step_output_fill(StepOutput *o, StepResult *res);
void step_output_free(StepOutput *o);
