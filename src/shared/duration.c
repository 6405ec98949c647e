/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "shared/duration.h"
#include "shared/macro.h"

int duration_parse_usec_unit(const char *s, uint64_t *ret, const char **ret_unit) {
        static const struct {
                const char *suffix;
                uint64_t mult;
        } units[] = {
                { "us", 1 }, { "ms", 1000 }, { "min", 60000000ULL }, { "s", 1000000ULL }, { "h", 3600000000ULL },
                { "d", 86400000000ULL }, { "", 1000000ULL },
        };
        char *end;

        /* strtoull() skips spaces and takes "+" and "-" (" -1us" would be
         * 2^64-1): only digits may start a duration. */
        if (!s || s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        bool overflow = errno == ERANGE;
        if ((errno && !overflow) || end == s)
                return -EINVAL;
        /* A bad unit is -EINVAL even after too many digits (found by
         * fuzz-duration). */
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(end, units[i].suffix)) {
                        if (overflow || v > UINT64_MAX / units[i].mult)
                                return -ERANGE;
                        *ret = (uint64_t) v * units[i].mult;
                        if (ret_unit)
                                *ret_unit = isempty(units[i].suffix) ? "s" : units[i].suffix;
                        return 0;
                }
        return -EINVAL;
}

int duration_parse_usec(const char *s, uint64_t *ret) {
        return duration_parse_usec_unit(s, ret, NULL);
}
