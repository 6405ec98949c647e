/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

#include <json-glib/json-glib.h>

#define JSON_LOAD_MAX_DEPTH 16

/* Parses untrusted bytes (need not be NUL-terminated) whose root must be an
 * object. Refuses, before json-glib sees them, documents larger than max,
 * with NUL bytes, with "\u0000" (json-glib would cut the string there) or
 * nested deeper than JSON_LOAD_MAX_DEPTH (json-glib recurses unbounded).
 * Returns 0 with the parser that owns *ret_obj, -ENOMEM, or -EINVAL with
 * *ret_error (malloc'd) "<what>: <reason>" ("<reason>" when what is NULL).
 * No error text quotes the document: a syntax error gives its line and
 * column, never the token (which may be a secret). */
int json_load_object(const char *data, size_t len, size_t max, const char *what,
                     JsonParser **ret_parser, JsonObject **ret_obj, char **ret_error);

/* Turns json-glib's parse error into "not valid JSON at line L, column C
 * (kind)" without the token json-glib quotes. Returns -EINVAL. */
int json_load_syntax_error(const GError *e, char **ret_error);
