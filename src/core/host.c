/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "core/host.h"
#include "core/state.h"
#include "shared/macro.h"

int host_init(Host *h, sd_event *event, SettingsStore *settings, const char *state_dir, History *history,
              const ReconcilerEvents *ev) {
        *h = (Host) {
                .event = sd_event_ref(event),
                .settings = settings,
                .state_dir = g_strdup(state_dir),
                .history = history,
                .ev = *ev,
        };
        observer_init(&h->observer);
        int q = http_context_new(event, &h->http);
        if (q >= 0)
                q = state_fingerprint_key(state_dir, h->fp_key);
        return q;
}

static void vmm_client_drop(void *c) {
        vmm_client_free(c);
}

void host_done(Host *h) {
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
        }
        if (idle) {
                g_list_free_full(h->old_vmms, vmm_client_drop);
                h->old_vmms = NULL;
        }
        return 0;
}
