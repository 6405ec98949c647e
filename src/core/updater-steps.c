/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <glib.h>

#include "core/gates.h"
#include "core/root-path.h"
#include "core/unit-guard.h"
#include "core/updater-internal.h"
#include "shared/log.h"
#include "shared/macro.h"

#define GIT_TIMEOUT_USEC (300 * USEC_PER_SEC)
#define DIRTY_NAMES_MAX 20
#define DIRTY_NAME_BYTES 256
#define FAILURE_DETAIL_BYTES 512   /* the child's last line in a message */

static const char *repo(Updater *u) {
        return u->tx.cfg->updater_repository;
}

/* The commit the running table moves to. */
static const char *goal(Updater *u) {
        return u->tx.reverse ? u->tx.from : u->tx.to;
}

static char *short_id(const char *commit) {
        return g_strndup(strempty(commit), 12);
}

/* ---- processes ---- */

static void on_proc_done(StepRun *run, const StepResult *res, void *userdata) {
        Updater *u = userdata;
        u->proc = NULL;
        u->process_usec += res->duration_usec;
        proc_next_fn next = u->proc_next;
        u->proc_next = NULL;
        next(u, res);
}

int updater_spawn_git(Updater *u, const char *name, char *const *args, proc_next_fn next) {
        u->proc_next = next;
        u->proc_timeout = GIT_TIMEOUT_USEC;
        return step_runner_git(u->runner, repo(u), u->tx.user, name, args, GIT_TIMEOUT_USEC, on_proc_done, u,
                               &u->proc);
}

int updater_spawn_command(Updater *u, const char *name, char *const *argv, uint64_t timeout, proc_next_fn next) {
        g_clear_pointer(&u->spawn_why, g_free);
        if (u->tx.user && u->tx.user->uid == 0) {
                /* Root runs it: nobody else may be able to change the program
                 * (a script in a directory the deploy user owns, say). */
                g_autofree char *path = step_find_executable(argv[0], repo(u), NULL);
                if (path && (u->spawn_why = root_path_check_file(path)))
                        return -EPERM;
        }
        StepOptions o = {
                .name = name,
                .argv = argv,
                .cwd = repo(u),
                .user = u->tx.user,
                .timeout_usec = timeout,
        };
        u->proc_next = next;
        u->proc_timeout = timeout;
        return step_runner_run(u->runner, &o, on_proc_done, u, &u->proc);
}

/* "git fetch: exited with status 128: fatal: ..." (valid UTF-8, bounded) */
char *updater_proc_failure(const char *what, const StepResult *res, uint64_t timeout) {
        g_autofree char *how = step_result_describe(res, timeout);
        if (res->error < 0)
                return g_strdup_printf("%s %s", what, how);
        g_autofree char *out = g_strdup(strempty(res->output));
        g_strstrip(out);
        /* the last line says most; keep the message one line */
        char *last = strrchr(out, '\n');
        last = last ? last + 1 : out;
        size_t n = strlen(last);
        while (n > 0 && last[n - 1] == '.')
                last[--n] = 0;
        g_autofree char *detail = step_text_sanitize(last, n, FAILURE_DETAIL_BYTES);
        return isempty(detail) ? g_strdup_printf("%s %s", what, how) : g_strdup_printf("%s %s: %s", what, how, detail);
}

void updater_fail_proc(Updater *u, const char *what, const StepResult *res) {
        g_autofree char *msg = updater_proc_failure(what, res, u->proc_timeout);
        step_driver_fail(u->driver, -EIO, msg);
}

void updater_fail_spawn(Updater *u, const char *what, int r) {
        /* ENOENT: the program, or the repository as its working directory. */
        g_autofree char *msg = g_strdup_printf("cannot run %s in %s: %s%s", what, repo(u),
                                               u->spawn_why ? "it would run as root, but " : "",
                                               u->spawn_why ? u->spawn_why : g_strerror(-r));
        step_driver_fail(u->driver, r, msg);
}

void updater_cancel_proc(void *ud) {
        Updater *u = ud;
        step_run_cancel(u->proc);
        u->proc = NULL;
        u->proc_next = NULL;
}

/* ---- fetch ---- */

static void after_fetch(Updater *u, const StepResult *res) {
        if (!step_result_ok(res))
                return updater_fail_proc(u, "git fetch", res);
        step_driver_done(u->driver);
}

static void fetch_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        g_autofree char *refspec = g_strdup_printf("+refs/heads/%s:refs/remotes/%s/%s", u->tx.cfg->updater_branch,
                                                   u->tx.cfg->updater_remote, u->tx.cfg->updater_branch);
        char *args[] = { (char *) "fetch", (char *) "--quiet", (char *) "--no-tags", (char *) "--no-write-fetch-head",
                         u->tx.cfg->updater_remote, refspec, NULL };
        int r = updater_spawn_git(u, "git fetch", args, after_fetch);
        if (r < 0)
                updater_fail_spawn(u, "git", r);
}

/* ---- resolve: pin the target, read HEAD ---- */

static char *first_line(const char *s) {
        g_autofree char *c = g_strdup(strempty(s));
        char *nl = strchr(c, '\n');
        if (nl)
                *nl = 0;
        return g_strdup(g_strstrip(c));
}

static bool is_commit_id(const char *s) {
        if (strlen(s) != 40)
                return false;
        for (const char *p = s; *p; p++)
                if (!g_ascii_isxdigit(*p) || g_ascii_isupper(*p))
                        return false;
        return true;
}

static void resolve_next(Updater *u);

static void after_rev_parse(Updater *u, const StepResult *res) {
        g_autofree char *id = first_line(res->data);
        if (!step_result_ok(res) || !is_commit_id(id)) {
                const char *what = u->tx.sub == 0 ? (u->tx.kind == TX_ROLLBACK ? u->tx.requested : "the remote branch")
                                                  : "HEAD";
                g_autofree char *msg = g_strdup_printf("cannot resolve %s to a commit", what);
                return step_driver_fail(u->driver, u->tx.kind == TX_ROLLBACK && u->tx.sub == 0 ? -EINVAL : -EIO, msg);
        }
        if (u->tx.sub == 0)
                u->tx.to = g_strdup(id);
        else {
                u->tx.from = g_strdup(id);
                updater_set_str(u, &u->st.current_commit, id, UPDATER_FIELD_CURRENT);
        }
        u->tx.sub++;
        resolve_next(u);
}

static void resolved(Updater *u) {
        Tx *t = &u->tx;
        if (t->kind != TX_ROLLBACK) {
                updater_set_str(u, &u->st.target_commit, t->to, UPDATER_FIELD_TARGET);
                u->st.last_check_usec = updater_now_realtime();
                u->changed |= UPDATER_FIELD_LAST_CHECK;
                /* The branch moved on from a quarantined commit: it may be tried again later. */
                if (!isempty(u->st.quarantined_commit) && !streq(u->st.quarantined_commit, t->to)) {
                        log_info("Branch moved past the quarantined commit %s.", u->st.quarantined_commit);
                        updater_quarantine(u, "");
                }
        }
        if (isempty(u->st.last_good_commit) && t->kind != TX_ROLLBACK && isempty(u->rec_kind)) {
                /* What runs when the updater first looks is taken as good. */
                updater_set_str(u, &u->st.last_good_commit, t->from, UPDATER_FIELD_LAST_GOOD);
                (void) updater_save_state(u);
        }
        t->available = !streq(t->to, t->from);
        if (t->kind == TX_CHECK)
                return step_driver_done(u->driver);
        if (streq(t->to, t->from)) {
                t->skip = true;
                return step_driver_done(u->driver);
        }
        if (t->kind == TX_APPLY && streq(t->to, strempty(u->st.quarantined_commit)) && !t->force) {
                g_autofree char *s = short_id(t->to);
                g_autofree char *msg = g_strdup_printf("target %s is quarantined (it failed here before); "
                                                       "Apply with force to try it again", s);
                if (t->automatic) {
                        t->skip = true;
                        return step_driver_done(u->driver);
                }
                return step_driver_fail(u->driver, -EPERM, msg);
        }
        step_driver_done(u->driver);
}

static void resolve_next(Updater *u) {
        Tx *t = &u->tx;
        int r;
        if (t->sub == 0) {
                g_autofree char *ref = t->kind == TX_ROLLBACK
                                               ? g_strdup_printf("%s^{commit}", t->requested)
                                               : g_strdup_printf("refs/remotes/%s/%s^{commit}", t->cfg->updater_remote,
                                                                 t->cfg->updater_branch);
                char *args[] = { (char *) "rev-parse", (char *) "--verify", (char *) "--quiet", (char *) "--end-of-options",
                                 ref, NULL };
                r = updater_spawn_git(u, "git rev-parse", args, after_rev_parse);
        } else if (t->sub == 1) {
                char *args[] = { (char *) "rev-parse", (char *) "--verify", (char *) "HEAD^{commit}", NULL };
                r = updater_spawn_git(u, "git rev-parse", args, after_rev_parse);
        } else
                return resolved(u);
        if (r < 0)
                updater_fail_spawn(u, "git", r);
}

static void resolve_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        u->tx.sub = 0;
        resolve_next(u);
}

/* ---- signature policy ---- */

static void after_verify(Updater *u, const StepResult *res) {
        if (step_result_ok(res))
                return step_driver_done(u->driver);
        g_autofree char *s = short_id(u->tx.to);
        g_autofree char *msg = g_strdup_printf("commit %s has no valid signature by a signer in %s; refused", s,
                                               u->tx.cfg->updater_allowed_signers_file);
        log_warning("%s.", msg);
        if (u->tx.kind == TX_APPLY) {
                updater_quarantine(u, u->tx.to);
                updater_flush(u);
                if (u->events.failed)
                        u->events.failed(u, u->tx.to, msg, false, u->events.userdata);
                updater_report(u, u->tx.to, false, msg, false);
        }
        step_driver_fail(u->driver, -EPERM, msg);
}

static void verify_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        if (u->tx.skip || isempty(u->tx.cfg->updater_allowed_signers_file))
                return step_driver_done(d);
        g_autofree char *signers = g_strdup_printf("gpg.ssh.allowedSignersFile=%s", u->tx.cfg->updater_allowed_signers_file);
        char *args[] = { (char *) "-c", (char *) "gpg.format=ssh", (char *) "-c", signers, (char *) "verify-commit",
                         u->tx.to, NULL };
        int r = updater_spawn_git(u, "git verify-commit", args, after_verify);
        if (r < 0)
                updater_fail_spawn(u, "git", r);
}

/* ---- dirty tree ---- */

static void after_status(Updater *u, const StepResult *res) {
        if (!step_result_ok(res))
                return updater_fail_proc(u, "git status", res);
        if (isempty(res->data))
                return step_driver_done(u->driver);
        g_auto(GStrv) lines = g_strsplit(res->data, "\n", -1);
        g_autoptr(GString) names = g_string_new(NULL);
        size_t n = 0;
        for (char **l = lines; *l; l++) {
                if (strlen(*l) < 4)
                        continue;
                if (n < DIRTY_NAMES_MAX) {
                        g_autofree char *name = step_text_sanitize(*l + 3, strlen(*l + 3), DIRTY_NAME_BYTES);
                        g_string_append_printf(names, "%s%s%s", n ? ", " : "", name, (*l)[0] == '?' ? " (untracked)" : "");
                }
                n++;
        }
        if (n > DIRTY_NAMES_MAX)
                g_string_append_printf(names, " and %zu more", n - DIRTY_NAMES_MAX);
        g_autofree char *msg = g_strdup_printf("working tree %s has local changes: %s", repo(u), names->str);
        step_driver_fail(u->driver, -ENOTEMPTY, msg);
}

static void dirty_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        if (u->tx.skip)
                return step_driver_done(d);
        char *args[] = { (char *) "status", (char *) "--porcelain", (char *) "--untracked-files=all",
                         (char *) "--ignore-submodules=none", NULL };
        int r = updater_spawn_git(u, "git status", args, after_status);
        if (r < 0)
                updater_fail_spawn(u, "git", r);
}

/* ---- gates ---- */

static char *rfc3339_now(void) {
        g_autoptr(GDateTime) t = g_date_time_new_now_utc();
        return g_date_time_format(t, "%Y-%m-%dT%H:%M:%SZ");
}

/* DeferReasons from (gate, detail) pairs; a gate keeps the time it was first seen closed. */
static void set_defer_reasons_list(Updater *u, const char *const *gates, const char *const *details, size_t n) {
        GPtrArray *old = u->st.defer_reasons;
        GPtrArray *now = g_ptr_array_new_with_free_func(defer_reason_free);
        bool same = true;
        for (size_t k = 0; k < n; k++) {
                DeferReason *r = g_new0(DeferReason, 1);
                r->gate = g_strdup(gates[k]);
                r->detail = g_strdup(details[k]);
                for (guint i = 0; i < old->len; i++) {
                        DeferReason *o = old->pdata[i];
                        if (streq(o->gate, r->gate)) {
                                r->since = g_strdup(o->since); /* closed since the first time it was seen */
                                same = same && streq(o->detail, r->detail);
                        }
                }
                if (!r->since) {
                        r->since = rfc3339_now();
                        same = false;
                }
                g_ptr_array_add(now, r);
        }
        if (same && now->len == old->len) {
                g_ptr_array_unref(now);
                return;
        }
        g_ptr_array_unref(old);
        u->st.defer_reasons = now;
        u->changed |= UPDATER_FIELD_DEFER_REASONS;
}

static void set_defer_reasons(Updater *u, char *const closed[_GATE_MAX]) {
        const char *gates[_GATE_MAX], *details[_GATE_MAX];
        size_t n = 0;
        for (int k = 0; k < _GATE_MAX; k++)
                if (closed[k]) {
                        gates[n] = gate_kind_to_string(k);
                        details[n++] = closed[k];
                }
        set_defer_reasons_list(u, gates, details, n);
}

/* ---- fast-forward only ----
 * A release branch force-pushed to an older commit (still validly signed)
 * would be a silent downgrade: Apply defers a target that is not a
 * descendant of CurrentCommit, unless forced; Rollback names its commit. */

static void after_ancestry(Updater *u, const StepResult *res) {
        if (step_result_ok(res))
                return step_driver_done(u->driver);
        if (res->error == 0 && res->signal == 0 && !res->timed_out && res->exit_status == 1) {
                g_autofree char *to = short_id(u->tx.to);
                g_autofree char *from = short_id(u->tx.from);
                g_autofree char *detail = g_strdup_printf("not a fast-forward: %s is not a descendant of CurrentCommit "
                                                          "%s (Apply with force to take it)", to, from);
                if (!u->tx.dry_run) {
                        const char *gate = "fast-forward";
                        const char *d = detail;
                        set_defer_reasons_list(u, &gate, &d, 1);
                }
                return step_driver_fail(u->driver, -EAGAIN, detail);
        }
        updater_fail_proc(u, "git merge-base", res);
}

static void ancestry_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        if (u->tx.skip || u->tx.force || u->tx.kind != TX_APPLY)
                return step_driver_done(d);
        char *args[] = { (char *) "merge-base", (char *) "--is-ancestor", u->tx.from, u->tx.to, NULL };
        int r = updater_spawn_git(u, "git merge-base", args, after_ancestry);
        if (r < 0)
                updater_fail_spawn(u, "git", r);
}

static void on_gates(GateCheck *check, char *const closed[_GATE_MAX], void *userdata) {
        Updater *u = userdata;
        u->gate_check = NULL;
        /* A dry run answers the question and leaves State and DeferReasons alone. */
        if (!u->tx.dry_run)
                set_defer_reasons(u, closed);
        g_autoptr(GString) why = g_string_new(NULL);
        for (int k = 0; k < _GATE_MAX; k++)
                if (closed[k])
                        g_string_append_printf(why, "%s%s (%s)", why->len ? "; " : "", gate_kind_to_string(k),
                                               closed[k]);
        if (why->len == 0)
                return step_driver_done(u->driver);
        step_driver_fail(u->driver, -EAGAIN, why->str);
}

static void gates_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        if (u->tx.skip || u->tx.force || u->tx.kind == TX_ROLLBACK) {
                char *none[_GATE_MAX] = {};
                if (!u->tx.dry_run)
                        set_defer_reasons(u, none);
                return step_driver_done(d);
        }
        int r = gates_evaluate(u->gates, u->tx.cfg, u->reconciler, on_gates, u, &u->gate_check);
        if (r < 0)
                step_driver_fail(d, r, "cannot evaluate the gates");
}

static void gates_cancel(void *ud) {
        Updater *u = ud;
        gate_check_cancel(u->gate_check);
        u->gate_check = NULL;
}

/* ---- record ----
 * Phases in the state store: "checkout" (written before the first disturbing
 * step; a start redoes everything from the checkout), "health" (the restarts
 * are done; a start only verifies), "reverse" (rolling back). Each is one
 * fsync'd write, so only the phases a start must tell apart are written. */

static const char *tx_kind_name(Updater *u) {
        TxKind k = u->tx.kind == TX_RESUME ? u->tx.origin : u->tx.kind;
        return k == TX_ROLLBACK ? "rollback" : "apply";
}

void updater_record_phase(Updater *u, const char *phase) {
        int r = updater_record(u, tx_kind_name(u), u->tx.from, u->tx.to, phase);
        if (r < 0)
                log_warning_errno(r, "Cannot record the update transaction: %m");
}

static void record_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        if (u->tx.skip || u->tx.dry_run)
                return step_driver_done(d);
        /* Recorded before anything changes: a crash from here on is finished at start-up. */
        int r = updater_record(u, tx_kind_name(u), u->tx.from, u->tx.to, "checkout");
        if (r < 0)
                return step_driver_fail(d, r, "cannot record the transaction in the state store");
        step_driver_done(d);
}

/* ---- checkout ---- */

static void after_checkout(Updater *u, const StepResult *res) {
        if (!step_result_ok(res))
                return updater_fail_proc(u, "git reset", res);
        updater_set_str(u, &u->st.current_commit, goal(u), UPDATER_FIELD_CURRENT);
        step_driver_done(u->driver);
}

static void checkout_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        updater_set_state(u, u->tx.reverse ? UPDATER_STATE_ROLLING_BACK : UPDATER_STATE_APPLYING);
        /* The tree is clean (checked): reset moves the checked-out branch, or a detached HEAD, to the commit. */
        char *args[] = { (char *) "reset", (char *) "--hard", (char *) "--quiet", (char *) goal(u), NULL };
        int r = updater_spawn_git(u, "git reset", args, after_checkout);
        if (r < 0)
                updater_fail_spawn(u, "git", r);
}

/* ---- build and restart commands: argv lists in order ---- */

static void run_commands(Updater *u, char ***list, const char *what, proc_next_fn next);

static void after_build(Updater *u, const StepResult *res);
static void after_restart_command(Updater *u, const StepResult *res);

static void commands_next(Updater *u, char ***list, const char *what, proc_next_fn next, const StepResult *res) {
        if (res && !step_result_ok(res)) {
                g_autofree char *cmd = g_strjoinv(" ", list[u->tx.index]);
                g_autofree char *label = g_strdup_printf("%s command \"%s\"", what, cmd);
                return updater_fail_proc(u, label, res);
        }
        if (res)
                u->tx.index++;
        run_commands(u, list, what, next);
}

static void run_commands(Updater *u, char ***list, const char *what, proc_next_fn next) {
        if (!list || !list[u->tx.index])
                return step_driver_done(u->driver);
        int r = updater_spawn_command(u, what, list[u->tx.index], u->tx.cfg->updater_command_timeout_usec, next);
        if (r < 0) {
                g_autofree char *label = g_strdup_printf("%s command \"%s\"", what, list[u->tx.index][0]);
                updater_fail_spawn(u, label, r);
        }
}

static void after_build(Updater *u, const StepResult *res) {
        commands_next(u, u->tx.cfg->updater_build_commands, "build", after_build, res);
}

static void build_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        u->tx.index = 0;
        commands_next(u, u->tx.cfg->updater_build_commands, "build", after_build, NULL);
}

static void after_restart_command(Updater *u, const StepResult *res) {
        commands_next(u, u->tx.cfg->updater_restart_commands, "restart", after_restart_command, res);
}

static void commands_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        u->tx.index = 0;
        commands_next(u, u->tx.cfg->updater_restart_commands, "restart", after_restart_command, NULL);
}

/* ---- units ---- */

static bool is_own_unit(Updater *u, const char *unit) {
        if (isempty(u->own_unit))
                return false;
        if (streq(unit, u->own_unit))
                return true;
        g_autofree char *with = g_strdup_printf("%s.service", unit);
        return streq(with, u->own_unit);
}

static void units_next(Updater *u);

static void on_unit_done(SystemdCall *call, int error, const char *message, void *userdata) {
        Updater *u = userdata;
        u->unit_call = NULL;
        u->process_usec += (uint64_t) g_get_monotonic_time() - u->unit_started;
        if (error < 0)
                return step_driver_fail(u->driver, error, message);
        u->tx.index++;
        units_next(u);
}

static void units_next(Updater *u) {
        char **units = u->tx.cfg->updater_restart_units;
        while (units[u->tx.index] && is_own_unit(u, units[u->tx.index])) {
                u->tx.self_unit_pending = true; /* restarted last, after the health check is recorded */
                u->tx.index++;
        }
        if (!units[u->tx.index])
                return step_driver_done(u->driver);
        /* The settings were checked when set; the VMM may have moved since. */
        g_autofree char *refused = unit_guard_check(units[u->tx.index], settings_store_vmm_url(u->settings));
        if (refused)
                return step_driver_fail(u->driver, -EPERM, refused);
        if (!u->systemd) {
                int r = systemd_client_new(u->bus, &u->systemd);
                if (r < 0)
                        return step_driver_fail(u->driver, r, "cannot set up the systemd client");
        }
        u->unit_started = (uint64_t) g_get_monotonic_time();
        int r = systemd_restart_unit(u->systemd, units[u->tx.index], u->tx.cfg->updater_command_timeout_usec,
                                     on_unit_done, u, &u->unit_call);
        if (r < 0) {
                g_autofree char *msg = g_strdup_printf("cannot restart %s", units[u->tx.index]);
                step_driver_fail(u->driver, r, msg);
        }
}

static void units_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        u->tx.index = 0;
        units_next(u);
}

static void units_cancel(void *ud) {
        Updater *u = ud;
        systemd_call_cancel(u->unit_call);
        u->unit_call = NULL;
}

static void on_self_done(SystemdCall *call, int error, const char *message, void *userdata) {
        Updater *u = userdata;
        u->unit_call = NULL;
        if (error < 0)
                return step_driver_fail(u->driver, error, message);
        step_driver_done(u->driver); /* still here: the unit did not stop us; verify now */
}

/* The launcher's own unit: the last thing done. systemd stops this process;
 * the next one finds phase "health" in the state store and finishes. */
static void self_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        if (!u->tx.self_unit_pending)
                return step_driver_done(d);
        updater_record_phase(u, "health");
        if (!u->systemd && systemd_client_new(u->bus, &u->systemd) < 0)
                return step_driver_fail(d, -ENOMEM, "cannot set up the systemd client");
        log_info("Restarting the launcher's own unit %s; the transaction finishes on start-up.", u->own_unit);
        u->unit_started = (uint64_t) g_get_monotonic_time();
        int r = systemd_restart_unit(u->systemd, u->own_unit, u->tx.cfg->updater_command_timeout_usec, on_self_done, u,
                                     &u->unit_call);
        if (r < 0)
                step_driver_fail(d, r, "cannot restart the launcher's own unit");
}

/* ---- the rollback: a failed update's compensation, or a recorded one resumed ---- */

static void reverse_begin(StepDriver *d, void *ud) {
        Updater *u = ud;
        if (step_driver_compensating(d)) {
                const char *why = step_driver_failure_message(d);
                log_warning("Update to %s failed: %s. Rolling back to %s.", u->tx.to, why, u->tx.from);
                g_free(u->tx.fail_reason);
                u->tx.fail_reason = g_strdup(why);
        }
        u->tx.reverse = true;
        updater_record_phase(u, "reverse");
        updater_set_state(u, UPDATER_STATE_ROLLING_BACK);
        updater_flush(u);
        step_driver_done(d);
}

static void reverse_end(StepDriver *d, void *ud) {
        Updater *u = ud;
        u->tx.rolled_back = true;
        step_driver_done(d);
}

void updater_steps_cancel_all(Updater *u) {
        updater_user_cancel(u);
        updater_health_cancel(u);
        units_cancel(u);
        gates_cancel(u);
}

/* ---- the tables ---- */

/* What follows the checks: the update, unless there is nothing to do or it
 * was only a question. */
static const StepTable updater_forward_table;

static const StepTable *choose_forward(void *ud) {
        Updater *u = ud;
        if (u->tx.kind == TX_CHECK || u->tx.skip || u->tx.dry_run)
                return NULL;
        u->tx.forward = true;
        return &updater_forward_table;
}

#define STEP_HEALTH(n, desc)                                                                                 \
        { .name = (n), .description = (desc), .start = updater_health_start, .check = updater_health_check,  \
          .check_interval_usec = UPDATER_HEALTH_RETRY_USEC, .timeout = updater_health_timeout,             \
          .cancel = updater_health_cancel }

static const StepDef check_steps[] = {
        { .name = "fetch", .description = "resolving the user", .start = updater_user_start, .cancel = updater_user_cancel },
        { .name = "fetch", .description = "locking the repository", .start = updater_lock_start, .cancel = updater_cancel_proc },
        { .name = "fetch", .description = "fetching the release branch", .start = fetch_start, .cancel = updater_cancel_proc },
        { .name = "fetch", .description = "resolving the target commit", .start = resolve_start, .cancel = updater_cancel_proc },
};

static const StepDef apply_steps[] = {
        { .name = "fetch", .description = "resolving the user", .start = updater_user_start, .cancel = updater_user_cancel },
        { .name = "fetch", .description = "locking the repository", .start = updater_lock_start, .cancel = updater_cancel_proc },
        { .name = "fetch", .description = "fetching the release branch", .start = fetch_start, .cancel = updater_cancel_proc },
        { .name = "fetch", .description = "resolving the target commit", .start = resolve_start, .cancel = updater_cancel_proc },
        { .name = "fetch", .description = "verifying the commit signature", .start = verify_start, .cancel = updater_cancel_proc },
        { .name = "gates", .description = "checking the target is a fast-forward", .start = ancestry_start,
          .cancel = updater_cancel_proc },
        { .name = "gates", .description = "checking the working tree", .start = dirty_start, .cancel = updater_cancel_proc },
        /* Right before the first disturbing step, so a round that started meanwhile still defers. */
        { .name = "gates", .description = "evaluating the gates", .start = gates_start, .cancel = gates_cancel },
        { .name = "checkout", .description = "recording the transaction", .start = record_start },
        { .name = "update", STEP_CHOOSE(choose_forward) },
};

static const StepDef rollback_steps[] = {
        { .name = "fetch", .description = "resolving the user", .start = updater_user_start, .cancel = updater_user_cancel },
        { .name = "fetch", .description = "locking the repository", .start = updater_lock_start, .cancel = updater_cancel_proc },
        { .name = "fetch", .description = "resolving the commit", .start = resolve_start, .cancel = updater_cancel_proc },
        { .name = "fetch", .description = "verifying the commit signature", .start = verify_start, .cancel = updater_cancel_proc },
        { .name = "gates", .description = "checking the working tree", .start = dirty_start, .cancel = updater_cancel_proc },
        { .name = "checkout", .description = "recording the transaction", .start = record_start },
        { .name = "rollback", STEP_CHOOSE(choose_forward) },
};

static const StepDef forward_steps[] = {
        { .name = "checkout", .description = "checking out the target", .start = checkout_start, .cancel = updater_cancel_proc },
        { .name = "build", .description = "running the build commands", .start = build_start, .cancel = updater_cancel_proc },
        { .name = "restart", .description = "restarting the units", .start = units_start, .cancel = units_cancel },
        { .name = "restart", .description = "running the restart commands", .start = commands_start,
          .cancel = updater_cancel_proc },
        { .name = "restart", .description = "restarting the launcher itself", .start = self_start,
          .cancel = units_cancel },
        STEP_HEALTH("health", "waiting for the health check"),
};

static const StepDef verify_steps[] = {
        STEP_HEALTH("health", "waiting for the health check"),
};

static const StepDef reverse_steps[] = {
        { .name = "rollback", .description = "starting the rollback", .start = reverse_begin },
        { .name = "rollback", .description = "checking out the previous commit", .start = checkout_start,
          .cancel = updater_cancel_proc },
        { .name = "rollback", .description = "rebuilding the previous commit", .start = build_start,
          .cancel = updater_cancel_proc },
        { .name = "rollback", .description = "restarting the units", .start = units_start, .cancel = units_cancel },
        { .name = "rollback", .description = "running the restart commands", .start = commands_start,
          .cancel = updater_cancel_proc },
        STEP_HEALTH("rollback", "verifying the previous commit"),
        { .name = "rollback", .description = "noting the rollback", .start = reverse_end },
};

/* The forward path and its reverse: a failure anywhere in the update (or in
 * the verification after a self-restart) runs the rollback, then ends the
 * transaction with its own reason. */
static const StepTable updater_reverse_table = STEP_TABLE("rollback", reverse_steps);
static const StepTable updater_forward_table = STEP_TABLE_ON_FAIL("update", forward_steps, updater_reverse_table);
static const StepTable updater_verify_table = STEP_TABLE_ON_FAIL("verify", verify_steps, updater_reverse_table);

/* A transaction found in the state store: the phase says what is left. */
static const StepTable *choose_resume(void *ud) {
        Updater *u = ud;
        log_notice("Finishing the %s of %s from %s to %s interrupted in phase %s.", u->rec_kind, repo(u), u->rec_from,
                   u->rec_to, u->rec_phase);
        if (streq(u->rec_phase, "reverse")) {
                g_free(u->tx.fail_reason);
                u->tx.fail_reason = g_strdup("interrupted, and its rollback did not finish");
                return &updater_reverse_table;
        }
        u->tx.forward = true;
        if (streq(u->rec_phase, "health")) /* after the launcher restarted itself: verify only */
                return &updater_verify_table;
        /* interrupted before the restart was complete: do it all again (each step is idempotent) */
        return &updater_forward_table;
}

static const StepDef resume_steps[] = {
        { .name = "resume", .description = "resolving the user", .start = updater_user_start, .cancel = updater_user_cancel },
        { .name = "resume", .description = "locking the repository", .start = updater_lock_start, .cancel = updater_cancel_proc },
        { .name = "resume", STEP_CHOOSE(choose_resume) },
};

const StepTable updater_check_table = STEP_TABLE("check", check_steps);
const StepTable updater_apply_table = STEP_TABLE("update", apply_steps);
const StepTable updater_rollback_table = STEP_TABLE("rollback", rollback_steps);
const StepTable updater_resume_table = STEP_TABLE("resume", resume_steps);
