/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "clients/vmm-json.h"

/* Whether a new VM with the mappings `want` could not run beside a VM that
 * holds `have` (dstack HEAD vmm/src/main_service.rs port_mappings_conflict:
 * same protocol, same host port, and the host addresses equal or either one
 * unspecified, 0.0.0.0 or ::). A wanted host_address of ""/null is the VMM's
 * default address, which the launcher does not know: it may be any address,
 * so it conflicts with every address. Host port 0 conflicts with 0 as at
 * HEAD (up to v0.5.11 QEMU would pick two ephemeral ports). On a conflict,
 * *ret_which (if not NULL) is the wanted mapping as "tcp 127.0.0.1:8080". */
bool port_mappings_conflict(const VmPort *want, size_t n_want, const VmPort *have, size_t n_have, char **ret_which);
