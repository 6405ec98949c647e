/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdint.h>

#include <systemd/sd-bus.h>

/* org.freedesktop.systemd1 on the bus: restart a unit and wait for its job.
 * The JobRemoved match is installed before RestartUnit is sent, so the end of
 * a fast job is never missed. Any job result other than "done" is a failure. */

typedef struct SystemdClient SystemdClient;
typedef struct SystemdCall SystemdCall;

/* error: 0; -EIO (job result not "done", message names it), -ETIMEDOUT,
 * or the errno of a bus error (message has its text). */
typedef void (*systemd_done_cb)(SystemdCall *call, int error, const char *message, void *userdata);

int systemd_client_new(sd_bus *bus, SystemdClient **ret);
/* Cancels calls in flight (their callbacks never fire). */
void systemd_client_free(SystemdClient *c);

/* RestartUnit(unit, "replace"), then wait up to timeout_usec (0 = none) for
 * the job's JobRemoved. Never calls cb synchronously. */
int systemd_restart_unit(SystemdClient *c, const char *unit, uint64_t timeout_usec, systemd_done_cb cb, void *userdata,
                         SystemdCall **ret);
/* "validator" → "validator.service"; a name with a unit type suffix stays. Caller frees. */
char *systemd_unit_name_mangle(const char *unit);

/* The callback will not fire. NULL is fine. */
void systemd_call_cancel(SystemdCall *call);
