/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The state store: what the launcher deployed, and what it was in the middle of
 * doing. Written atomically before every destructive step, so that a restart at
 * any point (crash, SIGKILL, reboot) can tell an old VM from a new one and
 * converge. Holds no secret: the env appears only as a keyed fingerprint. */

typedef struct VmIntent {
        char *op;                    /* "create", "recreate", "in-place", "stop", "start" */
        char *old_vm_id;             /* the VM being replaced ("" when none) */
        char *target_compose_hash;
        char *target_env_fingerprint;
        char *target_resources;
} VmIntent;

typedef struct VmDeployState {
        char *name;
        char *vm_id;                 /* "" when nothing is deployed */
        char *compose_hash;
        char *app_id;
        char *env_fingerprint;
        char *resources;             /* canonical text of image, vcpu, memory, disk, ports, ... */
        uint64_t last_update_usec;   /* CLOCK_REALTIME */
        uint32_t update_count;
        uint32_t restart_count;
        bool operator_stopped;
        VmIntent *intent;            /* NULL when idle */
        /* VMs deployed under an earlier vm_parameters.name, to remove once the VM
         * under the current name runs (strv, parallel; NULL when none). */
        char **retired_ids;
        char **retired_names;
        /* KMS trust (core/kms-trust.h): the signer of the key the deployed env
         * was encrypted to ("" = unsigned), and the signer pinned on first use
         * while TrustedKmsSigners is empty ("" = none yet). */
        char *kms_signer;
        char *kms_signer_pinned;
} VmDeployState;

VmDeployState *vm_deploy_state_new(const char *name);
void vm_deploy_state_free(VmDeployState *s);
void vm_intent_free(VmIntent *i);
VmIntent *vm_intent_new(const char *op, const char *old_vm_id, const char *compose_hash, const char *env_fingerprint,
                        const char *resources);

/* Loads <dir>/vm.json. A missing file is a fresh state (0). A corrupt file is
 * renamed aside (vm.json.corrupt) and reported: the launcher then converges
 * from what the VMM reports, which is always safe. */
int vm_deploy_state_load(const char *dir, const char *name, VmDeployState **ret, char **ret_error);
int vm_deploy_state_save(const char *dir, const VmDeployState *s);

/* The last valid Platform API document, as received: <dir>/spec.json (0600).
 * Kept so that after a restart with the API away the launcher still knows
 * what it should run. Load: 0, -ENOENT, or a read errno. */
int state_spec_save(const char *dir, const char *data, size_t len);
int state_spec_load(const char *dir, size_t max, char **ret_data, size_t *ret_len);

/* The per-host key of the env fingerprint: <dir>/fingerprint.key, 32 random
 * bytes, 0600, created on first use. */
int state_fingerprint_key(const char *dir, uint8_t key[32]);
