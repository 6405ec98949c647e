/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>

#include "clients/platform-api.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/validate.h"

typedef enum CallKind {
        CALL_SPEC,
        CALL_ACTIVE,
} CallKind;

struct PlatformApi {
        HttpContext *http;
        char *base_url;
        char *spec_url;
        char *ca_file;
        uint64_t timeout_usec;
        size_t max_doc;
        char *etag;          /* validators of the last document that parsed */
        char *last_modified;
        PlatformCall *calls;
};

struct PlatformCall {
        PlatformApi *api;
        HttpCall *http;
        CallKind kind;
        platform_spec_cb spec_cb;
        platform_active_cb active_cb;
        void *userdata;
        bool in_callback;
        PlatformCall *prev, *next;
};

static void call_unlink(PlatformCall *call) {
        PlatformApi *api = call->api;
        if (!api)
                return;
        if (call->prev)
                call->prev->next = call->next;
        else if (api->calls == call)
                api->calls = call->next;
        if (call->next)
                call->next->prev = call->prev;
        call->prev = call->next = NULL;
}

void platform_call_cancel(PlatformCall *call) {
        if (!call || call->in_callback)
                return;
        http_call_cancel(call->http);
        call_unlink(call);
        free(call);
}

int platform_api_new(HttpContext *http, const char *base_url, PlatformApi **ret) {
        PlatformApi *api;

        if (!http || !url_is_valid(base_url))
                return -EINVAL;
        api = calloc(1, sizeof *api);
        if (!api)
                return -ENOMEM;
        api->http = http;
        api->timeout_usec = 30 * USEC_PER_SEC;
        api->max_doc = API_DOC_MAX;
        /* "https://host/" and "https://host" name the same API. */
        size_t n = strlen(base_url);
        while (n > 0 && base_url[n - 1] == '/')
                n--;
        api->base_url = strndup(base_url, n);
        if (!api->base_url || asprintf(&api->spec_url, "%s%s", api->base_url, PLATFORM_SPEC_PATH) < 0) {
                api->spec_url = NULL;
                platform_api_free(api);
                return -ENOMEM;
        }
        *ret = api;
        return 0;
}

PlatformApi *platform_api_free(PlatformApi *api) {
        if (!api)
                return NULL;
        while (api->calls) {
                PlatformCall *call = api->calls;
                if (call->in_callback) {
                        /* Freed by its dispatcher once the callback returns. */
                        call_unlink(call);
                        call->api = NULL;
                        continue;
                }
                platform_call_cancel(call);
        }
        free(api->base_url);
        free(api->spec_url);
        free(api->ca_file);
        free(api->etag);
        free(api->last_modified);
        free(api);
        return NULL;
}

int platform_api_set_spec_url(PlatformApi *api, const char *url) {
        char *u;
        if (!url_is_valid(url))
                return -EINVAL;
        u = strdup(url);
        if (!u)
                return -ENOMEM;
        free(api->spec_url);
        api->spec_url = u;
        platform_api_forget_validators(api);
        return 0;
}

void platform_api_set_timeout(PlatformApi *api, uint64_t usec) {
        api->timeout_usec = usec;
}

void platform_api_set_max_doc(PlatformApi *api, size_t bytes) {
        api->max_doc = bytes;
}

int platform_api_set_ca_file(PlatformApi *api, const char *path) {
        char *p = NULL;
        if (path && !(p = strdup(path)))
                return -ENOMEM;
        free(api->ca_file);
        api->ca_file = p;
        return 0;
}

void platform_api_forget_validators(PlatformApi *api) {
        api->etag = mfree(api->etag);
        api->last_modified = mfree(api->last_modified);
}

static void call_finish(PlatformCall *call) {
        call_unlink(call);
        free(call);
}

/* Only valid validators are remembered; an invalid one is dropped (with
 * the old one: it named an older document), so the next request is plain
 * and polling goes on. */
static void remember_validators(PlatformApi *api, const HttpResponse *resp, PlatformSpecResult *res) {
        bool e_ok = http_etag_is_valid(resp->etag), l_ok = http_date_is_valid(resp->last_modified);
        char *e = e_ok ? strdup(resp->etag) : NULL;
        char *l = l_ok ? strdup(resp->last_modified) : NULL;

        res->etag_refused = resp->etag && !e_ok;
        res->last_modified_refused = resp->last_modified && !l_ok;
        free(api->etag);
        free(api->last_modified);
        api->etag = e;
        api->last_modified = l;
}

static void spec_result(PlatformCall *call, const HttpResponse *resp, PlatformSpecResult *res, char **msg) {
        res->http_status = resp->status;
        if (resp->error < 0) {
                res->error = resp->error;
                (void) !asprintf(msg, "%s", resp->error_message);
        } else if (resp->status == 304) {
                res->unchanged = true;
        } else if (resp->status != 200) {
                res->error = -EREMOTEIO;
                (void) !asprintf(msg, "HTTP %ld", resp->status);
        } else {
                res->body = resp->body;
                res->body_len = resp->body_len;
                res->error = platform_vm_spec_parse(resp->body, resp->body_len, &res->spec, msg);
                if (res->error >= 0 && call->api)
                        remember_validators(call->api, resp, res);
        }
        res->message = *msg;
}

static void active_result(const HttpResponse *resp, PlatformActiveResult *res, char **msg, char *detail, size_t detail_size) {
        res->http_status = resp->status;
        if (resp->error < 0) {
                res->error = resp->error;
                (void) !asprintf(msg, "%s", resp->error_message);
        } else if (resp->status != 200) {
                res->error = -EREMOTEIO;
                (void) !asprintf(msg, "HTTP %ld", resp->status);
        } else {
                res->error = platform_parse_active_reply(resp->body, resp->body_len, &res->active, msg);
                if (res->error >= 0) {
                        platform_active_format(&res->active, detail, detail_size);
                        res->detail = detail;
                }
        }
        res->message = *msg;
}

static void on_http_done(HttpCall *hc, const HttpResponse *resp, void *userdata) {
        PlatformCall *call = userdata;
        _cleanup_free_ char *msg = NULL;

        call->http = NULL;
        call->in_callback = true;
        if (resp->error < 0)
                log_debug("Platform API %s: %s", call->kind == CALL_SPEC ? "spec" : "validate/active",
                          strempty(resp->error_message));
        else
                log_debug("Platform API %s: HTTP %ld%s, %zu bytes", call->kind == CALL_SPEC ? "spec" : "validate/active",
                          resp->status, resp->status == 304 ? " (not modified)" : "", resp->body_len);
        if (call->kind == CALL_SPEC) {
                PlatformSpecResult res = {};
                spec_result(call, resp, &res, &msg);
                call->spec_cb(call, &res, call->userdata);
                platform_vm_spec_free(res.spec);
        } else {
                PlatformActiveResult res = {};
                char detail[PLATFORM_ACTIVE_DETAIL_MAX];
                active_result(resp, &res, &msg, detail, sizeof detail);
                call->active_cb(call, &res, call->userdata);
        }
        call_finish(call);
}

static int call_start(PlatformApi *api, CallKind kind, const HttpRequest *req, PlatformCall *call, PlatformCall **ret) {
        int r;

        call->api = api;
        call->kind = kind;
        r = http_request_start(api->http, req, on_http_done, call, &call->http);
        if (r < 0) {
                free(call);
                return r;
        }
        call->next = api->calls;
        if (call->next)
                call->next->prev = call;
        api->calls = call;
        if (ret)
                *ret = call;
        return 0;
}

int platform_api_fetch_spec(PlatformApi *api, platform_spec_cb cb, void *userdata, PlatformCall **ret) {
        HttpRequest req = {
                .method = HTTP_GET,
                .endpoint = api->spec_url,
                .timeout_usec = api->timeout_usec,
                .max_response_bytes = api->max_doc,
                .ca_file = api->ca_file,
                .if_none_match = api->etag,
                /* RFC 9110: If-Modified-Since is ignored when If-None-Match is sent. */
                .if_modified_since = api->etag ? NULL : api->last_modified,
        };
        PlatformCall *call;

        if (!cb)
                return -EINVAL;
        call = calloc(1, sizeof *call);
        if (!call)
                return -ENOMEM;
        call->spec_cb = cb;
        call->userdata = userdata;
        return call_start(api, CALL_SPEC, &req, call, ret);
}

int platform_api_fetch_active(PlatformApi *api, platform_active_cb cb, void *userdata, PlatformCall **ret) {
        HttpRequest req = {
                .method = HTTP_GET,
                .endpoint = api->base_url,
                .path = PLATFORM_ACTIVE_PATH,
                .timeout_usec = api->timeout_usec,
                .max_response_bytes = PLATFORM_ACTIVE_MAX,
                .ca_file = api->ca_file,
        };
        PlatformCall *call;

        if (!cb)
                return -EINVAL;
        call = calloc(1, sizeof *call);
        if (!call)
                return -ENOMEM;
        call->active_cb = cb;
        call->userdata = userdata;
        return call_start(api, CALL_ACTIVE, &req, call, ret);
}
