/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include "shared/log-lines.h"
#include "shared/term-escape.h"

static void escape_byte(GString *out, unsigned char c) {
        static const char named[] = { ['\a'] = 'a', ['\b'] = 'b', ['\f'] = 'f', ['\r'] = 'r', ['\v'] = 'v' };
        if (c < sizeof named && named[c])
                g_string_append_c(g_string_append_c(out, '\\'), named[c]);
        else
                g_string_append_printf(out, "\\%03o", c);
}

static void put_ascii(GString *out, unsigned char c) {
        if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f))
                g_string_append_c(out, (char) c);
        else
                escape_byte(out, c);
}

/* p[0..n) holds no incomplete sequence at its end unless final. */
static void escape_span(TermEscape *t, const char *p, size_t n, GString *out) {
        size_t i = 0;
        while (i < n) {
                unsigned char c = (unsigned char) p[i];
                if (c == '\r') {
                        if (i + 1 == n) {
                                t->cr = true; /* the next chunk says whether '\n' follows */
                                return;
                        }
                        if (p[i + 1] != '\n')
                                escape_byte(out, c);
                        i++;
                        continue;
                }
                if (c < 0x80) {
                        put_ascii(out, c);
                        i++;
                        continue;
                }
                gunichar u = g_utf8_get_char_validated(p + i, (gssize) (n - i));
                if (u == (gunichar) -1 || u == (gunichar) -2) {
                        escape_byte(out, c);
                        i++;
                        continue;
                }
                size_t len = (size_t) g_utf8_skip[c];
                if (u >= 0x80 && u <= 0x9f) /* C1 controls: CSI, OSC, ST in one character */
                        for (size_t k = 0; k < len; k++)
                                escape_byte(out, (unsigned char) p[i + k]);
                else
                        g_string_append_len(out, p + i, (gssize) len);
                i += len;
        }
}

static void feed(TermEscape *t, const char *data, size_t n, bool final, GString *out) {
        if (t->cr) {
                /* Held bytes come first: a '\r' before them is no line end. */
                char next = t->n_pend > 0 ? t->pend[0] : n > 0 ? data[0] : '\0';
                t->cr = false;
                if (next != '\n')
                        escape_byte(out, '\r');
        }
        if (t->n_pend == 0 && !final) {
                size_t keep = utf8_incomplete_tail(data, n);
                escape_span(t, data, n - keep, out);
                memcpy(t->pend, data + n - keep, keep);
                t->n_pend = keep;
                return;
        }
        /* Rare: a character cut between chunks. Join the held bytes with the new ones. */
        g_autofree char *buf = g_malloc(t->n_pend + n + 1);
        memcpy(buf, t->pend, t->n_pend);
        if (n > 0)
                memcpy(buf + t->n_pend, data, n);
        size_t len = t->n_pend + n;
        t->n_pend = 0;
        size_t keep = final ? 0 : utf8_incomplete_tail(buf, len);
        escape_span(t, buf, len - keep, out);
        memcpy(t->pend, buf + len - keep, keep);
        t->n_pend = keep;
}

void term_escape_feed(TermEscape *t, const char *data, size_t n, GString *out) {
        feed(t, data, n, false, out);
}

void term_escape_finish(TermEscape *t, GString *out) {
        feed(t, NULL, 0, true, out);
        if (t->cr) {
                t->cr = false;
                escape_byte(out, '\r');
        }
}
