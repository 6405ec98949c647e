/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: a VM's log escaped for the operator's terminal
 * (shared/term-escape.c). The first byte picks where the stream is cut in two
 * chunks. What comes out is valid UTF-8 with no control character but '\n'
 * and '\t' (no C0 but those, no DEL, no C1), the same whatever the cut; text
 * without control characters passes unchanged. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "shared/term-escape.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        g_log_set_always_fatal(G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_WARNING);
        return 0;
}

static bool is_control(gunichar u) {
        return (u < 0x20 && u != '\n' && u != '\t') || (u >= 0x7f && u <= 0x9f);
}

static char *escaped(const char *p, size_t n, size_t cut) {
        GString *out = g_string_new(NULL);
        TermEscape t = {};
        term_escape_feed(&t, p, cut, out);
        term_escape_feed(&t, p + cut, n - cut, out);
        term_escape_finish(&t, out);
        return g_string_free(out, FALSE);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size == 0)
                return 0;
        const char *p = (const char *) data + 1;
        size_t n = size - 1, cut = n ? data[0] % (n + 1) : 0;

        g_autofree char *whole = escaped(p, n, n);
        g_autofree char *two = escaped(p, n, cut);
        if (strcmp(whole, two) != 0 || !g_utf8_validate(whole, -1, NULL))
                abort();
        for (const char *q = whole; *q; q = g_utf8_next_char(q))
                if (is_control(g_utf8_get_char(q)))
                        abort();

        /* Printable text (no control character, no "\r") is shown as it is. */
        bool plain = g_utf8_validate_len(p, n, NULL);
        for (const char *q = p; plain && q < p + n; q = g_utf8_next_char(q))
                plain = !is_control(g_utf8_get_char(q));
        if (plain && (strlen(whole) != n || memcmp(whole, p, n) != 0))
                abort();
        return 0;
}
