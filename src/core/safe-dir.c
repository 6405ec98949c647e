/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "core/fileio.h"
#include "core/safe-dir.h"
#include "shared/macro.h"

/* NULL when the directory written into is fine, else why (malloc'd). */
static char *judge(const char *path, const struct stat *st) {
        if (!S_ISDIR(st->st_mode))
                return g_strdup_printf("%s is not a directory", path);
        if (st->st_uid != 0 && st->st_uid != geteuid())
                return g_strdup_printf("directory %s is owned by uid %u, not by root", path, (unsigned) st->st_uid);
        if (st->st_mode & 0022)
                return g_strdup_printf("directory %s is writable by group or others (mode %04o)", path,
                                       (unsigned) (st->st_mode & 07777));
        return NULL;
}

/* The component at fd/name was not opened: say what is there. */
static char *why_not_opened(int fd, const char *name, const char *path, int e) {
        struct stat st;
        if ((e == ELOOP || e == ENOTDIR) && fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) >= 0)
                return S_ISLNK(st.st_mode) ? g_strdup_printf("%s is a symbolic link (give the directory it points to)", path)
                                           : g_strdup_printf("%s is not a directory", path);
        return g_strdup_printf("%s cannot be opened: %s", path, g_strerror(e));
}

int safe_dir_open(const char *dir, bool create, char **ret_why) {
        *ret_why = NULL;
        if (isempty(dir) || dir[0] != '/') {
                *ret_why = g_strdup_printf("%s is not an absolute path", strempty(dir));
                return -EINVAL;
        }
        g_auto(GStrv) parts = g_strsplit(dir, "/", -1);
        size_t n = 0, last = 0;
        for (size_t i = 0; parts[i]; i++)
                if (!isempty(parts[i]) && !streq(parts[i], ".")) {
                        n++;
                        last = i;
                }

        _cleanup_close_ int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        GString *path = g_string_new("/");
        struct stat st;
        int r = 0;
        if (n == 0 && fstat(fd, &st) < 0)
                r = -errno;
        else if (n == 0 && (*ret_why = judge("/", &st)))
                r = -EPERM;
        for (size_t i = 0; r >= 0 && parts[i]; i++) {
                const char *c = parts[i];
                if (isempty(c) || streq(c, "."))
                        continue;
                if (path->len > 1)
                        g_string_append_c(path, '/');
                g_string_append(path, c);
                if (streq(c, "..")) {
                        *ret_why = g_strdup_printf("%s goes up with \"..\"", path->str);
                        r = -EINVAL;
                        break;
                }
                int nfd = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (nfd < 0 && errno == ENOENT) {
                        if (!create) {
                                r = -ENOENT;
                                break;
                        }
                        if (mkdirat(fd, c, 0755) < 0 && errno != EEXIST) {
                                r = -errno;
                                *ret_why = g_strdup_printf("%s cannot be created: %s", path->str, g_strerror(-r));
                                break;
                        }
                        nfd = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                }
                if (nfd < 0) {
                        r = -errno;
                        *ret_why = why_not_opened(fd, c, path->str, -r);
                        break;
                }
                close(fd);
                fd = nfd;
                if (i != last)
                        continue;
                if (fstat(fd, &st) < 0)
                        r = -errno;
                else if ((*ret_why = judge(path->str, &st)))
                        r = -EPERM;
        }
        g_string_free(path, TRUE);
        if (r < 0)
                return r;
        int ret = fd;
        fd = -1;
        return ret;
}

char *safe_dir_check(const char *dir) {
        char *why = NULL;
        int fd = safe_dir_open(dir, false, &why);
        if (fd >= 0)
                close(fd);
        else if (!why && fd != -ENOENT)
                why = g_strdup_printf("%s cannot be checked: %s", dir, g_strerror(-fd));
        return why;
}

int safe_write_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode) {
        g_autofree char *tmp = NULL;
        int fd = -1;
        for (int attempt = 0; fd < 0 && attempt < 16; attempt++) {
                g_free(tmp);
                tmp = g_strdup_printf(".%s.%08x", name, g_random_int());
                fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, mode);
                if (fd < 0 && errno != EEXIST)
                        return -errno;
        }
        if (fd < 0)
                return -EEXIST;

        int r = 0;
        if (fchmod(fd, mode) < 0) /* the umask may have taken bits */
                r = -errno;
        if (r >= 0)
                r = write_all(fd, data, len);
        if (r >= 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        if (r >= 0 && renameat(dirfd, tmp, dirfd, name) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlinkat(dirfd, tmp, 0);
                return r;
        }
        return fsync(dirfd) < 0 ? -errno : 0;
}
