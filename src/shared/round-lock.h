/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <sys/types.h>

/* The validator's round lockfile (updater.md, gate "round-lock") may hold
 * JSON naming its holder: {"pid": 1234, ...}. Pure: the pid when the bytes
 * are such an object with a positive integer "pid" that fits a pid_t, 0 for
 * anything else (an empty file, other JSON, garbage). Never fails otherwise:
 * a lockfile's presence is what counts, its content only makes it stale. */
pid_t round_lock_parse_pid(const char *data, size_t len);

/* The most the daemon reads of a lockfile; a larger one is no lockfile. */
#define ROUND_LOCK_FILE_MAX (64u * 1024u)
