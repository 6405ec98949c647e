/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "clients/vmm.h"

/* What the VMM reports, asked once for every VM (observe.c). */

typedef struct Observer Observer;
typedef struct ObserverWait ObserverWait;

/* res NULL on success (observer_status() has the answer), else the failure. */
typedef void (*observer_cb)(const VmmResult *res, void *userdata);

struct Observer {
        VmmStatusReply status;      /* every VM the VMM lists */
        bool have_status;
        uint64_t sent_usec;         /* CLOCK_MONOTONIC: when the Status answered last was sent */
        uint64_t observed_usec;     /* ... and when it answered; 0 = never */
        char *vmm_url;              /* of the VMM that answered */
        VmmCall *call;
        uint64_t call_sent_usec;
        char *call_url;
        GList *waits;               /* ObserverWait *, waiting for call */
        char *error;                /* the last Status failed: why (NULL when fine) */
        void (*updated)(void *userdata);    /* told after each answer, before any waiter */
        void *updated_userdata;
        uint64_t failed_usec;       /* when the first of the current run of failed calls was sent */
};

void observer_init(Observer *o, void (*updated)(void *userdata), void *userdata);
void observer_done(Observer *o);
/* cb gets what the VMM reports as seen by a Status sent at or after since
 * (CLOCK_MONOTONIC): the last answer if it is that recent, else the call in
 * flight if it is, else a new call. cb may run before this returns (then
 * *ret is NULL). */
int observer_request(Observer *o, VmmClient *vmm, uint64_t since, observer_cb cb, void *userdata,
                     ObserverWait **ret);
void observer_wait_cancel(Observer *o, ObserverWait *w);
