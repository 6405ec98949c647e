/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <systemd/sd-event.h>

#include "clients/http.h"
#include "clients/vmm.h"
#include "core/clock.h"
#include "core/history.h"
#include "core/observe.h"
#include "core/reconciler.h"
#include "core/settings.h"

/* The host the managed VMs run on, and what they share: the event loop, the
 * settings, the HTTP context, the VMM (its client, and what it reports), the
 * per-host key of the env fingerprints, the history, and whom to tell. */
typedef struct Host {
        sd_event *event;
        SettingsStore *settings;
        char *state_dir;
        History *history;           /* may be NULL */
        ReconcilerEvents ev;

        HttpContext *http;
        VmmClient *vmm;             /* follows VmmUrl (host_follow_settings) */
        char *vmm_url;
        GList *old_vmms;            /* VmmClient *, replaced while calls were in flight */
        Observer observer;          /* what the VMM reports */
        uint8_t fp_key[32];
        GPtrArray *vms;             /* ManagedVm *, the API's first (reconciler.c keeps it) */
        uint64_t next_round_usec;   /* CLOCK_MONOTONIC: the VMs' next poll round */
        bool shutting_down;
} Host;

int host_init(Host *h, sd_event *event, SettingsStore *settings, const char *state_dir, History *history,
              const ReconcilerEvents *ev);
void host_done(Host *h);
/* A changed VmmUrl makes a new VMM client; calls in flight finish on the old
 * one, which goes when idle is true. */
int host_follow_settings(Host *h, bool idle);
