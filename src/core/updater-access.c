/* SPDX-License-Identifier: Apache-2.0 */
/* Who runs a transaction's commands, and the repository's lock: the first
 * two steps of every transaction (updater.md, "Update engine", 1), and the
 * ConfigError the Updater shows while its settings cannot run. */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "core/updater-internal.h"
#include "core/updater-user.h"
#include "shared/log.h"
#include "shared/macro.h"

#define LOCK_NAME "platform-launcher-update.lock"
#define LOCK_TOUCH_TIMEOUT_USEC (60 * USEC_PER_SEC)
#define PROBE_TIMEOUT_USEC (30 * USEC_PER_SEC)

static const char *repo(Updater *u) {
        return u->tx.cfg->updater_repository;
}

static LauncherConfig *config_of(Updater *u) {
        return u->settings->config;
}

static bool enabled(Updater *u) {
        return !isempty(config_of(u)->updater_repository);
}

static void set_error(Updater *u, const char *message) {
        updater_set_str(u, &u->st.last_error, message, UPDATER_FIELD_LAST_ERROR);
}

/* The settings cannot run (UpdaterUser refused): ConfigError, LastError and
 * State=failed say so until they can; nothing runs meanwhile. */
void updater_set_config_error(Updater *u, const char *why) {
        if (streq(u->st.config_error, strempty(why)))
                return;
        g_autofree char *old = g_strdup(u->st.config_error);
        updater_set_str(u, &u->st.config_error, why, UPDATER_FIELD_CONFIG_ERROR);
        if (!isempty(why)) {
                log_error("Updater: %s; nothing is run until this is fixed.", why);
                set_error(u, why);
                if (u->tx.kind == TX_NONE && enabled(u))
                        updater_set_state(u, UPDATER_STATE_FAILED);
                return;
        }
        log_info("Updater: the settings can run again.");
        if (streq(u->st.last_error, old)) {
                set_error(u, "");
                if (u->tx.kind == TX_NONE && u->st.state == UPDATER_STATE_FAILED)
                        updater_set_state(u, enabled(u) ? UPDATER_STATE_IDLE : UPDATER_STATE_DISABLED);
        }
}

int updater_check_config(Updater *u) {
        LauncherConfig *c = config_of(u);
        if (!enabled(u)) {
                updater_set_config_error(u, "");
                return 0;
        }
        RepoOwner owner;
        g_autofree char *why = NULL;
        if (repo_owner_read(c->updater_repository, &owner, &why) < 0) {
                /* no repository (yet): the transaction says so when it runs */
                updater_set_config_error(u, "");
                return 0;
        }
        g_clear_pointer(&why, g_free);
        g_autoptr(StepUser) user = NULL;
        int r = updater_user_decide(c->updater_repository, c->updater_user, &owner, &user, &why);
        if (r == -EAGAIN && step_runner_backend(u->runner) != STEP_RUNNER_SYSTEMD) {
                /* no probe can tell from inside this user namespace */
                g_free(why);
                why = g_strdup_printf("the owner of %s is not mapped in the launcher's user namespace; set "
                                      "UpdaterUser", c->updater_repository);
                r = -EPERM;
        }
        if (r == -EAGAIN)
                return 0; /* only the owner probe can tell; its last verdict stands */
        if (r < 0) {
                updater_set_config_error(u, why);
                return -EACCES;
        }
        updater_set_config_error(u, "");
        return 0;
}

/* ---- the user ---- */

struct UserProbe {
        Updater *u;
        char *repo, *setting;
        StepUser *root;
        StepRun *run;
        user_next_fn next;
};

void updater_user_probe_cancel(UserProbe *p) {
        if (!p)
                return;
        step_run_cancel(p->run);
        step_user_free(p->root);
        g_free(p->repo);
        g_free(p->setting);
        g_free(p);
}

static void on_probe_done(StepRun *run, const StepResult *res, void *userdata) {
        UserProbe *p = userdata;
        p->run = NULL;
        Updater *u = p->u;
        user_next_fn next = p->next;
        RepoOwner owner;
        StepUser *user = NULL;
        g_autofree char *why = NULL;
        int r;
        if (!step_result_ok(res) || repo_owner_parse_probe(res->data, &owner) < 0) {
                g_autofree char *how = step_result_describe(res, PROBE_TIMEOUT_USEC);
                why = g_strdup_printf("cannot tell who owns %s (the owner probe %s); set UpdaterUser", p->repo, how);
                r = -EIO;
        } else
                r = updater_user_decide(p->repo, p->setting, &owner, &user, &why);
        updater_user_probe_cancel(p); /* run is NULL: frees p only */
        next(u, r, user, why);
}

int updater_resolve_user(Updater *u, const LauncherConfig *cfg, StepUser **ret_user, char **ret_why, user_next_fn next,
                         UserProbe **ret_probe) {
        const char *repository = cfg->updater_repository;
        RepoOwner owner;
        int r = repo_owner_read(repository, &owner, ret_why);
        if (r < 0)
                return r;
        r = updater_user_decide(repository, cfg->updater_user, &owner, ret_user, ret_why);
        if (r != -EAGAIN)
                return r;
        if (step_runner_backend(u->runner) != STEP_RUNNER_SYSTEMD) {
                /* A child of ours sees the same user namespace: it could not tell either. */
                g_free(*ret_why);
                *ret_why = g_strdup_printf("the owner of %s is not mapped in the launcher's user namespace; set "
                                           "UpdaterUser", repository);
                return -EPERM;
        }
        /* The unit's PrivateUsers= hides who owns it: systemd's view, through
         * a read-only probe that reads metadata and nothing else. */
        g_clear_pointer(ret_why, g_free);
        UserProbe *p = g_new0(UserProbe, 1);
        p->u = u;
        p->repo = g_strdup(repository);
        p->setting = g_strdup(cfg->updater_user);
        p->next = next;
        r = step_user_lookup_uid(0, &p->root);
        g_auto(GStrv) argv = repo_owner_probe_argv(repository);
        StepOptions o = { .name = "owner probe", .argv = argv, .cwd = "/", .user = p->root,
                          .timeout_usec = PROBE_TIMEOUT_USEC, .quiet = true, .inspect_only = true };
        if (r >= 0)
                r = step_runner_run(u->runner, &o, on_probe_done, p, &p->run);
        if (r < 0) {
                updater_user_probe_cancel(p);
                *ret_why = g_strdup_printf("cannot ask who owns %s: %s", repository, g_strerror(-r));
                return -EIO;
        }
        *ret_probe = p;
        return -EINPROGRESS;
}

static void after_user(Updater *u, int code, StepUser *user, const char *why) {
        u->tx_probe = NULL;
        if (code < 0) {
                updater_set_config_error(u, why);
                return step_driver_fail(u->driver, -EACCES, why);
        }
        updater_set_config_error(u, "");
        step_user_free(u->tx.user);
        u->tx.user = user;
        log_debug("Updater commands for %s run as %s (uid %u).", repo(u), user->name, (unsigned) user->uid);
        step_driver_done(u->driver);
}

void updater_user_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        if (u->tx.user)
                return step_driver_done(d);
        StepUser *user = NULL;
        g_autofree char *why = NULL;
        int r = updater_resolve_user(u, u->tx.cfg, &user, &why, after_user, &u->tx_probe);
        if (r == -EINPROGRESS)
                return;
        if (r == -ENOENT || r == -ENOTDIR || r == -EIO || r == -EACCES)
                return step_driver_fail(d, r == -EACCES ? -EIO : r, why); /* not the settings' fault */
        if (r < 0)
                return after_user(u, r, NULL, why);
        after_user(u, 0, user, NULL);
}

void updater_user_cancel(void *ud) {
        Updater *u = ud;
        updater_user_probe_cancel(u->tx_probe);
        u->tx_probe = NULL;
}

/* ---- the lock ----
 * .git/platform-launcher-update.lock, shared with external scripts. The
 * repository belongs to someone else: opened under a .git that is a real
 * directory (O_NOFOLLOW), itself not followed if a symlink, without blocking
 * (O_NONBLOCK: a FIFO there must not freeze us), read-only (flock needs no
 * more), and only if it is a regular file of root or the repository's user.
 * A missing one is made by the user (touch), never by us. */

int updater_lock(Updater *u, char **ret_error) {
        _cleanup_close_ int repofd = open(repo(u), O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (repofd < 0) {
                int r = -errno;
                *ret_error = g_strdup_printf("cannot open %s: %s", repo(u), g_strerror(-r));
                return r == -ENOENT ? -ENOTDIR : r;
        }
        _cleanup_close_ int gitfd = openat(repofd, ".git", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (gitfd < 0) {
                *ret_error = g_strdup_printf("%s is not a git working tree (no .git directory)", repo(u));
                return -ENOTDIR;
        }
        g_autofree char *path = g_build_filename(repo(u), ".git", LOCK_NAME, NULL);
        _cleanup_close_ int fd = openat(gitfd, LOCK_NAME, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                if (r == -ENOENT) {
                        *ret_error = g_strdup_printf("%s does not exist", path);
                        return r;
                }
                *ret_error = r == -ELOOP ? g_strdup_printf("%s is a symbolic link; refused", path)
                                         : g_strdup_printf("cannot open %s: %s", path, g_strerror(-r));
                return r == -ELOOP ? -EPERM : r;
        }
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                *ret_error = g_strdup_printf("%s is %s, not a regular file; refused", path,
                                             S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISDIR(st.st_mode) ? "a directory"
                                             : S_ISSOCK(st.st_mode) ? "a socket" : "a device or special file");
                return -EPERM;
        }
        uid_t user = u->tx.user ? u->tx.user->uid : 0;
        if (st.st_uid != 0 && st.st_uid != user && repo_uid_known(st.st_uid)) {
                *ret_error = g_strdup_printf("%s is owned by uid %u, neither root nor the repository's user; refused",
                                             path, (unsigned) st.st_uid);
                return -EPERM;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                int r = -errno;
                if (r == -EWOULDBLOCK) {
                        *ret_error = g_strdup_printf("another update of %s holds %s", repo(u), path);
                        return -EBUSY;
                }
                *ret_error = g_strdup_printf("cannot lock %s: %s", path, g_strerror(-r));
                return r;
        }
        u->tx.lock_fd = fd;
        fd = -1;
        return 0;
}

void updater_unlock(Updater *u) {
        if (u->tx.lock_fd >= 0) {
                close(u->tx.lock_fd); /* releases the flock */
                u->tx.lock_fd = -1;
        }
}


static void after_lock_created(Updater *u, const StepResult *res) {
        if (!step_result_ok(res))
                return updater_fail_proc(u, "creating the update lock file", res);
        updater_lock_start(u->driver, u);
}

void updater_lock_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        g_autofree char *why = NULL;
        if (u->tx.lock_fd >= 0)
                return step_driver_done(d);
        int r = updater_lock(u, &why);
        if (r == -ENOENT && !u->tx.lock_created) {
                u->tx.lock_created = true;
                g_autofree char *path = g_build_filename(repo(u), ".git", LOCK_NAME, NULL);
                char *argv[] = { (char *) "touch", (char *) "--", path, NULL };
                r = updater_spawn_command(u, "lock", argv, LOCK_TOUCH_TIMEOUT_USEC, after_lock_created);
                if (r >= 0)
                        return;
                why = g_strdup_printf("cannot create the update lock file %s: %s", path, g_strerror(-r));
        }
        if (r < 0)
                return step_driver_fail(d, r, why);
        step_driver_done(d);
}
