/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>

/* Child processes on sd-event (updater.md: git, build, restart and health
 * commands). argv only, never a shell; a clean fixed environment; stdin from
 * /dev/null; its own process group; stdout and stderr forwarded line by line
 * to the log with the step name; a timeout that kills the whole group (SIGTERM,
 * then SIGKILL after a grace). Nothing here blocks the loop. */

typedef struct Process Process;

#define PROCESS_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define PROCESS_LINE_MAX 1024u          /* longer lines are logged in pieces */
#define PROCESS_TAIL_MAX 4096u          /* output kept for the error message */
#define PROCESS_KILL_GRACE_USEC (5ULL * 1000000ULL)

typedef struct ProcessOptions {
        const char *name;               /* step name for the log: "build", "git fetch" */
        char *const *argv;              /* argv[0] is a path or a name looked up in PROCESS_PATH */
        const char *cwd;                /* NULL = "/" */
        const char *home;               /* $HOME; NULL = "/" */
        char *const *extra_env;         /* NULL or "KEY=VALUE" entries added to the fixed environment */
        uint64_t timeout_usec;          /* 0 = none */
        uint64_t kill_grace_usec;       /* SIGTERM → SIGKILL; 0 = PROCESS_KILL_GRACE_USEC */
        bool quiet;                     /* log output at debug level only */
} ProcessOptions;

typedef struct ProcessResult {
        int exit_status;                /* valid when signal == 0 */
        int signal;                     /* the signal that ended it, 0 if it exited */
        bool timed_out;                 /* the group was killed at the deadline */
        const char *output;             /* the last PROCESS_TAIL_MAX bytes of stdout+stderr, NUL-terminated */
        uint64_t duration_usec;
} ProcessResult;

/* Success = exited 0, not timed out. */
static inline bool process_result_ok(const ProcessResult *r) {
        return r->signal == 0 && r->exit_status == 0 && !r->timed_out;
}

/* "exited with status 3", "killed by signal 9", "timed out after 2 s". Caller frees. */
char *process_result_describe(const ProcessResult *r, uint64_t timeout_usec);

/* Called once when the child is gone and its output read, unless cancelled.
 * The process is freed after the callback returns. */
typedef void (*process_done_cb)(Process *p, const ProcessResult *result, void *userdata);

/* -ENOENT when argv[0] is not found, -EINVAL on bad options. Never calls cb
 * synchronously. Blocks SIGCHLD in the calling thread (sd_event_add_child needs it). */
int process_spawn(sd_event *event, const ProcessOptions *o, process_done_cb cb, void *userdata, Process **ret);

/* SIGKILL to the whole group; cb never fires. The child is still reaped by the
 * loop. NULL is fine. */
void process_cancel(Process *p);

pid_t process_pid(const Process *p);

/* git with a fixed, non-interactive environment (no prompts, no pager, no
 * system or global config, no hooks, the repository trusted whoever owns it):
 * runs "git -C repo -c ... args...". */
int process_spawn_git(sd_event *event, const char *repo, const char *name, char *const *args, uint64_t timeout_usec,
                      process_done_cb cb, void *userdata, Process **ret);

/* The argv and environment additions process_spawn_git uses (for tests and the
 * bench). Caller frees with g_strfreev. */
char **process_git_argv(const char *repo, char *const *args);
char **process_git_env(void);
