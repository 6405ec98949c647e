/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "clients/process.h"
#include "shared/log.h"
#include "shared/macro.h"

struct Process {
        sd_event *event;
        char *name;
        pid_t pid;
        bool quiet;
        sd_event_source *child;
        sd_event_source *out[2];        /* stdout, stderr */
        int fd[2];
        GString *line[2];
        GString *tail;
        sd_event_source *timer;
        uint64_t timeout_usec, grace_usec;
        uint64_t started;
        bool timed_out, killed;
        bool exited;
        siginfo_t si;
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
        for (int i = 0; i < 2; i++) {
                p->out[i] = sd_event_source_disable_unref(p->out[i]);
                if (p->fd[i] >= 0)
                        close(p->fd[i]);
                if (p->line[i])
                        g_string_free(p->line[i], TRUE);
        }
        p->timer = sd_event_source_disable_unref(p->timer);
        p->child = sd_event_source_disable_unref(p->child);
        if (p->tail)
                g_string_free(p->tail, TRUE);
        sd_event_unref(p->event);
        g_free(p->name);
        g_free(p);
}

pid_t process_pid(const Process *p) {
        return p ? p->pid : 0;
}

char *process_result_describe(const ProcessResult *r, uint64_t timeout_usec) {
        if (r->timed_out && timeout_usec < 10 * USEC_PER_SEC)
                return g_strdup_printf("timed out after %.1f s (process group killed)", (double) timeout_usec / USEC_PER_SEC);
        if (r->timed_out)
                return g_strdup_printf("timed out after %llu s (process group killed)",
                                       (unsigned long long) ((timeout_usec + USEC_PER_SEC / 2) / USEC_PER_SEC));
        if (r->signal)
                return g_strdup_printf("killed by signal %d (%s)", r->signal, strsignal(r->signal));
        return g_strdup_printf("exited with status %d", r->exit_status);
}

static void tail_append(Process *p, const char *s, size_t n) {
        g_string_append_len(p->tail, s, (gssize) n);
        if (p->tail->len > 2 * PROCESS_TAIL_MAX)
                g_string_erase(p->tail, 0, (gssize) (p->tail->len - PROCESS_TAIL_MAX));
}

static void emit_line(Process *p, int stream) {
        GString *l = p->line[stream];
        for (size_t i = 0; i < l->len; i++)
                if ((unsigned char) l->str[i] < 0x20 && l->str[i] != '\t')
                        l->str[i] = '?';
        log_full(p->quiet ? LOG_DEBUG : (stream ? LOG_NOTICE : LOG_INFO), "%s: %s", p->name, l->str);
        g_string_truncate(l, 0);
}

static void feed(Process *p, int stream, const char *buf, size_t n) {
        tail_append(p, buf, n);
        for (size_t i = 0; i < n; i++) {
                if (buf[i] == '\n') {
                        emit_line(p, stream);
                        continue;
                }
                g_string_append_c(p->line[stream], buf[i]);
                if (p->line[stream]->len >= PROCESS_LINE_MAX)
                        emit_line(p, stream);
        }
}

/* Reads what is there; returns true at EOF or error (the stream is closed). */
static bool drain(Process *p, int stream) {
        char buf[4096];
        for (;;) {
                ssize_t n = read(p->fd[stream], buf, sizeof buf);
                if (n > 0) {
                        feed(p, stream, buf, (size_t) n);
                        continue;
                }
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        return false;
                break;
        }
        if (p->line[stream]->len > 0)
                emit_line(p, stream);
        p->out[stream] = sd_event_source_disable_unref(p->out[stream]);
        close(p->fd[stream]);
        p->fd[stream] = -1;
        return true;
}

static void maybe_finish(Process *p) {
        if (!p->exited || p->fd[0] >= 0 || p->fd[1] >= 0)
                return;
        ProcessResult res = {
                .timed_out = p->timed_out,
                .output = p->tail->str,
                .duration_usec = mono_usec() - p->started,
        };
        if (p->si.si_code == CLD_EXITED)
                res.exit_status = p->si.si_status;
        else
                res.signal = p->si.si_status;
        if (p->tail->len > PROCESS_TAIL_MAX)
                res.output = p->tail->str + p->tail->len - PROCESS_TAIL_MAX;
        process_done_cb cb = p->cb;
        p->cb = NULL;
        if (cb)
                cb(p, &res, p->userdata);
        process_free(p);
}

static int on_output(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Process *p = userdata;
        int stream = s == p->out[0] ? 0 : 1;
        if (drain(p, stream))
                maybe_finish(p);
        return 0;
}

static int on_child(sd_event_source *s, const siginfo_t *si, void *userdata) {
        Process *p = userdata;
        p->si = *si;
        p->exited = true;
        p->child = sd_event_source_disable_unref(p->child);
        p->timer = sd_event_source_disable_unref(p->timer);
        /* A grandchild may keep the pipes open: take what is there and stop
         * reading; after a timeout or a cancel nothing of the group survives. */
        if (p->timed_out || p->killed)
                (void) kill(-p->pid, SIGKILL);
        for (int i = 0; i < 2; i++)
                if (p->fd[i] >= 0) {
                        (void) drain(p, i);
                        if (p->fd[i] >= 0) {
                                if (p->line[i]->len > 0)
                                        emit_line(p, i);
                                p->out[i] = sd_event_source_disable_unref(p->out[i]);
                                close(p->fd[i]);
                                p->fd[i] = -1;
                        }
                }
        maybe_finish(p);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Process *p = userdata;
        if (!p->timed_out) {
                p->timed_out = true;
                log_warning("%s: timed out, terminating its process group %d.", p->name, (int) p->pid);
                (void) kill(-p->pid, SIGTERM);
                (void) kill(-p->pid, SIGCONT);
                (void) sd_event_source_set_time_relative(s, p->grace_usec);
                (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
                return 0;
        }
        log_warning("%s: still running after SIGTERM, killing its process group %d.", p->name, (int) p->pid);
        (void) kill(-p->pid, SIGKILL);
        return 0;
}

void process_cancel(Process *p) {
        if (!p)
                return;
        p->cb = NULL;
        p->killed = true;
        (void) kill(-p->pid, SIGKILL);
        /* The child source stays until the loop reaps it; then p is freed. */
        if (p->exited)
                maybe_finish(p);
}

/* Looks argv[0] up in PROCESS_PATH unless it names a path. */
static char *find_executable(const char *name) {
        if (strchr(name, '/'))
                return access(name, X_OK) == 0 ? g_strdup(name) : NULL;
        g_auto(GStrv) dirs = g_strsplit(PROCESS_PATH, ":", -1);
        for (char **d = dirs; *d; d++) {
                g_autofree char *f = g_build_filename(*d, name, NULL);
                struct stat st;
                if (stat(f, &st) == 0 && S_ISREG(st.st_mode) && access(f, X_OK) == 0)
                        return TAKE_PTR(f);
        }
        return NULL;
}

static char **build_env(const ProcessOptions *o) {
        GPtrArray *a = g_ptr_array_new();
        g_ptr_array_add(a, g_strdup("PATH=" PROCESS_PATH));
        g_ptr_array_add(a, g_strdup("LANG=C.UTF-8"));
        g_ptr_array_add(a, g_strdup_printf("HOME=%s", o->home ? o->home : "/"));
        for (char *const *e = o->extra_env; e && *e; e++)
                g_ptr_array_add(a, g_strdup(*e));
        g_ptr_array_add(a, NULL);
        return (char **) g_ptr_array_free(a, FALSE);
}

/* posix_spawn: glibc's clone(CLONE_VM|CLONE_VFORK) costs the daemon far less
 * than a fork() copying its page tables, and nothing runs in the child but
 * these actions: stdin from /dev/null, the pipes, no other fd, the working
 * directory, default signals, an empty mask, a process group of its own. */
static int spawn_child(const char *path, char *const *argv, char **envp, const char *cwd, int out, int err,
                       pid_t *ret_pid) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t none, all;
        int r;

        sigemptyset(&none);
        sigfillset(&all);
        r = posix_spawn_file_actions_init(&fa);
        if (r != 0)
                return -r;
        r = posix_spawnattr_init(&attr);
        if (r != 0) {
                posix_spawn_file_actions_destroy(&fa);
                return -r;
        }
        if (r == 0)
                r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, out, 1);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, err, 2);
        if (r == 0)
                r = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
        if (r == 0)
                r = posix_spawn_file_actions_addchdir_np(&fa, cwd);
        if (r == 0)
                r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                                            POSIX_SPAWN_SETSIGDEF);
        if (r == 0)
                r = posix_spawnattr_setpgroup(&attr, 0);
        if (r == 0)
                r = posix_spawnattr_setsigmask(&attr, &none);
        if (r == 0)
                r = posix_spawnattr_setsigdefault(&attr, &all);
        if (r == 0)
                r = posix_spawn(ret_pid, path, &fa, &attr, argv, envp);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

int process_spawn(sd_event *event, const ProcessOptions *o, process_done_cb cb, void *userdata, Process **ret) {
        if (!o->argv || !o->argv[0] || !o->argv[0][0])
                return -EINVAL;

        g_autofree char *path = find_executable(o->argv[0]);
        if (!path)
                return log_warning_errno(ENOENT, "%s: %s not found (PATH %s).", o->name ? o->name : o->argv[0],
                                         o->argv[0], PROCESS_PATH);

        sigset_t chld;
        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        (void) sigprocmask(SIG_BLOCK, &chld, NULL);

        int pipes[2][2] = { { -1, -1 }, { -1, -1 } };
        for (int i = 0; i < 2; i++)
                if (pipe2(pipes[i], O_CLOEXEC) < 0) {
                        int r = -errno;
                        for (int k = 0; k < 2; k++)
                                for (int j = 0; j < 2; j++)
                                        if (pipes[k][j] >= 0)
                                                close(pipes[k][j]);
                        return r;
                }

        g_auto(GStrv) envp = build_env(o);
        const char *cwd = o->cwd ? o->cwd : "/";

        pid_t pid = 0;
        int sr = spawn_child(path, o->argv, envp, cwd, pipes[0][1], pipes[1][1], &pid);
        close(pipes[0][1]);
        close(pipes[1][1]);
        if (sr < 0) {
                close(pipes[0][0]);
                close(pipes[1][0]);
                /* glibc reports a failed exec or chdir here */
                return log_warning_errno(sr, "%s: cannot start %s in %s: %m", o->name ? o->name : o->argv[0], path,
                                         cwd);
        }

        Process *p = g_new0(Process, 1);
        p->event = sd_event_ref(event);
        p->name = g_strdup(o->name ? o->name : o->argv[0]);
        p->pid = pid;
        p->quiet = o->quiet;
        p->timeout_usec = o->timeout_usec;
        p->grace_usec = o->kill_grace_usec ? o->kill_grace_usec : PROCESS_KILL_GRACE_USEC;
        p->started = mono_usec();
        p->tail = g_string_new(NULL);
        p->cb = cb;
        p->userdata = userdata;
        for (int i = 0; i < 2; i++) {
                p->fd[i] = pipes[i][0];
                p->line[i] = g_string_new(NULL);
                (void) fcntl(p->fd[i], F_SETFL, fcntl(p->fd[i], F_GETFL) | O_NONBLOCK);
        }

        int r = sd_event_add_child(event, &p->child, pid, WEXITED, on_child, p);
        for (int i = 0; r >= 0 && i < 2; i++)
                r = sd_event_add_io(event, &p->out[i], p->fd[i], EPOLLIN, on_output, p);
        if (r >= 0 && o->timeout_usec > 0)
                r = sd_event_add_time_relative(event, &p->timer, CLOCK_MONOTONIC, o->timeout_usec, 10 * USEC_PER_MSEC,
                                               on_timer, p);
        if (r < 0) {
                (void) kill(-pid, SIGKILL);
                if (!p->child)
                        (void) waitpid(pid, NULL, 0); /* just killed: returns at once */
                else {
                        p->cb = NULL;
                        p->killed = true;
                        return r; /* reaped by the loop, then freed */
                }
                process_free(p);
                return r;
        }
        log_debug("%s: started %s as pid %d.", p->name, path, (int) pid);
        if (ret)
                *ret = p;
        return 0;
}

char **process_git_argv(const char *repo, char *const *args) {
        GPtrArray *a = g_ptr_array_new();
        g_ptr_array_add(a, g_strdup("git"));
        g_ptr_array_add(a, g_strdup("-C"));
        g_ptr_array_add(a, g_strdup(repo));
        g_ptr_array_add(a, g_strdup("-c"));
        g_ptr_array_add(a, g_strdup_printf("safe.directory=%s", repo));
        g_ptr_array_add(a, g_strdup("-c"));
        g_ptr_array_add(a, g_strdup("core.hooksPath=/dev/null"));
        g_ptr_array_add(a, g_strdup("-c"));
        g_ptr_array_add(a, g_strdup("core.pager=cat"));
        g_ptr_array_add(a, g_strdup("-c"));
        g_ptr_array_add(a, g_strdup("color.ui=false"));
        for (char *const *s = args; s && *s; s++)
                g_ptr_array_add(a, g_strdup(*s));
        g_ptr_array_add(a, NULL);
        return (char **) g_ptr_array_free(a, FALSE);
}

char **process_git_env(void) {
        static const char *const env[] = {
                "GIT_TERMINAL_PROMPT=0",
                "GIT_PAGER=cat",
                "PAGER=cat",
                "GIT_CONFIG_NOSYSTEM=1",
                "GIT_CONFIG_GLOBAL=/dev/null",
                "GIT_ASKPASS=/bin/true",
                "SSH_ASKPASS=/bin/true",
                "GIT_OPTIONAL_LOCKS=0",
                NULL,
        };
        return g_strdupv((char **) env);
}

int process_spawn_git(sd_event *event, const char *repo, const char *name, char *const *args, uint64_t timeout_usec,
                      process_done_cb cb, void *userdata, Process **ret) {
        g_auto(GStrv) argv = process_git_argv(repo, args);
        g_auto(GStrv) env = process_git_env();
        ProcessOptions o = {
                .name = name,
                .argv = argv,
                .cwd = repo,
                .home = getenv("HOME"),
                .extra_env = env,
                .timeout_usec = timeout_usec,
                .quiet = true,
        };
        return process_spawn(event, &o, cb, userdata, ret);
}
