/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <glib.h>

/* A VM's log shown on the operator's terminal: nothing in it may drive the
 * terminal. Control characters other than newline and tab (C0, DEL, and C1
 * U+0080..U+009F) are shown escaped the way systemd's cescape() writes them
 * (src/basic/escape.c: \a \b \f \r \v, else a backslash and three octal
 * digits per byte: ESC is \033, U+009B is \302\233); so is a byte that is not
 * UTF-8. A '\r' right before '\n' is dropped, as journalctl drops it (a
 * serial console's line end). Everything else passes as it is. Works on a
 * stream: a character or a "\r\n" cut between two chunks comes out the same.
 * Pure. */

typedef struct TermEscape {
        char pend[4];     /* an incomplete UTF-8 sequence at the end of the last chunk */
        size_t n_pend;
        bool cr;          /* a '\r' at the end of the last chunk */
} TermEscape;

void term_escape_feed(TermEscape *t, const char *data, size_t n, GString *out);
/* The stream ended: what was held back goes out, escaped. */
void term_escape_finish(TermEscape *t, GString *out);
