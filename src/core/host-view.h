/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdint.h>

/* The host as the bus shows it (org.platform.Launcher1.Host): what it gives
 * its VMs, what the VMs the VMM lists take, and how the host itself fares.
 * Served from its fields, as the Vm is. */
typedef struct HostView {
        uint32_t capacity_vcpu;
        uint32_t allocated_vcpu;        /* the started VMs', managed or not */
        uint64_t capacity_memory_mib;
        uint64_t allocated_memory_mib;
        uint64_t capacity_disk_gib;     /* 0: not checked */
        uint64_t allocated_disk_gib;
        uint32_t started_vms;
        uint32_t managed_vms;
        uint32_t max_vms;               /* GetMeta max_cvm_number, 0 = unknown */
        uint64_t memory_available_mib;  /* /proc/meminfo MemAvailable */
        double load_average[3];         /* /proc/loadavg */
} HostView;
