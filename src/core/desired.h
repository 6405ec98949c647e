/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "clients/vmm-json.h"
#include "shared/api-spec.h"
#include "shared/compose.h"
#include "shared/config-file.h"
#include "shared/crypto.h"
#include "shared/env-list.h"

/* The VM the launcher wants: built from the API's spec and the local config,
 * with no I/O. Everything a comparison needs is here; the env values (secrets)
 * only in `env`, which leaves the process encrypted. */
typedef struct DesiredVm {
        char *name;
        char *compose;                 /* app-compose.json, exact bytes, NUL-terminated */
        size_t compose_len;
        char compose_hash[COMPOSE_HASH_HEX_LEN + 1];
        char app_id[APP_ID_HEX_LEN + 1];
        char **allowed_envs;
        char **required_env;
        char **missing_env;            /* required, with no local value */
        char **not_granted;            /* required, but not among the keys the VM may receive */
        char **not_allowed;            /* set locally but not allowed by the compose: not sent */
        EnvList env;                   /* what is sent */
        char env_fingerprint[ENV_FINGERPRINT_HEX_LEN + 1];
        char *resources;               /* canonical text, see resources_text() */
        VmConfiguration config;        /* CreateVm body, without encrypted_env and app_id */
} DesiredVm;

/* Whose VM it is: its name at the VMM (NULL: the spec's vm_parameters.name)
 * and the local env keys it may receive (NULL: every one). */
typedef struct DesiredOptions {
        const char *name;
        char *const *granted;
} DesiredOptions;

int desired_vm_build(const PlatformVmSpec *spec, const LauncherConfig *c, const uint8_t key[32],
                     const DesiredOptions *o, DesiredVm **ret, char **ret_error);
void desired_vm_free(DesiredVm *d);

/* Ports compared by meaning (dstack.md §2): protocol, host port and VM port
 * alike, and a wanted host_address of ""/null is the VMM's default address,
 * whatever the VMM reports for the mapping (it stores the resolved one). A set
 * address is compared as an IP address. Order matters, as for the VMM. */
bool vm_ports_match(const VmPort *want, size_t n_want, const VmPort *have, size_t n_have);
/* "tcp/8080:80@127.0.0.1,…" ("@default" for ""), for Plan's changes. */
char *vm_ports_text(const VmPort *p, size_t n);

/* Image, resources, ports, user_config and flags as one comparable line. */
char *resources_text(const VmConfiguration *c);
