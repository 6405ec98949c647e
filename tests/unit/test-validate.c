/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
