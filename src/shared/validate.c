/* SPDX-License-Identifier: Apache-2.0 */
#include <string.h>

#include <glib.h>

#include "shared/url.h"
#include "shared/validate.h"

static bool is_alpha_(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static bool is_digit(char c) {
        return c >= '0' && c <= '9';
}

bool env_key_is_valid(const char *key) {
        if (!key || !is_alpha_(key[0]))
                return false;
        size_t n = 1;
        for (const char *p = key + 1; *p; p++, n++)
                if (!is_alpha_(*p) && !is_digit(*p))
                        return false;
        return n <= ENV_KEY_MAX;
}

bool env_value_is_valid(const char *value) {
        if (!value)
                return false;
        size_t n = strlen(value);
        return n <= ENV_VALUE_MAX && g_utf8_validate(value, (gssize) n, NULL);
}

bool url_is_valid(const char *url) {
        return url_check(url, NULL) == NULL;
}

bool vm_name_is_valid(const char *name) {
        if (!name || !name[0] || strlen(name) > 63)
                return false;
        for (const char *p = name; *p; p++)
                if (!is_alpha_(*p) && !is_digit(*p) && !strchr("-. @~!$^()", *p))
                        return false;
        return true;
}

bool http_etag_is_valid(const char *etag) {
        if (!etag)
                return false;
        size_t n = strnlen(etag, HTTP_VALIDATOR_MAX + 1);
        if (n > HTTP_VALIDATOR_MAX)
                return false;
        const char *p = etag;
        if (strncmp(p, "W/", 2) == 0)
                p += 2;
        size_t k = strlen(p);
        if (k < 2 || p[0] != '"' || p[k - 1] != '"')
                return false;
        for (size_t i = 1; i < k - 1; i++) {
                unsigned char c = (unsigned char) p[i];
                if (c < 0x21 || c == '"' || c > 0x7e)
                        return false;
        }
        return true;
}

bool http_date_is_valid(const char *date) {
        if (!date)
                return false;
        size_t n = strnlen(date, HTTP_VALIDATOR_MAX + 1);
        if (n == 0 || n > HTTP_VALIDATOR_MAX || date[0] == ' ' || date[n - 1] == ' ')
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) date[i] < 0x20 || (unsigned char) date[i] > 0x7e)
                        return false;
        return true;
}
