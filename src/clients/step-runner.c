/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <systemd/sd-daemon.h>

#include "clients/process.h"
#include "clients/step-runner.h"
#include "clients/transient-unit.h"
#include "shared/log.h"
#include "shared/macro.h"

#define GROUPS_MAX 1024

struct StepRunner {
        sd_event *event;
        sd_bus *bus;
        StepRunnerBackend backend;
        GList *runs;
};

struct StepRun {
        StepRunner *runner;
        Process *process;
        TransientUnit *unit;
        step_done_cb cb;
        void *userdata;
};

static const char *const backend_names[_STEP_RUNNER_MAX] = {
        [STEP_RUNNER_AUTO] = "auto",
        [STEP_RUNNER_SYSTEMD] = "systemd",
        [STEP_RUNNER_FORK] = "fork",
};

const char *step_runner_backend_to_string(StepRunnerBackend b) {
        return b >= 0 && b < _STEP_RUNNER_MAX ? backend_names[b] : NULL;
}

StepRunnerBackend step_runner_backend_from_string(const char *s) {
        for (int i = 0; s && i < _STEP_RUNNER_MAX; i++)
                if (streq(s, backend_names[i]))
                        return (StepRunnerBackend) i;
        return _STEP_RUNNER_INVALID;
}

/* ---- users ---- */

void step_user_free(StepUser *u) {
        if (!u)
                return;
        g_free(u->name);
        g_free(u->groups);
        g_free(u->home);
        g_free(u);
}

StepUser *step_user_copy(const StepUser *u) {
        if (!u)
                return NULL;
        StepUser *c = g_new0(StepUser, 1);
        c->name = g_strdup(u->name);
        c->uid = u->uid;
        c->gid = u->gid;
        c->n_groups = u->n_groups;
        c->groups = g_memdup2(u->groups, sizeof(gid_t) * (size_t) u->n_groups);
        c->home = g_strdup(u->home);
        return c;
}

static int user_from_passwd(const struct passwd *pw, StepUser **ret) {
        StepUser *u = g_new0(StepUser, 1);
        u->name = g_strdup(pw->pw_name);
        u->uid = pw->pw_uid;
        u->gid = pw->pw_gid;
        u->home = g_strdup(isempty(pw->pw_dir) ? "/" : pw->pw_dir);
        int n = 32;
        u->groups = g_new(gid_t, n);
        if (getgrouplist(pw->pw_name, pw->pw_gid, u->groups, &n) < 0) {
                if (n <= 0 || n > GROUPS_MAX) {
                        step_user_free(u);
                        return -E2BIG;
                }
                u->groups = g_renew(gid_t, u->groups, n);
                if (getgrouplist(pw->pw_name, pw->pw_gid, u->groups, &n) < 0) {
                        step_user_free(u);
                        return -EIO;
                }
        }
        u->n_groups = n;
        *ret = u;
        return 0;
}

int step_user_lookup(const char *name, StepUser **ret) {
        if (isempty(name))
                return -EINVAL;
        errno = 0;
        struct passwd *pw = getpwnam(name);
        if (!pw)
                return errno > 0 && errno != ENOENT ? -errno : -ESRCH;
        return user_from_passwd(pw, ret);
}

int step_user_lookup_uid(uid_t uid, StepUser **ret) {
        errno = 0;
        struct passwd *pw = getpwuid(uid);
        if (!pw)
                return errno > 0 && errno != ENOENT ? -errno : -ESRCH;
        return user_from_passwd(pw, ret);
}

/* ---- what runs ---- */

static bool is_executable_file(const char *path) {
        struct stat st;
        return stat(path, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) != 0;
}

char *step_find_executable(const char *argv0, const char *cwd, char **ret_where) {
        if (isempty(argv0)) {
                if (ret_where)
                        *ret_where = g_strdup("nowhere (the program name is empty)");
                return NULL;
        }
        if (argv0[0] == '/') {
                if (is_executable_file(argv0))
                        return g_strdup(argv0);
                if (ret_where)
                        *ret_where = g_strdup(argv0);
                return NULL;
        }
        if (strchr(argv0, '/')) {
                /* "./build.sh", "scripts/x": in the repository */
                if (isempty(cwd)) {
                        if (ret_where)
                                *ret_where = g_strdup("nowhere (a relative path needs the repository)");
                        return NULL;
                }
                g_autofree char *joined = g_build_filename(cwd, argv0, NULL);
                g_autofree char *path = g_canonicalize_filename(joined, "/");
                if (is_executable_file(path))
                        return TAKE_PTR(path);
                if (ret_where)
                        *ret_where = TAKE_PTR(path);
                return NULL;
        }
        g_auto(GStrv) dirs = g_strsplit(STEP_PATH, ":", -1);
        for (char **d = dirs; *d; d++) {
                g_autofree char *f = g_build_filename(*d, argv0, NULL);
                if (is_executable_file(f))
                        return TAKE_PTR(f);
        }
        if (ret_where)
                *ret_where = g_strdup("in " STEP_PATH);
        return NULL;
}

static char **build_env(const StepOptions *o) {
        GPtrArray *a = g_ptr_array_new();
        g_ptr_array_add(a, g_strdup("PATH=" STEP_PATH));
        g_ptr_array_add(a, g_strdup_printf("HOME=%s", o->user->home));
        g_ptr_array_add(a, g_strdup_printf("USER=%s", o->user->name));
        g_ptr_array_add(a, g_strdup("LANG=C.UTF-8"));
        for (char *const *e = o->extra_env; e && *e; e++)
                g_ptr_array_add(a, g_strdup(*e));
        g_ptr_array_add(a, NULL);
        return (char **) g_ptr_array_free(a, FALSE);
}

char *step_result_describe(const StepResult *r, uint64_t timeout_usec) {
        if (r->error < 0) {
                g_autofree char *why = g_strdup(strempty(r->output));
                g_strstrip(why);
                return g_strdup_printf("could not be started: %s", *why ? why : g_strerror(-r->error));
        }
        if (r->timed_out && timeout_usec < 10 * USEC_PER_SEC)
                return g_strdup_printf("timed out after %.1f s (its processes killed)", (double) timeout_usec / USEC_PER_SEC);
        if (r->timed_out)
                return g_strdup_printf("timed out after %llu s (its processes killed)",
                                       (unsigned long long) ((timeout_usec + USEC_PER_SEC / 2) / USEC_PER_SEC));
        if (r->signal)
                return g_strdup_printf("killed by signal %d (%s)", r->signal, strsignal(r->signal));
        return g_strdup_printf("exited with status %d", r->exit_status);
}

/* ---- the runner ---- */

int step_runner_new(sd_event *event, sd_bus *bus, StepRunnerBackend backend, StepRunner **ret) {
        if (backend < 0 || backend >= _STEP_RUNNER_MAX)
                return -EINVAL;
        /* The one place that decides. */
        if (backend == STEP_RUNNER_AUTO)
                backend = sd_booted() > 0 && bus ? STEP_RUNNER_SYSTEMD : STEP_RUNNER_FORK;
        if (backend == STEP_RUNNER_SYSTEMD && !bus)
                return -EINVAL;
        StepRunner *r = g_new0(StepRunner, 1);
        r->event = sd_event_ref(event);
        r->bus = bus ? sd_bus_ref(bus) : NULL;
        r->backend = backend;
        log_debug("Updater commands run through the %s back end.", backend_names[backend]);
        *ret = r;
        return 0;
}

StepRunnerBackend step_runner_backend(const StepRunner *r) {
        return r->backend;
}

static void run_free(StepRun *run) {
        run->runner->runs = g_list_remove(run->runner->runs, run);
        g_free(run);
}

void step_run_cancel(StepRun *run) {
        if (!run)
                return;
        process_cancel(run->process);
        transient_unit_cancel(run->unit);
        run_free(run);
}

void step_runner_free(StepRunner *r) {
        if (!r)
                return;
        while (r->runs)
                step_run_cancel(r->runs->data);
        sd_bus_unref(r->bus);
        sd_event_unref(r->event);
        g_free(r);
}

static void done(StepRun *run, const StepResult *res) {
        step_done_cb cb = run->cb;
        void *ud = run->userdata;
        /* The back end frees its own object after this returns. */
        run->process = NULL;
        run->unit = NULL;
        cb(run, res, ud);
        run_free(run);
}

static void on_process_done(Process *p, const StepResult *res, void *userdata) {
        done(userdata, res);
}

static void on_unit_done(TransientUnit *t, const StepResult *res, void *userdata) {
        done(userdata, res);
}

int step_runner_run(StepRunner *r, const StepOptions *o, step_done_cb cb, void *userdata, StepRun **ret) {
        if (!o->argv || !o->argv[0] || !o->argv[0][0] || !o->user || isempty(o->cwd) || !cb)
                return -EINVAL;
        const char *name = o->name ? o->name : o->argv[0];
        g_autofree char *where = NULL;
        g_autofree char *path = step_find_executable(o->argv[0], o->cwd, &where);
        if (!path)
                return log_warning_errno(ENOENT, "%s: %s not found (looked %s%s).", name, o->argv[0],
                                         where && where[0] == '/' ? "for " : "", strempty(where));
        g_auto(GStrv) envp = build_env(o);
        StepSpec spec = {
                .name = name,
                .path = path,
                .argv = o->argv,
                .envp = envp,
                .cwd = o->cwd,
                .user = o->user,
                .timeout_usec = o->timeout_usec,
                .kill_grace_usec = o->kill_grace_usec,
                .quiet = o->quiet,
                .inspect_only = o->inspect_only,
        };
        StepRun *run = g_new0(StepRun, 1);
        run->runner = r;
        run->cb = cb;
        run->userdata = userdata;
        int q = r->backend == STEP_RUNNER_SYSTEMD
                        ? transient_unit_start(r->bus, r->event, &spec, on_unit_done, run, &run->unit)
                        : process_spawn(r->event, &spec, on_process_done, run, &run->process);
        if (q < 0) {
                g_free(run);
                return q;
        }
        r->runs = g_list_prepend(r->runs, run);
        if (ret)
                *ret = run;
        return 0;
}

/* ---- git ---- */

char **step_git_argv(const char *repo, char *const *args) {
        GPtrArray *a = g_ptr_array_new();
        g_ptr_array_add(a, g_strdup("git"));
        g_ptr_array_add(a, g_strdup("-C"));
        g_ptr_array_add(a, g_strdup(repo));
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

char **step_git_env(void) {
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

int step_runner_git(StepRunner *r, const char *repo, const StepUser *user, const char *name, char *const *args,
                    uint64_t timeout_usec, step_done_cb cb, void *userdata, StepRun **ret) {
        g_auto(GStrv) argv = step_git_argv(repo, args);
        g_auto(GStrv) env = step_git_env();
        StepOptions o = {
                .name = name,
                .argv = argv,
                .cwd = repo,
                .user = user,
                .extra_env = env,
                .timeout_usec = timeout_usec,
                .quiet = true,
        };
        return step_runner_run(r, &o, cb, userdata, ret);
}
