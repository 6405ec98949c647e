/* SPDX-License-Identifier: Apache-2.0 */
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "shared/macro.h"
#include "shared/url.h"
#include "shared/validate.h"

static bool is_alnum(char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* RFC 1123 host name (a trailing dot allowed); an IPv4 literal is one too.
 * curl accepts names such as "-" or "a_b" that no resolver will. */
static bool dns_name_ok(const char *h) {
        size_t n = strlen(h), label = 0;

        if (n > 0 && h[n - 1] == '.')
                n--;
        if (n == 0 || n > 253)
                return false;
        for (size_t i = 0; i <= n; i++) {
                if (i == n || h[i] == '.') {
                        if (label == 0 || label > 63 || h[i - 1] == '-')
                                return false;
                        label = 0;
                        continue;
                }
                if (!is_alnum(h[i]) && h[i] != '-')
                        return false;
                if (label == 0 && h[i] == '-')
                        return false;
                label++;
        }
        return true;
}

static const char *unix_path_check(const char *p) {
        size_t n = strlen(p);

        if (p[0] != '/')
                return "a unix socket path must be absolute (unix:/path)";
        if (n > URL_UNIX_PATH_MAX)
                return "a unix socket path must be at most 107 bytes";
        /* Components between slashes: none empty, ".", "..". */
        for (const char *c = p + 1;; ) {
                size_t k = strcspn(c, "/");
                if (k == 0)
                        return "a unix socket path must not have an empty component (\"//\" or a trailing \"/\")";
                if ((k == 1 && c[0] == '.') || (k == 2 && c[0] == '.' && c[1] == '.'))
                        return "a unix socket path must not have \".\" or \"..\" components";
                if (c[k] == '\0')
                        return NULL;
                c += k + 1;
        }
}

static const char *http_check(const char *url, UrlKind *ret_kind) {
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL, *port = NULL, *part = NULL;
        const char *reason = NULL;
        CURLUcode rc;

        if (!u)
                return "out of memory";
        rc = curl_url_set(u, CURLUPART_URL, url, 0);
        if (rc != CURLUE_OK) {
                switch (rc) {
                case CURLUE_BAD_PORT_NUMBER:
                        reason = "port must be 1..65535";
                        break;
                case CURLUE_BAD_IPV6:
                        reason = "malformed IPv6 address";
                        break;
                case CURLUE_BAD_HOSTNAME:
                case CURLUE_NO_HOST:
                        reason = "malformed or missing host";
                        break;
                case CURLUE_BAD_SCHEME:
                        reason = "the scheme must be http, https or unix";
                        break;
                default:
                        reason = "malformed URL";
                }
                goto out;
        }
        if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            (!streq(scheme, "http") && !streq(scheme, "https"))) {
                reason = "the scheme must be http, https or unix";
                goto out;
        }
        /* curl adds "http://" to a URL without a scheme: insist on one. */
        if (strncmp(url, scheme, strlen(scheme)) != 0 || strncmp(url + strlen(scheme), "://", 3) != 0) {
                reason = "the scheme must be http, https or unix";
                goto out;
        }
        /* curl reads "http:///h" as host "h". */
        if (url[strlen(scheme) + 3] == '/') {
                reason = "malformed or missing host";
                goto out;
        }
        if (curl_url_get(u, CURLUPART_USER, &part, 0) == CURLUE_OK ||
            curl_url_get(u, CURLUPART_PASSWORD, &part, 0) == CURLUE_OK ||
            curl_url_get(u, CURLUPART_OPTIONS, &part, 0) == CURLUE_OK) {
                reason = "credentials in the URL are not allowed";
                goto out;
        }
        /* curl drops an empty fragment ("https://w#", found by fuzz-validators). */
        if (strchr(url, '#') || curl_url_get(u, CURLUPART_FRAGMENT, &part, 0) == CURLUE_OK) {
                reason = "a fragment (#...) is not allowed";
                goto out;
        }
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || isempty(host)) {
                reason = "malformed or missing host";
                goto out;
        }
        if (host[0] != '[' && !dns_name_ok(host)) {
                reason = "malformed host name";
                goto out;
        }
        if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK) {
                char *end;
                unsigned long p = strtoul(port, &end, 10);
                if (*end || p < 1 || p > 65535) {
                        reason = "port must be 1..65535";
                        goto out;
                }
        }
        if (ret_kind)
                *ret_kind = streq(scheme, "https") ? URL_HTTPS : URL_HTTP;
out:
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_free(part);
        curl_url_cleanup(u);
        return reason;
}

const char *url_check(const char *url, UrlKind *ret_kind) {
        if (isempty(url))
                return "must not be empty";
        size_t n = strnlen(url, URL_MAX + 1);
        if (n > URL_MAX)
                return "must be at most 2048 bytes";
        for (size_t i = 0; i < n; i++) {
                if ((unsigned char) url[i] <= 0x20 || (unsigned char) url[i] == 0x7f)
                        return "must not contain spaces or control characters";
                /* curl takes raw bytes >= 0x80 anywhere (found by fuzz-validators). */
                if ((unsigned char) url[i] > 0x7f)
                        return "must be ASCII (percent-encode the path, punycode the host)";
        }
        if (strncmp(url, "unix:", 5) == 0) {
                const char *r = unix_path_check(url + 5);
                if (!r && ret_kind)
                        *ret_kind = URL_UNIX;
                return r;
        }
        return http_check(url, ret_kind);
}

const char *url_unix_path(const char *url) {
        return url && strncmp(url, "unix:", 5) == 0 ? url + 5 : NULL;
}
