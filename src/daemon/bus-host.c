/* SPDX-License-Identifier: Apache-2.0 */
/* org.platform.Launcher1.Host on /org/platform/Launcher1: the core's
 * HostView served from its fields; what changed is found by comparing with
 * what was last sent (bus-diff.h). */
#include <errno.h>

#include "daemon/bus-diff.h"
#include "daemon/manager.h"
#include "shared/log.h"

#define HOST_PROPERTY(name, sig, member) \
        SD_BUS_PROPERTY(name, sig, NULL, offsetof(HostView, member), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable host_vtable[] = {
        SD_BUS_VTABLE_START(0),
        HOST_PROPERTY("CapacityVcpu", "u", capacity_vcpu),
        HOST_PROPERTY("AllocatedVcpu", "u", allocated_vcpu),
        HOST_PROPERTY("CapacityMemoryMiB", "t", capacity_memory_mib),
        HOST_PROPERTY("AllocatedMemoryMiB", "t", allocated_memory_mib),
        HOST_PROPERTY("CapacityDiskGiB", "t", capacity_disk_gib),
        HOST_PROPERTY("AllocatedDiskGiB", "t", allocated_disk_gib),
        HOST_PROPERTY("StartedVms", "u", started_vms),
        HOST_PROPERTY("ManagedVms", "u", managed_vms),
        HOST_PROPERTY("MaxVms", "u", max_vms),
        HOST_PROPERTY("HostMemoryAvailableMiB", "t", memory_available_mib),
        SD_BUS_PROPERTY("HostLoadAverage", "(ddd)", bus_property_get_ddd, offsetof(HostView, load_average),
                        SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_VTABLE_END,
};

int bus_host_register(Manager *m) {
        const HostView *v = reconciler_host_view(m->reconciler);
        m->host_sent = bus_sent_new(host_vtable, v, sizeof *v);
        return sd_bus_add_object_vtable(m->bus, NULL, LAUNCHER_OBJECT_PATH, LAUNCHER_HOST_INTERFACE, host_vtable,
                                        (void *) v);
}

void bus_host_changed(Manager *m) {
        const char *names[32];
        if (!m->host_sent || !m->bus)
                return;
        if (bus_sent_take(m->host_sent, reconciler_host_view(m->reconciler), names, ELEMENTSOF(names)) == 0)
                return;
        int q = sd_bus_emit_properties_changed_strv(m->bus, LAUNCHER_OBJECT_PATH, LAUNCHER_HOST_INTERFACE,
                                                    (char **) names);
        if (q < 0)
                log_warning_errno(q, "Cannot emit PropertiesChanged for the host: %m");
}

void bus_host_free(Manager *m) {
        g_clear_pointer(&m->host_sent, bus_sent_free);
}
