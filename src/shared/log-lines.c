/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include <glib.h>

#include "shared/log-lines.h"

char *log_text_make_valid(const char *text, size_t n) {
        /* With a length, GLib replaces each invalid byte and each NUL by U+FFFD. */
        return g_utf8_make_valid(n > 0 ? text : "", (gssize) n);
}

/* The length of the sequence a lead byte starts, 0 for a byte that starts none. */
static size_t utf8_sequence_length(unsigned char c) {
        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf)
                return 2;
        if (c >= 0xe0 && c <= 0xef)
                return 3;
        if (c >= 0xf0 && c <= 0xf4)
                return 4;
        return 0;
}

size_t utf8_incomplete_tail(const char *p, size_t n) {
        /* A lead byte among the last three whose sequence runs past the end,
         * followed only by continuation bytes. */
        for (size_t k = 1; k <= 3 && k <= n; k++) {
                unsigned char c = (unsigned char) p[n - k];
                if ((c & 0xc0) == 0x80)
                        continue;
                size_t want = utf8_sequence_length(c);
                return want > k ? k : 0;
        }
        return 0;
}

static void emit(const char *p, size_t n, log_line_cb cb, void *userdata) {
        g_autofree char *valid = log_text_make_valid(p, n);
        cb(valid, strlen(valid), userdata);
}

void log_lines_feed(LogLines *l, const void *data, size_t size, log_line_cb cb, void *userdata) {
        const char *p = data, *end = p + size;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) + 1 : (size_t) (end - p);
                if (l->len + n > sizeof l->buf) {
                        /* An overlong line goes out in pieces, never cut inside a character. */
                        size_t take = sizeof l->buf - l->len;
                        memcpy(l->buf + l->len, p, take);
                        p += take;
                        size_t keep = utf8_incomplete_tail(l->buf, sizeof l->buf);
                        emit(l->buf, sizeof l->buf - keep, cb, userdata);
                        memmove(l->buf, l->buf + sizeof l->buf - keep, keep);
                        l->len = keep;
                        continue;
                }
                memcpy(l->buf + l->len, p, n);
                l->len += n;
                p += n;
                if (nl) {
                        emit(l->buf, l->len, cb, userdata);
                        l->len = 0;
                }
        }
}

void log_lines_finish(LogLines *l, log_line_cb cb, void *userdata) {
        if (l->len == 0)
                return;
        g_autofree char *valid = log_text_make_valid(l->buf, l->len);
        g_autofree char *line = g_strconcat(valid, "\n", NULL);
        l->len = 0;
        cb(line, strlen(line), userdata);
}
