/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include <glib.h>

#include "shared/macro.h"
#include "shared/text.h"

static const char ellipsis[] = "…";

char *text_sanitize(const char *s, size_t len, size_t max, TextFlags flags) {
        char bad = flags & TEXT_SPACES ? ' ' : '?';
        /* A NUL would end the text early: it is a control character like the others. */
        g_autofree char *copy = g_malloc(len + 1);
        for (size_t i = 0; i < len; i++)
                copy[i] = s[i] ? s[i] : bad;
        copy[len] = 0;
        g_autofree char *valid = g_utf8_make_valid(copy, (gssize) len);
        char *w = valid;
        for (const char *p = valid; *p; p++) {
                unsigned char c = (unsigned char) *p;
                if (c == 0xc2 && (unsigned char) p[1] >= 0x80 && (unsigned char) p[1] <= 0x9f) {
                        *w++ = bad;
                        p++;
                } else if (c == '\n' || c == '\t' || c == '\r')
                        *w++ = flags & TEXT_ONE_LINE ? ' ' : c == '\r' ? bad : (char) c;
                else
                        *w++ = c < 0x20 || c == 0x7f ? bad : (char) c;
        }
        *w = 0;
        if (flags & TEXT_STRIP)
                g_strstrip(valid);
        size_t n = strlen(valid);
        if (n <= max)
                return g_strdup(valid);
        bool dots = !(flags & TEXT_NO_ELLIPSIS) && max >= sizeof ellipsis - 1;
        size_t keep = dots ? max - (sizeof ellipsis - 1) : max;
        while (keep > 0 && ((unsigned char) valid[keep] & 0xc0) == 0x80)
                keep--; /* never inside a character */
        valid[keep] = 0;
        if (flags & TEXT_STRIP)
                g_strchomp(valid);
        return g_strconcat(valid, dots ? ellipsis : "", NULL);
}
