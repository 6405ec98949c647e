/* SPDX-License-Identifier: Apache-2.0 */
#include <stdio.h>
#include <string.h>

#include "ctl/ctl.h"
#include "shared/macro.h"

static void print_json(const VmInfo *vms, const ConfigInfo *c, JsonObject *updater) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "Vms");
        json_builder_begin_array(b);
        for (const VmInfo *v = vms; v->path; v++)
                json_builder_add_value(b, json_node_init_object(json_node_alloc(), v->props));
        json_builder_end_array(b);
        config_info_add_json(b, c);
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
        if (arg.json) {
                print_json(vms, &c, updater);
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
        config_info_print(&c);
        if (updater) {
                printf("\n");
                updater_info_print(updater);
        }
        return ret;
}
