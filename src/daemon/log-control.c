/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include "daemon/manager.h"
#include "shared/log.h"

/* org.freedesktop.LogControl1, so `systemctl service-log-level` and
 * `service-log-target` work. Writes are privileged: sd-bus lets only root set
 * a property that is not marked SD_BUS_VTABLE_UNPRIVILEGED. */

#define LOG_CONTROL_PATH "/org/freedesktop/LogControl1"
#define LOG_CONTROL_INTERFACE "org.freedesktop.LogControl1"

static int property_get_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", log_level_to_string(log_get_max_level()));
}

static int property_set_level(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *value, void *userdata, sd_bus_error *error) {
        const char *t;
        int r = sd_bus_message_read(value, "s", &t);
        if (r < 0)
                return r;
        int level = log_level_from_string(t);
        if (level < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Invalid log level '%.32s': one of emerg alert crit err warning notice info debug.", t);
        log_info("Setting log level to %s.", t);
        log_set_max_level(level);
        return sd_bus_emit_properties_changed(bus, path, interface, "LogLevel", NULL);
}

static int property_get_target(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", log_target_to_string(log_get_target()));
}

static int property_set_target(sd_bus *bus, const char *path, const char *interface, const char *property,
                               sd_bus_message *value, void *userdata, sd_bus_error *error) {
        const char *t;
        int r = sd_bus_message_read(value, "s", &t);
        if (r < 0)
                return r;
        LogTarget target = log_target_from_string(t);
        if (target < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Invalid log target '%.32s': one of auto console journal null.", t);
        log_info("Setting log target to %s.", t);
        log_set_target(target);
        return sd_bus_emit_properties_changed(bus, path, interface, "LogTarget", NULL);
}

static int property_get_identifier(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", log_get_identifier());
}

static const sd_bus_vtable log_control_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_WRITABLE_PROPERTY("LogLevel", "s", property_get_level, property_set_level, 0,
                                 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_WRITABLE_PROPERTY("LogTarget", "s", property_get_target, property_set_target, 0,
                                 SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("SyslogIdentifier", "s", property_get_identifier, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_VTABLE_END,
};

int bus_log_control_register(Manager *m) {
        return sd_bus_add_object_vtable(m->bus, NULL, LOG_CONTROL_PATH, LOG_CONTROL_INTERFACE, log_control_vtable, m);
}
