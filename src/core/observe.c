/* SPDX-License-Identifier: Apache-2.0 */
/* What the VMM reports: one Status for every VM (managed or not), shared by
 * every operation that needs a look no older than its own start, so a poll
 * round of many VMs asks once. */
#include <errno.h>

#include <glib.h>

#include "core/observe.h"
#include "core/clock.h"
#include "core/vm.h"
#include "shared/log.h"
#include "shared/macro.h"

struct ObserverWait {
        observer_cb cb;
        void *userdata;
};

void observer_init(Observer *o, void (*updated)(void *userdata), void *userdata) {
        *o = (Observer) { .updated = updated, .updated_userdata = userdata };
}

void observer_done(Observer *o) {
        if (o->call)
                vmm_call_cancel(o->call);
        g_list_free_full(o->waits, g_free);
        vmm_status_reply_done(&o->status);
        g_free(o->vmm_url);
        g_free(o->call_url);
        g_free(o->error);
        *o = (Observer) {};
}

static void on_status(VmmCall *call, const VmmResult *res, void *userdata) {
        Observer *o = userdata;
        GList *waits = g_steal_pointer(&o->waits);
        o->call = NULL;

        if (res->error < 0) {
                if (!o->failed_usec)
                        o->failed_usec = o->call_sent_usec; /* the failure began with the call */
                g_autofree char *b = text_bound(res->message);
                g_free(o->error);
                o->error = g_strdup_printf("VMM unreachable: %s", b);
        } else {
                vmm_status_reply_done(&o->status);
                vmm_result_take_status(res, &o->status);
                o->have_status = true;
                o->sent_usec = o->call_sent_usec;
                g_free(o->vmm_url);
                o->vmm_url = g_steal_pointer(&o->call_url);
                o->observed_usec = clock_usec(CLOCK_MONOTONIC);
                o->failed_usec = 0;
                g_clear_pointer(&o->error, g_free);
                if (o->updated)
                        o->updated(o->updated_userdata);
        }
        for (GList *l = waits; l; l = l->next) {
                ObserverWait *w = l->data;
                w->cb(res->error < 0 ? res : NULL, w->userdata);
        }
        g_list_free_full(waits, g_free);
}

int observer_request(Observer *o, VmmClient *vmm, uint64_t since, observer_cb cb, void *userdata,
                     ObserverWait **ret) {
        const char *url = vmm_client_url(vmm);
        *ret = NULL;
        if (o->have_status && o->sent_usec >= since && streq_ptr(o->vmm_url, url)) {
                cb(NULL, userdata);
                return 0;
        }
        if (!o->call || o->call_sent_usec < since || !streq_ptr(o->call_url, url)) {
                if (o->call)
                        /* A newer look is wanted: whoever waits gets that one. */
                        vmm_call_cancel(o->call);
                o->call = NULL;
                o->call_sent_usec = clock_usec(CLOCK_MONOTONIC);
                g_free(o->call_url);
                o->call_url = g_strdup(url);
                int q = vmm_status(vmm, NULL, NULL, on_status, o, &o->call);
                if (q < 0)
                        return q;
        }
        ObserverWait *w = g_new0(ObserverWait, 1);
        *w = (ObserverWait) { cb, userdata };
        o->waits = g_list_append(o->waits, w);
        *ret = w;
        return 0;
}

void observer_wait_cancel(Observer *o, ObserverWait *w) {
        if (!w)
                return;
        o->waits = g_list_remove(o->waits, w);
        g_free(w);
}
