/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <sys/types.h>

#include <systemd/sd-event.h>

#include "clients/step-backend.h"

/* The step runner's fork back end: a child of this process on sd-event
 * (sd_event_add_child). Everything it needs is prepared before fork(): the
 * program's path, argv, the environment, the user's uid, primary gid and
 * supplementary groups. After fork() only async-signal-safe calls: default
 * signal dispositions and an empty mask, its own session (setsid: no
 * controlling terminal to write to or push input into), umask 022, stdin from
 * /dev/null and the two pipes, every other fd closed on exec,
 * setgroups/setresgid/setresuid to the user, PR_SET_NO_NEW_PRIVS, chdir (as
 * the user), execve. A failure there is reported with the step's result
 * ("could not be started: cannot change to /repo: Permission denied").
 * The timeout sends SIGTERM to the whole group, SIGKILL after the grace. */

typedef struct Process Process;

typedef void (*process_done_cb)(Process *p, const StepResult *result, void *userdata);

/* -EINVAL on bad options. Never calls cb synchronously. Blocks SIGCHLD in
 * the calling thread (sd_event_add_child needs it). */
int process_spawn(sd_event *event, const StepSpec *spec, process_done_cb cb, void *userdata, Process **ret);

/* SIGKILL to the whole group; cb never fires. The child is still reaped by
 * the loop, then freed. NULL is fine. */
void process_cancel(Process *p);

pid_t process_pid(const Process *p);
