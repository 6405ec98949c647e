/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "shared/macro.h"

/* Asynchronous HTTP on libcurl's multi interface, driven entirely by one
 * sd-event loop. Nothing here blocks. */

typedef struct HttpContext HttpContext;
typedef struct HttpCall HttpCall;

typedef enum HttpMethod {
        HTTP_GET,
        HTTP_POST,
} HttpMethod;

#define HTTP_DEFAULT_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define HTTP_DEFAULT_MAX_RESPONSE (16u * 1024u * 1024u)

/* Streaming mode (HttpRequest.on_data): called with each piece of a 2xx
 * response body as it arrives, instead of buffering it. Return 0 to go on, or
 * a negative errno to abort the transfer (the done callback then reports
 * -EIO, or -ECANCELED when the abort came from here). Must not block: a
 * consumer that cannot keep up drops data itself (bounded) or aborts. */
typedef int (*http_data_cb)(HttpCall *call, const void *data, size_t size, void *userdata);

typedef struct HttpRequest {
        HttpMethod method;
        /* "http://host[:port][/prefix]", "https://..." or "unix:/path/to.sock" */
        const char *endpoint;
        /* Appended to the endpoint, e.g. "/prpc/Status?json"; may be NULL. */
        const char *path;
        const void *body;          /* POST only; copied */
        size_t body_len;
        const char *content_type;  /* POST only; default application/json */
        const char *bearer_token;  /* optional; never logged */
        uint64_t timeout_usec;     /* whole request; 0 = HTTP_DEFAULT_TIMEOUT_USEC */
        size_t max_response_bytes; /* 0 = HTTP_DEFAULT_MAX_RESPONSE */
        const char *if_none_match;     /* optional conditional request headers */
        const char *if_modified_since;
        const char *ca_file;       /* optional CA bundle; verification is always on */
        /* Not idempotent: send on a connection of its own. libcurl replays a
         * request whose reused keep-alive connection died before any reply
         * byte; for CreateVm that would make a second VM. */
        bool no_replay;
        /* Streaming: a 2xx body goes to on_data piece by piece (never
         * buffered; no size limit, no whole-request timeout unless
         * timeout_usec is set; the connect phase keeps the default). Other
         * statuses are buffered as usual for the done callback. */
        http_data_cb on_data;
} HttpRequest;

typedef struct HttpResponse {
        /* 0, or a negative errno when no complete HTTP response arrived:
         * -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -ECONNRESET, -EFBIG
         * (response larger than the limit), -EPROTO (TLS or protocol). */
        int error;
        const char *error_message; /* set when error < 0 */
        long status;               /* HTTP status, 0 on transport failure */
        const char *body;          /* NUL-terminated for convenience */
        size_t body_len;
        const char *etag;          /* response headers of interest, or NULL */
        const char *last_modified;
        const char *content_type;
} HttpResponse;

/* Called once per call unless the call was cancelled. The response and the
 * call are valid only during the callback; the call is freed afterwards. */
typedef void (*http_done_cb)(HttpCall *call, const HttpResponse *response, void *userdata);

int http_context_new(sd_event *event, HttpContext **ret);

/* Cancels every call in flight (their callbacks never fire). Safe from
 * inside a done callback. */
HttpContext *http_context_free(HttpContext *ctx);

static inline void http_context_freep(HttpContext **p) {
        if (*p)
                http_context_free(*p);
}

/* Starts a request. ret (optional) receives a handle valid until the done
 * callback returns or http_call_cancel() is called. -EINVAL on a bad
 * request, -ENOMEM. Never calls cb synchronously. */
int http_request_start(HttpContext *ctx, const HttpRequest *req, http_done_cb cb, void *userdata, HttpCall **ret);

/* The callback will not fire. Safe from within any callback, including the
 * call's own done callback (then a no-op). */
void http_call_cancel(HttpCall *call);

/* Number of calls in flight, for tests and diagnostics. */
size_t http_context_n_calls(HttpContext *ctx);
