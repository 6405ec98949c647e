/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "core/root-path.h"
#include "core/unit-guard.h"
#include "core/updater-user.h"
#include "shared/macro.h"

/* A uid this user namespace cannot map reads as the overflow uid. */
bool repo_uid_known(uid_t uid) {
        static const uid_t overflow_default = 65534;
        uid_t overflow = overflow_default;
        g_autofree char *text = NULL;
        if (g_file_get_contents("/proc/sys/kernel/overflowuid", &text, NULL, NULL))
                overflow = (uid_t) g_ascii_strtoull(text, NULL, 10);
        if (uid != overflow)
                return true;
        /* "0 0 4294967295" = the initial namespace, where 65534 is nobody itself */
        g_autofree char *map = NULL;
        if (!g_file_get_contents("/proc/self/uid_map", &map, NULL, NULL))
                return true;
        unsigned long inside, outside, count;
        return sscanf(map, " %lu %lu %lu", &inside, &outside, &count) == 3 && inside == 0 && outside == 0 &&
               count == 4294967295UL;
}

int repo_owner_read(const char *repo, RepoOwner *ret, char **ret_error) {
        _cleanup_close_ int fd = open(repo, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                *ret_error = g_strdup_printf("cannot open %s: %s", repo, g_strerror(-r));
                return r == -ENOTDIR ? -ENOENT : r;
        }
        struct stat top, git;
        if (fstat(fd, &top) < 0) {
                int r = -errno;
                *ret_error = g_strdup_printf("cannot stat %s: %s", repo, g_strerror(-r));
                return r;
        }
        if (fstatat(fd, ".git", &git, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(git.st_mode)) {
                *ret_error = g_strdup_printf("%s is not a git working tree (no .git directory)", repo);
                return -ENOTDIR;
        }
        *ret = (RepoOwner) {
                .top = top.st_uid,
                .git = git.st_uid,
                .known = repo_uid_known(top.st_uid) && repo_uid_known(git.st_uid),
        };
        return 0;
}

char **repo_owner_probe_argv(const char *repo) {
        g_autofree char *git = g_build_filename(repo, ".git", NULL);
        char *argv[] = { (char *) "stat", (char *) "-L", (char *) "--format=%u", (char *) "--", (char *) repo, git,
                         NULL };
        return g_strdupv(argv);
}

int repo_owner_parse_probe(const char *data, RepoOwner *ret) {
        g_auto(GStrv) lines = g_strsplit(strempty(data), "\n", 3);
        if (g_strv_length(lines) < 2)
                return -EBADMSG;
        guint64 top, git;
        if (!g_ascii_string_to_unsigned(lines[0], 10, 0, UINT32_MAX - 1, &top, NULL) ||
            !g_ascii_string_to_unsigned(lines[1], 10, 0, UINT32_MAX - 1, &git, NULL))
                return -EBADMSG;
        *ret = (RepoOwner) { .top = (uid_t) top, .git = (uid_t) git, .known = true };
        return 0;
}

static char *uid_name(uid_t uid) {
        g_autoptr(StepUser) u = NULL;
        if (step_user_lookup_uid(uid, &u) >= 0)
                return g_strdup_printf("%s (uid %u)", u->name, (unsigned) uid);
        return g_strdup_printf("uid %u", (unsigned) uid);
}

int updater_user_decide(const char *repo, const char *setting, const RepoOwner *owner, StepUser **ret_user,
                        char **ret_error) {
        g_autoptr(StepUser) user = NULL;
        int r;
        if (isempty(setting)) {
                if (!owner->known) {
                        *ret_error = g_strdup_printf("the owner of %s cannot be read from here", repo);
                        return -EAGAIN;
                }
                r = step_user_lookup_uid(owner->top, &user);
                if (r < 0) {
                        *ret_error = g_strdup_printf(
                                "UpdaterUser is \"\" (the owner of %s), but its owner uid %u has no user entry; "
                                "set UpdaterUser", repo, (unsigned) owner->top);
                        return -ESRCH;
                }
        } else {
                r = step_user_lookup(setting, &user);
                if (r < 0) {
                        *ret_error = g_strdup_printf("UpdaterUser '%s' does not exist (the commands of %s would run "
                                                     "as it)", setting, repo);
                        return -ESRCH;
                }
        }
        if (user->uid == 0 && (owner->top != 0 || owner->git != 0)) {
                uid_t other = owner->top != 0 ? owner->top : owner->git;
                g_autofree char *who = owner->known ? uid_name(other) : g_strdup("a user other than root");
                *ret_error = g_strdup_printf(
                        "UpdaterUser '%s' is root, but %s%s is owned by %s: root would run what that user "
                        "writes (git config, build scripts); set UpdaterUser to the repository's owner",
                        user->name, repo, owner->top != 0 ? "" : "/.git", who);
                return -EPERM;
        }
        if (user->uid != 0 && owner->known && (owner->top != user->uid || owner->git != user->uid)) {
                /* git refuses a repository its user does not own ("dubious
                 * ownership"), and no safe.directory is read (no global
                 * config): every update would fail. Said now instead. */
                uid_t other = owner->top != user->uid ? owner->top : owner->git;
                g_autofree char *who = uid_name(other);
                *ret_error = g_strdup_printf("UpdaterUser '%s' does not own %s%s (owned by %s): git refuses a "
                                             "repository its user does not own; set UpdaterUser to the owner (or "
                                             "\"\" for the owner)", user->name, repo,
                                             owner->top != user->uid ? "" : "/.git", who);
                return -EPERM;
        }
        if (user->uid == 0) {
                /* Root's repository, but can someone else write what git reads
                 * first (.git/config of a "git init --shared=group" repository),
                 * or put another repository in its place? */
                g_autofree char *why = root_path_check_repository(repo);
                if (why) {
                        g_autofree char *who = isempty(setting)
                                ? g_strdup_printf("The Updater would run as root (the owner of %s)", repo)
                                : g_strdup_printf("UpdaterUser '%s' is root", setting);
                        *ret_error = g_strdup_printf(
                                "%s, but %s: whoever can write it would choose what root runs (git config, build "
                                "scripts); make the repository root's alone or set UpdaterUser to the user who "
                                "writes it", who, why);
                        return -EPERM;
                }
        }
        *ret_user = TAKE_PTR(user);
        return 0;
}

/* ---- SetSettings ---- */

static bool str_changed(const char *a, const char *b) {
        return !streq(strempty(a), strempty(b));
}

static bool strv_changed(char **a, char **b) {
        return !g_strv_equal((const char *const *) (a ? a : (char *[]) { NULL }),
                             (const char *const *) (b ? b : (char *[]) { NULL }));
}

static bool argvv_changed(char ***a, char ***b) {
        size_t n = argvv_length(a);
        if (n != argvv_length(b))
                return true;
        for (size_t i = 0; i < n; i++)
                if (strv_changed(a[i], b[i]))
                        return true;
        return false;
}

static char *check_command(const char *setting, char *const *argv, const char *repo) {
        if (!argv || !argv[0])
                return NULL;
        g_autofree char *where = NULL;
        g_autofree char *path = step_find_executable(argv[0], repo, &where);
        if (path)
                return NULL;
        return g_strdup_printf("Setting '%s': command '%s' not found (looked %s%s).", setting, argv[0],
                               where && where[0] == '/' ? "for " : "", strempty(where));
}

static char *check_commands(const LauncherConfig *old, const LauncherConfig *c) {
        bool repo = str_changed(old->updater_repository, c->updater_repository);
        if (repo || argvv_changed(old->updater_build_commands, c->updater_build_commands))
                for (char ***a = c->updater_build_commands; a && *a; a++) {
                        char *why = check_command("UpdaterBuildCommands", *a, c->updater_repository);
                        if (why)
                                return why;
                }
        if (repo || argvv_changed(old->updater_restart_commands, c->updater_restart_commands))
                for (char ***a = c->updater_restart_commands; a && *a; a++) {
                        char *why = check_command("UpdaterRestartCommands", *a, c->updater_repository);
                        if (why)
                                return why;
                }
        if (repo || strv_changed(old->updater_health_command, c->updater_health_command))
                return check_command("UpdaterHealthCommand", c->updater_health_command, c->updater_repository);
        return NULL;
}

static char *check_user(const LauncherConfig *old, const LauncherConfig *c) {
        if (!str_changed(old->updater_repository, c->updater_repository) &&
            !str_changed(old->updater_user, c->updater_user))
                return NULL;
        if (isempty(c->updater_repository)) {
                /* nothing runs; still, a name that does not exist is a typo */
                g_autoptr(StepUser) u = NULL;
                if (!isempty(c->updater_user) && step_user_lookup(c->updater_user, &u) < 0)
                        return g_strdup_printf("Setting 'UpdaterUser': user '%s' does not exist.", c->updater_user);
                return NULL;
        }
        RepoOwner owner;
        g_autofree char *why = NULL;
        int r = repo_owner_read(c->updater_repository, &owner, &why);
        if (r < 0) {
                /* No repository yet: only the name can be checked now; the
                 * transaction checks the rest before it runs anything. */
                g_autoptr(StepUser) u = NULL;
                if (!isempty(c->updater_user) && step_user_lookup(c->updater_user, &u) < 0)
                        return g_strdup_printf("Setting 'UpdaterUser': user '%s' does not exist.", c->updater_user);
                return NULL;
        }
        g_autoptr(StepUser) user = NULL;
        g_clear_pointer(&why, g_free);
        r = updater_user_decide(c->updater_repository, c->updater_user, &owner, &user, &why);
        if (r == -EAGAIN)
                return NULL; /* the owner is asked for when the updater runs */
        if (r < 0)
                return g_strdup_printf("Setting 'UpdaterUser': %s.", why);
        return NULL;
}

static char *check_units(const LauncherConfig *old, const LauncherConfig *c, const char *vmm_url) {
        if (!strv_changed(old->updater_restart_units, c->updater_restart_units) &&
            !str_changed(old->vmm_url, c->vmm_url))
                return NULL;
        for (char **unit = c->updater_restart_units; unit && *unit; unit++) {
                g_autofree char *why = unit_guard_check(*unit, vmm_url);
                if (why)
                        return g_strdup_printf("Setting 'UpdaterRestartUnits': %s.", why);
        }
        return NULL;
}

char *updater_settings_check(const LauncherConfig *old, const LauncherConfig *new, const char *vmm_url) {
        char *why = check_user(old, new);
        if (!why)
                why = check_commands(old, new);
        if (!why)
                why = check_units(old, new, vmm_url);
        return why;
}
