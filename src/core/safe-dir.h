/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A directory the root daemon writes a file into that someone else may have
 * chosen (MetricsPath): nobody but root (or the daemon's uid) may be able to
 * swap the file or redirect the write. Every component is opened with
 * O_NOFOLLOW from "/" down, so a symbolic link anywhere is refused, not
 * followed; the directory itself must be owned by root or the daemon's uid
 * and not be writable by group or others. A directory on the way may belong
 * to someone else (Debian's /var/lib/prometheus is prometheus'): whatever they
 * put in place of a component is a link (refused) or their own directory
 * (refused as the directory written into, or leading to one they cannot
 * have made root's). */

/* Why dir would be refused (malloc'd, naming the component), NULL when it
 * is fine. A missing part is fine: safe_dir_open creates it, root's, 0755,
 * and checks what it then opens. */
char *safe_dir_check(const char *dir);

/* Opens dir (creating missing components 0755 when create) as checked
 * above. Returns the fd, -ENOENT when missing and !create, or < 0 with
 * *ret_why (malloc'd) saying why it was refused. */
int safe_dir_open(const char *dir, bool create, char **ret_why);

/* Replaces dirfd/name atomically: a temp file ".name.XXXXXXXX" created with
 * O_CREAT|O_EXCL|O_NOFOLLOW and the given mode, written, fsync'ed, renamed
 * over name (renameat replaces a symbolic link, never follows it), and the
 * directory fsync'ed. On failure name is untouched and the temp file gone. */
int safe_write_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode);
