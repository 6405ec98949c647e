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
#include "core/host-view.h"
#include "core/observe.h"
#include "core/reconciler.h"
#include "core/settings.h"
#include "shared/capacity.h"

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
        VmmMetaReply meta;          /* GetMeta: the CID pool's size (max_cvm_number) */
        uint64_t meta_usec;         /* CLOCK_MONOTONIC: when meta was fetched, 0 = never */
        VmmCall *meta_call;
        uint32_t online_cpus;
        uint64_t mem_total_mib;     /* /proc/meminfo MemTotal */
        GPtrArray *vms;             /* ManagedVm *, the API's first (reconciler.c keeps it) */
        HostView view;
        sd_event_source *resource_timer;    /* resources.c */
        uint64_t next_round_usec;   /* CLOCK_MONOTONIC: the VMs' next poll round */
        bool shutting_down;
} Host;

int host_init(Host *h, sd_event *event, SettingsStore *settings, const char *state_dir, History *history,
              const ReconcilerEvents *ev);
void host_done(Host *h);
/* A changed VmmUrl makes a new VMM client; calls in flight finish on the old
 * one, which goes when idle is true. */
int host_follow_settings(Host *h, bool idle);

/* GetMeta, asked again when older than a few minutes (nobody waits for it). */
void host_refresh_meta(Host *h);
/* The capacity in force: the settings, or derived (CapacityVcpu 0: the online
 * CPUs; CapacityMemoryMiB 0: MemTotal - ReservedMemoryMiB; disk 0: unchecked). */
CapacityFigures host_capacity(const Host *h);
/* What the VMs the VMM lists use: the configuration of every started one
 * (running or exited: the VMM boots an exited one again), summed. */
CapacityFigures host_allocated(const Host *h, uint32_t *ret_n_started, uint32_t *ret_n_vms);
/* The view follows the settings and what the VMM reports, and with
 * host_figures how the host fares now (memory, load: at the resource
 * interval); the bus is told (ReconcilerEvents.host_changed) when it changed. */
void host_view_refresh(Host *h, bool host_figures);

/* Whether one more VM fits (dbus-api.md "Capacity before every create"): the
 * one that runs want, freeing `freed` first (the VM replaced or started, or
 * NULL); create: it is a new VM at the VMM (it takes a CID). 0, or -ENOSPC and
 * why (caller frees). */
int host_capacity_check(const Host *h, const VmInfo *freed, const VmConfiguration *want, bool create,
                        char **ret_why);
