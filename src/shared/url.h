/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Endpoint URLs, parsed with libcurl's URL API (curl_url) rather than by hand
 * (issue 9 defect 11). Accepted:
 *   http://host[:port][/path][?query], https://...   host = a DNS name
 *     (labels of [A-Za-z0-9-], not starting or ending with '-'), an IPv4
 *     address or a bracketed IPv6 address; port 1..65535; no userinfo, no
 *     fragment;
 *   unix:/absolute/path   the socket path of a local service: absolute, no
 *     "." or ".." component, no empty component, at most
 *     URL_UNIX_PATH_MAX bytes (sun_path holds 108 with the NUL).
 * Only printable ASCII without spaces anywhere; at most URL_MAX bytes. */
#define URL_MAX 2048
#define URL_UNIX_PATH_MAX 107

typedef enum UrlKind {
        URL_HTTP,
        URL_HTTPS,
        URL_UNIX,
} UrlKind;

/* NULL if valid (*ret_kind set when ret_kind is non-NULL), else a static
 * reason for a person ("port must be 1..65535", ...), never quoting the URL. */
const char *url_check(const char *url, UrlKind *ret_kind);

/* For "unix:/p": "/p" (a pointer into url); NULL for other URLs. */
const char *url_unix_path(const char *url);
