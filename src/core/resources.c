/* SPDX-License-Identifier: Apache-2.0 */
/* The resource view: every ResourceIntervalUSec the host's own figures, and
 * the guest agent's of each running VM (POST /guest/SysInfo through the VMM).
 * A guest that cannot answer (an older one without the agent API, one still
 * booting) has no figures: ResourcesTimestamp 0, never an error. */
#include <errno.h>

#include <glib.h>

#include "core/resources.h"
#include "shared/log.h"
#include "shared/macro.h"

static void guest_unknown(ManagedVm *mv) {
        Vm *vm = mv->vm;
        const double zero[3] = {};
        vm_set_u64(vm, &vm->resources_timestamp, 0);
        vm_set_u64(vm, &vm->guest_uptime_usec, 0);
        vm_set_u64(vm, &vm->guest_memory_total_bytes, 0);
        vm_set_u64(vm, &vm->guest_memory_available_bytes, 0);
        vm_set_u64(vm, &vm->guest_disk_total_bytes, 0);
        vm_set_u64(vm, &vm->guest_disk_free_bytes, 0);
        if (memcmp(vm->guest_load_average, zero, sizeof zero) != 0) {
                memset(vm->guest_load_average, 0, sizeof vm->guest_load_average);
                vm->changed = true;
        }
}

static void on_sysinfo(VmmCall *call, const VmmResult *res, void *userdata) {
        ManagedVm *mv = userdata;
        Vm *vm = mv->vm;
        mv->sysinfo_call = NULL;
        if (res->error < 0) {
                log_debug("VM %s: no guest figures (%s).", vm->name, res->message);
                guest_unknown(mv);
                return managed_vm_flush(mv);
        }
        const VmmGuestSysInfo *s = res->sysinfo;
        vm_set_u64(vm, &vm->guest_uptime_usec, s->uptime_sec * USEC_PER_SEC);
        vm_set_u64(vm, &vm->guest_memory_total_bytes, s->total_memory);
        vm_set_u64(vm, &vm->guest_memory_available_bytes, s->available_memory);
        vm_set_u64(vm, &vm->guest_disk_total_bytes, s->disk_total);
        vm_set_u64(vm, &vm->guest_disk_free_bytes, s->disk_free);
        for (size_t i = 0; i < 3; i++)
                if (vm->guest_load_average[i] != s->loadavg[i] / 100.0) {
                        vm->guest_load_average[i] = s->loadavg[i] / 100.0;
                        vm->changed = true;
                }
        vm_set_u64(vm, &vm->resources_timestamp, clock_usec(CLOCK_REALTIME));
        managed_vm_flush(mv);
}

static void ask_guest(Host *h, ManagedVm *mv) {
        if (mv->sysinfo_call)
                return; /* still asking */
        if (!streq(mv->vm->vmm_status, "running") || isempty(mv->vm->id) || !h->vmm) {
                guest_unknown(mv);
                return managed_vm_flush(mv);
        }
        if (vmm_guest_sys_info(h->vmm, mv->vm->id, on_sysinfo, mv, &mv->sysinfo_call) < 0)
                mv->sysinfo_call = NULL;
}

static int on_resource_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Host *h = userdata;
        host_view_refresh(h, true);
        for (guint i = 0; i < h->vms->len; i++)
                ask_guest(h, g_ptr_array_index(h->vms, i));
        resources_schedule(h);
        return 0;
}

void resources_schedule(Host *h) {
        uint64_t at = clock_usec(CLOCK_MONOTONIC) + h->settings->config->resource_interval_usec;
        if (h->shutting_down)
                return;
        if (!h->resource_timer) {
                int q = sd_event_add_time(h->event, &h->resource_timer, CLOCK_MONOTONIC, at, USEC_PER_SEC,
                                          on_resource_timer, h);
                if (q < 0)
                        log_warning_errno(q, "Cannot arm the resource timer: %m");
                return;
        }
        (void) sd_event_source_set_time(h->resource_timer, at);
        (void) sd_event_source_set_enabled(h->resource_timer, SD_EVENT_ONESHOT);
}

void resources_now(Host *h) {
        on_resource_timer(h->resource_timer, 0, h);
}
