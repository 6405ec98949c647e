/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "core/host.h"
#include "core/state.h"
#include "shared/log.h"
#include "shared/macro.h"

#define META_MAX_AGE_USEC (300 * USEC_PER_SEC)

/* A line of /proc/meminfo, in MiB (0 when missing). */
static uint64_t meminfo_mib(const char *field) {
        FILE *f = fopen("/proc/meminfo", "re");
        char line[256];
        size_t n = strlen(field);
        unsigned long long kib = 0;
        while (f && fgets(line, sizeof line, f))
                if (strncmp(line, field, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%llu", &kib) == 1)
                        break;
        if (f)
                fclose(f);
        return kib / 1024;
}


static void on_observed(void *userdata) {
        host_view_refresh(userdata, false);
}

int host_init(Host *h, sd_event *event, SettingsStore *settings, const char *state_dir, History *history,
              const ReconcilerEvents *ev) {
        *h = (Host) {
                .event = sd_event_ref(event),
                .settings = settings,
                .state_dir = g_strdup(state_dir),
                .history = history,
                .ev = *ev,
        };
        observer_init(&h->observer, on_observed, h);
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        h->online_cpus = cpus > 0 ? (uint32_t) cpus : 1;
        h->mem_total_mib = meminfo_mib("MemTotal");
        int q = http_context_new(event, &h->http);
        if (q >= 0)
                q = state_fingerprint_key(state_dir, h->fp_key);
        return q;
}

static void vmm_client_drop(void *c) {
        vmm_client_free(c);
}

void host_done(Host *h) {
        sd_event_source_disable_unref(h->resource_timer);
        if (h->meta_call)
                vmm_call_cancel(h->meta_call);
        observer_done(&h->observer);
        vmm_client_free(h->vmm);
        g_list_free_full(h->old_vmms, vmm_client_drop);
        http_context_free(h->http);
        g_free(h->vmm_url);
        g_free(h->state_dir);
        explicit_bzero(h->fp_key, sizeof h->fp_key);
        sd_event_unref(h->event);
        *h = (Host) {};
}

int host_follow_settings(Host *h, bool idle) {
        const char *url = settings_store_vmm_url(h->settings);
        if (!h->vmm || !streq(h->vmm_url, url)) {
                VmmClient *c = NULL;
                int q = vmm_client_new(h->http, url, &c);
                if (q < 0)
                        return q;
                if (h->vmm)
                        h->old_vmms = g_list_prepend(h->old_vmms, h->vmm);
                h->vmm = c;
                g_free(h->vmm_url);
                h->vmm_url = g_strdup(url);
                h->meta_usec = 0; /* another VMM: its CID pool may differ */
        }
        if (idle) {
                g_list_free_full(h->old_vmms, vmm_client_drop);
                h->old_vmms = NULL;
        }
        return 0;
}

static void on_meta(VmmCall *call, const VmmResult *res, void *userdata) {
        Host *h = userdata;
        h->meta_call = NULL;
        if (res->error < 0)
                return (void) log_debug("GetMeta failed: %s", res->message);
        h->meta = *res->meta;
        h->meta_usec = clock_usec(CLOCK_MONOTONIC);
        host_view_refresh(h, false);
}

void host_refresh_meta(Host *h) {
        uint64_t now = clock_usec(CLOCK_MONOTONIC);
        if (h->meta_call || !h->vmm || (h->meta_usec && now - h->meta_usec < META_MAX_AGE_USEC))
                return;
        if (vmm_get_meta(h->vmm, on_meta, h, &h->meta_call) < 0)
                h->meta_call = NULL;
}

CapacityFigures host_capacity(const Host *h) {
        const LauncherConfig *c = h->settings->config;
        return (CapacityFigures) {
                .vcpu = c->capacity_vcpu ?: h->online_cpus,
                .memory_mib = c->capacity_memory_mib ?: capacity_sub(h->mem_total_mib, c->reserved_memory_mib),
                .disk_gib = c->capacity_disk_gib,
        };
}

static bool started(const VmInfo *vm) {
        return vm->status == VM_STATUS_RUNNING || vm->status == VM_STATUS_EXITED;
}

static CapacityFigures figures_of(const VmConfiguration *c) {
        return (CapacityFigures) { c->vcpu, c->memory, c->disk_size };
}

static void add_figures(CapacityFigures *sum, CapacityFigures f) {
        sum->vcpu = capacity_add(sum->vcpu, f.vcpu);
        sum->memory_mib = capacity_add(sum->memory_mib, f.memory_mib);
        sum->disk_gib = capacity_add(sum->disk_gib, f.disk_gib);
}

CapacityFigures host_allocated(const Host *h, uint32_t *ret_n_started, uint32_t *ret_n_vms) {
        const VmmStatusReply *st = &h->observer.status;
        CapacityFigures used = {};
        uint32_t n = 0;
        for (size_t i = 0; i < st->n_vms; i++)
                if (started(&st->vms[i])) {
                        add_figures(&used, figures_of(&st->vms[i].configuration));
                        n++;
                }
        if (ret_n_started)
                *ret_n_started = n;
        if (ret_n_vms)
                *ret_n_vms = (uint32_t) MIN(st->n_vms, UINT32_MAX);
        return used;
}

int host_capacity_check(const Host *h, const VmInfo *freed, const VmConfiguration *want, bool create,
                        char **ret_why) {
        CapacityQuestion q = {
                .capacity = host_capacity(h),
                .wanted = figures_of(want),
                .max_vms = h->meta_usec ? h->meta.max_cvm_number : 0,
                .n_vms_new = create,
        };
        q.used = host_allocated(h, &q.n_started, &q.n_vms);
        if (freed && started(freed))
                q.freed = figures_of(&freed->configuration);
        if (freed && create)
                q.n_vms_freed = 1; /* a recreate removes the old VM first */
        return capacity_check(&q, ret_why);
}

void host_view_refresh(Host *h, bool host_figures) {
        CapacityFigures cap = host_capacity(h);
        HostView v;
        memset(&v, 0, sizeof v); /* padding too: the view is compared as bytes */
        v.capacity_vcpu = (uint32_t) MIN(cap.vcpu, UINT32_MAX);
        v.capacity_memory_mib = cap.memory_mib;
        v.capacity_disk_gib = cap.disk_gib;
        v.managed_vms = h->vms ? h->vms->len : 0;
        v.max_vms = h->meta_usec ? h->meta.max_cvm_number : 0;
        if (host_figures) {
                v.memory_available_mib = meminfo_mib("MemAvailable");
                if (getloadavg(v.load_average, 3) < 3)
                        memset(v.load_average, 0, sizeof v.load_average);
        } else {
                v.memory_available_mib = h->view.memory_available_mib;
                memcpy(v.load_average, h->view.load_average, sizeof v.load_average);
        }
        CapacityFigures used = host_allocated(h, &v.started_vms, NULL);
        v.allocated_vcpu = (uint32_t) MIN(used.vcpu, UINT32_MAX);
        v.allocated_memory_mib = used.memory_mib;
        v.allocated_disk_gib = used.disk_gib;
        if (memcmp(&v, &h->view, sizeof v) == 0)
                return;
        h->view = v;
        if (h->ev.host_changed)
                h->ev.host_changed(h->ev.userdata);
}
