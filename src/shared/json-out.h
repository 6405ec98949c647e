/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Append-only writer for compact JSON, byte-compatible with serde_json's
 * compact output: the compose hash and the env plaintext depend on it.
 * Commas are inserted automatically; the caller writes keys in the order
 * it wants them (serde sorts maps, so callers pass keys sorted).
 * Errors are sticky: after the first one every call is a no-op and
 * json_out_finish() reports it. Zero-initialise, or use JSON_OUT_INIT. */
typedef struct JsonOut {
        char *buf;
        size_t len, allocated;
        int error;       /* 0, -ENOMEM, -EINVAL (invalid UTF-8) */
        bool comma;      /* a value was written at this level */
        bool sensitive;  /* wipe old buffers when growing and on free */
} JsonOut;

#define JSON_OUT_INIT { 0 }
#define JSON_OUT_SENSITIVE_INIT { .sensitive = true }

void json_out_begin_object(JsonOut *j);
void json_out_end_object(JsonOut *j);
void json_out_begin_array(JsonOut *j);
void json_out_end_array(JsonOut *j);
void json_out_key(JsonOut *j, const char *key);

/* s must be valid UTF-8; NUL bytes inside the _len variant become \u0000. */
void json_out_string(JsonOut *j, const char *s);
void json_out_string_len(JsonOut *j, const char *s, size_t n);
void json_out_int(JsonOut *j, int64_t v);
void json_out_uint(JsonOut *j, uint64_t v);
void json_out_bool(JsonOut *j, bool b);

/* Hands over the NUL-terminated buffer (ret_len may be NULL) and resets j.
 * Returns 0, or the sticky error (and frees). */
int json_out_finish(JsonOut *j, char **ret, size_t *ret_len);

/* Frees (wiping first when sensitive) without returning the buffer. */
void json_out_done(JsonOut *j);
