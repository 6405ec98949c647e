/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-event.h>

#include "ctl/ctl.h"
#include "shared/macro.h"

#define LAUNCHER_UPDATER_INTERFACE "org.platform.Launcher1.Updater"

/* Argument names as the interface XML declares them, so --json lines are
 * self-describing; a signal not listed gets arg0, arg1, ... */
static const struct {
        const char *interface, *member;
        const char *args[3];
} signal_args[] = {
        { "org.freedesktop.DBus.Properties", "PropertiesChanged",
          { "interface_name", "changed_properties", "invalidated_properties" } },
        { "org.freedesktop.DBus.ObjectManager", "InterfacesAdded", { "object_path", "interfaces_and_properties" } },
        { "org.freedesktop.DBus.ObjectManager", "InterfacesRemoved", { "object_path", "interfaces" } },
        { "org.freedesktop.DBus", "NameOwnerChanged", { "name", "old_owner", "new_owner" } },
        { LAUNCHER_VM_INTERFACE, "VmUpdated", { "old_compose_hash", "new_compose_hash", "vm_id" } },
        { LAUNCHER_VM_INTERFACE, "UpdateFailed", { "target_compose_hash", "reason" } },
        { LAUNCHER_UPDATER_INTERFACE, "UpdateDeferred", { "reason", "target_commit" } },
        { LAUNCHER_UPDATER_INTERFACE, "UpdateApplied", { "old_commit", "new_commit" } },
        { LAUNCHER_UPDATER_INTERFACE, "UpdateFailed", { "target_commit", "reason", "rolled_back" } },
};

static char *arg_name(const char *interface, const char *member, guint k) {
        for (size_t i = 0; i < ELEMENTSOF(signal_args); i++)
                if (streq_ptr(signal_args[i].interface, interface) && streq_ptr(signal_args[i].member, member) &&
                    k < ELEMENTSOF(signal_args[i].args) && signal_args[i].args[k])
                        return g_strdup(signal_args[i].args[k]);
        return g_strdup_printf("arg%u", k);
}

/* Who a signal is about, in the words of platformctl's commands: "config",
 * "updater", "vm NAME", "launcher"; anything else by path. */
static char *subject_of(const char *path, const char *interface, char **ret_vm) {
        char *label = NULL;
        if (sd_bus_path_decode(path, LAUNCHER_VM_PATH_PREFIX, &label) > 0) {
                *ret_vm = g_strdup(label);
                free(label);
                return g_strdup_printf("vm %s", *ret_vm);
        }
        if (g_strcmp0(interface, LAUNCHER_CONFIG_INTERFACE) == 0)
                return g_strdup("config");
        if (g_strcmp0(interface, LAUNCHER_UPDATER_INTERFACE) == 0)
                return g_strdup("updater");
        if (streq(path, "/org/freedesktop/DBus"))
                return g_strdup("launcher");
        return g_strdup(path);
}

static void append_value(GString *s, JsonNode *v) {
        if (JSON_NODE_HOLDS_VALUE(v) && json_node_get_value_type(v) == G_TYPE_STRING) {
                const char *t = json_node_get_string(v);
                bool plain = !isempty(t);
                for (const char *c = t; *c && plain; c++)
                        plain = (unsigned char) *c > ' ' && *c != '"' && *c != '=' && *c != 0x7f;
                if (plain) {
                        g_string_append(s, t);
                        return;
                }
        }
        g_autofree char *text = ctl_json_to_text(v);
        g_string_append(s, text);
}

static bool holds_uint(JsonNode *v) {
        return JSON_NODE_HOLDS_VALUE(v) && json_node_get_value_type(v) == G_TYPE_INT64 && json_node_get_int(v) >= 0;
}

/* Times as a person reads them: "...Timestamp" as local time, "...USec" as a
 * duration; --json keeps the numbers. */
static void append_property(GString *s, const char *name, JsonNode *v) {
        if (g_str_has_suffix(name, "Timestamp") && holds_uint(v)) {
                g_autofree char *t = ctl_format_time((uint64_t) json_node_get_int(v));
                g_string_append_printf(s, "\"%s\"", t);
                return;
        }
        if (g_str_has_suffix(name, "USec") && holds_uint(v)) {
                g_autofree char *t = ctl_format_usec_in((uint64_t) json_node_get_int(v), NULL);
                g_string_append(s, t);
                return;
        }
        append_value(s, v);
}

static void append_properties(GString *s, JsonArray *args) {
        JsonNode *changed = json_array_get_length(args) > 1 ? json_array_get_element(args, 1) : NULL;
        JsonNode *invalidated = json_array_get_length(args) > 2 ? json_array_get_element(args, 2) : NULL;
        if (changed && JSON_NODE_HOLDS_OBJECT(changed)) {
                JsonObjectIter it;
                const char *name;
                JsonNode *v;
                json_object_iter_init(&it, json_node_get_object(changed));
                while (json_object_iter_next(&it, &name, &v)) {
                        g_string_append_printf(s, " %s=", name);
                        append_property(s, name, v);
                }
        }
        if (invalidated && JSON_NODE_HOLDS_ARRAY(invalidated))
                for (guint k = 0; k < json_array_get_length(json_node_get_array(invalidated)); k++)
                        g_string_append_printf(s, " %s=(invalidated)",
                                               json_array_get_string_element(json_node_get_array(invalidated), k));
}

static void print_human(const char *time, const char *subject, const char *iface, const char *member,
                        JsonArray *args) {
        g_autoptr(GString) s = g_string_new(NULL);
        g_string_append_printf(s, "%s %s:", time, subject);
        if (streq(member, "PropertiesChanged"))
                append_properties(s, args);
        else if (streq(member, "InterfacesAdded") || streq(member, "InterfacesRemoved")) {
                JsonNode *ifaces = json_array_get_length(args) > 1 ? json_array_get_element(args, 1) : NULL;
                g_string_append(s, streq(member, "InterfacesAdded") ? " added" : " removed");
                if (ifaces && JSON_NODE_HOLDS_OBJECT(ifaces)) {
                        g_autoptr(GList) names = json_object_get_members(json_node_get_object(ifaces));
                        for (GList *l = names; l; l = l->next)
                                g_string_append_printf(s, " %s", (const char *) l->data);
                } else if (ifaces && JSON_NODE_HOLDS_ARRAY(ifaces))
                        for (guint k = 0; k < json_array_get_length(json_node_get_array(ifaces)); k++)
                                g_string_append_printf(s, " %s",
                                                       json_array_get_string_element(json_node_get_array(ifaces), k));
        } else if (streq(member, "NameOwnerChanged"))
                g_string_append(s, isempty(json_array_get_string_element(args, 2)) ? " stopped" : " started");
        else {
                g_string_append_printf(s, " %s", member);
                for (guint k = 0; k < json_array_get_length(args); k++) {
                        g_autofree char *name = arg_name(iface, member, k);
                        g_string_append_printf(s, " %s=", name);
                        append_value(s, json_array_get_element(args, k));
                }
        }
        printf("%s\n", s->str);
        fflush(stdout);
}

static void print_json_line(uint64_t usec, const char *time, const char *subject, const char *vm,
                            sd_bus_message *m, JsonArray *args) {
        const char *iface = sd_bus_message_get_interface(m), *member = sd_bus_message_get_member(m);
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "Timestamp");
        json_builder_add_int_value(b, (gint64) usec);
        json_builder_set_member_name(b, "Time");
        json_builder_add_string_value(b, time);
        json_builder_set_member_name(b, "Object");
        json_builder_add_string_value(b, subject);
        if (vm) {
                json_builder_set_member_name(b, "Vm");
                json_builder_add_string_value(b, vm);
        }
        json_builder_set_member_name(b, "Path");
        json_builder_add_string_value(b, strempty(sd_bus_message_get_path(m)));
        json_builder_set_member_name(b, "Interface");
        json_builder_add_string_value(b, strempty(iface));
        json_builder_set_member_name(b, "Member");
        json_builder_add_string_value(b, strempty(member));
        json_builder_set_member_name(b, "Args");
        json_builder_begin_object(b);
        for (guint k = 0; k < json_array_get_length(args); k++) {
                g_autofree char *name = arg_name(iface, member, k);
                json_builder_set_member_name(b, name);
                json_builder_add_value(b, json_array_dup_element(args, k));
        }
        json_builder_end_object(b);
        json_builder_end_object(b);
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        ctl_json_print(root, false);
}

static char *format_now(uint64_t *ret_usec) {
        struct timespec ts;
        struct tm tm;
        char buf[32];
        clock_gettime(CLOCK_REALTIME, &ts);
        *ret_usec = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        if (!localtime_r(&ts.tv_sec, &tm) || strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                return g_strdup_printf("@%" G_GUINT64_FORMAT, *ret_usec);
        return g_strdup_printf("%s.%06ld", buf, ts.tv_nsec / 1000);
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *path = sd_bus_message_get_path(m), *iface = sd_bus_message_get_interface(m);
        const char *member = sd_bus_message_get_member(m);
        g_autoptr(JsonArray) args = json_array_new();
        g_autofree char *vm = NULL, *subject = NULL, *time = NULL;
        uint64_t usec;

        if (!path || !iface || !member)
                return 0;
        int r;
        while ((r = sd_bus_message_at_end(m, true)) == 0) {
                JsonNode *v;
                r = ctl_json_read(m, &v);
                if (r < 0)
                        break;
                json_array_add_element(args, v);
        }
        if (r < 0) {
                fprintf(stderr, "Ignoring a malformed %s.%s signal: %s\n", iface, member, strerror(-r));
                return 0;
        }

        /* The subject of PropertiesChanged is the interface that changed, of
         * InterfacesAdded/Removed the object that came or went. */
        const char *about_path = path, *about_iface = iface;
        if (streq(member, "PropertiesChanged"))
                about_iface = json_array_get_string_element(args, 0);
        else if (streq(member, "InterfacesAdded") || streq(member, "InterfacesRemoved"))
                about_path = json_array_get_string_element(args, 0);
        subject = subject_of(strempty(about_path), about_iface, &vm);
        time = format_now(&usec);
        if (arg.json)
                print_json_line(usec, time, subject, vm, m, args);
        else
                print_human(time, subject, iface, member, args);
        return 0;
}

static int on_disconnected(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        fprintf(stderr, "Lost the connection to the bus.\n");
        return sd_event_exit(sd_bus_get_event(sd_bus_message_get_bus(m)), EX_UNAVAILABLE);
}

static int monitor_subscribe(sd_bus *bus) {
        int r = sd_bus_match_signal(bus, NULL, LAUNCHER_BUS_NAME, NULL, NULL, NULL, on_signal, NULL);
        if (r >= 0)
                r = sd_bus_add_match(bus, NULL,
                                     "type='signal',sender='org.freedesktop.DBus',path='/org/freedesktop/DBus',"
                                     "interface='org.freedesktop.DBus',member='NameOwnerChanged',"
                                     "arg0='" LAUNCHER_BUS_NAME "'",
                                     on_signal, NULL);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, NULL, "/org/freedesktop/DBus/Local", "org.freedesktop.DBus.Local",
                                        "Disconnected", on_disconnected, NULL);
        return r;
}

int verb_monitor(sd_bus *bus, int argc, char **argv) {
        int r = ctl_parse_common_options(argc, argv, 0, "monitor");
        if (r)
                return r;

        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        r = sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_new(&event);
        /* No handler: the signal ends the loop with exit status 0. */
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r >= 0)
                r = monitor_subscribe(bus);
        if (r < 0) {
                fprintf(stderr, "Failed to subscribe to the launcher's signals: %s\n", strerror(-r));
                return EX_UNAVAILABLE;
        }
        /* After the matches are in place: a script may wait for this line. */
        if (!arg.quiet)
                fprintf(stderr, "Monitoring %s, press Ctrl-C to stop.\n", LAUNCHER_BUS_NAME);

        r = sd_event_loop(event);
        (void) sd_bus_detach_event(bus);
        if (r < 0) {
                fprintf(stderr, "Monitoring failed: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        return r;
}
