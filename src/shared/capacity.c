/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>

#include <glib.h>

#include "shared/capacity.h"

uint64_t capacity_sub(uint64_t a, uint64_t b) {
        return a > b ? a - b : 0;
}

uint64_t capacity_add(uint64_t a, uint64_t b) {
        return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* One figure: free = capacity - (used - freed); it fits when wanted <= free. */
static char *check_one(uint64_t capacity, uint64_t used, uint64_t freed, uint64_t wanted, const char *unit,
                       const char *what, uint32_t n_started) {
        if (capacity == 0 || wanted == 0)
                return NULL;
        uint64_t free = capacity_sub(capacity, capacity_sub(used, freed));
        if (wanted <= free)
                return NULL;
        return g_strdup_printf("capacity: needs %" PRIu64 " %s%s, %" PRIu64 " of %" PRIu64 " free (%" PRIu32
                               " VM%s started)",
                               wanted, unit, what, free, capacity, n_started, n_started == 1 ? "" : "s");
}

int capacity_check(const CapacityQuestion *q, char **ret_reason) {
        char *why = check_one(q->capacity.vcpu, q->used.vcpu, q->freed.vcpu, q->wanted.vcpu, "vCPU", "",
                              q->n_started);
        if (!why)
                why = check_one(q->capacity.memory_mib, q->used.memory_mib, q->freed.memory_mib,
                                q->wanted.memory_mib, "MiB", " memory", q->n_started);
        if (!why)
                why = check_one(q->capacity.disk_gib, q->used.disk_gib, q->freed.disk_gib, q->wanted.disk_gib, "GiB",
                                " disk", q->n_started);
        if (!why && q->max_vms > 0 && q->n_vms_new > 0) {
                uint64_t after = capacity_add(capacity_sub(q->n_vms, q->n_vms_freed), q->n_vms_new);
                if (after > q->max_vms)
                        why = g_strdup_printf("capacity: the VMM lists %" PRIu32 " VMs and its CID pool holds %" PRIu32
                                              " (max_cvm_number): no CID for another",
                                              q->n_vms, q->max_vms);
        }
        if (!why)
                return 0;
        *ret_reason = why;
        return -ENOSPC;
}
