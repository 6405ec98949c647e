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
        bool progress;       /* print State/StateReason changes on stderr */
        bool until_started;  /* --no-block: return at the first sign the launcher took the call up */
        char *state, *reason;
        sd_bus_error error;
        int r;
} Operation;

static void show_state(Operation *op, JsonObject *changed) {
        bool has_state = json_object_has_member(changed, "State");
        bool has_reason = json_object_has_member(changed, "StateReason");
        if (!has_state && !has_reason)
                return;
        const char *state = has_state ? ctl_json_str(changed, "State") : op->state;
        const char *reason = has_reason ? ctl_json_str(changed, "StateReason") : op->reason;
        if (streq_ptr(state, op->state) && streq_ptr(reason, op->reason))
                return;
        char *s = g_strdup(state), *why = g_strdup(reason);
        g_free(op->state);
        g_free(op->reason);
        op->state = s;
        op->reason = why;
        if (isempty(why))
                fprintf(stderr, "%s\n", strempty(s));
        else
                fprintf(stderr, "%s: %s\n", strempty(s), why);
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Operation *op = userdata;
        g_autoptr(JsonNode) changed = NULL;
        const char *iface;

        if (sd_bus_message_read(m, "s", &iface) <= 0 || !streq(iface, LAUNCHER_VM_INTERFACE))
                return 0;
        if (ctl_json_read(m, &changed) < 0 || !JSON_NODE_HOLDS_OBJECT(changed))
                return 0;
        if (op->progress)
                show_state(op, json_node_get_object(changed));
        /* Nothing changes before the call is authorized: a change is the launcher at work on it. */
        if (op->until_started)
                return sd_event_exit(op->event, 0);
        return 0;
}

static int on_vm_updated(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Operation *op = userdata;
        const char *old_hash, *new_hash, *id;
        if (op->progress && sd_bus_message_read(m, "sss", &old_hash, &new_hash, &id) >= 0)
                fprintf(stderr, "Compose hash %s -> %s, VM id %s\n", isempty(old_hash) ? "(none)" : old_hash,
                        new_hash, id);
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

/* Waits for the reply (or, with until_started, the first change) in an event
 * loop, so the VM's own signals can be followed meanwhile. */
static int call_and_follow(sd_bus *bus, sd_bus_message *m, const char *vm_path, uint64_t timeout, Operation *op) {
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

/* --no-block still expects the reply: the launcher authorizes a call by
 * asking the bus who sent it, and denies it once the sender is gone, so
 * a caller that hung up at once would have its call dropped unseen. It
 * returns on the reply (an error such as Busy or AccessDenied shows) or at
 * the VM's first property change, whichever comes first. */
int ctl_long_call(sd_bus *bus, sd_bus_message *m, const char *vm_path, const char *what) {
        Operation op = {
                .error = SD_BUS_ERROR_NULL,
                .progress = isatty(STDERR_FILENO) && !arg.quiet,
                .until_started = arg.no_block,
        };
        uint64_t timeout = operation_timeout(bus);
        int r;
        if (op.progress || op.until_started)
                r = call_and_follow(bus, m, vm_path, timeout, &op);
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
