/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The Platform API's VmComposeResponse (dstack.md §5), validated. */

#define API_DOC_MAX (8 * 1024 * 1024)
#define API_COMPOSE_MAX (1024 * 1024)
#define API_MAX_PORTS 128
#define API_MAX_ENV_KEYS 256
#define API_VCPU_MIN 1
#define API_VCPU_MAX 512
#define API_MEMORY_MB_MIN 64
#define API_MEMORY_MB_MAX (4 * 1024 * 1024)  /* 4 TiB */
#define API_DISK_GB_MIN 1
#define API_DISK_GB_MAX 65536

typedef enum PortProtocol {
        PORT_PROTOCOL_TCP,
        PORT_PROTOCOL_UDP,
} PortProtocol;

const char *port_protocol_to_string(PortProtocol p);

typedef struct PlatformPort {
        PortProtocol protocol;
        uint16_t host_port;
        uint16_t vm_port;
        char *host_address;     /* "" when null or absent: the VMM's default */
} PlatformPort;

/* Goes verbatim into app-compose.json: every field is required. */
typedef struct PlatformManifestDefaults {
        int64_t manifest_version;
        char *name;
        char *runner;
        char *key_provider_id;  /* hex, may be "" */
        bool kms_enabled;
        bool gateway_enabled;
        bool local_key_provider_enabled;
        bool public_logs;
        bool public_sysinfo;
        bool public_tcbinfo;
        bool no_instance_id;
        bool secure_time;
} PlatformManifestDefaults;

typedef struct PlatformVmParameters {
        char *name;
        char *image;
        uint32_t vcpu;
        uint32_t memory_mb;
        uint32_t disk_size_gb;
        char *user_config;      /* "" when absent */
        PlatformPort *ports;
        size_t n_ports;
        bool hugepages;         /* these three default to false, as in the VMM */
        bool pin_numa;
        bool stopped;
} PlatformVmParameters;

typedef struct PlatformVmSpec {
        char *compose_content;
        char *description;      /* NULL when null or absent */
        char **required_env;    /* NULL-terminated, never NULL */
        char *updated_at;       /* NULL when absent; informational only */
        char **env_keys;        /* provisioning.env_keys, NULL-terminated, never NULL */
        PlatformManifestDefaults manifest;
        PlatformVmParameters vm;
} PlatformVmSpec;

/* Parses and validates the document (need not be NUL-terminated). Unknown
 * fields are ignored. Returns 0, -ENOMEM, or -EINVAL with *ret_error
 * (malloc'd, may be NULL on allocation failure) naming the field path,
 * e.g. "provisioning.vm_parameters.vcpu: must be an integer between 1 and 512". */
int platform_vm_spec_parse(const char *data, size_t len, PlatformVmSpec **ret, char **ret_error);

PlatformVmSpec *platform_vm_spec_free(PlatformVmSpec *s);
static inline void platform_vm_spec_freep(PlatformVmSpec **s) {
        platform_vm_spec_free(*s);
}
#define _cleanup_platform_vm_spec_ __attribute__((cleanup(platform_vm_spec_freep)))
