/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/* Text from outside the daemon (a child's output, the VMM, the API, git) on
 * its way to the bus, the journal, the history or a terminal: valid UTF-8 (a
 * byte that is not becomes U+FFFD, a NUL '?'), no control character (C0, DEL
 * and C1 U+0080..U+009F become '?': U+009B is CSI to a terminal that honours
 * 8-bit controls), at most max bytes, cut between characters. Pure. */

typedef enum TextFlags {
        TEXT_ONE_LINE = 1u << 0,    /* newline, carriage return and tab become spaces (else kept: \n, \t) */
        TEXT_SPACES = 1u << 1,      /* control characters become spaces, not '?' */
        TEXT_NO_ELLIPSIS = 1u << 2, /* a cut text ends where it was cut, without "…" */
        TEXT_STRIP = 1u << 3,       /* leading and trailing white space removed */
} TextFlags;

/* s need not be NUL-terminated (len bytes). A cut text ends in "…" (3 bytes,
 * within max) unless TEXT_NO_ELLIPSIS. Caller frees. */
char *text_sanitize(const char *s, size_t len, size_t max, TextFlags flags);
