/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>

/* Who asked, from the sender's credentials (effective uid and command, as
 * the bus daemon and /proc report them): "uid 0 (platformctl)". Falls back
 * to the unique bus name when the credentials cannot be had (the caller has
 * gone). Never NULL; free with g_free(). */
char *audit_caller(sd_bus_message *msg);

/* The audit line of a change, logged at the point the change is made:
 * "Audit: uid 0 (platformctl, pid 42) set env value 'HOTKEY'." what names
 * the change, key (may be NULL) the env key or setting. Never a value. */
void audit_log(sd_bus_message *msg, const char *what, const char *key);
