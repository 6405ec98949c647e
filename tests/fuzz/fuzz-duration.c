/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: platformctl's duration parser (shared/duration.c). An
 * accepted text must be ^[0-9]+(us|ms|s|min|h|d)?$ and its value the exact
 * product, computed here independently with overflow checks. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shared/duration.h"
#include "shared/macro.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

/* 0 and the value, -ERANGE, or -EINVAL. */
static int reference(const char *s, uint64_t *ret) {
        uint64_t v = 0, mult;
        bool overflow = false;
        size_t i = 0;

        while (s[i] >= '0' && s[i] <= '9') {
                unsigned d = (unsigned) (s[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        overflow = true;
                else
                        v = v * 10 + d;
                i++;
        }
        if (i == 0)
                return -EINVAL;
        const char *u = s + i;
        if (streq(u, "us"))
                mult = 1;
        else if (streq(u, "ms"))
                mult = 1000;
        else if (streq(u, "s") || streq(u, ""))
                mult = 1000000;
        else if (streq(u, "min"))
                mult = 60000000;
        else if (streq(u, "h"))
                mult = 3600000000ULL;
        else if (streq(u, "d"))
                mult = 86400000000ULL;
        else
                return -EINVAL;
        if (overflow || v > UINT64_MAX / mult)
                return -ERANGE;
        *ret = v * mult;
        return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 256)
                return 0;
        char s[257];
        memcpy(s, data, size);
        s[size] = '\0';
        uint64_t got = 0, want = 0;
        int r = duration_parse_usec(s, &got), w = reference(s, &want);
        /* Unsigned overflow in strtoull() is -ERANGE too: the same class. */
        if (r != w || (r == 0 && got != want))
                abort();
        return 0;
}
