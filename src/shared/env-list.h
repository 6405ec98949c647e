/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/* The env handed to a VM: ordered key/value pairs. Values are secrets
 * (HOTKEY_PASSPHRASE): they are wiped when freed and never appear in
 * messages. */
typedef struct EnvEntry {
        char *key;
        char *value;
} EnvEntry;

typedef struct EnvList {
        EnvEntry *entries;
        size_t n;
} EnvList;

#define ENV_LIST_INIT { 0 }

/* Appends copies of key and value. Returns 0 or -ENOMEM. */
int env_list_add(EnvList *l, const char *key, const char *value);

/* Wipes the values, frees everything and resets l to empty. */
void env_list_clear(EnvList *l);
#define _cleanup_env_list_ __attribute__((cleanup(env_list_clear)))

/* The value for key, or NULL. */
const char *env_list_get(const EnvList *l, const char *key);

/* Checks what the dstack guest checks (validate.h): key syntax, value size
 * and UTF-8, no duplicate keys, entry count, key+value total. Returns 0, or
 * -EINVAL with *ret_error (malloc'd) naming the entry index and, when
 * valid, the key — never the value. */
int env_list_validate(const EnvList *l, char **ret_error);

/* As env_list_validate() over the entries whose key is in allowed
 * (NULL-terminated; NULL = all): the others are never sent, and the guest
 * skips them before any rule, so they cannot fail anything. */
int env_list_validate_allowed(const EnvList *l, char *const *allowed, char **ret_error);
