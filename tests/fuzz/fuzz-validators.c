/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the checks on untrusted header values and URLs: a
 * response's ETag / Last-Modified before they are remembered and sent back
 * (issue 9 defect 5), and every endpoint URL (config file, SetSettings)
 * before libcurl sees it (defect 11). What is accepted is checked against
 * the rules the headers state, independently of the code under test. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "shared/macro.h"
#include "shared/url.h"
#include "shared/validate.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static bool printable(const char *s, bool space_ok) {
        for (; *s; s++)
                if ((unsigned char) *s < (space_ok ? 0x20 : 0x21) || (unsigned char) *s > 0x7e)
                        return false;
        return true;
}

static void check_etag(const char *s) {
        if (!http_etag_is_valid(s))
                return;
        size_t n = strlen(s);
        const char *q = strncmp(s, "W/", 2) == 0 ? s + 2 : s;
        size_t k = strlen(q);
        if (n > HTTP_VALIDATOR_MAX || !printable(s, false) || k < 2 || q[0] != '"' || q[k - 1] != '"' ||
            memchr(q + 1, '"', k - 2))
                abort();
}

static void check_date(const char *s) {
        if (http_date_is_valid(s) && (strlen(s) == 0 || strlen(s) > HTTP_VALIDATOR_MAX || !printable(s, true)))
                abort();
}

static void check_url(const char *s) {
        UrlKind kind = (UrlKind) -1;
        const char *why = url_check(s, &kind);
        if (why) {
                if (!*why || url_is_valid(s))
                        abort();
                return;
        }
        if (!url_is_valid(s) || strlen(s) > URL_MAX || !printable(s, false))
                abort();
        if (kind == URL_UNIX) {
                const char *p = url_unix_path(s);
                if (!p || p[0] != '/' || strlen(p) > URL_UNIX_PATH_MAX || strstr(p, "/../") || strstr(p, "/./") ||
                    strstr(p, "//") || g_str_has_suffix(p, "/..") || g_str_has_suffix(p, "/") ||
                    g_str_has_suffix(p, "/."))
                        abort();
        } else if (kind == URL_HTTP || kind == URL_HTTPS) {
                const char *rest = s + (kind == URL_HTTP ? 7 : 8);
                if (strncmp(s, kind == URL_HTTP ? "http://" : "https://", kind == URL_HTTP ? 7 : 8) != 0 ||
                    strchr(s, '#') || rest[0] == '/')
                        abort();
                size_t hostlen = strcspn(rest, "/?");
                if (memchr(rest, '@', hostlen))
                        abort();
        } else
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 4 * URL_MAX)
                return 0;
        char *s = malloc(size + 1);
        if (!s)
                return 0;
        memcpy(s, data, size);
        s[size] = '\0';
        check_etag(s);
        check_date(s);
        check_url(s);
        free(s);
        return 0;
}
