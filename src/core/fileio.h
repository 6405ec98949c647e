/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* Reads a whole file of at most max bytes. -ENOENT when absent, -EFBIG when larger. */
int read_file_limited(const char *path, size_t max, char **ret, size_t *ret_len);
/* The same from an open fd (read from its current offset; not closed). */
int read_fd_limited(int fd, size_t max, char **ret, size_t *ret_len);

/* Replaces path atomically: temp file in the same directory with the given
 * mode, write, fsync, rename over path, fsync the directory. The directory is
 * created (0755) if missing. On failure path is untouched. */
int write_file_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* write() until all of data is written (EINTR retried); -errno. */
int write_all(int fd, const void *data, size_t len);

/* mkdir -p with mode for every created component. */
int mkdir_p(const char *path, mode_t mode);
