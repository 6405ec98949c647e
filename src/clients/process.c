/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "clients/process.h"
#include "clients/step-output.h"
#include "shared/log.h"
#include "shared/macro.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

/* 32-bit ids where the architecture has both */
#ifdef SYS_setgroups32
#define SYS_SETGROUPS SYS_setgroups32
#define SYS_SETRESGID SYS_setresgid32
#define SYS_SETRESUID SYS_setresuid32
#else
#define SYS_SETGROUPS SYS_setgroups
#define SYS_SETRESGID SYS_setresgid
#define SYS_SETRESUID SYS_setresuid
#endif

/* Where the child stopped before exec, reported through a close-on-exec pipe. */
typedef enum ChildStage {
        STAGE_SESSION = 1,
        STAGE_STDIO,
        STAGE_GROUPS,
        STAGE_GID,
        STAGE_UID,
        STAGE_NO_NEW_PRIVS,
        STAGE_CHDIR,
        STAGE_EXEC,
} ChildStage;

typedef struct ChildReport {
        int32_t stage;
        int32_t error;
} ChildReport;

/* Everything the child needs, prepared before fork(). */
typedef struct ChildPlan {
        const char *path;
        char *const *argv;
        char *const *envp;
        const char *cwd;
        int devnull, out, err, report;
        bool switch_user;        /* we are root: setgroups, setresgid, setresuid */
        bool cannot_switch;      /* not root and asked for another uid */
        uid_t uid;
        gid_t gid;
        const gid_t *groups;
        size_t n_groups;
        int max_fd;              /* for the close-on-exec loop when close_range() is missing */
} ChildPlan;

struct Process {
        sd_event *event;
        char *name;
        char *user;
        char *cwd;
        char *path;
        pid_t pid;
        sd_event_source *child;
        sd_event_source *timer;
        StepOutput *out;
        int report;
        uint64_t timeout_usec, grace_usec;
        uint64_t started;
        bool timed_out, killed, exited;
        siginfo_t si;
        char *failure;           /* what the child reported before exec */
        process_done_cb cb;
        void *userdata;
};

static uint64_t mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void process_free(Process *p) {
        if (!p)
                return;
        step_output_free(p->out);
        p->timer = sd_event_source_disable_unref(p->timer);
        p->child = sd_event_source_disable_unref(p->child);
        if (p->report >= 0)
                close(p->report);
        sd_event_unref(p->event);
        g_free(p->name);
        g_free(p->user);
        g_free(p->cwd);
        g_free(p->path);
        g_free(p->failure);
        g_free(p);
}

pid_t process_pid(const Process *p) {
        return p ? p->pid : 0;
}

/* ---- the child: async-signal-safe calls only ---- */

_Noreturn static void child_fail(const ChildPlan *c, ChildStage stage, int error) {
        ChildReport rep = { .stage = stage, .error = error };
        (void) !write(c->report, &rep, sizeof rep);
        _exit(127);
}

_Noreturn static void child_exec(const ChildPlan *c) {
        struct sigaction dfl = { .sa_handler = SIG_DFL };
        for (int s = 1; s < NSIG; s++)
                if (s != SIGKILL && s != SIGSTOP)
                        (void) sigaction(s, &dfl, NULL);
        sigset_t none;
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        /* Its own session, not only its own group: without a controlling
         * terminal, the user's program can neither write to nor push input
         * (TIOCSTI) into the terminal of a daemon started from root's shell.
         * The group id is still the child's pid. */
        if (setsid() < 0)
                child_fail(c, STAGE_SESSION, errno);
        (void) umask(022);

        if (dup2(c->devnull, STDIN_FILENO) < 0 || dup2(c->out, STDOUT_FILENO) < 0 || dup2(c->err, STDERR_FILENO) < 0)
                child_fail(c, STAGE_STDIO, errno);
        /* Nothing else survives exec (the report pipe is closed by it too). */
        if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
                for (int fd = 3; fd < c->max_fd; fd++)
                        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);

        if (c->cannot_switch)
                child_fail(c, STAGE_UID, EPERM);
        if (c->switch_user) {
                if (syscall(SYS_SETGROUPS, c->n_groups, c->groups) < 0)
                        child_fail(c, STAGE_GROUPS, errno);
                if (syscall(SYS_SETRESGID, c->gid, c->gid, c->gid) < 0)
                        child_fail(c, STAGE_GID, errno);
                if (syscall(SYS_SETRESUID, c->uid, c->uid, c->uid) < 0)
                        child_fail(c, STAGE_UID, errno);
        }
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                child_fail(c, STAGE_NO_NEW_PRIVS, errno);
        /* As the user: a directory it may not enter is an error, not a favour. */
        if (chdir(c->cwd) < 0)
                child_fail(c, STAGE_CHDIR, errno);
        execve(c->path, c->argv, c->envp);
        child_fail(c, STAGE_EXEC, errno);
}

/* ---- the parent ---- */

static void kill_group(pid_t pid, int sig) {
        if (kill(-pid, sig) < 0 && errno == ESRCH)
                (void) kill(pid, sig); /* before its setsid() */
}

static char *describe_report(Process *p, const ChildReport *rep) {
        const char *e = g_strerror(rep->error);
        switch (rep->stage) {
        case STAGE_SESSION:
                return g_strdup_printf("cannot start a new session: %s", e);
        case STAGE_STDIO:
                return g_strdup_printf("cannot set up stdin/stdout/stderr: %s", e);
        case STAGE_GROUPS:
                return g_strdup_printf("cannot set the groups of user %s: %s", p->user, e);
        case STAGE_GID:
        case STAGE_UID:
                return g_strdup_printf("cannot switch to user %s: %s", p->user, e);
        case STAGE_NO_NEW_PRIVS:
                return g_strdup_printf("cannot set no_new_privs: %s", e);
        case STAGE_CHDIR:
                return g_strdup_printf("cannot change to %s as %s: %s", p->cwd, p->user, e);
        default:
                return g_strdup_printf("cannot execute %s as %s: %s", p->path, p->user, e);
        }
}

static void finish(Process *p) {
        StepResult res = {
                .timed_out = p->timed_out,
                .duration_usec = mono_usec() - p->started,
        };
        step_output_fill(p->out, &res);
        ChildReport rep;
        if (p->report >= 0 && read(p->report, &rep, sizeof rep) == (ssize_t) sizeof rep && rep.error > 0) {
                p->failure = describe_report(p, &rep);
                log_warning("%s: %s.", p->name, p->failure);
                res.error = -rep.error;
                res.output = p->failure;
                res.data = "";
        } else if (p->si.si_code == CLD_EXITED)
                res.exit_status = p->si.si_status;
        else
                res.signal = p->si.si_status;
        process_done_cb cb = p->cb;
        p->cb = NULL;
        if (cb)
                cb(p, &res, p->userdata);
        process_free(p);
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Process *p = userdata;
        p->si = *si;
        p->exited = true;
        p->timer = sd_event_source_disable_unref(p->timer);
        /* Nothing of the step outlives it, as with a transient unit's
         * KillMode=control-group: what it left in its session (a background
         * job, a forgotten daemon) goes with it. The leader is a zombie until
         * this returns, so its group id is ours. (A grandchild that made a
         * session of its own escapes here; a unit's cgroup holds it.) */
        (void) kill(-p->pid, SIGKILL);
        /* A grandchild may keep the pipes open: take what is there and stop. */
        step_output_finish(p->out);
        finish(p);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Process *p = userdata;
        if (!p->timed_out) {
                p->timed_out = true;
                log_warning("%s: timed out, terminating its process group %d.", p->name, (int) p->pid);
                kill_group(p->pid, SIGTERM);
                kill_group(p->pid, SIGCONT);
                (void) sd_event_source_set_time_relative(s, p->grace_usec);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        log_warning("%s: still running after SIGTERM, killing its process group %d.", p->name, (int) p->pid);
        kill_group(p->pid, SIGKILL);
        return 0;
}

void process_cancel(Process *p) {
        if (!p)
                return;
        p->cb = NULL;
        p->killed = true;
        kill_group(p->pid, SIGKILL);
        /* The child source stays until the loop reaps it; then p is freed. */
}

static void close_pair(int fds[2]) {
        for (int i = 0; i < 2; i++)
                if (fds[i] >= 0) {
                        close(fds[i]);
                        fds[i] = -1;
                }
}

/* pipe2(O_CLOEXEC) with both ends above stdio, so dup2() in the child never
 * lands on one of them. */
static int pipe_above_stdio(int fds[2]) {
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        for (int i = 0; i < 2; i++)
                if (fds[i] < 3) {
                        int n = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                        int r = -errno;
                        close(fds[i]);
                        fds[i] = n;
                        if (n < 0) {
                                close_pair(fds);
                                return r;
                        }
                }
        return 0;
}

int process_spawn(sd_event *event, const StepSpec *spec, process_done_cb cb, void *userdata, Process **ret) {
        if (!spec->path || spec->path[0] != '/' || !spec->argv || !spec->argv[0] || !spec->envp || !spec->cwd)
                return -EINVAL;

        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        (void) sigprocmask(SIG_BLOCK, &chld, NULL);

        int out[2] = { -1, -1 }, err[2] = { -1, -1 }, report[2] = { -1, -1 };
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        int r = devnull < 0 ? -errno : 0;
        if (r >= 0)
                r = pipe_above_stdio(out);
        if (r >= 0)
                r = pipe_above_stdio(err);
        if (r >= 0)
                r = pipe_above_stdio(report);
        if (r < 0) {
                close_pair(out);
                close_pair(err);
                close_pair(report);
                if (devnull >= 0)
                        close(devnull);
                return r;
        }

        struct rlimit rl = {};
        (void) getrlimit(RLIMIT_NOFILE, &rl);
        const StepUser *user = spec->user;
        ChildPlan plan = {
                .path = spec->path,
                .argv = spec->argv,
                .envp = spec->envp,
                .cwd = spec->cwd,
                .devnull = devnull,
                .out = out[1],
                .err = err[1],
                .report = report[1],
                .switch_user = user && geteuid() == 0,
                .cannot_switch = user && geteuid() != 0 && (user->uid != getuid() || user->uid != geteuid()),
                .uid = user ? user->uid : 0,
                .gid = user ? user->gid : 0,
                .groups = user ? user->groups : NULL,
                .n_groups = user ? (size_t) user->n_groups : 0,
                .max_fd = (int) MIN(rl.rlim_cur, (rlim_t) 65536),
        };

        pid_t pid = fork();
        if (pid == 0)
                child_exec(&plan);
        r = pid < 0 ? -errno : 0;
        close(devnull);
        close(out[1]);
        close(err[1]);
        close(report[1]);
        if (r < 0) {
                close(out[0]);
                close(err[0]);
                close(report[0]);
                return log_warning_errno(r, "%s: cannot fork: %m", spec->name);
        }
        /* No setpgid(pid, pid) here: a group leader cannot setsid(). Until the
         * child's setsid() the group does not exist; kill_group() then
         * signals the child alone, which has no children yet. */

        Process *p = g_new0(Process, 1);
        p->event = sd_event_ref(event);
        p->name = g_strdup(spec->name ? spec->name : spec->argv[0]);
        p->user = g_strdup(user ? user->name : "the launcher's user");
        p->cwd = g_strdup(spec->cwd);
        p->path = g_strdup(spec->path);
        p->pid = pid;
        p->report = report[0];
        (void) fcntl(p->report, F_SETFL, O_NONBLOCK);
        p->timeout_usec = spec->timeout_usec;
        p->grace_usec = spec->kill_grace_usec ? spec->kill_grace_usec : STEP_KILL_GRACE_USEC;
        p->started = mono_usec();
        p->cb = cb;
        p->userdata = userdata;

        r = step_output_new(event, p->name, spec->quiet, out[0], err[0], NULL, NULL, &p->out);
        if (r >= 0)
                r = sd_event_add_child(event, &p->child, pid, WEXITED, on_child, p);
        if (r >= 0 && spec->timeout_usec > 0)
                r = sd_event_add_time_relative(event, &p->timer, CLOCK_MONOTONIC, spec->timeout_usec,
                                               10 * USEC_PER_MSEC, on_timer, p);
        if (r < 0) {
                (void) kill(-pid, SIGKILL);
                (void) kill(pid, SIGKILL);
                if (!p->child) {
                        /* step_output_new() closed the read ends if it failed */
                        (void) waitpid(pid, NULL, 0); /* just killed: returns at once */
                        process_free(p);
                        return r;
                }
                p->cb = NULL;
                p->killed = true;
                return r; /* reaped by the loop, then freed */
        }
        log_debug("%s: started %s as pid %d (user %s).", p->name, spec->path, (int) pid, p->user);
        if (ret)
                *ret = p;
        return 0;
}
