/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

/* A VMM log as a reader gets it: the bytes the VMM sends (untrusted: any
 * byte, any chunking) cut into lines, each valid UTF-8. An invalid byte or a
 * NUL becomes U+FFFD; a line longer than LOG_LINE_MAX bytes goes out in
 * pieces cut between characters, the last piece carrying its '\n'. Pure. */

#define LOG_LINE_MAX (16u * 1024u)

/* One line with its '\n' (or a piece of an overlong line, without); valid
 * UTF-8 of at most 3 * LOG_LINE_MAX bytes, no NUL; line[n] is '\0'. */
typedef void (*log_line_cb)(const char *line, size_t n, void *userdata);

typedef struct LogLines {
        char buf[LOG_LINE_MAX]; /* a line not complete yet */
        size_t len;
} LogLines;

void log_lines_feed(LogLines *l, const void *data, size_t size, log_line_cb cb, void *userdata);
/* The stream ended: a last line without '\n' goes out with one. */
void log_lines_finish(LogLines *l, log_line_cb cb, void *userdata);

/* Text (GetLogs' reply) as valid UTF-8: invalid bytes and NULs as U+FFFD. Malloc'd. */
char *log_text_make_valid(const char *text, size_t n);

/* How many bytes at the end of p[0..n) begin a UTF-8 sequence that the next
 * bytes may complete (0..3): where a cut must not fall. */
size_t utf8_incomplete_tail(const char *p, size_t n);
