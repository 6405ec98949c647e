/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "shared/json-out.h"
#include "shared/macro.h"

static bool reserve(JsonOut *j, size_t extra) {
        if (j->error)
                return false;
        if (j->len + extra + 1 <= j->allocated)
                return true;
        if (extra > SIZE_MAX / 4 - j->len) {
                j->error = -ENOMEM;
                return false;
        }
        size_t want = MAX(64, (j->len + extra + 1) * 2);
        /* No realloc(): a sensitive buffer must not leave copies behind. */
        char *b = malloc(want);
        if (!b) {
                j->error = -ENOMEM;
                return false;
        }
        if (j->buf) {
                memcpy(b, j->buf, j->len);
                if (j->sensitive)
                        explicit_bzero(j->buf, j->allocated);
                free(j->buf);
        }
        j->buf = b;
        j->allocated = want;
        return true;
}

static void put(JsonOut *j, const char *s, size_t n) {
        if (!reserve(j, n))
                return;
        memcpy(j->buf + j->len, s, n);
        j->len += n;
        j->buf[j->len] = '\0';
}

static void put_c(JsonOut *j, char c) {
        put(j, &c, 1);
}

static void value_prefix(JsonOut *j) {
        if (j->comma)
                put_c(j, ',');
        j->comma = true;
}

void json_out_begin_object(JsonOut *j) {
        value_prefix(j);
        put_c(j, '{');
        j->comma = false;
}

void json_out_end_object(JsonOut *j) {
        put_c(j, '}');
        j->comma = true;
}

void json_out_begin_array(JsonOut *j) {
        value_prefix(j);
        put_c(j, '[');
        j->comma = false;
}

void json_out_end_array(JsonOut *j) {
        put_c(j, ']');
        j->comma = true;
}

void json_out_key(JsonOut *j, const char *key) {
        json_out_string(j, key);
        put_c(j, ':');
        j->comma = false;
}

/* The escape for byte c, or NULL if serde_json copies it raw. */
static const char *escape_of(unsigned char c, char tmp[static 7]) {
        switch (c) {
        case '"':  return "\\\"";
        case '\\': return "\\\\";
        case '\b': return "\\b";
        case '\t': return "\\t";
        case '\n': return "\\n";
        case '\f': return "\\f";
        case '\r': return "\\r";
        default:
                if (c >= 0x20)
                        return NULL; /* includes '/', 0x7f and UTF-8 */
                snprintf(tmp, 7, "\\u%04x", c);
                return tmp;
        }
}

static void put_escaped(JsonOut *j, const char *s, size_t n) {
        size_t run = 0; /* start of the pending raw run */
        for (size_t i = 0; i < n; i++) {
                char tmp[7];
                const char *e = escape_of((unsigned char) s[i], tmp);
                if (!e)
                        continue;
                put(j, s + run, i - run);
                put(j, e, strlen(e));
                run = i + 1;
        }
        put(j, s + run, n - run);
}

/* g_utf8_validate_len() refuses NUL, which is valid UTF-8 (and escaped). */
static bool utf8_valid_with_nul(const char *s, size_t n) {
        while (n > 0) {
                const char *nul = memchr(s, '\0', n);
                size_t seg = nul ? (size_t) (nul - s) : n;
                if (!g_utf8_validate_len(s, seg, NULL))
                        return false;
                s += seg;
                n -= seg;
                if (nul) {
                        s++;
                        n--;
                }
        }
        return true;
}

void json_out_string_len(JsonOut *j, const char *s, size_t n) {
        if (j->error)
                return;
        if (!utf8_valid_with_nul(s, n)) {
                j->error = -EINVAL;
                return;
        }
        value_prefix(j);
        if (!reserve(j, n + 2))
                return;
        put_c(j, '"');
        put_escaped(j, s, n);
        put_c(j, '"');
}

void json_out_string(JsonOut *j, const char *s) {
        json_out_string_len(j, s, strlen(s));
}

void json_out_int(JsonOut *j, int64_t v) {
        char tmp[24];
        int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
        value_prefix(j);
        put(j, tmp, (size_t) n);
}

void json_out_uint(JsonOut *j, uint64_t v) {
        char tmp[24];
        int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
        value_prefix(j);
        put(j, tmp, (size_t) n);
}

void json_out_bool(JsonOut *j, bool b) {
        value_prefix(j);
        if (b)
                put(j, "true", 4);
        else
                put(j, "false", 5);
}

void json_out_done(JsonOut *j) {
        if (j->buf && j->sensitive)
                explicit_bzero(j->buf, j->allocated);
        free(j->buf);
        bool sensitive = j->sensitive;
        *j = (JsonOut) { .sensitive = sensitive };
}

int json_out_finish(JsonOut *j, char **ret, size_t *ret_len) {
        if (!j->error && !reserve(j, 0))
                j->error = -ENOMEM;
        int r = j->error;
        if (r < 0) {
                json_out_done(j);
                return r;
        }
        *ret = j->buf;
        if (ret_len)
                *ret_len = j->len;
        *j = (JsonOut) { .sensitive = j->sensitive };
        return 0;
}
