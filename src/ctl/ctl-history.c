/* SPDX-License-Identifier: Apache-2.0 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl/ctl.h"
#include "shared/macro.h"

/* Names of the JSON members, in the order of the bus struct (tssssssst). */
static const char *const history_fields[] = {
        "Timestamp", "Kind", "Action", "Trigger", "From", "To", "Result", "Reason", "DurationUSec",
};

static void format_time(uint64_t usec, char *buf, size_t n) {
        time_t t = (time_t) (usec / 1000000);
        struct tm tm;
        if (usec == 0 || !localtime_r(&t, &tm) || strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm) == 0)
                g_strlcpy(buf, "-", n);
}

static char *format_duration(uint64_t usec) {
        if (usec == 0)
                return g_strdup("-");
        if (usec < 1000000)
                return g_strdup_printf("%" PRIu64 "ms", usec / 1000);
        if (usec < 600 * 1000000ULL)
                return g_strdup_printf("%" PRIu64 ".%" PRIu64 "s", usec / 1000000, usec % 1000000 / 100000);
        return g_strdup_printf("%" PRIu64 "min", usec / 60000000);
}

static const char *short_hash(const char *s, char *buf, size_t n) {
        if (isempty(s))
                return "-";
        g_strlcpy(buf, s, MIN(n, (size_t) 13));
        return buf;
}

static void print_entry(JsonArray *e) {
        char when[32], from[16], to[16];
        format_time((uint64_t) json_array_get_int_element(e, 0), when, sizeof(when));
        g_autofree char *dur = format_duration((uint64_t) json_array_get_int_element(e, 8));
        const char *result = json_array_get_string_element(e, 6);
        printf("%-19s  %-8s %-6s %-12s → %-12s %7s  %s\n", when, json_array_get_string_element(e, 2), result,
               short_hash(json_array_get_string_element(e, 4), from, sizeof(from)),
               short_hash(json_array_get_string_element(e, 5), to, sizeof(to)), dur,
               json_array_get_string_element(e, 3));
        const char *reason = json_array_get_string_element(e, 7);
        if (!isempty(reason))
                printf("%21s%s\n", "", reason);
}

static JsonNode *entries_as_objects(JsonArray *list) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_array(b);
        for (guint i = 0; i < json_array_get_length(list); i++) {
                JsonArray *e = json_array_get_array_element(list, i);
                json_builder_begin_object(b);
                for (guint k = 0; k < ELEMENTSOF(history_fields) && k < json_array_get_length(e); k++) {
                        json_builder_set_member_name(b, history_fields[k]);
                        json_builder_add_value(b, json_node_copy(json_array_get_element(e, k)));
                }
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        return json_builder_get_root(b);
}

/* GetHistory of path and interface; whose: "the VM's", "the updater's". */
static int show_history(sd_bus *bus, const char *path, const char *interface, const char *whose, unsigned limit) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(JsonNode) node = NULL;

        int r = sd_bus_call_method(bus, LAUNCHER_BUS_NAME, path, interface, "GetHistory", &error, &reply, "u", limit);
        if (r < 0) {
                g_autofree char *what = g_strdup_printf("Failed to get %s history", whose);
                return ctl_bus_error(what, &error, r);
        }
        r = ctl_json_read(reply, &node);
        if (r < 0 || !JSON_NODE_HOLDS_ARRAY(node)) {
                fprintf(stderr, "Failed to parse %s history: %s\n", whose, strerror(r < 0 ? -r : EBADMSG));
                return EXIT_FAILURE;
        }
        JsonArray *list = json_node_get_array(node);
        if (arg.json) {
                g_autoptr(JsonNode) out = entries_as_objects(list);
                ctl_json_print(out, true);
                return 0;
        }
        if (json_array_get_length(list) == 0) {
                if (!arg.quiet)
                        printf("No history yet.\n");
                return 0;
        }
        printf("%-19s  %-8s %-6s %-12s   %-12s %7s  %s\n", "TIME", "ACTION", "RESULT", "FROM", "TO", "TOOK",
               "TRIGGER");
        for (guint i = 0; i < json_array_get_length(list); i++)
                print_entry(json_array_get_array_element(list, i));
        return 0;
}

int ctl_vm_history(sd_bus *bus, const char *vm_path, unsigned limit) {
        return show_history(bus, vm_path, LAUNCHER_VM_INTERFACE, "the VM's", limit);
}

int ctl_updater_history(sd_bus *bus, unsigned limit) {
        return show_history(bus, LAUNCHER_OBJECT_PATH, "org.platform.Launcher1.Updater", "the updater's", limit);
}
