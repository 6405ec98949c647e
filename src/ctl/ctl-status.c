/* SPDX-License-Identifier: Apache-2.0 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctl.h"
#include "shared/macro.h"

#define HOST_INTERFACE "org.platform.Launcher1.Host"
#define MIB (1024.0 * 1024.0)

/* The Host's properties, or NULL (an older launcher has none: nothing is said). */
static JsonObject *host_info_get(sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(JsonNode) node = NULL;
        if (sd_bus_call_method(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, "org.freedesktop.DBus.Properties",
                               "GetAll", &error, &reply, "s", HOST_INTERFACE) < 0 ||
            ctl_json_read(reply, &node) < 0 || !JSON_NODE_HOLDS_OBJECT(node))
                return NULL;
        return json_object_ref(json_node_get_object(node));
}

static double load_one(JsonObject *o, const char *name) {
        JsonNode *n = json_object_get_member(o, name);
        JsonArray *a = n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
        JsonNode *e = a && json_array_get_length(a) > 0 ? json_array_get_element(a, 0) : NULL;
        return e && JSON_NODE_HOLDS_VALUE(e) ? json_node_get_double(e) : 0;
}

static char *format_uptime(uint64_t usec) {
        uint64_t s = usec / 1000000;
        if (s < 3600)
                return g_strdup_printf("%" PRIu64 "min", s / 60);
        if (s < 86400)
                return g_strdup_printf("%" PRIu64 "h %" PRIu64 "min", s / 3600, s % 3600 / 60);
        return g_strdup_printf("%" PRIu64 "d %" PRIu64 "h", s / 86400, s % 86400 / 3600);
}

/* NAME STATE VCPU MEMORY GUEST-MEM-USED LOAD UPTIME: the guest's figures
 * where its agent answers ("-" otherwise). */
static void print_vm_table(const VmInfo *vms) {
        int w = (int) strlen("NAME");
        for (const VmInfo *v = vms; v->path; v++)
                w = MAX(w, (int) strlen(v->name));
        printf("%-*s  %-9s %5s %10s %16s %6s  %s\n", w, "NAME", "STATE", "VCPU", "MEMORY", "GUEST MEM USED", "LOAD",
               "UPTIME");
        for (const VmInfo *v = vms; v->path; v++) {
                JsonObject *p = v->props;
                const char *state = ctl_json_str(p, "State");
                g_autofree char *mem = g_strdup_printf("%.1f GiB", ctl_json_uint(p, "MemoryMiB") / 1024.0);
                g_autofree char *used = NULL, *load = NULL, *up = NULL;
                uint64_t total = ctl_json_uint(p, "GuestMemoryTotalBytes");
                if (ctl_json_uint(p, "ResourcesTimestamp") && total) {
                        uint64_t avail = ctl_json_uint(p, "GuestMemoryAvailableBytes");
                        uint64_t u = total > avail ? total - avail : 0;
                        used = g_strdup_printf("%.1f GiB (%u%%)", u / MIB / 1024.0, (unsigned) (u * 100 / total));
                        load = g_strdup_printf("%.2f", load_one(p, "GuestLoadAverage"));
                        up = format_uptime(ctl_json_uint(p, "GuestUptimeUSec"));
                }
                printf("%-*s  %s%-9s%s %5" PRIu64 " %10s %16s %6s  %s\n", w, v->name, ctl_color(ctl_state_color(state)),
                       state, ctl_color(CTL_COLOR_NORMAL), ctl_json_uint(p, "Vcpu"), mem, used ?: "-", load ?: "-",
                       up ?: "-");
        }
}

/* "32 of 64 vCPU, 32.0 of 61.5 GiB memory allocated; 2 VMs started (...)" */
static void print_host(JsonObject *h) {
        uint64_t max_vms = ctl_json_uint(h, "MaxVms"), disk = ctl_json_uint(h, "CapacityDiskGiB");
        g_autofree char *cids = max_vms ? g_strdup_printf(", CID pool %" PRIu64, max_vms) : g_strdup("");
        g_autofree char *disks = disk ? g_strdup_printf(", %" PRIu64 " of %" PRIu64 " GiB disk",
                                                        ctl_json_uint(h, "AllocatedDiskGiB"), disk)
                                      : g_strdup("");
        printf("%16s: %" PRIu64 " of %" PRIu64 " vCPU, %.1f of %.1f GiB memory%s allocated; %" PRIu64
               " VMs started (%" PRIu64 " managed%s)\n",
               "Host", ctl_json_uint(h, "AllocatedVcpu"), ctl_json_uint(h, "CapacityVcpu"),
               ctl_json_uint(h, "AllocatedMemoryMiB") / 1024.0, ctl_json_uint(h, "CapacityMemoryMiB") / 1024.0, disks,
               ctl_json_uint(h, "StartedVms"), ctl_json_uint(h, "ManagedVms"), cids);
        printf("%16s: %.1f GiB memory available, load %.2f\n", "", ctl_json_uint(h, "HostMemoryAvailableMiB") / 1024.0,
               load_one(h, "HostLoadAverage"));
}

static void print_json(const VmInfo *vms, const ConfigInfo *c, JsonObject *updater, JsonObject *host) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "Vms");
        json_builder_begin_array(b);
        for (const VmInfo *v = vms; v->path; v++)
                json_builder_add_value(b, json_node_init_object(json_node_alloc(), v->props));
        json_builder_end_array(b);
        config_info_add_json(b, c);
        if (host) {
                json_builder_set_member_name(b, "Host");
                json_builder_add_value(b, json_node_init_object(json_node_alloc(), host));
        }
        if (updater) {
                json_builder_set_member_name(b, "Updater");
                json_builder_add_value(b, json_node_init_object(json_node_alloc(), updater));
        }
        json_builder_end_object(b);
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        ctl_json_print(root, true);
}

static bool vm_names_missing_env(const VmInfo *vms) {
        for (const VmInfo *v = vms; v->path; v++)
                if (strstr(ctl_json_str(v->props, "StateReason"), "missing env"))
                        return true;
        return false;
}

/* As systemctl is-active: not 0 when a VM does not run and will not by
 * itself: blocked, failed, or stopped (only the operator stops it). */
static int status_exit(const VmInfo *vms) {
        for (const VmInfo *v = vms; v->path; v++) {
                const char *state = ctl_json_str(v->props, "State");
                if (streq(state, "blocked") || streq(state, "failed") || streq(state, "stopped"))
                        return EX_CONFIG;
        }
        return 0;
}

/* The launcher cannot see the VM: what it shows is as last seen (dbus-api.md, "Honest reachability"). */
static void print_unreachable(const VmInfo *v) {
        if (!streq(ctl_json_str(v->props, "VmmStatus"), "unreachable"))
                return;
        printf("         %sProblem:%s VMM unreachable for VM %s: %s\n", ctl_color(CTL_COLOR_RED),
               ctl_color(CTL_COLOR_NORMAL), v->name, ctl_json_str(v->props, "StateReason"));
}

int verb_status(sd_bus *bus, int argc, char **argv) {
        int r = ctl_parse_common_options(argc, argv, 0, "status");
        if (r)
                return r;
        g_auto(ConfigInfo) c = {};
        g_autoptr(VmInfo) vms = NULL;
        r = config_info_get(bus, &c);
        if (r >= 0)
                r = vm_info_list(bus, &vms);
        if (r < 0)
                return -r;
        int ret = status_exit(vms);
        g_autoptr(JsonObject) updater = NULL;
        if (updater_info_get(bus, &updater) < 0)
                updater = NULL; /* said why on stderr; the rest still shows */
        g_autoptr(JsonObject) host = host_info_get(bus);
        if (arg.json) {
                print_json(vms, &c, updater, host);
                return ret;
        }

        /* Problems first: they are why an operator runs this. */
        for (const VmInfo *v = vms; v->path; v++) {
                vm_info_print_problems(v);
                print_unreachable(v);
        }
        config_info_print_problems(&c, !vm_names_missing_env(vms));
        if (updater)
                updater_info_print_problems(updater);

        if (!vms[0].path)
                printf("%16s: (none yet)\n\n", "VM");
        for (const VmInfo *v = vms; v->path; v++) {
                vm_info_print_summary(v);
                g_autofree char *good = ctl_format_timestamp(ctl_json_uint(v->props, "LastSuccessfulCheckTimestamp"));
                printf("%16s: %s\n", "Last good check", good);
                printf("\n");
        }
        if (vms[0].path) {
                print_vm_table(vms);
                printf("\n");
        }
        if (host) {
                print_host(host);
                printf("\n");
        }
        config_info_print(&c);
        if (updater) {
                printf("\n");
                updater_info_print(updater);
        }
        return ret;
}
