/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/hex.h"
#include "shared/macro.h"
#include "tests.h"

int main(void) {
        const uint8_t in[] = { 0x00, 0x01, 0xab, 0xff };
        _cleanup_free_ char *s = hex_encode(in, sizeof in);
        assert_se(s && streq(s, "0001abff"));

        _cleanup_free_ uint8_t *out = NULL;
        size_t n = 0;
        assert_se(hex_decode("0x0001ABff", &out, &n) == 0);
        assert_se(n == 4 && memcmp(out, in, 4) == 0);

        uint8_t *bad = NULL;
        assert_se(hex_decode("abc", &bad, &n) == -EINVAL);
        assert_se(hex_decode("zz", &bad, &n) == -EINVAL);
        assert_se(bad == NULL);

        uint8_t buf[4];
        assert_se(hex_decode_exact("0001abff", buf, 4) == 0 && memcmp(buf, in, 4) == 0);
        assert_se(hex_decode_exact("0001ab", buf, 4) == -EINVAL);
        printf("test-hex: ok\n");
        return 0;
}
