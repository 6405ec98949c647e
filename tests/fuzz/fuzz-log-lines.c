/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: a VMM log stream cut into lines for FollowLogs, and a
 * GetLogs text (shared/log-lines.c). The first byte picks where the stream is
 * cut in two chunks. Every line is valid UTF-8 without NUL, at most
 * 3 * LOG_LINE_MAX bytes, ends in '\n' unless it is a full piece of an
 * overlong line; the same lines come whatever the cut; valid UTF-8 without
 * NUL passes unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "shared/log-lines.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
        return 0;
}

static void collect(const char *line, size_t n, void *userdata) {
        if (strlen(line) != n || n == 0 || n > 3 * LOG_LINE_MAX || !g_utf8_validate(line, (gssize) n, NULL))
                abort();
        g_string_append_len(userdata, line, (gssize) n);
        g_string_append_c(userdata, '|');
}

static char *lines_of(const char *p, size_t n, size_t cut) {
        GString *out = g_string_new(NULL);
        LogLines *l = g_new0(LogLines, 1);
        log_lines_feed(l, p, cut, collect, out);
        log_lines_feed(l, p + cut, n - cut, collect, out);
        log_lines_finish(l, collect, out);
        g_free(l);
        return g_string_free(out, FALSE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size == 0)
                return 0;
        const char *p = (const char *) data + 1;
        size_t n = size - 1, cut = n ? data[0] % (n + 1) : 0;

        g_autofree char *whole = lines_of(p, n, n);
        g_autofree char *two = lines_of(p, n, cut);
        if (strcmp(whole, two) != 0)
                abort();

        g_autofree char *text = log_text_make_valid(p, n);
        if (!g_utf8_validate(text, -1, NULL))
                abort();
        if (g_utf8_validate_len(p, n, NULL) && (strlen(text) != n || memcmp(text, p, n) != 0))
                abort();
        return 0;
}
