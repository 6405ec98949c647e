/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* The guest agent's SystemInfo, as the VMM forwards it (POST
 * {vmm}/guest/SysInfo?json {"id"}; dstack guest-api/proto/guest_api.proto,
 * guest-agent/src/guest_api_service.rs sys_info): the figures a launcher
 * shows. Untrusted: every number checked, strings ignored. */
typedef struct VmmGuestSysInfo {
        uint32_t num_cpus;
        uint64_t total_memory;          /* bytes */
        uint64_t available_memory;
        uint64_t uptime_sec;
        uint32_t loadavg[3];            /* × 100: one, five, fifteen minutes */
        uint64_t disk_total;            /* bytes, the data disks summed */
        uint64_t disk_free;
        uint32_t n_disks;
} VmmGuestSysInfo;

#define GUEST_SYSINFO_MAX (256 * 1024)
#define GUEST_DISKS_MAX 64

/* 0, or -EBADMSG with *ret_error naming the field. A number may be a JSON
 * integer or a decimal string (protobuf's JSON mapping of 64-bit integers). */
int vmm_parse_sysinfo_reply(const char *data, size_t len, VmmGuestSysInfo *ret, char **ret_error);
