/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <glib.h>

#include "core/root-path.h"
#include "shared/macro.h"

#define LINKS_MAX 40

/* NULL when only root can change what is in st (a directory or a file).
 * A POSIX ACL needs no reading of its own: with one, the mode's group bits
 * are its mask, the most any named user or group may do (acl(5)), so an
 * entry that lets someone write shows as group write here. The ACL is only
 * looked up to say so. */
static char *judge(const char *path, const struct stat *st, bool on_the_way) {
        if (st->st_uid != 0)
                return g_strdup_printf("%s is owned by uid %u, not by root", path, (unsigned) st->st_uid);
        if ((st->st_mode & 0022) && !(on_the_way && S_ISDIR(st->st_mode) && (st->st_mode & S_ISVTX))) {
                bool acl = lgetxattr(path, "system.posix_acl_access", NULL, 0) > 0;
                return g_strdup_printf("%s is writable by group or others%s (mode %04o)", path,
                                       acl ? ", or by a user or group its ACL names" : "",
                                       (unsigned) (st->st_mode & 07777));
        }
        return NULL;
}

/* Walks dir from "/" as the kernel would, checking every directory it
 * enters. Returns an O_PATH fd of dir, or < 0 with *ret_why. */
static int walk(const char *dir, bool file_last, char **ret_why) {
        if (isempty(dir) || dir[0] != '/') {
                *ret_why = g_strdup_printf("%s is not an absolute path", strempty(dir));
                return -EINVAL;
        }
        /* components still to walk, first one last */
        GPtrArray *todo = g_ptr_array_new_with_free_func(g_free);
        g_auto(GStrv) parts = g_strsplit(dir, "/", -1);
        for (size_t i = g_strv_length(parts); i > 0; i--)
                g_ptr_array_add(todo, g_strdup(parts[i - 1]));
        GString *path = g_string_new("/");
        int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        int r = fd < 0 ? -errno : 0, links = 0;
        struct stat st;
        if (r >= 0 && fstat(fd, &st) < 0)
                r = -errno;
        if (r >= 0 && (*ret_why = judge("/", &st, todo->len > 0)))
                r = -EPERM;
        while (r >= 0 && todo->len > 0) {
                g_autofree char *c = g_ptr_array_steal_index(todo, todo->len - 1);
                if (isempty(c) || streq(c, "."))
                        continue;
                bool last = true;
                for (guint i = 0; i < todo->len; i++) {
                        const char *rest = todo->pdata[i];
                        if (!isempty(rest) && !streq(rest, "."))
                                last = false;
                }
                if (streq(c, "..")) {
                        char *slash = strrchr(path->str, '/');
                        g_string_truncate(path, slash && slash != path->str ? (gsize) (slash - path->str) : 1);
                } else {
                        if (path->len > 1)
                                g_string_append_c(path, '/');
                        g_string_append(path, c);
                }
                int nfd = openat(fd, c, O_PATH | O_NOFOLLOW | O_CLOEXEC);
                if (nfd < 0) {
                        r = -errno;
                        *ret_why = g_strdup_printf("%s cannot be opened: %s", path->str, g_strerror(-r));
                        break;
                }
                if (fstat(nfd, &st) < 0) {
                        r = -errno;
                        close(nfd);
                        break;
                }
                if (S_ISLNK(st.st_mode)) {
                        /* the link's directory passed: only root can change it */
                        char target[PATH_MAX];
                        ssize_t n = readlinkat(nfd, "", target, sizeof target - 1);
                        close(nfd);
                        if (n < 0 || ++links > LINKS_MAX) {
                                r = n < 0 ? -errno : -ELOOP;
                                *ret_why = g_strdup_printf("%s cannot be followed: %s", path->str, g_strerror(-r));
                                break;
                        }
                        target[n] = 0;
                        g_auto(GStrv) more = g_strsplit(target, "/", -1);
                        for (size_t i = g_strv_length(more); i > 0; i--)
                                g_ptr_array_add(todo, g_strdup(more[i - 1]));
                        if (target[0] == '/') {
                                int rfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                                if (rfd < 0) {
                                        r = -errno;
                                        break;
                                }
                                close(fd);
                                fd = rfd;
                                g_string_assign(path, "/");
                        } else {
                                char *slash = strrchr(path->str, '/');
                                g_string_truncate(path, slash && slash != path->str ? (gsize) (slash - path->str) : 1);
                        }
                        continue;
                }
                close(fd);
                fd = nfd;
                if (file_last && last && S_ISREG(st.st_mode)) {
                        if ((*ret_why = judge(path->str, &st, false)))
                                r = -EPERM;
                        break;
                }
                if (!S_ISDIR(st.st_mode)) {
                        *ret_why = g_strdup_printf("%s is not a directory", path->str);
                        r = -ENOTDIR;
                        break;
                }
                if ((*ret_why = judge(path->str, &st, !last)))
                        r = -EPERM;
        }
        g_string_free(path, TRUE);
        g_ptr_array_unref(todo);
        if (r < 0) {
                if (fd >= 0)
                        close(fd);
                if (!*ret_why)
                        *ret_why = g_strdup_printf("%s cannot be checked: %s", dir, g_strerror(-r));
                return r;
        }
        return fd;
}

char *root_path_check_dir(const char *dir) {
        char *why = NULL;
        int fd = walk(dir, false, &why);
        if (fd >= 0)
                close(fd);
        return why;
}

char *root_path_check_file(const char *path) {
        char *why = NULL;
        int fd = walk(path, true, &why);
        if (fd >= 0)
                close(fd);
        return why;
}

char *root_path_check_repository(const char *dir) {
        char *why = NULL;
        _cleanup_close_ int fd = walk(dir, false, &why);
        if (fd < 0)
                return why;
        g_autofree char *git = g_build_filename(dir, ".git", NULL);
        _cleanup_close_ int gitfd = openat(fd, ".git", O_PATH | O_NOFOLLOW | O_CLOEXEC);
        struct stat st;
        if (gitfd < 0 || fstat(gitfd, &st) < 0 || !S_ISDIR(st.st_mode))
                return g_strdup_printf("%s is not a directory", git);
        if ((why = judge(git, &st, false)))
                return why;
        static const char *const files[] = { "config", "config.worktree" };
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                g_autofree char *path = g_build_filename(git, files[i], NULL);
                if (fstatat(gitfd, files[i], &st, AT_SYMLINK_NOFOLLOW) < 0) {
                        if (errno == ENOENT)
                                continue;
                        return g_strdup_printf("%s cannot be checked: %s", path, g_strerror(errno));
                }
                if (!S_ISREG(st.st_mode))
                        return g_strdup_printf("%s is not a regular file", path);
                if ((why = judge(path, &st, false)))
                        return why;
        }
        return NULL;
}
