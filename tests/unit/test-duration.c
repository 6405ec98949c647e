/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>

#include "shared/duration.h"
#include "shared/macro.h"
#include "tests.h"

int main(void) {
        uint64_t u = 7;

        assert_se(duration_parse_usec("30s", &u) == 0 && u == 30000000ULL);
        assert_se(duration_parse_usec("30", &u) == 0 && u == 30000000ULL);
        assert_se(duration_parse_usec("500ms", &u) == 0 && u == 500000ULL);
        assert_se(duration_parse_usec("5min", &u) == 0 && u == 300000000ULL);
        assert_se(duration_parse_usec("2h", &u) == 0 && u == 7200000000ULL);
        assert_se(duration_parse_usec("0us", &u) == 0 && u == 0);
        assert_se(duration_parse_usec("18446744073709551615us", &u) == 0 && u == UINT64_MAX);
        assert_se(duration_parse_usec("18446744073709551616us", &u) == -ERANGE);
        assert_se(duration_parse_usec("18446744073709552h", &u) == -ERANGE);
        assert_se(duration_parse_usec("99999999999999999999999s", &u) == -ERANGE);
        assert_se(duration_parse_usec("18446744073784467440ss", &u) == -EINVAL);

        /* strtoull() would take these; a duration does not. */
        u = 7;
        static const char *const bad[] = {
                "", " 5s", "+5s", "-5s", " -1us", "\t1", "5 s", "5S", "5m", "5sec", "1.5s", "0x10", "s", NULL,
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_se(duration_parse_usec(bad[i], &u) == -EINVAL);
        assert_se(u == 7);
        printf("test-duration: ok\n");
        return 0;
}
