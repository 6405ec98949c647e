/* SPDX-License-Identifier: Apache-2.0 */
/* Where a VM's spec comes from: a document in the Platform API's spec format,
 * fetched with conditional requests; the last good one is kept (in memory
 * and in spec.json) and stays what is wanted while the source fails. */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "core/source.h"
#include "core/clock.h"
#include "core/state.h"
#include "core/vm.h"
#include "shared/log.h"
#include "shared/macro.h"

Source *source_new(const char *url, const char *state_dir) {
        Source *s = g_new0(Source, 1);
        s->url = g_strdup(url);
        s->state_dir = g_strdup(state_dir);
        return s;
}

void source_free(Source *s) {
        if (!s)
                return;
        source_cancel(s);
        platform_api_free(s->api);
        platform_vm_spec_free(s->spec);
        g_free(s->url);
        g_free(s->api_url);
        g_free(s->state_dir);
        g_free(s->spec_error);
        g_free(s->fetch_error);
        g_free(s->spec_digest);
        g_free(s);
}

int source_set_url(Source *s, HttpContext *http, const char *url) {
        if (s->api && streq(s->api_url, url))
                return 0;
        PlatformApi *a = NULL;
        int q = platform_api_new(http, url, &a);
        if (q >= 0)
                q = platform_api_set_spec_url(a, url);
        if (q < 0) {
                platform_api_free(a);
                return q;
        }
        source_cancel(s);
        platform_api_free(s->api);
        s->api = a;
        g_free(s->api_url);
        s->api_url = g_strdup(url);
        g_free(s->url);
        s->url = g_strdup(url);
        return 0;
}

/* No write per poll against a source without validators. */
static void keep(Source *s, const char *data, size_t len) {
        if (!data)
                return;
        g_autofree char *digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *) data, len);
        if (streq_ptr(digest, s->spec_digest))
                return;
        int q = state_spec_save(s->state_dir, data, len);
        if (q < 0)
                return (void) log_warning_errno(q, "Cannot keep the spec in %s: %m", s->state_dir);
        g_free(s->spec_digest);
        s->spec_digest = g_steal_pointer(&digest);
}

int source_load_kept(Source *s, char **ret_error) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int q = state_spec_load(s->state_dir, API_DOC_MAX, &data, &len);
        if (q >= 0)
                q = platform_vm_spec_parse(data, len, &s->spec, ret_error);
        if (q < 0)
                return q;
        s->spec_digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *) data, len);
        return 0;
}

static void fetch_failed(Source *s, const char *message) {
        g_autofree char *b = text_bound(message);
        if (!s->fetch_failed_usec)
                s->fetch_failed_usec = clock_usec(CLOCK_MONOTONIC);
        g_free(s->fetch_error);
        s->fetch_error = g_strdup_printf("Platform API unreachable: %s", b);
}

static FetchOutcome take(Source *s, PlatformSpecResult *res) {
        if (res->error == -EINVAL) {
                g_free(s->spec_error);
                s->spec_error = text_bound(res->message);
                return FETCH_INVALID;
        }
        if (res->error < 0) {
                fetch_failed(s, res->message);
                return FETCH_UNREACHABLE;
        }
        s->fetched_usec = clock_usec(CLOCK_MONOTONIC);
        s->fetch_failed_usec = 0;
        g_clear_pointer(&s->fetch_error, g_free);
        if (!res->unchanged) {
                platform_vm_spec_free(s->spec);
                s->spec = g_steal_pointer(&res->spec);
                g_clear_pointer(&s->spec_error, g_free);
                keep(s, res->body, res->body_len);
                return FETCH_NEW;
        }
        if (s->spec) {
                /* 304 against the validators of the last good document: that one is back. */
                g_clear_pointer(&s->spec_error, g_free);
                return FETCH_SAME;
        }
        /* A 304 with no good document to be "not modified" from: there is still
         * no spec, and the next request asks for the whole document. */
        platform_api_forget_validators(s->api);
        s->fetch_error = g_strdup("the Platform API answered 304 Not Modified, but no valid document was ever "
                                  "received");
        return FETCH_SAME;
}

static void on_spec(PlatformCall *call, PlatformSpecResult *res, void *userdata) {
        Source *s = userdata;
        s->call = NULL;
        s->cb(s, take(s, res), s->cb_userdata);
}

int source_fetch(Source *s, HttpContext *http, source_cb cb, void *userdata) {
        if (s->call)
                return -EBUSY;
        int q = source_set_url(s, http, s->url);
        if (q < 0)
                return q;
        s->cb = cb;
        s->cb_userdata = userdata;
        return platform_api_fetch_spec(s->api, on_spec, s, &s->call);
}

void source_cancel(Source *s) {
        if (!s->call)
                return;
        platform_call_cancel(s->call);
        s->call = NULL;
}

char *source_blocked_reason(const Source *s) {
        if (s->spec_error)
                return g_strdup_printf("invalid spec from the Platform API: %s", s->spec_error);
        if (!s->spec)
                return s->fetch_error ? g_strdup_printf("no spec yet: %s", s->fetch_error)
                                      : g_strdup("no spec fetched yet");
        return NULL;
}
