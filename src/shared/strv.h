/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* NULL-terminated arrays of malloc'd strings. */

char **strv_free(char **l);
static inline void strv_freep(char ***l) {
        strv_free(*l);
}
#define _cleanup_strv_free_ __attribute__((cleanup(strv_freep)))

size_t strv_length(char *const *l);
bool strv_contains(char *const *l, const char *s);

/* Appends a copy of s; *l may be NULL. Returns 0 or -ENOMEM. */
int strv_extend(char ***l, const char *s);
/* Frees l[i] and moves the rest down; i < strv_length(l). */
void strv_drop(char **l, size_t i);

/* Sorts byte-wise and drops duplicates, in place. */
void strv_sort_uniq(char **l);
