/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdint.h>

/* Capacity before every create and start (dbus-api.md "Capacity before every
 * create"): what the started VMs use, less what the operation frees first,
 * plus what it wants, against the host's capacity; and the VMM's CID pool.
 * Pure arithmetic, no overflow. */

typedef struct CapacityFigures {
        uint64_t vcpu;
        uint64_t memory_mib;
        uint64_t disk_gib;
} CapacityFigures;

typedef struct CapacityQuestion {
        CapacityFigures capacity;   /* a figure 0 is not checked */
        CapacityFigures used;       /* the sum over every VM the VMM lists as started */
        uint32_t n_started;
        CapacityFigures freed;      /* what the operation stops first (part of used) */
        CapacityFigures wanted;     /* what the VM it creates or starts takes */
        uint32_t max_vms;           /* GetMeta max_cvm_number (the CID pool), 0 = unknown */
        uint32_t n_vms;             /* VMs the VMM lists, started or not: each holds a CID */
        uint32_t n_vms_freed;       /* ... the operation removes first */
        uint32_t n_vms_new;         /* ... it adds (1 for a create, 0 for a start) */
} CapacityQuestion;

/* 0 when it fits; -ENOSPC with *ret_reason (caller frees) naming the figures:
 * "capacity: needs 8 vCPU, 6 of 32 free (4 VMs started)". */
int capacity_check(const CapacityQuestion *q, char **ret_reason);
/* a - b, never below 0; a + b, never above UINT64_MAX. */
uint64_t capacity_sub(uint64_t a, uint64_t b);
uint64_t capacity_add(uint64_t a, uint64_t b);
