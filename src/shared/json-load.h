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
 * (kind, in env.KEY)" without the token json-glib quotes; the member path
 * (data may be NULL) shows plain names only ("?" for any other). -EINVAL. */
int json_load_syntax_error(const GError *e, const char *data, size_t len, char **ret_error);

/* The path of members ("env.KEY", "a.[]") open at line:column, or NULL at
 * the top level. Malloc'd. */
char *json_load_path_at(const char *data, size_t len, unsigned line, unsigned column);
