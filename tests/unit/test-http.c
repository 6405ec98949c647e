/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP client on a real sd-event loop against tests/unit/http-test-server.py.
 * argv[1] = python3, argv[2] = the server script. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <time.h>

#include "clients/http.h"
#include "test-spawn.h"
#include "shared/macro.h"
#include "tests.h"

typedef struct Result {
        bool done;
        int error;
        long status;
        char *body;
        char *etag, *last_modified, *message;
        uint64_t at;
} Result;

typedef struct Env {
        sd_event *event;
        HttpContext *http;
        char tcp[64];
        char tls[64];
        char unix_ep[256];
        char ca_file[128];
} Env;

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static void result_clear(Result *r) {
        free(r->body);
        free(r->etag);
        free(r->last_modified);
        free(r->message);
        *r = (Result) {};
}

static char *strdup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static void on_done(HttpCall *call, const HttpResponse *resp, void *userdata) {
        Result *r = userdata;
        assert_se(!r->done);
        r->done = true;
        r->error = resp->error;
        r->status = resp->status;
        r->body = strndup(resp->body, resp->body_len);
        r->etag = strdup_or_null(resp->etag);
        r->last_modified = strdup_or_null(resp->last_modified);
        r->message = strdup_or_null(resp->error_message);
        r->at = now_usec();
}

/* Runs the loop until r->done. */
static void run_until_done(Env *env, Result *r) {
        while (!r->done)
                assert_se(sd_event_run(env->event, UINT64_MAX) >= 0);
}

static void get(Env *env, const char *endpoint, const char *path, HttpRequest *tmpl, Result *r) {
        HttpRequest req = tmpl ? *tmpl : (HttpRequest) {};
        req.endpoint = endpoint;
        req.path = path;
        result_clear(r);
        assert_se(http_request_start(env->http, &req, on_done, r, NULL) == 0);
        run_until_done(env, r);
}

static void test_basic(Env *env) {
        Result r = {};

        get(env, env->tcp, "/ok", NULL, &r);
        assert_se(r.error == 0 && r.status == 200 && streq(r.body, "hello"));
        assert_se(r.etag && streq(r.etag, "\"v1\""));
        assert_se(r.last_modified && strstr(r.last_modified, "2026"));

        _cleanup_free_ char *etag = strdup(r.etag), *lm = strdup(r.last_modified);
        get(env, env->tcp, "/ok", &(HttpRequest) { .if_none_match = etag }, &r);
        assert_se(r.error == 0 && r.status == 304 && r.body[0] == '\0');
        get(env, env->tcp, "/ok", &(HttpRequest) { .if_modified_since = lm }, &r);
        assert_se(r.error == 0 && r.status == 304);

        get(env, env->tcp, "/status?code=500", NULL, &r);
        assert_se(r.error == 0 && r.status == 500 && strstr(r.body, "status 500"));

        get(env, env->tcp, "/slowbody?ms=200", NULL, &r);
        assert_se(r.error == 0 && r.status == 200 && streq(r.body, "slow body"));

        get(env, env->unix_ep, "/ok", NULL, &r);
        assert_se(r.error == 0 && r.status == 200 && streq(r.body, "hello"));

        const char body[] = "{\"id\":\"x\"}";
        get(env, env->tcp, "/echo",
            &(HttpRequest) { .method = HTTP_POST, .body = body, .body_len = strlen(body), .bearer_token = "tok" }, &r);
        assert_se(r.error == 0 && r.status == 200);
        assert_se(strstr(r.body, "\"authorization\": \"Bearer tok\""));
        assert_se(strstr(r.body, "\"content_type\": \"application/json\""));
        assert_se(strstr(r.body, "{\\\"id\\\":\\\"x\\\"}"));
        result_clear(&r);
        printf("basic: ok\n");
}

static void test_failures(Env *env) {
        Result r = {};
        uint64_t t0 = now_usec();

        get(env, env->tcp, "/hang", &(HttpRequest) { .timeout_usec = 300 * USEC_PER_MSEC }, &r);
        assert_se(r.error == -ETIMEDOUT && r.status == 0 && r.message);
        assert_se(r.at - t0 >= 290 * USEC_PER_MSEC && r.at - t0 < 3 * USEC_PER_SEC);

        get(env, env->tcp, "/big?n=2000000", &(HttpRequest) { .max_response_bytes = 1000000 }, &r);
        assert_se(r.error == -EFBIG && streq(r.message, "response exceeds 1000000 bytes"));
        get(env, env->tcp, "/bigchunked?n=2000000", &(HttpRequest) { .max_response_bytes = 1000000 }, &r);
        assert_se(r.error == -EFBIG && streq(r.message, "response exceeds 1000000 bytes"));
        get(env, env->tcp, "/big?n=1000000", &(HttpRequest) { .max_response_bytes = 1000000 }, &r);
        assert_se(r.error == 0 && strlen(r.body) == 1000000);

        get(env, env->tcp, "/drop", NULL, &r);
        assert_se(r.error == -ECONNRESET);

        /* A port nobody listens on: bind, learn the port, close. */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t sl = sizeof sa;
        assert_se(bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0);
        assert_se(getsockname(fd, (struct sockaddr *) &sa, &sl) == 0);
        close(fd);
        char ep[64];
        snprintf(ep, sizeof ep, "http://127.0.0.1:%u", ntohs(sa.sin_port));
        get(env, ep, "/ok", NULL, &r);
        assert_se(r.error == -ECONNREFUSED);

        /* A missing unix socket is named, not "localhost port 80"
         * (issue 9 defect 11). */
        get(env, "unix:/nonexistent/vmm.sock", "/ok", NULL, &r);
        assert_se(r.error == -ENOENT && streq(r.message, "no such socket: /nonexistent/vmm.sock"));

        /* A socket file nobody listens on (bound, never listening). */
        char stale[] = "/tmp/test-http-stale-XXXXXX";
        assert_se(mkdtemp(stale));
        char sp[64], sep[80];
        snprintf(sp, sizeof sp, "%s/s.sock", stale);
        snprintf(sep, sizeof sep, "unix:%s", sp);
        int ufd = socket(AF_UNIX, SOCK_STREAM, 0);
        struct sockaddr_un su = { .sun_family = AF_UNIX };
        snprintf(su.sun_path, sizeof su.sun_path, "%s", sp);
        assert_se(ufd >= 0 && bind(ufd, (struct sockaddr *) &su, sizeof su) == 0);
        get(env, sep, "/ok", NULL, &r);
        char want[200];
        snprintf(want, sizeof want, "nothing listens on socket: %s", sp);
        assert_se(r.error == -ECONNREFUSED && streq(r.message, want));
        close(ufd);
        assert_se(unlink(sp) == 0 && rmdir(stale) == 0);

        /* Endpoints url_check() refuses never start. */
        static const char *const bad_eps[] = {
                "http://[::1", "http://127.0.0.1:99999", "http://-/", "unix:/tmp/../etc/passwd", "unix:rel",
        };
        for (size_t i = 0; i < ELEMENTSOF(bad_eps); i++) {
                HttpRequest b = { .endpoint = bad_eps[i], .path = "/ok" };
                assert_se(http_request_start(env->http, &b, on_done, &r, NULL) == -EINVAL);
        }

        HttpRequest bad = { .endpoint = "ftp://x", .path = "/" };
        assert_se(http_request_start(env->http, &bad, on_done, &r, NULL) == -EINVAL);
        bad = (HttpRequest) { .endpoint = env->tcp, .path = "/ok", .bearer_token = "a\r\nX-Evil: 1" };
        assert_se(http_request_start(env->http, &bad, on_done, &r, NULL) == -EINVAL);
        bad = (HttpRequest) { .endpoint = env->tcp, .path = "/ok\r\n" };
        assert_se(http_request_start(env->http, &bad, on_done, &r, NULL) == -EINVAL);
        bad = (HttpRequest) { .endpoint = env->tcp, .path = "/echo", .method = HTTP_POST, .body_len = 5 };
        assert_se(http_request_start(env->http, &bad, on_done, &r, NULL) == -EINVAL);
        assert_se(http_context_n_calls(env->http) == 0);
        result_clear(&r);
        printf("failures: ok\n");
}

typedef struct Ticks {
        sd_event_source *src;
        unsigned n;
        uint64_t last, max_gap;
} Ticks;

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Ticks *t = userdata;
        uint64_t now = now_usec();
        if (t->last && now - t->last > t->max_gap)
                t->max_gap = now - t->last;
        t->last = now;
        t->n++;
        return sd_event_source_set_time_relative(s, 10 * USEC_PER_MSEC);
}

/* While a request hangs for 1 s, a 10 ms timer keeps firing. A blocking
 * client would stall the loop for the whole second (one gap of ~1000 ms,
 * a tick or two); the bounds leave room for a loaded machine, where the
 * scheduler alone can delay a tick by tens of ms (this test failed 1 run
 * in 8 at load 6 on 2 cores with a 60 ms bound). */
static void test_loop_not_blocked(Env *env) {
        Ticks t = {};
        Result r = {};

        assert_se(sd_event_add_time_relative(env->event, &t.src, CLOCK_MONOTONIC, 10 * USEC_PER_MSEC, 1, on_tick, &t) >= 0);
        assert_se(sd_event_source_set_enabled(t.src, SD_EVENT_ON) >= 0);
        uint64_t t0 = now_usec();
        get(env, env->tcp, "/hang", &(HttpRequest) { .timeout_usec = 1 * USEC_PER_SEC }, &r);
        uint64_t elapsed = now_usec() - t0;
        assert_se(r.error == -ETIMEDOUT);
        printf("loop: %u ticks in %llu ms, max gap %llu ms\n", t.n,
               (unsigned long long) (elapsed / 1000), (unsigned long long) (t.max_gap / 1000));
        assert_se(t.n >= 20);
        assert_se(t.max_gap < 400 * USEC_PER_MSEC);
        sd_event_source_disable_unref(t.src);
        result_clear(&r);
}

static void on_never(HttpCall *call, const HttpResponse *resp, void *userdata) {
        assert_se(!"cancelled callback fired");
}

static int on_cancel_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        http_call_cancel(userdata);
        return 0;
}

static int on_stop_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        *(bool *) userdata = true;
        return 0;
}

static void test_cancel(Env *env) {
        HttpCall *call;
        sd_event_source *s1, *s2;
        bool stop = false;
        HttpRequest req = { .endpoint = env->tcp, .path = "/slow?ms=300" };

        assert_se(http_request_start(env->http, &req, on_never, NULL, &call) == 0);
        assert_se(sd_event_add_time_relative(env->event, &s1, CLOCK_MONOTONIC, 50 * USEC_PER_MSEC, 1, on_cancel_timer, call) >= 0);
        assert_se(sd_event_add_time_relative(env->event, &s2, CLOCK_MONOTONIC, 600 * USEC_PER_MSEC, 1, on_stop_timer, &stop) >= 0);
        while (!stop)
                assert_se(sd_event_run(env->event, UINT64_MAX) >= 0);
        assert_se(http_context_n_calls(env->http) == 0);
        sd_event_source_unref(s1);
        sd_event_source_unref(s2);

        /* Cancel right after start, before the loop ever ran. */
        assert_se(http_request_start(env->http, &req, on_never, NULL, &call) == 0);
        http_call_cancel(call);
        assert_se(http_context_n_calls(env->http) == 0);
        printf("cancel: ok\n");
}

typedef struct Pair {
        HttpCall *other;
        Result r;
} Pair;

/* First done callback cancels the other call and tries to cancel itself. */
static void on_done_cancel_other(HttpCall *call, const HttpResponse *resp, void *userdata) {
        Pair *p = userdata;
        on_done(call, resp, &p->r);
        http_call_cancel(p->other);
        http_call_cancel(call);
}

static void test_cancel_in_callback(Env *env) {
        Pair p = {};
        HttpRequest fast = { .endpoint = env->tcp, .path = "/ok" };
        HttpRequest slow = { .endpoint = env->tcp, .path = "/slow?ms=200" };

        assert_se(http_request_start(env->http, &slow, on_never, NULL, &p.other) == 0);
        assert_se(http_request_start(env->http, &fast, on_done_cancel_other, &p, NULL) == 0);
        run_until_done(env, &p.r);
        assert_se(p.r.status == 200);
        assert_se(http_context_n_calls(env->http) == 0);
        result_clear(&p.r);
        printf("cancel in callback: ok\n");
}

#define N_CONCURRENT 64

static void test_concurrent(Env *env) {
        static Result rs[N_CONCURRENT];
        HttpRequest req = { .endpoint = env->tcp, .path = "/slow?ms=300" };
        uint64_t t0 = now_usec();

        for (size_t i = 0; i < N_CONCURRENT; i++) {
                req.endpoint = i % 2 ? env->tcp : env->unix_ep;
                assert_se(http_request_start(env->http, &req, on_done, &rs[i], NULL) == 0);
        }
        assert_se(http_context_n_calls(env->http) == N_CONCURRENT);
        for (size_t i = 0; i < N_CONCURRENT; i++) {
                run_until_done(env, &rs[i]);
                assert_se(rs[i].error == 0 && rs[i].status == 200 && streq(rs[i].body, "slow"));
                result_clear(&rs[i]);
        }
        uint64_t elapsed = now_usec() - t0;
        printf("concurrent: %d requests of 300 ms in %llu ms\n", N_CONCURRENT, (unsigned long long) (elapsed / 1000));
        /* Serially this would take 19 s. */
        assert_se(elapsed < 5 * USEC_PER_SEC);
}

typedef struct FreeCtx {
        Env *env;
        Result r;
} FreeCtx;

static void on_done_free_ctx(HttpCall *call, const HttpResponse *resp, void *userdata) {
        FreeCtx *f = userdata;
        on_done(call, resp, &f->r);
        f->env->http = http_context_free(f->env->http);
}

/* Freeing the context with calls in flight, from outside and from inside a
 * callback: no callback fires afterwards, nothing leaks (run under ASan). */
static void test_free_in_flight(Env *env) {
        HttpRequest hang = { .endpoint = env->tcp, .path = "/hang" };
        HttpRequest fast = { .endpoint = env->tcp, .path = "/ok" };
        FreeCtx f = { .env = env };

        for (int i = 0; i < 3; i++)
                assert_se(http_request_start(env->http, &hang, on_never, NULL, NULL) == 0);
        assert_se(sd_event_run(env->event, 50 * USEC_PER_MSEC) >= 0);
        env->http = http_context_free(env->http);

        assert_se(http_context_new(env->event, &env->http) == 0);
        for (int i = 0; i < 3; i++)
                assert_se(http_request_start(env->http, &hang, on_never, NULL, NULL) == 0);
        assert_se(http_request_start(env->http, &fast, on_done_free_ctx, &f, NULL) == 0);
        run_until_done(env, &f.r);
        assert_se(env->http == NULL && f.r.status == 200);
        /* Let the loop settle: no stale source may fire into freed memory. */
        for (int i = 0; i < 5; i++)
                assert_se(sd_event_run(env->event, 20 * USEC_PER_MSEC) >= 0);
        result_clear(&f.r);
        assert_se(http_context_new(env->event, &env->http) == 0);
        printf("free in flight: ok\n");
}

/* Verification is always on: a self-signed server is refused unless its
 * certificate is the configured CA, and the name must match too. */
static void test_tls(Env *env) {
        Result r = {};
        char ep[64];

        get(env, env->tls, "/ok", NULL, &r);
        assert_se(r.error == -EPROTO && r.message);
        get(env, env->tls, "/ok", &(HttpRequest) { .ca_file = env->ca_file }, &r);
        assert_se(r.error == 0 && r.status == 200 && streq(r.body, "hello"));
        snprintf(ep, sizeof ep, "https://localhost:%s", strrchr(env->tls, ':') + 1);
        get(env, ep, "/ok", &(HttpRequest) { .ca_file = env->ca_file }, &r);
        assert_se(r.error == -EPROTO);
        get(env, env->tls, "/ok", &(HttpRequest) { .ca_file = "/nonexistent/ca.pem" }, &r);
        assert_se(r.error == -EPROTO);
        result_clear(&r);
        printf("tls: ok\n");
}

typedef struct StreamSink {
        size_t bytes, pieces;
        bool only_y;
        size_t abort_after; /* 0: never */
} StreamSink;

typedef struct StreamResult {
        Result r;
        StreamSink sink;
} StreamResult;

static int on_stream_data(HttpCall *call, const void *data, size_t size, void *userdata) {
        StreamResult *sr = userdata;
        const char *d = data;
        for (size_t i = 0; i < size; i++)
                if (d[i] != 'y')
                        sr->sink.only_y = false;
        sr->sink.bytes += size;
        sr->sink.pieces++;
        if (sr->sink.abort_after && sr->sink.bytes >= sr->sink.abort_after)
                return -EPIPE;
        return 0;
}

static void on_stream_done(HttpCall *call, const HttpResponse *resp, void *userdata) {
        on_done(call, resp, &((StreamResult *) userdata)->r);
}

static void stream(Env *env, const char *path, StreamResult *sr) {
        HttpRequest req = { .endpoint = env->tcp, .path = path, .on_data = on_stream_data };
        result_clear(&sr->r);
        sr->sink.bytes = sr->sink.pieces = 0;
        sr->sink.only_y = true;
        assert_se(http_request_start(env->http, &req, on_stream_done, sr, NULL) == 0);
        run_until_done(env, &sr->r);
}

static void test_stream(Env *env) {
        StreamResult sr = {};

        /* No size limit: more than HTTP_DEFAULT_MAX_RESPONSE, piece by
         * piece, nothing buffered for the done callback. */
        size_t n = HTTP_DEFAULT_MAX_RESPONSE + 65536 * 3 + 7;
        _cleanup_free_ char *path = NULL;
        assert_se(asprintf(&path, "/bigchunked?n=%zu", n) > 0);
        stream(env, path, &sr);
        assert_se(sr.r.error == 0 && sr.r.status == 200);
        assert_se(sr.sink.bytes == n && sr.sink.only_y && sr.sink.pieces > 1);
        assert_se(sr.r.body[0] == '\0');

        /* An error status is buffered as usual, not streamed. */
        stream(env, "/status?code=404", &sr);
        assert_se(sr.r.error == 0 && sr.r.status == 404 && strstr(sr.r.body, "status 404"));
        assert_se(sr.sink.bytes == 0);

        /* The consumer ends the transfer. */
        sr.sink.abort_after = 1;
        stream(env, "/bigchunked?n=10000000", &sr);
        assert_se(sr.r.error == -ECANCELED);
        assert_se(sr.sink.bytes < 10000000);
        result_clear(&sr.r);
        printf("stream: ok\n");
}

static pid_t start_server(const char *python, const char *script, const char *sock, const char *tlsdir,
                          char *port, size_t portsz) {
        const char *argv[] = { python, script, "--unix", sock, "--tls-dir", tlsdir, NULL };
        return test_spawn_ready(argv, port, portsz);
}

int main(int argc, char *argv[]) {
        Env env = {};
        char port[32], dir[] = "/tmp/test-http-XXXXXX", sock[128];

        assert_se(argc == 3);
        assert_se(mkdtemp(dir));
        snprintf(sock, sizeof sock, "%s/srv.sock", dir);
        pid_t pid = start_server(argv[1], argv[2], sock, dir, port, sizeof port);
        char *tls_port = strchr(port, ' ');
        assert_se(tls_port);
        *tls_port++ = '\0';
        snprintf(env.tcp, sizeof env.tcp, "http://127.0.0.1:%s/", port);
        snprintf(env.tls, sizeof env.tls, "https://127.0.0.1:%s", tls_port);
        snprintf(env.ca_file, sizeof env.ca_file, "%s/cert.pem", dir);
        snprintf(env.unix_ep, sizeof env.unix_ep, "unix:%s", sock);

        assert_se(sd_event_new(&env.event) >= 0);
        assert_se(http_context_new(env.event, &env.http) == 0);

        test_basic(&env);
        test_failures(&env);
        test_tls(&env);
        test_loop_not_blocked(&env);
        test_cancel(&env);
        test_cancel_in_callback(&env);
        test_concurrent(&env);
        test_free_in_flight(&env);
        test_stream(&env);

        http_context_free(env.http);
        sd_event_unref(env.event);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        unlink(sock);
        unlink(env.ca_file);
        snprintf(env.ca_file, sizeof env.ca_file, "%s/key.pem", dir);
        unlink(env.ca_file);
        rmdir(dir);
        printf("test-http: ok\n");
        return 0;
}
