/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include "core/host.h"
#include "core/managed-vm.h"

/* The resource view (resources.c): the host's figures and the running VMs'
 * guest figures, every ResourceIntervalUSec. */
void resources_schedule(Host *h);
/* At once (start-up, a settings change), then every interval. */
void resources_now(Host *h);
