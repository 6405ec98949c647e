/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/env-list.h"
#include "shared/macro.h"
#include "shared/validate.h"

int env_list_add(EnvList *l, const char *key, const char *value) {
        _cleanup_free_ char *k = strdup(key);
        _cleanup_erase_free_ char *v = strdup(value);
        if (!k || !v)
                return -ENOMEM;
        EnvEntry *e = realloc(l->entries, sizeof(EnvEntry) * (l->n + 1));
        if (!e)
                return -ENOMEM;
        l->entries = e;
        l->entries[l->n++] = (EnvEntry) { .key = TAKE_PTR(k), .value = TAKE_PTR(v) };
        return 0;
}

void env_list_clear(EnvList *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->entries[i].key);
                erase_and_free(l->entries[i].value);
        }
        free(l->entries);
        *l = (EnvList) ENV_LIST_INIT;
}

const char *env_list_get(const EnvList *l, const char *key) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->entries[i].key, key))
                        return l->entries[i].value;
        return NULL;
}

_printf_(2, 3)
static int fail(char **ret_error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        if (ret_error && vasprintf(ret_error, fmt, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return -EINVAL;
}

static bool listed(char *const *allowed, const char *key) {
        if (!allowed)
                return true;
        for (char *const *a = allowed; *a; a++)
                if (streq(*a, key))
                        return true;
        return false;
}

static int check_entry(const EnvList *l, size_t i, char *const *allowed, char **ret_error) {
        const EnvEntry *e = &l->entries[i];
        if (!env_key_is_valid(e->key))
                return fail(ret_error, "env[%zu]: key is not a valid name "
                            "(^[A-Za-z_][A-Za-z0-9_]*$, at most %d bytes)", i, ENV_KEY_MAX);
        if (!e->value || strlen(e->value) > ENV_VALUE_MAX)
                return fail(ret_error, "env[%zu] (%s): value exceeds %d bytes",
                            i, e->key, ENV_VALUE_MAX);
        if (!env_value_is_valid(e->value))
                return fail(ret_error, "env[%zu] (%s): value is not valid UTF-8", i, e->key);
        for (size_t k = 0; k < i; k++)
                if (listed(allowed, l->entries[k].key) && streq(l->entries[k].key, e->key))
                        return fail(ret_error, "env[%zu] (%s): duplicate key", i, e->key);
        return 0;
}

int env_list_validate_allowed(const EnvList *l, char *const *allowed, char **ret_error) {
        size_t n = 0, total = 0;
        for (size_t i = 0; i < l->n; i++) {
                /* The guest skips an unlisted key before any rule (dstack
                 * dstack-util/src/parse_env_file.rs parse_env), and it is
                 * never sent anyway. */
                if (!listed(allowed, l->entries[i].key))
                        continue;
                int r = check_entry(l, i, allowed, ret_error);
                if (r < 0)
                        return r;
                n++;
                total += strlen(l->entries[i].key) + strlen(l->entries[i].value);
        }
        if (n > ENV_MAX_ENTRIES)
                return fail(ret_error, "env: %zu entries, at most %d allowed", n, ENV_MAX_ENTRIES);
        if (total > ENV_MAX_TOTAL_BYTES)
                return fail(ret_error, "env: keys and values total %zu bytes, at most %d allowed",
                            total, ENV_MAX_TOTAL_BYTES);
        return 0;
}

int env_list_validate(const EnvList *l, char **ret_error) {
        return env_list_validate_allowed(l, NULL, ret_error);
}
