/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <sysexits.h>

#include <systemd/sd-bus.h>

#define LAUNCHER_BUS_NAME "org.platform.Launcher1"
#define LAUNCHER_OBJECT_PATH "/org/platform/Launcher1"
#define LAUNCHER_CONFIG_INTERFACE "org.platform.Launcher1.Config"

typedef struct CtlOptions {
        bool json;
        bool ask_password;
        bool quiet;
        bool no_block;
        const char *host;
} CtlOptions;

extern CtlOptions arg;

/* Prints "<what>: <bus error message>" on one line; returns the exit status for it. */
int ctl_bus_error(const char *what, const sd_bus_error *error, int r);

/* Connects to the system bus (or over SSH with -H). */
int ctl_connect(sd_bus **ret);

int verb_status(sd_bus *bus, int argc, char **argv);
int verb_config(sd_bus *bus, int argc, char **argv);
