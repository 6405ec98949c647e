/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

/* Limits the dstack guest applies when it decrypts the env (dstack.md §3). */
#define ENV_MAX_ENTRIES 1024
#define ENV_MAX_TOTAL_BYTES (1024 * 1024)
#define ENV_KEY_MAX 255
#define ENV_VALUE_MAX (128 * 1024)

/* ^[A-Za-z_][A-Za-z0-9_]*$, at most ENV_KEY_MAX bytes. */
bool env_key_is_valid(const char *key);

/* At most ENV_VALUE_MAX bytes of valid UTF-8 without NUL. */
bool env_value_is_valid(const char *value);

/* url_check() (shared/url.h) finds nothing wrong: http://host[:port][/path],
 * https://..., or a strict unix:/absolute/path; parsed with curl_url. */
bool url_is_valid(const char *url);

/* A dstack VM name: 1..63 ASCII alphanumerics and "-_. @~!$^()". */
bool vm_name_is_valid(const char *name);

/* Response validators remembered for conditional requests (issue 9 defect
 * 5): a value that fails these is never remembered, so one bad reply cannot
 * wedge polling (a control byte would be refused locally on every request,
 * a huge one answered 431 by the server). */
#define HTTP_VALIDATOR_MAX 256

/* RFC 9110 §8.8.3 entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE with etagc
 * = %x21 / %x23-7E (obs-text refused), at most HTTP_VALIDATOR_MAX bytes. */
bool http_etag_is_valid(const char *etag);

/* A Last-Modified value: 1..HTTP_VALIDATOR_MAX bytes of printable ASCII
 * (%x20-7E), not starting or ending with a space. */
bool http_date_is_valid(const char *date);
