/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Lowercase hex of n bytes; NULL on allocation failure. */
char *hex_encode(const uint8_t *data, size_t n);

/* Decodes hex (either case, optional "0x" prefix, as dstack accepts).
 * Returns 0, -EINVAL on a bad digit or odd length, -ENOMEM. */
int hex_decode(const char *s, uint8_t **ret, size_t *ret_len);

/* Decodes into a fixed-size buffer; -EINVAL unless exactly n bytes. */
int hex_decode_exact(const char *s, uint8_t *buf, size_t n);
