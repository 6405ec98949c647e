/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shared/macro.h"
#include "shared/url.h"
#include "shared/validate.h"
#include "tests.h"

int main(void) {
        assert_se(env_key_is_valid("HOTKEY_PASSPHRASE"));
        assert_se(env_key_is_valid("_x9"));
        assert_se(!env_key_is_valid(""));
        assert_se(!env_key_is_valid("9X"));
        assert_se(!env_key_is_valid("A-B"));
        assert_se(!env_key_is_valid("A B"));
        assert_se(!env_key_is_valid("É"));
        /* Full match, as dstack's Rust regex: no trailing (or leading) newline,
         * unlike a Python `re.match(r"^...$")` (issue 18). */
        assert_se(!env_key_is_valid("K\n"));
        assert_se(!env_key_is_valid("K\r\n"));
        assert_se(!env_key_is_valid("\nK"));
        assert_se(!env_key_is_valid("K\nL"));

        char key[300];
        memset(key, 'K', sizeof key);
        key[255] = '\0';
        assert_se(env_key_is_valid(key));
        key[255] = 'K';
        key[256] = '\0';
        assert_se(!env_key_is_valid(key));

        char *v = malloc(128 * 1024 + 2);
        memset(v, 'v', 128 * 1024 + 1);
        v[128 * 1024] = '\0';
        assert_se(env_value_is_valid(v));
        v[128 * 1024] = 'v';
        v[128 * 1024 + 1] = '\0';
        assert_se(!env_value_is_valid(v));
        free(v);
        assert_se(env_value_is_valid(""));
        assert_se(!env_value_is_valid("\xff\xfe"));

        assert_se(url_is_valid("http://localhost:10300"));
        assert_se(url_is_valid("https://api.platform.network/config/compose/validator_vm"));
        assert_se(url_is_valid("http://10.0.2.2:10300/"));
        assert_se(url_is_valid("http://[::1]:8080/x"));
        assert_se(url_is_valid("unix:/run/dstack/vmm.sock"));
        assert_se(!url_is_valid("unix:relative.sock"));
        assert_se(!url_is_valid("ftp://x"));
        assert_se(!url_is_valid("http://"));
        assert_se(!url_is_valid("http://user:pw@host/"));
        assert_se(!url_is_valid("http://a b/"));
        assert_se(!url_is_valid("file:///etc/passwd"));
        assert_se(!url_is_valid(""));

        assert_se(vm_name_is_valid("validator_vm"));
        assert_se(vm_name_is_valid("a.b-c (x)"));
        assert_se(!vm_name_is_valid(""));
        assert_se(!vm_name_is_valid("a/b"));
        assert_se(!vm_name_is_valid("a\"b"));
        /* URLs through curl_url (issue 9 defect 11). */
        static const char *const good_urls[] = {
                "http://localhost", "http://localhost:10300", "https://api.platform.network/config/compose/validator_vm",
                "http://10.0.2.2:10300/", "http://[::1]:8080/x", "http://[fe80::1%25eth0]/", "https://a-b.c.d./p?q=1",
                "http://h:1", "http://h:65535", "unix:/run/dstack/vmm.sock", "unix:/a",
        };
        for (size_t i = 0; i < ELEMENTSOF(good_urls); i++)
                if (!url_is_valid(good_urls[i])) {
                        fprintf(stderr, "refused: %s: %s\n", good_urls[i], url_check(good_urls[i], NULL));
                        abort();
                }
        static const struct { const char *url, *reason; } bad_urls[] = {
                { "http://[::1", "malformed IPv6 address" },
                { "http://[::1/x", "malformed IPv6 address" },
                { "http://h:99999", "port must be 1..65535" },
                { "http://h:0", "port must be 1..65535" },
                { "http://h:-1/", NULL },
                { "http://-/", "malformed host name" },
                { "http://a-.b/", "malformed host name" },
                { "http://a_b/", "malformed host name" },
                { "http://a..b/", "malformed host name" },
                { "http://user:pw@host/", "credentials in the URL are not allowed" },
                { "http://user@host/", "credentials in the URL are not allowed" },
                { "http://h/#frag", "a fragment (#...) is not allowed" },
                { "https://w#", "a fragment (#...) is not allowed" },
                { "http://", NULL },
                { "http:///x", NULL },
                { "ftp://x", "the scheme must be http, https or unix" },
                { "file:///etc/passwd", NULL },
                { "localhost:80", NULL },
                { "//localhost/", NULL },
                { "http://a b/", "must not contain spaces or control characters" },
                { "http://a\x01b/", "must not contain spaces or control characters" },
                { "", "must not be empty" },
                { "unix:relative.sock", "a unix socket path must be absolute (unix:/path)" },
                { "unix:", "a unix socket path must be absolute (unix:/path)" },
                { "unix:/", NULL },
                { "unix:/tmp/../etc/passwd", "a unix socket path must not have \".\" or \"..\" components" },
                { "unix:/tmp/./x", NULL },
                { "unix:/tmp/..", NULL },
                { "unix:/tmp//x", NULL },
                { "unix:/tmp/x/", NULL },
                { "unix:/tmp/\xc3\xa9", "must be ASCII (percent-encode the path, punycode the host)" },
                { "http://12tp://\xff\xff" "91:99999/", "must be ASCII (percent-encode the path, punycode the host)" },
                { "http://h\xc3\xa9.example/", NULL },
                { "http://h/\xc3\xa9", NULL },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_urls); i++) {
                const char *why = url_check(bad_urls[i].url, NULL);
                if (url_is_valid(bad_urls[i].url) || !why || (bad_urls[i].reason && !streq(why, bad_urls[i].reason))) {
                        fprintf(stderr, "%s: got %s\n", bad_urls[i].url, why ?: "(accepted)");
                        abort();
                }
        }
        /* unix: at most 107 bytes of path (sun_path holds 108 with the NUL). */
        char ux[200] = "unix:/";
        memset(ux + 6, 's', 106);
        ux[112] = '\0';
        assert_se(url_is_valid(ux));
        ux[112] = 's';
        ux[113] = '\0';
        assert_se(streq(url_check(ux, NULL), "a unix socket path must be at most 107 bytes"));
        char longurl[URL_MAX + 10];
        memset(longurl, 'a', sizeof longurl);
        memcpy(longurl, "http://h/", 9);
        longurl[URL_MAX] = '\0';
        assert_se(url_is_valid(longurl));
        longurl[URL_MAX] = 'a';
        longurl[URL_MAX + 1] = '\0';
        assert_se(!url_is_valid(longurl));
        UrlKind kind;
        assert_se(!url_check("https://x", &kind) && kind == URL_HTTPS);
        assert_se(!url_check("http://x", &kind) && kind == URL_HTTP);
        assert_se(!url_check("unix:/x", &kind) && kind == URL_UNIX);
        assert_se(streq(url_unix_path("unix:/x"), "/x") && !url_unix_path("http://x"));

        /* ETag / Last-Modified (issue 9 defect 5). */
        assert_se(http_etag_is_valid("\"abc\""));
        assert_se(http_etag_is_valid("W/\"abc\""));
        assert_se(http_etag_is_valid("\"\""));
        assert_se(http_etag_is_valid("\"!#~\""));
        assert_se(!http_etag_is_valid(NULL));
        assert_se(!http_etag_is_valid(""));
        assert_se(!http_etag_is_valid("abc"));          /* unquoted */
        assert_se(!http_etag_is_valid("\""));
        assert_se(!http_etag_is_valid("w/\"a\""));
        assert_se(!http_etag_is_valid("\"a\"b\""));
        assert_se(!http_etag_is_valid("\"a b\""));
        assert_se(!http_etag_is_valid("\"a\x01b\""));
        assert_se(!http_etag_is_valid("\"a\x7f\""));
        assert_se(!http_etag_is_valid("\"\xc3\xa9\""));
        assert_se(!http_etag_is_valid("\"a\"\r\n"));
        char etag[HTTP_VALIDATOR_MAX + 2];
        memset(etag, 'e', sizeof etag);
        etag[0] = '"';
        etag[HTTP_VALIDATOR_MAX - 1] = '"';
        etag[HTTP_VALIDATOR_MAX] = '\0';
        assert_se(http_etag_is_valid(etag));
        etag[HTTP_VALIDATOR_MAX - 1] = 'e';
        etag[HTTP_VALIDATOR_MAX] = '"';
        etag[HTTP_VALIDATOR_MAX + 1] = '\0';
        assert_se(!http_etag_is_valid(etag));

        assert_se(http_date_is_valid("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_se(!http_date_is_valid(NULL));
        assert_se(!http_date_is_valid(""));
        assert_se(!http_date_is_valid(" Sun"));
        assert_se(!http_date_is_valid("Sun\r\nX-Evil: 1"));
        assert_se(!http_date_is_valid("Sun\x01"));
        assert_se(!http_date_is_valid("\xc3\xa9"));
        char date[HTTP_VALIDATOR_MAX + 2];
        memset(date, 'd', sizeof date);
        date[HTTP_VALIDATOR_MAX] = '\0';
        assert_se(http_date_is_valid(date));
        date[HTTP_VALIDATOR_MAX] = 'd';
        date[HTTP_VALIDATOR_MAX + 1] = '\0';
        assert_se(!http_date_is_valid(date));

        printf("test-validate: ok\n");
        return 0;
}
