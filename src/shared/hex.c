/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "shared/hex.h"

char *hex_encode(const uint8_t *data, size_t n) {
        static const char digits[] = "0123456789abcdef";
        char *s = malloc(n * 2 + 1);
        if (!s)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                s[2 * i] = digits[data[i] >> 4];
                s[2 * i + 1] = digits[data[i] & 0xf];
        }
        s[n * 2] = '\0';
        return s;
}

static int unhex_char(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -EINVAL;
}

static int hex_decode_into(const char *s, size_t len, uint8_t *out) {
        for (size_t i = 0; i < len / 2; i++) {
                int hi = unhex_char(s[2 * i]), lo = unhex_char(s[2 * i + 1]);
                if (hi < 0 || lo < 0)
                        return -EINVAL;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        return 0;
}

static const char *skip_prefix(const char *s) {
        return (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? s + 2 : s;
}

int hex_decode(const char *s, uint8_t **ret, size_t *ret_len) {
        s = skip_prefix(s);
        size_t len = strlen(s);
        if (len % 2)
                return -EINVAL;
        uint8_t *out = malloc(len / 2 + 1);
        if (!out)
                return -ENOMEM;
        if (hex_decode_into(s, len, out) < 0) {
                free(out);
                return -EINVAL;
        }
        *ret = out;
        *ret_len = len / 2;
        return 0;
}

int hex_decode_exact(const char *s, uint8_t *buf, size_t n) {
        s = skip_prefix(s);
        if (strlen(s) != n * 2)
                return -EINVAL;
        return hex_decode_into(s, n * 2, buf);
}
