/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The dstack VMM's prpc JSON mapping (dstack.md §1–2), without I/O: request
 * bodies built from typed structs (vmm-request.c), and replies validated
 * field by field into typed structs (vmm-json.c). Parsers return 0,
 * -EBADMSG with *ret_error naming the field ("Status.vms[2].status: unknown
 * value 'zombie'"), or -ENOMEM. */

typedef enum VmStatus {
        VM_STATUS_RUNNING,
        VM_STATUS_EXITED,
        VM_STATUS_STOPPING,
        VM_STATUS_STOPPED,
        VM_STATUS_REMOVING,
        _VM_STATUS_MAX,
        _VM_STATUS_INVALID = -1,
} VmStatus;

const char *vm_status_to_string(VmStatus s);
VmStatus vm_status_from_string(const char *s);

typedef struct VmPort {
        char *protocol;     /* "tcp" or "udp" */
        uint32_t host_port; /* 0..65535 */
        uint32_t vm_port;
        char *host_address; /* "" = the VMM's default; never sent as null */
} VmPort;

typedef struct VmConfiguration {
        char *name;
        char *image;
        char *compose_file;
        char *app_id;       /* NULL or "" = omitted: the VMM derives it */
        char *user_config;
        uint8_t *encrypted_env;
        size_t encrypted_env_len;
        uint32_t vcpu;
        uint32_t memory;    /* MB */
        uint32_t disk_size; /* GB */
        VmPort *ports;
        size_t n_ports;
        bool hugepages;
        bool pin_numa;
        bool stopped;
        char **kms_urls;    /* NULL-terminated, or NULL */
        char **gateway_urls;
} VmConfiguration;

typedef struct VmInfo {
        char *id;
        char *name;
        VmStatus status;
        char *uptime;
        char *app_url;
        char *app_id;
        char *instance_id;
        bool has_configuration;
        VmConfiguration configuration;
        char *exited_at;
        char *boot_progress;
        char *boot_error;
        char *shutdown_progress;
        char *image_version;
} VmInfo;

typedef struct VmmStatusReply {
        VmInfo *vms;
        size_t n_vms;
        bool port_mapping_enabled;
        uint64_t total;
} VmmStatusReply;

typedef struct VmmInfoReply {
        bool found;
        VmInfo *info; /* NULL unless found */
} VmmInfoReply;

/* signature and signature_v1 "" (what a ≥0.5.6 VMM sends for a KMS that did
 * not sign) are absent; so is timestamp 0. A signature string that is not 65
 * bytes of hex is there but malformed (has_ and _malformed set): whether that
 * blocks is the KMS trust policy's to say (core/kms-trust.h), not the
 * parser's. */
typedef struct VmmPubKeyReply {
        uint8_t public_key[32];
        bool has_signature;
        bool signature_malformed;
        uint8_t signature[65];
        bool has_timestamp;
        uint64_t timestamp;
        bool has_signature_v1;
        bool signature_v1_malformed;
        uint8_t signature_v1[65];
} VmmPubKeyReply;

typedef struct VmmVersionReply {
        char *version;
        char *rev;
} VmmVersionReply;

typedef struct VmmMetaReply {
        uint32_t max_cvm_number;
        uint32_t max_allocable_vcpu;
        uint32_t max_allocable_memory_in_mb;
} VmmMetaReply;

typedef struct VmmImage {
        char *name;
        char *description;
        char *version;
        bool is_dev;
} VmmImage;

typedef struct VmmImagesReply {
        VmmImage *images;
        size_t n_images;
} VmmImagesReply;

/* UpdateVm / UpgradeApp request: rewrites compose/env of an existing VM. */
typedef struct VmmUpdateRequest {
        const char *id;
        const char *compose_file;     /* NULL = unchanged (omitted) */
        const uint8_t *encrypted_env; /* NULL = unchanged */
        size_t encrypted_env_len;
        const char *user_config;      /* NULL = unchanged */
        bool update_ports;
        const VmPort *ports;
        size_t n_ports;
} VmmUpdateRequest;

/* A dstack version, "v0.5.6" or "0.5.7[-suffix]". */
typedef struct VmmVersion {
        unsigned major, minor, patch;
} VmmVersion;

int vmm_version_parse(const char *s, VmmVersion *ret);
int vmm_version_compare(const VmmVersion *a, const VmmVersion *b);
/* UpdateVm exists from 0.5.6; older VMMs only know UpgradeApp. */
bool vmm_version_has_update_vm(const VmmVersion *v);
/* RemoveVm is asynchronous (status "removing") from 0.5.7. */
bool vmm_version_remove_is_async(const VmmVersion *v);

void vm_port_done(VmPort *p);
void vm_configuration_done(VmConfiguration *c);
void vm_info_done(VmInfo *i);
void vmm_status_reply_done(VmmStatusReply *r);
void vmm_info_reply_done(VmmInfoReply *r);
void vmm_version_reply_done(VmmVersionReply *r);
void vmm_images_reply_done(VmmImagesReply *r);

/* Request bodies: compact JSON, NUL-terminated, strings never null. 0,
 * -EINVAL (a port protocol other than tcp/udp, a missing id), -ENOMEM. */
int vmm_build_id_request(const char *id, char **ret);
int vmm_build_status_request(const char *const *ids, const char *keyword, bool brief, char **ret);
int vmm_build_vm_configuration(const VmConfiguration *c, char **ret);
int vmm_build_update_request(const VmmUpdateRequest *u, char **ret);
int vmm_build_pubkey_request(const char *app_id, char **ret);

/* Reply parsers. data need not be NUL-terminated. */
int vmm_parse_error_reply(const char *data, size_t len, char **ret_message);
int vmm_parse_empty_reply(const char *method, const char *data, size_t len, char **ret_error);
int vmm_parse_id_reply(const char *method, const char *data, size_t len, char **ret_id, char **ret_error);
/* UpdateVm/UpgradeApp: null, {} or {"id": ""} give *ret_compose_app_id NULL;
 * {"id": "<app id of the compose sent>"} a copy. Only a reply that is not JSON,
 * nor an object or null, is -EBADMSG. */
int vmm_parse_update_reply(const char *method, const char *data, size_t len, char **ret_compose_app_id,
                           char **ret_error);
int vmm_parse_status_reply(const char *data, size_t len, VmmStatusReply *ret, char **ret_error);
/* Two Status bodies say the same but for the texts that only count time
 * (each VM's "uptime" and "exited_at", humantime the VMM recomputes at every
 * call; the launcher reads neither): byte for byte equal once the string
 * values of those members are skipped. A member name is only one where a '"'
 * opens it (inside a JSON string a '"' is escaped). */
bool vmm_status_bodies_same(const char *a, size_t na, const char *b, size_t nb);
int vmm_parse_info_reply(const char *data, size_t len, VmmInfoReply *ret, char **ret_error);
int vmm_parse_compose_hash_reply(const char *data, size_t len, char **ret_hash, char **ret_error);
int vmm_parse_pubkey_reply(const char *data, size_t len, VmmPubKeyReply *ret, char **ret_error);
int vmm_parse_version_reply(const char *data, size_t len, VmmVersionReply *ret, char **ret_error);
int vmm_parse_meta_reply(const char *data, size_t len, VmmMetaReply *ret, char **ret_error);
int vmm_parse_images_reply(const char *data, size_t len, VmmImagesReply *ret, char **ret_error);
