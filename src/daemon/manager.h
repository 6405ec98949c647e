/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "core/settings.h"
#include "daemon/polkit.h"

#define LAUNCHER_BUS_NAME "org.platform.Launcher1"
#define LAUNCHER_OBJECT_PATH "/org/platform/Launcher1"
#define LAUNCHER_CONFIG_INTERFACE "org.platform.Launcher1.Config"

/* The daemon's one context, passed down to every handler. */
typedef struct Manager {
        sd_event *event;
        sd_bus *bus;
        SettingsStore *settings;
        PolkitRegistry *polkit;
        char *state_dir;
        char *runtime_dir;
        char **required_env;  /* keys the Platform API says the VM needs; empty until a spec is known */
} Manager;

/* bus-config.c */
int bus_config_register(Manager *m);
/* Emits PropertiesChanged for what differs between old and the config in force. */
void bus_config_emit_changes(Manager *m, const LauncherConfig *old, bool error_changed);
/* Re-reads the config file (SIGHUP and Reload); < 0 when the file is bad. */
int manager_reload_config(Manager *m, char **ret_error);

/* log-control.c */
int bus_log_control_register(Manager *m);
