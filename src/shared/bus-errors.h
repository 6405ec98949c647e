/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>

#define LAUNCHER_ERROR_BUSY "org.platform.Launcher1.Error.Busy"
#define LAUNCHER_ERROR_NOT_FOUND "org.platform.Launcher1.Error.NotFound"
#define LAUNCHER_ERROR_BLOCKED "org.platform.Launcher1.Error.Blocked"
#define LAUNCHER_ERROR_DEFERRED "org.platform.Launcher1.Error.Deferred"
#define LAUNCHER_ERROR_VMM_UNAVAILABLE "org.platform.Launcher1.Error.VmmUnavailable"
#define LAUNCHER_ERROR_API_UNAVAILABLE "org.platform.Launcher1.Error.ApiUnavailable"
#define LAUNCHER_ERROR_INVALID_CONFIG "org.platform.Launcher1.Error.InvalidConfig"
#define LAUNCHER_ERROR_DIRTY_TREE "org.platform.Launcher1.Error.DirtyTree"
#define LAUNCHER_ERROR_FAILED "org.platform.Launcher1.Error.Failed"

/* Registers the names above with sd-bus so both ends map them to an errno. */
int launcher_bus_errors_register(void);
