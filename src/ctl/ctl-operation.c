/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "ctl/ctl.h"
#include "shared/macro.h"

typedef struct Operation {
        sd_event *event;
        char *state, *reason;
        sd_bus_error error;
        int r;
} Operation;

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Operation *op = userdata;
        g_autoptr(JsonNode) changed = NULL;
        const char *iface;

        if (sd_bus_message_read(m, "s", &iface) <= 0 || !streq(iface, LAUNCHER_VM_INTERFACE))
                return 0;
        if (ctl_json_read(m, &changed) < 0 || !JSON_NODE_HOLDS_OBJECT(changed))
                return 0;
        JsonObject *o = json_node_get_object(changed);
        if (!json_object_has_member(o, "State") && !json_object_has_member(o, "StateReason"))
                return 0;
        const char *state = json_object_has_member(o, "State") ? ctl_json_str(o, "State") : op->state;
        const char *reason = json_object_has_member(o, "StateReason") ? ctl_json_str(o, "StateReason") : op->reason;
        if (streq_ptr(state, op->state) && streq_ptr(reason, op->reason))
                return 0;
        char *s = g_strdup(state), *why = g_strdup(reason);
        g_free(op->state);
        g_free(op->reason);
        op->state = s;
        op->reason = why;
        if (isempty(why))
                fprintf(stderr, "%s\n", strempty(s));
        else
                fprintf(stderr, "%s: %s\n", strempty(s), why);
        return 0;
}

static int on_vm_updated(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        const char *old_hash, *new_hash, *id;
        if (sd_bus_message_read(m, "sss", &old_hash, &new_hash, &id) < 0)
                return 0;
        fprintf(stderr, "Compose hash %s -> %s, VM id %s\n", isempty(old_hash) ? "(none)" : old_hash, new_hash, id);
        return 0;
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Operation *op = userdata;
        if (sd_bus_message_is_method_error(reply, NULL)) {
                op->r = -sd_bus_message_get_errno(reply);
                (void) sd_bus_error_copy(&op->error, sd_bus_message_get_error(reply));
                if (op->r == 0)
                        op->r = -EIO;
        }
        return sd_event_exit(op->event, 0);
}

/* The operation's state changes, as they happen, while waiting for the reply. */
static int call_with_progress(sd_bus *bus, sd_bus_message *m, const char *vm_path, uint64_t timeout, Operation *op) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        int r = sd_event_new(&event);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        op->event = event;
        /* Subscribed before the call goes out, so no change is missed. */
        r = sd_bus_match_signal(bus, NULL, LAUNCHER_BUS_NAME, vm_path, "org.freedesktop.DBus.Properties",
                                "PropertiesChanged", on_properties_changed, op);
        if (r >= 0)
                r = sd_bus_match_signal(bus, NULL, LAUNCHER_BUS_NAME, vm_path, LAUNCHER_VM_INTERFACE, "VmUpdated",
                                        on_vm_updated, op);
        if (r >= 0)
                r = sd_bus_call_async(bus, NULL, m, on_reply, op, timeout);
        if (r >= 0)
                r = sd_event_loop(event);
        (void) sd_bus_detach_event(bus);
        return r;
}

static uint64_t operation_timeout(sd_bus *bus) {
        uint64_t stop = 0;
        /* Stop alone may take StopTimeoutUSec (up to 1 h), Update and Restart include a stop. */
        if (sd_bus_get_property_trivial(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, LAUNCHER_CONFIG_INTERFACE,
                                        "StopTimeoutUSec", NULL, 't', &stop) < 0 || stop > 24 * 3600 * USEC_PER_SEC)
                stop = 3600 * USEC_PER_SEC;
        return CTL_LONG_CALL_USEC + stop;
}

int ctl_long_call(sd_bus *bus, sd_bus_message *m, const char *vm_path, const char *what) {
        int r;
        if (arg.no_block) {
                r = sd_bus_message_set_expect_reply(m, 0);
                if (r >= 0)
                        r = sd_bus_send(bus, m, NULL);
                if (r >= 0)
                        r = sd_bus_flush(bus);
                if (r < 0)
                        fprintf(stderr, "%s: %s\n", what, strerror(-r));
                return r < 0 ? EX_UNAVAILABLE : 0;
        }

        uint64_t timeout = operation_timeout(bus);
        Operation op = { .error = SD_BUS_ERROR_NULL };
        if (isatty(STDERR_FILENO) && !arg.quiet)
                r = call_with_progress(bus, m, vm_path, timeout, &op);
        else
                r = sd_bus_call(bus, m, timeout, &op.error, NULL);
        g_free(op.state);
        g_free(op.reason);
        if (r >= 0 && op.r < 0)
                r = op.r;
        int ret = r < 0 ? ctl_bus_error(what, &op.error, r) : 0;
        sd_bus_error_free(&op.error);
        return ret;
}
