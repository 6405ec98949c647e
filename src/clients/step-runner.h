/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <glib.h>
#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

/* The Updater's commands (git, build, restart and health commands) run as
 * the repository's user, never as root, by one of two back ends chosen once,
 * in step_runner_new():
 *
 *   systemd  a transient service unit through org.freedesktop.systemd1
 *            (StartTransientUnit with User=, WorkingDirectory=, RuntimeMaxUSec=,
 *            KillMode=control-group, NoNewPrivileges=yes, UMask=0022,
 *            CollectMode=inactive-or-failed, LogExtraFields=PLATFORM_LAUNCHER_STEP=);
 *            its result is read from the unit (Result, ExecMainCode, ExecMainStatus);
 *   fork     a child of this process that drops to the user before exec (uid,
 *            primary gid and supplementary groups resolved before the fork,
 *            no_new_privs, its own session, umask 022, no inherited fd).
 *
 * Either way argv only (never a shell), a minimal environment (PATH, HOME,
 * USER, LANG plus what the caller adds), stdin from /dev/null, stdout and
 * stderr read through pipes on the loop in bounded slices (stdout is data:
 * git's commit ids and file names), and a timeout that kills everything the
 * step started. Callers never know which back end ran a step. */

typedef enum StepRunnerBackend {
        STEP_RUNNER_AUTO,       /* systemd when sd_booted(), else fork */
        STEP_RUNNER_SYSTEMD,
        STEP_RUNNER_FORK,
        _STEP_RUNNER_MAX,
        _STEP_RUNNER_INVALID = -1,
} StepRunnerBackend;

const char *step_runner_backend_to_string(StepRunnerBackend b);
StepRunnerBackend step_runner_backend_from_string(const char *s);

#define STEP_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define STEP_OUTPUT_TAIL_MAX (64u * 1024u)   /* the end of stdout+stderr kept per step */
#define STEP_OUTPUT_DATA_MAX (64u * 1024u)   /* the start of stdout kept per step */
#define STEP_LINE_MAX 1024u                  /* longer lines are logged in pieces */
#define STEP_KILL_GRACE_USEC (5ULL * 1000000ULL)

/* Who runs a step, resolved once (NSS) before anything is started. */
typedef struct StepUser {
        char *name;
        uid_t uid;
        gid_t gid;
        gid_t *groups;          /* supplementary groups (the primary one included) */
        int n_groups;
        char *home;
} StepUser;

/* -ESRCH: no such user. */
int step_user_lookup(const char *name, StepUser **ret);
int step_user_lookup_uid(uid_t uid, StepUser **ret);
StepUser *step_user_copy(const StepUser *u);
void step_user_free(StepUser *u);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(StepUser, step_user_free)

typedef struct StepOptions {
        const char *name;       /* the step, for the log and PLATFORM_LAUNCHER_STEP=: "git fetch", "build" */
        char *const *argv;      /* argv[0]: an absolute path, a name looked up in STEP_PATH, or a path
                                 * relative to cwd ("./build.sh", "scripts/x") */
        const char *cwd;        /* the working directory (the repository); required */
        const StepUser *user;   /* required */
        char *const *extra_env; /* NULL or "KEY=VALUE" entries added to PATH, HOME, USER, LANG */
        uint64_t timeout_usec;  /* 0 = none */
        uint64_t kill_grace_usec; /* SIGTERM → SIGKILL; 0 = STEP_KILL_GRACE_USEC */
        bool quiet;             /* output logged at debug level only */
        bool inspect_only;      /* reads metadata only (the owner probe): systemd adds a read-only
                                 * sandbox (ProtectSystem=strict, ProtectHome=read-only) without network
                                 * and with CAP_DAC_READ_SEARCH only */
} StepOptions;

typedef struct StepResult {
        int error;              /* < 0: it could not be started at all; output says why */
        int exit_status;        /* valid when signal == 0 and error == 0 */
        int signal;             /* the signal that ended it, 0 if it exited */
        bool timed_out;         /* killed at the deadline */
        const char *output;     /* the last STEP_OUTPUT_TAIL_MAX bytes of stdout+stderr, valid UTF-8 */
        const char *data;       /* the first STEP_OUTPUT_DATA_MAX bytes of stdout, valid UTF-8 */
        uint64_t output_bytes;  /* all it printed, kept or not */
        uint64_t duration_usec;
} StepResult;

/* Success = started, exited 0, not timed out. */
static inline bool step_result_ok(const StepResult *r) {
        return r->error == 0 && r->signal == 0 && r->exit_status == 0 && !r->timed_out;
}

/* "exited with status 3", "killed by signal 9", "timed out after 2 s",
 * "could not be started: ...". Valid UTF-8. Caller frees. */
char *step_result_describe(const StepResult *r, uint64_t timeout_usec);

typedef struct StepRunner StepRunner;
typedef struct StepRun StepRun;

/* Called once when the step is over and its output read, unless cancelled.
 * The run is freed after the callback returns. */
typedef void (*step_done_cb)(StepRun *run, const StepResult *result, void *userdata);

/* bus: the system bus (the systemd back end's way to the manager); may be
 * NULL for the fork back end. */
int step_runner_new(sd_event *event, sd_bus *bus, StepRunnerBackend backend, StepRunner **ret);
void step_runner_free(StepRunner *r);
/* The back end in use (never AUTO). */
StepRunnerBackend step_runner_backend(const StepRunner *r);

/* -ENOENT when argv[0] is not found, -EINVAL on bad options. Never calls cb
 * synchronously. */
int step_runner_run(StepRunner *r, const StepOptions *o, step_done_cb cb, void *userdata, StepRun **ret);
/* Kills everything the step started; cb never fires. NULL is fine. */
void step_run_cancel(StepRun *run);

/* git with a fixed, non-interactive environment (no prompts, no pager, no
 * system or global config, no hooks): "git -C repo -c ... args...", run as
 * user in repo. git trusts the repository only because the user owns it
 * (safe.directory is never set). */
int step_runner_git(StepRunner *r, const char *repo, const StepUser *user, const char *name, char *const *args,
                    uint64_t timeout_usec, step_done_cb cb, void *userdata, StepRun **ret);
char **step_git_argv(const char *repo, char *const *args);
char **step_git_env(void);

/* Where argv[0] is found: an absolute path as is, a name in STEP_PATH, a
 * relative path under cwd. NULL when not found (a regular file with an
 * execute bit); *ret_where (if given) then says where it was looked for. */
char *step_find_executable(const char *argv0, const char *cwd, char **ret_where);

/* Text from a child made fit for the bus, the journal and the history:
 * invalid UTF-8 becomes U+FFFD, control characters other than newline and
 * tab (C0, DEL and C1: U+009B is CSI to some terminals) become '?', and at most max bytes are kept (cut at a character, with
 * "…" when cut). Caller frees. */
char *step_text_sanitize(const char *s, size_t len, size_t max);
