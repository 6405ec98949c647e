/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include "shared/bus-errors.h"

static const sd_bus_error_map launcher_error_map[] = {
        SD_BUS_ERROR_MAP(LAUNCHER_ERROR_BUSY, EBUSY),
        SD_BUS_ERROR_MAP(LAUNCHER_ERROR_NOT_FOUND, ENOENT),
        SD_BUS_ERROR_MAP(LAUNCHER_ERROR_BLOCKED, ENOLINK),
        SD_BUS_ERROR_MAP(LAUNCHER_ERROR_DEFERRED, EAGAIN),
        SD_BUS_ERROR_MAP(LAUNCHER_ERROR_VMM_UNAVAILABLE, EHOSTDOWN),
        SD_BUS_ERROR_MAP(LAUNCHER_ERROR_API_UNAVAILABLE, ENETUNREACH),
        SD_BUS_ERROR_MAP(LAUNCHER_ERROR_INVALID_CONFIG, EBADMSG),
        SD_BUS_ERROR_MAP(LAUNCHER_ERROR_DIRTY_TREE, ENOTEMPTY),
        SD_BUS_ERROR_MAP(LAUNCHER_ERROR_FAILED, EIO),
        SD_BUS_ERROR_MAP_END,
};

int launcher_bus_errors_register(void) {
        return sd_bus_error_add_map(launcher_error_map);
}
