/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <strings.h>
#include <sys/epoll.h>

#include <curl/curl.h>

#include "clients/http.h"
#include "shared/validate.h"

#ifndef MAX
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#endif

/* One sd-event I/O source per socket libcurl asks us to watch. Kept in a
 * list so the context can drop any that libcurl never told us to remove. */
typedef struct SockWatch {
        HttpContext *ctx;
        sd_event_source *source;
        curl_socket_t fd;
        struct SockWatch *prev, *next;
} SockWatch;

struct HttpCall {
        HttpContext *ctx;
        CURL *easy;
        struct curl_slist *headers;
        http_done_cb cb;
        void *userdata;

        char *body;
        size_t body_len, body_alloc, max_body;
        bool oversize;
        bool in_callback;
        http_data_cb on_data;      /* streaming mode */
        bool data_aborted;

        char *etag, *last_modified, *content_type;
        char *socket_path;         /* unix:/path endpoints, for error texts */
        char errbuf[CURL_ERROR_SIZE];

        HttpCall *prev, *next;
};

struct HttpContext {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        sd_event_source *now;   /* libcurl's "time out now": a defer source, no timerfd */
        HttpCall *calls;
        size_t n_calls;
        SockWatch *watches;
        unsigned dispatching;
        bool free_pending;
};

static void call_unlink(HttpCall *c) {
        HttpContext *ctx = c->ctx;
        if (c->prev)
                c->prev->next = c->next;
        else if (ctx->calls == c)
                ctx->calls = c->next;
        if (c->next)
                c->next->prev = c->prev;
        c->prev = c->next = NULL;
        ctx->n_calls--;
}

static void call_free(HttpCall *c) {
        if (c->easy)
                curl_easy_cleanup(c->easy);
        curl_slist_free_all(c->headers);
        free(c->body);
        free(c->etag);
        free(c->last_modified);
        free(c->content_type);
        free(c->socket_path);
        free(c);
}

/* Detaches the easy handle from the multi handle and from the list. */
static void call_detach(HttpCall *c) {
        curl_multi_remove_handle(c->ctx->multi, c->easy);
        call_unlink(c);
}

void http_call_cancel(HttpCall *call) {
        if (!call || call->in_callback)
                return;
        call_detach(call);
        call_free(call);
}

size_t http_context_n_calls(HttpContext *ctx) {
        return ctx->n_calls;
}

static void watch_free(SockWatch *w) {
        HttpContext *ctx = w->ctx;
        if (w->prev)
                w->prev->next = w->next;
        else
                ctx->watches = w->next;
        if (w->next)
                w->next->prev = w->prev;
        sd_event_source_disable_unref(w->source);
        free(w);
}

static void context_destroy(HttpContext *ctx) {
        while (ctx->calls)
                http_call_cancel(ctx->calls);
        if (ctx->multi)
                curl_multi_cleanup(ctx->multi);
        while (ctx->watches)
                watch_free(ctx->watches);
        sd_event_source_disable_unref(ctx->timer);
        sd_event_source_disable_unref(ctx->now);
        sd_event_unref(ctx->event);
        free(ctx);
        curl_global_cleanup();
}

HttpContext *http_context_free(HttpContext *ctx) {
        if (!ctx)
                return NULL;
        if (ctx->dispatching > 0) {
                /* Inside a callback: cancel now, release when the dispatch
                 * loop unwinds so it never touches freed memory. */
                while (ctx->calls)
                        http_call_cancel(ctx->calls);
                ctx->free_pending = true;
                return NULL;
        }
        context_destroy(ctx);
        return NULL;
}

static int curl_code_to_errno(HttpCall *c, CURLcode code) {
        long os_errno = 0;

        switch (code) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                curl_easy_getinfo(c->easy, CURLINFO_OS_ERRNO, &os_errno);
                return os_errno > 0 ? -(int) os_errno : -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_FILESIZE_EXCEEDED:
                return -EFBIG;
        case CURLE_WRITE_ERROR:
                return c->oversize ? -EFBIG : c->data_aborted ? -ECANCELED : -EIO;
        case CURLE_GOT_NOTHING:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_OUT_OF_MEMORY:
                return -ENOMEM;
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_UNSUPPORTED_PROTOCOL:
                return -EPROTO;
        default:
                return -EIO;
        }
}

static void call_finish(HttpCall *c, CURLcode code) {
        HttpResponse resp = {
                .body = c->body ?: "",
                .body_len = c->body_len,
                .etag = c->etag,
                .last_modified = c->last_modified,
                .content_type = c->content_type,
        };
        char msg[CURL_ERROR_SIZE + 64];

        resp.error = curl_code_to_errno(c, code);
        if (resp.error < 0) {
                /* libcurl names "localhost port 80" for a unix socket it
                 * could not connect to: name the socket instead. */
                if (resp.error == -EFBIG)
                        snprintf(msg, sizeof msg, "response exceeds %zu bytes", c->max_body);
                else if (c->socket_path && code == CURLE_COULDNT_CONNECT && resp.error == -ENOENT)
                        snprintf(msg, sizeof msg, "no such socket: %s", c->socket_path);
                else if (c->socket_path && code == CURLE_COULDNT_CONNECT && resp.error == -ECONNREFUSED)
                        snprintf(msg, sizeof msg, "nothing listens on socket: %s", c->socket_path);
                else if (c->socket_path && code == CURLE_COULDNT_CONNECT && (resp.error == -EACCES || resp.error == -EPERM))
                        snprintf(msg, sizeof msg, "permission denied on socket: %s", c->socket_path);
                else if (c->socket_path && code == CURLE_COULDNT_CONNECT)
                        snprintf(msg, sizeof msg, "cannot connect to socket %s: %s", c->socket_path, strerror(-resp.error));
                else
                        snprintf(msg, sizeof msg, "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(code));
                resp.error_message = msg;
                resp.body = "";
                resp.body_len = 0;
        } else
                curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &resp.status);

        call_detach(c);
        c->in_callback = true;
        c->cb(c, &resp, c->userdata);
        call_free(c);
}

static void check_done(HttpContext *ctx) {
        CURLMsg *m;
        int left;

        while (!ctx->free_pending && (m = curl_multi_info_read(ctx->multi, &left))) {
                HttpCall *c = NULL;
                if (m->msg != CURLMSG_DONE)
                        continue;
                /* Copy out before call_finish: removing the handle frees m. */
                CURLcode code = m->data.result;
                curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &c);
                call_finish(c, code);
        }
}

static void context_process(HttpContext *ctx, curl_socket_t fd, int action) {
        int running;

        ctx->dispatching++;
        curl_multi_socket_action(ctx->multi, fd, action, &running);
        check_done(ctx);
        ctx->dispatching--;
        if (ctx->dispatching == 0 && ctx->free_pending)
                context_destroy(ctx);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        SockWatch *w = userdata;
        int action = 0;

        if (revents & EPOLLIN)
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;
        context_process(w->ctx, fd, action);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        context_process(userdata, CURL_SOCKET_TIMEOUT, 0);
        return 0;
}

static int on_now(sd_event_source *s, void *userdata) {
        context_process(userdata, CURL_SOCKET_TIMEOUT, 0);
        return 0;
}

static uint32_t poll_to_epoll(int what) {
        switch (what) {
        case CURL_POLL_IN:
                return EPOLLIN;
        case CURL_POLL_OUT:
                return EPOLLOUT;
        default:
                return EPOLLIN | EPOLLOUT;
        }
}

static int watch_new(HttpContext *ctx, curl_socket_t fd, uint32_t events) {
        SockWatch *w = calloc(1, sizeof *w);
        if (!w)
                return -1;
        w->ctx = ctx;
        w->fd = fd;
        if (sd_event_add_io(ctx->event, &w->source, fd, events, on_io, w) < 0) {
                free(w);
                return -1;
        }
        w->next = ctx->watches;
        if (w->next)
                w->next->prev = w;
        ctx->watches = w;
        curl_multi_assign(ctx->multi, fd, w);
        return 0;
}

/* CURLMOPT_SOCKETFUNCTION: libcurl tells which sockets to watch for what. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        HttpContext *ctx = userp;
        SockWatch *w = socketp;

        if (what == CURL_POLL_REMOVE) {
                if (w) {
                        curl_multi_assign(ctx->multi, fd, NULL);
                        watch_free(w);
                }
                return 0;
        }
        if (!w)
                return watch_new(ctx, fd, poll_to_epoll(what));
        if (sd_event_source_set_io_events(w->source, poll_to_epoll(what)) < 0)
                return -1;
        return sd_event_source_set_enabled(w->source, SD_EVENT_ON) < 0 ? -1 : 0;
}

/* CURLMOPT_TIMERFUNCTION: one timeout, replaced on each call. libcurl forbids
 * calling back into it from here, so even "now" goes via the loop: as a
 * defer source, which the next iteration runs without re-arming the
 * kernel's timer (libcurl asks for "now" several times per request). */
static int on_timer_change(CURLM *multi, long timeout_ms, void *userp) {
        HttpContext *ctx = userp;
        uint64_t now;

        if (sd_event_source_set_enabled(ctx->now, timeout_ms == 0 ? SD_EVENT_ONESHOT : SD_EVENT_OFF) < 0)
                return -1;
        if (timeout_ms <= 0)
                return sd_event_source_set_enabled(ctx->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        if (sd_event_now(ctx->event, CLOCK_MONOTONIC, &now) < 0)
                return -1;
        if (sd_event_source_set_time(ctx->timer, now + (uint64_t) timeout_ms * USEC_PER_MSEC) < 0)
                return -1;
        return sd_event_source_set_enabled(ctx->timer, SD_EVENT_ONESHOT) < 0 ? -1 : 0;
}

int http_context_new(sd_event *event, HttpContext **ret) {
        HttpContext *ctx;
        int r;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        ctx = calloc(1, sizeof *ctx);
        if (!ctx) {
                curl_global_cleanup();
                return -ENOMEM;
        }
        ctx->event = sd_event_ref(event);
        ctx->multi = curl_multi_init();
        if (!ctx->multi) {
                context_destroy(ctx);
                return -ENOMEM;
        }
        r = sd_event_add_time(event, &ctx->timer, CLOCK_MONOTONIC, UINT64_MAX, 1, on_timer, ctx);
        if (r < 0) {
                context_destroy(ctx);
                return r;
        }
        sd_event_source_set_enabled(ctx->timer, SD_EVENT_OFF);
        r = sd_event_add_defer(event, &ctx->now, on_now, ctx);
        if (r < 0) {
                context_destroy(ctx);
                return r;
        }
        sd_event_source_set_enabled(ctx->now, SD_EVENT_OFF);
        curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(ctx->multi, CURLMOPT_SOCKETDATA, ctx);
        curl_multi_setopt(ctx->multi, CURLMOPT_TIMERFUNCTION, on_timer_change);
        curl_multi_setopt(ctx->multi, CURLMOPT_TIMERDATA, ctx);
        *ret = ctx;
        return 0;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *userdata) {
        HttpCall *c = userdata;
        size_t n = size * nmemb;

        if (c->on_data) {
                long status = 0;
                curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &status);
                if (status >= 200 && status < 300) {
                        if (c->on_data(c, data, n, c->userdata) < 0) {
                                c->data_aborted = true;
                                return 0; /* CURLE_WRITE_ERROR */
                        }
                        return n;
                }
                /* An error status: buffer its (bounded) body as usual. */
        }

        if (n > c->max_body - c->body_len) {
                c->oversize = true;
                return 0; /* makes libcurl abort with CURLE_WRITE_ERROR */
        }
        if (c->body_len + n + 1 > c->body_alloc) {
                size_t a = MAX(c->body_alloc * 2, c->body_len + n + 1);
                char *b = realloc(c->body, a);
                if (!b)
                        return 0;
                c->body = b;
                c->body_alloc = a;
        }
        memcpy(c->body + c->body_len, data, n);
        c->body_len += n;
        c->body[c->body_len] = '\0';
        return n;
}

/* Stores the value of "Name: value\r\n" into *dst when the name matches. */
static void header_capture(const char *line, size_t n, const char *name, char **dst) {
        size_t k = strlen(name);
        if (n <= k || line[k] != ':' || strncasecmp(line, name, k) != 0)
                return;
        const char *v = line + k + 1, *end = line + n;
        while (v < end && (*v == ' ' || *v == '\t'))
                v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
                end--;
        free(*dst);
        *dst = strndup(v, (size_t) (end - v));
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata) {
        HttpCall *c = userdata;
        size_t n = size * nmemb;

        if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                /* A new response (after 100-continue or a redirect). */
                c->etag = mfree(c->etag);
                c->last_modified = mfree(c->last_modified);
                c->content_type = mfree(c->content_type);
                return n;
        }
        header_capture(data, n, "ETag", &c->etag);
        header_capture(data, n, "Last-Modified", &c->last_modified);
        header_capture(data, n, "Content-Type", &c->content_type);
        return n;
}

static bool header_value_ok(const char *v) {
        for (; *v; v++)
                if ((unsigned char) *v < 0x20 || *v == 0x7f)
                        return false;
        return true;
}

static int add_header(HttpCall *c, const char *name, const char *value) {
        _cleanup_free_ char *h = NULL;
        struct curl_slist *l;

        if (!value)
                return 0;
        if (!header_value_ok(value))
                return -EINVAL;
        if (asprintf(&h, "%s: %s", name, value) < 0)
                return -ENOMEM;
        l = curl_slist_append(c->headers, h);
        if (!l)
                return -ENOMEM;
        c->headers = l;
        if (streq(name, "Authorization"))
                explicit_bzero(h, strlen(h));
        return 0;
}

static int build_headers(HttpCall *c, const HttpRequest *req) {
        _cleanup_(erase_and_freep) char *auth = NULL;
        int r;

        if (req->bearer_token) {
                if (asprintf(&auth, "Bearer %s", req->bearer_token) < 0)
                        return -ENOMEM;
                r = add_header(c, "Authorization", auth);
                if (r < 0)
                        return r;
        }
        if (req->method == HTTP_POST) {
                r = add_header(c, "Content-Type", req->content_type ?: "application/json");
                if (r < 0)
                        return r;
                /* No 100-continue round trip: bodies are small. */
                r = add_header(c, "Expect", "");
                if (r < 0)
                        return r;
        }
        r = add_header(c, "If-None-Match", req->if_none_match);
        if (r < 0)
                return r;
        return add_header(c, "If-Modified-Since", req->if_modified_since);
}

/* "unix:/p" → ("http://localhost" + path, "/p"); "http://h/" → "http://h" + path. */
static int build_url(const HttpRequest *req, char **ret_url, const char **ret_socket) {
        const char *path = strempty(req->path);

        if (!url_is_valid(req->endpoint) || !header_value_ok(path))
                return -EINVAL;
        if (strncmp(req->endpoint, "unix:", 5) == 0) {
                *ret_socket = req->endpoint + 5;
                return asprintf(ret_url, "http://localhost%s%s", path[0] == '/' ? "" : "/", path) < 0 ? -ENOMEM : 0;
        }
        size_t n = strlen(req->endpoint);
        if (n > 0 && req->endpoint[n - 1] == '/' && path[0] == '/')
                n--;
        *ret_socket = NULL;
        return asprintf(ret_url, "%.*s%s", (int) n, req->endpoint, path) < 0 ? -ENOMEM : 0;
}

static int call_setup(HttpCall *c, const HttpRequest *req) {
        _cleanup_free_ char *url = NULL;
        const char *sock = NULL;
        uint64_t timeout = req->timeout_usec ?: HTTP_DEFAULT_TIMEOUT_USEC;
        int r;

        r = build_url(req, &url, &sock);
        if (r < 0)
                return r;
        r = build_headers(c, req);
        if (r < 0)
                return r;

        CURL *e = c->easy;
        curl_easy_setopt(e, CURLOPT_URL, url);
        if (sock) {
                c->socket_path = strdup(sock);
                if (!c->socket_path)
                        return -ENOMEM;
                curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, sock);
        }
        curl_easy_setopt(e, CURLOPT_PRIVATE, c);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
#if LIBCURL_VERSION_NUM >= 0x075500
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#else
        curl_easy_setopt(e, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
        if (req->ca_file)
                curl_easy_setopt(e, CURLOPT_CAINFO, req->ca_file);
        if (req->on_data) {
                /* A stream has no natural end: only the connect phase is
                 * bounded, unless the caller asked for a whole-call limit. */
                curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long) (HTTP_DEFAULT_TIMEOUT_USEC / USEC_PER_MSEC));
                if (req->timeout_usec > 0)
                        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) MAX(timeout / USEC_PER_MSEC, 1ULL));
        } else {
                curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long) MAX(timeout / USEC_PER_MSEC, 1ULL));
                curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) c->max_body);
        }
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers);
        if (req->no_replay) {
                curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
                curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
        }
        if (req->method == HTTP_POST) {
                curl_easy_setopt(e, CURLOPT_POST, 1L);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_len);
                curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, req->body ?: "");
        } else if (req->method == HTTP_GET)
                curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
        else
                return -EINVAL;
        return 0;
}

int http_request_start(HttpContext *ctx, const HttpRequest *req, http_done_cb cb, void *userdata, HttpCall **ret) {
        HttpCall *c;
        int r;

        if (!ctx || !req || !cb || ctx->free_pending || (!req->body && req->body_len > 0))
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->ctx = ctx;
        c->cb = cb;
        c->userdata = userdata;
        c->max_body = req->max_response_bytes ?: HTTP_DEFAULT_MAX_RESPONSE;
        c->on_data = req->on_data;
        c->easy = curl_easy_init();
        if (!c->easy) {
                call_free(c);
                return -ENOMEM;
        }
        r = call_setup(c, req);
        if (r < 0) {
                call_free(c);
                return r;
        }
        if (curl_multi_add_handle(ctx->multi, c->easy) != CURLM_OK) {
                call_free(c);
                return -ENOMEM;
        }
        c->next = ctx->calls;
        if (c->next)
                c->next->prev = c;
        ctx->calls = c;
        ctx->n_calls++;
        if (ret)
                *ret = c;
        return 0;
}
