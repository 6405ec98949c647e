/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "clients/step-backend.h"

/* The step runner's systemd back end: one transient service unit per step,
 * through org.freedesktop.systemd1 (StartTransientUnit, as systemd-run does):
 *
 *   Type=exec, ExecStart=<path> <argv>, User=, WorkingDirectory=,
 *   Environment=, UMask=0022, NoNewPrivileges=yes, KillMode=control-group,
 *   RuntimeMaxUSec=<timeout>, TimeoutStopUSec=<grace>,
 *   CollectMode=inactive-or-failed, AddRef=yes (the unit stays loaded until
 *   its result is read, then Unref), StandardInput=null,
 *   StandardOutputFileDescriptor= and StandardErrorFileDescriptor= (pipes the
 *   daemon reads, as systemd-run --pipe does), LogExtraFields=
 *   PLATFORM_LAUNCHER_STEP=<step>.
 *
 * The end is seen on the unit's PropertiesChanged (ActiveState inactive or
 * failed; the match is installed and Subscribe called before the start), and
 * the result read from the unit: Result, ExecMainCode, ExecMainStatus. A
 * backstop timer (timeout + grace + 5 s) kills the unit if systemd did not. */

typedef struct TransientUnit TransientUnit;

typedef void (*transient_unit_done_cb)(TransientUnit *t, const StepResult *result, void *userdata);

/* Never calls cb synchronously. */
int transient_unit_start(sd_bus *bus, sd_event *event, const StepSpec *spec, transient_unit_done_cb cb,
                         void *userdata, TransientUnit **ret);
/* StopUnit (the whole cgroup goes) and Unref; cb never fires. NULL is fine. */
void transient_unit_cancel(TransientUnit *t);
const char *transient_unit_name(const TransientUnit *t);
