/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>

#include "shared/api-spec.h"

#define COMPOSE_HASH_HEX_LEN 64
#define APP_ID_HEX_LEN 40

/* Keys every validator VM accepts, whatever the API lists. */
extern const char *const compose_default_env_keys[];

/* The sorted, de-duplicated union of the defaults, required_env and
 * provisioning.env_keys. Returns 0 or -ENOMEM. */
int compose_allowed_envs(const PlatformVmSpec *spec, char ***ret);

/* app-compose.json exactly as Platform Network recomputes it (dstack.md §4):
 * compact, keys sorted byte-wise, serde_json escaping. Returns 0, -ENOMEM,
 * or -EINVAL (a string that is not UTF-8). */
int compose_build(const PlatformVmSpec *spec, char **ret, size_t *ret_len);

/* sha256 of the exact bytes, lowercase hex. Returns 0 or -EIO. */
int compose_hash(const char *data, size_t len, char ret[COMPOSE_HASH_HEX_LEN + 1]);

/* The app id the VMM derives when none is sent: the hash's first 40 hex. */
void compose_app_id(const char hash[COMPOSE_HASH_HEX_LEN + 1], char ret[APP_ID_HEX_LEN + 1]);

/* allowed_envs of an existing compose_file (a VM's configuration), to know
 * which keys the running VM accepts. Absent or null → empty list. Returns
 * 0, -ENOMEM, or -EINVAL with *ret_error (malloc'd). */
int compose_parse_allowed_envs(const char *data, size_t len, char ***ret, char **ret_error);
