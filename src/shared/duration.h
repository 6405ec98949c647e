/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdint.h>

/* A duration as platformctl takes it: decimal digits and an optional unit,
 * ^[0-9]+(us|ms|s|min|h|d)?$ (no unit = seconds). Pure. 0 with *ret in
 * microseconds, -EINVAL for anything else (signs, spaces, other units),
 * -ERANGE when it does not fit 64 bits. */
int duration_parse_usec(const char *s, uint64_t *ret);
/* The same; *ret_unit (if not NULL) is the unit the text used ("s" when none),
 * so a message can answer in the user's unit. */
int duration_parse_usec_unit(const char *s, uint64_t *ret, const char **ret_unit);
