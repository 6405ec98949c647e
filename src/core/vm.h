/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The Vm model: one managed VM as the bus shows it. The bus layer serves these
 * fields as they are (sd-bus reads them at their offset) and finds out what
 * changed by comparing them with what it last sent, so a new property is a
 * field here, a vtable row and an XML element. The core writes the fields
 * through the setters below, which note that the VM changed; strings are
 * never NULL ("" when unknown). */

typedef enum VmState {
        /* 0 is no state: a table row without .vm_state leaves State alone */
        VM_STATE_PENDING = 1,   /* no spec yet */
        VM_STATE_BLOCKED,       /* spec cannot be applied: missing env, invalid spec, capacity */
        VM_STATE_CREATING,
        VM_STATE_STARTING,
        VM_STATE_RUNNING,
        VM_STATE_UPDATING,
        VM_STATE_STOPPING,
        VM_STATE_STOPPED,
        VM_STATE_FAILED,
        _VM_STATE_MAX,
} VmState;

#define VM_STATE_FIRST VM_STATE_PENDING

const char *vm_state_to_string(VmState s);

typedef struct Vm {
        /* Strings: every field from name up to the lists (allowed_env). vm_new() makes them
         * "" and vm_free() frees them, walking this block: add a string here. */
        char *name;
        char *id;
        char *state_reason;
        char *vmm_status;
        char *app_id;
        char *compose_hash;         /* deployed */
        char *target_compose_hash;  /* desired */
        char *image;
        char *image_version;
        char *last_error;
        char *operation;            /* the step running now ("stop-graceful"), "" when none */
        char *kms_signer;           /* the KMS signer the deployed env was encrypted under, "" = unsigned */

        /* String lists, never NULL: every field from allowed_env up to state. */
        char **allowed_env;         /* the keys it receives: its spec's allowed_envs, sorted; empty without a spec */
        char **required_env;        /* the keys its spec says it needs */
        char **missing_env;         /* ... that have no local value */

        VmState state;
        uint32_t vcpu;
        uint32_t memory_mib;
        uint32_t disk_gib;
        uint64_t last_check_usec;   /* CLOCK_REALTIME, 0 = never: the last check, whether it succeeded or not */
        uint64_t last_successful_check_usec; /* the last check both the spec's source and the VMM answered */
        uint64_t last_update_usec;
        uint32_t update_count;
        uint32_t restart_count;
        uint32_t progress;          /* 0–100: share of the operation's steps completed */
        /* From the guest agent (/guest/SysInfo), while it runs. */
        uint64_t resources_timestamp;   /* CLOCK_REALTIME of the figures, 0 = not available */
        uint64_t guest_uptime_usec;
        double guest_load_average[3];
        uint64_t guest_memory_total_bytes;
        uint64_t guest_memory_available_bytes;
        uint64_t guest_disk_total_bytes;
        uint64_t guest_disk_free_bytes;

        bool changed;               /* a field changed since the bus was last told */
} Vm;

Vm *vm_new(const char *name);
void vm_free(Vm *vm);

void vm_set_str(Vm *vm, char **field, const char *value);
void vm_set_strv(Vm *vm, char ***field, char *const *value);
void vm_set_u32(Vm *vm, uint32_t *field, uint32_t value);
void vm_set_u64(Vm *vm, uint64_t *field, uint64_t value);
/* State and StateReason together; the reason is bounded (text_bound). */
void vm_set_state(Vm *vm, VmState state, const char *reason);
void vm_set_name(Vm *vm, const char *name);

/* Bounds a text from the VMM or the API for properties, signals and replies:
 * at most TEXT_BOUND bytes, cut on a UTF-8 boundary with "…", invalid UTF-8
 * replaced. Caller frees. */
#define TEXT_BOUND 512
char *text_bound(const char *s);
