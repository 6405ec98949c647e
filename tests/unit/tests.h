/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdio.h>
#include <stdlib.h>

/* Always-on assertion (systemd's assert_se idea): evaluated in every build,
 * -Db_ndebug=true included, so a side effect inside it is never lost. */
#define assert_se(expr)                                                                        \
        do {                                                                                   \
                if (__builtin_expect(!(expr), 0)) {                                            \
                        fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", __FILE__, __LINE__, \
                                __func__, #expr);                                              \
                        abort();                                                               \
                }                                                                              \
        } while (0)
