/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>

/* Asynchronous polkit authorization for method handlers, in the manner of
 * systemd's bus-polkit, on the public libsystemd API:
 *
 *     r = polkit_check(m, "org.platform.launcher1.configure", details, &registry, error);
 *     if (r < 0) return r;        // denied: error is set
 *     if (r == 0) return 1;       // pending: the handler runs again when polkit answers
 *     ...authorized...
 *
 * The first call asks the bus for the caller's uid (root is allowed without
 * polkit), then polkit's CheckAuthorization with subject system-bus-name and
 * the caller's ALLOW_INTERACTIVE_AUTHORIZATION flag. When the answer arrives,
 * the original message is put back on the read queue so the handler runs from
 * the top and finds the decision. polkit not reachable = access denied.
 * Authorizations in flight are bounded per sender, per uid and in total;
 * beyond, the call is answered LimitsExceeded. */

typedef struct PolkitRegistry PolkitRegistry;

PolkitRegistry *polkit_registry_new(void);
void polkit_registry_free(PolkitRegistry *r);
unsigned polkit_registry_pending(const PolkitRegistry *r);

/* details: NULL or a NULL-terminated list of key, value pairs. */
int polkit_check(sd_bus_message *m, const char *action, const char *const *details, PolkitRegistry *registry,
                 sd_bus_error *error);
