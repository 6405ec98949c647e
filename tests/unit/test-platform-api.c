/* SPDX-License-Identifier: Apache-2.0 */
/* The Platform API client on a real sd-event loop against tests/sim/api_sim.py.
 * argv[1] = python3, argv[2] = api_sim.py. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "clients/platform-api.h"
#include "test-spawn.h"
#include "tests.h"
#include "shared/macro.h"

typedef struct Env {
        sd_event *event;
        HttpContext *http;
        PlatformApi *api;
        char url[128];
} Env;

typedef struct SpecOut {
        bool done;
        int error;
        long status;
        bool unchanged;
        PlatformVmSpec *spec;
        char *body;
        char *message;
        bool etag_refused, last_modified_refused;
} SpecOut;

static void spec_out_clear(SpecOut *o) {
        platform_vm_spec_free(o->spec);
        free(o->body);
        free(o->message);
        *o = (SpecOut) {};
}

static void on_spec(PlatformCall *call, PlatformSpecResult *r, void *userdata) {
        SpecOut *o = userdata;
        o->done = true;
        o->error = r->error;
        o->status = r->http_status;
        o->unchanged = r->unchanged;
        o->spec = TAKE_PTR(r->spec);
        o->body = r->body ? strndup(r->body, r->body_len) : NULL;
        o->message = r->message ? strdup(r->message) : NULL;
        o->etag_refused = r->etag_refused;
        o->last_modified_refused = r->last_modified_refused;
}

static void run_until(Env *env, bool *done) {
        while (!*done)
                assert_se(sd_event_run(env->event, UINT64_MAX) >= 0);
}

static void fetch(Env *env, SpecOut *o) {
        spec_out_clear(o);
        assert_se(platform_api_fetch_spec(env->api, on_spec, o, NULL) == 0);
        run_until(env, &o->done);
        if (getenv("TEST_VERBOSE"))
                fprintf(stderr, "fetch: error=%d status=%ld unchanged=%d message=%s\n",
                        o->error, o->status, o->unchanged, strempty(o->message));
}

typedef struct HttpOut {
        bool done;
        long status;
        bool ok;        /* the reply holds "ok":true */
} HttpOut;

static void on_http(HttpCall *c, const HttpResponse *r, void *userdata) {
        HttpOut *o = userdata;
        o->done = true;
        o->status = r->status;
        o->ok = r->body && strstr(r->body, "\"ok\":true");
}

/* POSTs to the simulator's control API with the client under test. */
static void control(Env *env, const char *path, const char *body) {
        HttpOut o = {};
        HttpRequest req = { .method = HTTP_POST, .endpoint = env->url, .path = path,
                            .body = body, .body_len = strlen(body) };
        assert_se(http_request_start(env->http, &req, on_http, &o, NULL) == 0);
        run_until(env, &o.done);
        assert_se(o.status == 200);
}

static char *replace(const char *s, const char *from, const char *to) {
        const char *p = strstr(s, from);
        char *out;
        assert_se(p);
        assert_se(asprintf(&out, "%.*s%s%s", (int) (p - s), s, to, p + strlen(from)) > 0);
        return out;
}

static void test_spec(Env *env) {
        SpecOut o = {};

        fetch(env, &o);
        assert_se(o.error == 0 && o.status == 200 && o.spec && !o.unchanged);
        assert_se(o.spec->vm.vcpu == 16 && streq(o.spec->vm.image, "dstack-0.5.2"));
        _cleanup_free_ char *doc = strdup(o.body);

        fetch(env, &o);
        assert_se(o.error == 0 && o.status == 304 && o.unchanged && !o.spec);

        _cleanup_free_ char *doc8 = replace(doc, "\"vcpu\": 16", "\"vcpu\": 8");
        control(env, "/_sim/doc", doc8);
        fetch(env, &o);
        assert_se(o.error == 0 && o.status == 200 && o.spec->vm.vcpu == 8);

        /* An invalid document is refused with the field named, and its
         * validators are not remembered: it is refused again, not 304. */
        _cleanup_free_ char *doc0 = replace(doc, "\"vcpu\": 16", "\"vcpu\": 0");
        control(env, "/_sim/doc", doc0);
        for (int i = 0; i < 2; i++) {
                fetch(env, &o);
                assert_se(o.error == -EINVAL && o.status == 200 && !o.spec);
                assert_se(strstr(o.message, "provisioning.vm_parameters.vcpu"));
        }

        control(env, "/_sim/doc", doc);
        platform_api_set_max_doc(env->api, 100);
        fetch(env, &o);
        assert_se(o.error == -EFBIG && streq(o.message, "response exceeds 100 bytes"));
        platform_api_set_max_doc(env->api, API_DOC_MAX);

        control(env, "/_sim/status", "{\"status\": 500}");
        fetch(env, &o);
        assert_se(o.error == -EREMOTEIO && o.status == 500);
        control(env, "/_sim/status", "{\"status\": 200}");

        control(env, "/_sim/fault", "{\"method\": \"" PLATFORM_SPEC_PATH "\", \"kind\": \"hang\"}");
        platform_api_set_timeout(env->api, 300 * USEC_PER_MSEC);
        fetch(env, &o);
        assert_se(o.error == -ETIMEDOUT);
        platform_api_set_timeout(env->api, 30 * USEC_PER_SEC);
        control(env, "/_sim/clear-faults", "{}");

        fetch(env, &o);
        assert_se(o.error == 0 && o.status == 200 && o.spec->vm.vcpu == 16);
        spec_out_clear(&o);
        printf("spec: ok\n");
}

/* Issue 9 defect 5: one bad validator stopped polling until restart (a
 * control byte was refused locally on every request; a 90 KB ETag was
 * answered 431 by the server every time). Now it is never remembered. */
static void test_validators(Env *env) {
        SpecOut o = {};

        fetch(env, &o);
        fetch(env, &o);
        assert_se(o.error == 0 && o.status == 304);

        /* The ETag is refused; the valid Last-Modified still makes the
         * next requests conditional (304). */
        control(env, "/_sim/validators", "{\"etag\": \"\\\"a\\u0001b\\\"\"}");
        fetch(env, &o);
        assert_se(o.error == 0 && o.status == 200 && o.spec && o.etag_refused && !o.last_modified_refused);
        for (int i = 0; i < 3; i++) {
                fetch(env, &o);
                assert_se(o.error == 0 && o.status == 304 && o.unchanged);
        }

        size_t big = 90 * 1024;
        _cleanup_free_ char *body = malloc(big + 64);
        assert_se(body);
        int k = snprintf(body, 64, "{\"etag\": \"\\\"");
        memset(body + k, 'x', big);
        strcpy(body + k + big, "\\\"\"}");
        control(env, "/_sim/validators", body);
        platform_api_forget_validators(env->api);
        fetch(env, &o);
        assert_se(o.error == 0 && o.status == 200 && o.spec && o.etag_refused);
        for (int i = 0; i < 3; i++) {
                fetch(env, &o);
                assert_se(o.error == 0 && o.status == 304);
        }

        /* Both refused: plain requests, whole documents, no error. */
        control(env, "/_sim/validators", "{\"etag\": \"W/\\\"\\u00e9\\\"\", \"last_modified\": \"Mon\\u0001\"}");
        platform_api_forget_validators(env->api);
        for (int i = 0; i < 3; i++) {
                fetch(env, &o);
                assert_se(o.error == 0 && o.status == 200 && o.spec && o.etag_refused && o.last_modified_refused);
        }

        /* Valid validators again: conditional requests resume. */
        control(env, "/_sim/validators", "{}");
        fetch(env, &o);
        assert_se(o.error == 0 && o.status == 200 && !o.etag_refused && !o.last_modified_refused);
        fetch(env, &o);
        assert_se(o.error == 0 && o.status == 304 && o.unchanged);
        spec_out_clear(&o);
        printf("validators: ok\n");
}

typedef struct ActiveOut {
        bool done;
        int error;
        long status;
        PlatformActive active;
        char detail[PLATFORM_ACTIVE_DETAIL_MAX];
        char message[512];
} ActiveOut;

static void on_active(PlatformCall *call, const PlatformActiveResult *r, void *userdata) {
        ActiveOut *o = userdata;
        *o = (ActiveOut) { .done = true, .error = r->error, .status = r->http_status, .active = r->active };
        assert_se(r->error == 0 || r->message);
        assert_se((r->error == 0) == (r->detail != NULL));
        snprintf(o->detail, sizeof o->detail, "%s", strempty(r->detail));
        snprintf(o->message, sizeof o->message, "%s", strempty(r->message));
}

static void active(Env *env, ActiveOut *o) {
        *o = (ActiveOut) {};
        assert_se(platform_api_fetch_active(env->api, on_active, o, NULL) == 0);
        run_until(env, &o->done);
}

static void test_active(Env *env) {
        ActiveOut o;

        /* The simulator's default: idle. */
        active(env, &o);
        assert_se(o.error == 0 && o.active.n_active == 0 && o.active.n_jobs == 0);
        assert_se(streq(o.detail, "no active jobs"));

        control(env, "/_sim/active-mode", "{\"mode\": \"busy\", \"jobs\": [{\"job_id\": \"j-1\", \"status\": \"running\"},"
                                          " {\"job_id\": \"j-2\", \"status\": \"queued\"}]}");
        active(env, &o);
        assert_se(o.error == 0 && o.active.n_active == 2 && o.active.n_jobs == 2);
        assert_se(streq(o.active.jobs[0].job_id, "j-1") && streq(o.active.jobs[0].status, "running"));
        assert_se(streq(o.active.jobs[1].job_id, "j-2") && streq(o.active.jobs[1].status, "queued"));
        assert_se(streq(o.detail, "2 active jobs: j-1 (running), j-2 (queued)"));

        /* Many jobs: counted all, a bounded few kept. */
        control(env, "/_sim/active-mode", "{\"mode\": \"busy\", \"jobs\": 500}");
        active(env, &o);
        assert_se(o.error == 0 && o.active.n_active == 500 && o.active.n_jobs == PLATFORM_ACTIVE_JOBS_KEPT);
        assert_se(streq(o.detail, "500 active jobs: job-1 (running), job-2 (running), job-3 (running), "
                                  "job-4 (running), and 496 more"));

        control(env, "/_sim/active-mode", "{\"mode\": \"idle\"}");
        active(env, &o);
        assert_se(o.error == 0 && o.active.n_active == 0);

        /* The old shape is not the API's: refused with the field named. */
        control(env, "/_sim/active-mode", "{\"mode\": \"malformed\"}");
        active(env, &o);
        assert_se(o.error == -EBADMSG && streq(o.message, "validate/active.active: must be an array of jobs"));

        control(env, "/_sim/active", "[]");
        active(env, &o);
        assert_se(o.error == -EBADMSG);

        control(env, "/_sim/active?status=503", "{\"active\": []}");
        active(env, &o);
        assert_se(o.error == -EREMOTEIO && o.status == 503 && streq(o.message, "HTTP 503"));

        /* A connection that dies without a reply is a transport error. */
        control(env, "/_sim/active-mode", "{\"mode\": \"unreachable\"}");
        active(env, &o);
        assert_se(o.error < 0 && o.error != -EBADMSG && o.status == 0 && o.message[0]);

        control(env, "/_sim/active-mode", "{\"mode\": \"idle\"}");
        active(env, &o);
        assert_se(o.error == 0 && o.active.n_active == 0);
        printf("active: ok\n");
}

static int parse(const char *s, PlatformActive *a, char **err) {
        *err = mfree(*err);
        return platform_parse_active_reply(s, strlen(s), a, err);
}

static void test_parse_active(void) {
        _cleanup_free_ char *err = NULL;
        PlatformActive a;
        char buf[PLATFORM_ACTIVE_DETAIL_MAX];

        assert_se(parse("{\"active\":[]}", &a, &err) == 0 && a.n_active == 0 && a.n_jobs == 0 && !err);
        platform_active_format(&a, buf, sizeof buf);
        assert_se(streq(buf, "no active jobs"));

        /* alphacore's reply; unknown fields ignored, log_url optional. */
        assert_se(parse("{\"active\":[{\"job_id\":\"a1\",\"status\":\"running\",\"log_url\":\"/validate/a1/log\"}],"
                        "\"x\":1}", &a, &err) == 0);
        assert_se(a.n_active == 1 && a.n_jobs == 1 && streq(a.jobs[0].job_id, "a1"));
        platform_active_format(&a, buf, sizeof buf);
        assert_se(streq(buf, "1 active job: a1 (running)"));
        assert_se(parse("{\"active\":[{\"job_id\":\"a\",\"status\":\"queued\",\"log_url\":null,\"t\":[1]}]}", &a, &err) == 0);

        /* Texts are bounded and printable ASCII only. */
        char big[400];
        snprintf(big, sizeof big, "{\"active\":[{\"job_id\":\"%0200d\",\"status\":\"r\\u0001\\u00e9\\n\"}]}", 7);
        assert_se(parse(big, &a, &err) == 0);
        assert_se(strlen(a.jobs[0].job_id) == PLATFORM_ACTIVE_TEXT_MAX);
        assert_se(streq(a.jobs[0].status, "r???\?"));   /* \u0001, the two bytes of é, \n */

        /* The detail is cut to its buffer. */
        char small[16];
        platform_active_format(&a, small, sizeof small);
        assert_se(strlen(small) == sizeof small - 1 && strncmp(small, "1 active job: 00", 15) == 0);

        /* Malformed: each refusal names the field. */
        static const struct { const char *doc, *field; } bad[] = {
                { "{\"active_jobs\":0}", "validate/active.active: must be an array of jobs" },
                { "{\"active\":{}}", "validate/active.active: must be an array of jobs" },
                { "{\"active\":null}", "validate/active.active: must be an array of jobs" },
                { "{\"active\":[1]}", "validate/active.active[0]: must be an object" },
                { "{\"active\":[{\"job_id\":\"a\",\"status\":\"r\"},{\"status\":\"r\"}]}",
                  "validate/active.active[1].job_id: must be a string" },
                { "{\"active\":[{\"job_id\":1,\"status\":\"r\"}]}", "validate/active.active[0].job_id: must be a string" },
                { "{\"active\":[{\"job_id\":\"a\"}]}", "validate/active.active[0].status: must be a string" },
                { "{\"active\":[{\"job_id\":\"a\",\"status\":\"r\",\"log_url\":5}]}",
                  "validate/active.active[0].log_url: must be a string" },
        };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_se(parse(bad[i].doc, &a, &err) == -EBADMSG);
                if (!streq(err, bad[i].field)) {
                        fprintf(stderr, "%s: got %s\n", bad[i].doc, err);
                        abort();
                }
        }
        assert_se(parse("[]", &a, &err) == -EBADMSG && err);
        assert_se(parse("nope", &a, &err) == -EBADMSG && err);
        assert_se(parse("", &a, &err) == -EBADMSG && err);
        printf("parse active: ok\n");
}

static void on_never(PlatformCall *call, PlatformSpecResult *r, void *userdata) {
        assert_se(!"cancelled callback fired");
}

typedef struct Tracked {
        bool fired;
        bool freed;
} Tracked;

static void on_tracked(PlatformCall *call, PlatformSpecResult *r, void *userdata) {
        Tracked *t = userdata;
        /* Completing before platform_api_free() is legitimate; after it, never. */
        assert_se(!t->freed);
        t->fired = true;
}

static bool sim_wait_blocked(Env *env, const char *method) {
        HttpOut o = {};
        char req[256];
        snprintf(req, sizeof req, "{\"method\": \"%s\", \"state\": \"blocked\", \"timeout\": 10}", method);
        HttpRequest r = { .method = HTTP_POST, .endpoint = env->url, .path = "/_sim/wait",
                          .body = req, .body_len = strlen(req) };
        assert_se(http_request_start(env->http, &r, on_http, &o, NULL) == 0);
        run_until(env, &o.done);
        return o.status == 200 && o.ok;
}

/* Defect 8 of issue 7: this test used a callback that aborted if it ever
 * fired for a call that was merely started, then ran the loop once before
 * freeing. On a loaded machine libcurl can connect, send and read the whole
 * reply inside that one iteration (the simulator answers while we are
 * preempted), so the "never" callback fired legitimately: the race was in
 * the test. Now a call is "in flight" by construction (the simulator holds
 * it), and a call that may complete is allowed to, but only before free. */
static void test_cancel_and_free(Env *env) {
        PlatformCall *call;
        Tracked racing = {};

        /* Cancelled before the loop ever ran: never fires. */
        assert_se(platform_api_fetch_spec(env->api, on_never, NULL, &call) == 0);
        platform_call_cancel(call);

        /* Held by the simulator: certainly in flight when the API is freed. */
        control(env, "/_sim/fault", "{\"method\": \"" PLATFORM_SPEC_PATH "\", \"kind\": \"hang\"}");
        assert_se(platform_api_fetch_spec(env->api, on_never, NULL, NULL) == 0);
        assert_se(sim_wait_blocked(env, PLATFORM_SPEC_PATH));

        /* May or may not complete within one iteration: either is fine. */
        assert_se(platform_api_fetch_spec(env->api, on_tracked, &racing, NULL) == 0);
        assert_se(sd_event_run(env->event, 1000) >= 0);

        env->api = platform_api_free(env->api);
        racing.freed = true;
        for (int i = 0; i < 5; i++)
                assert_se(sd_event_run(env->event, 20 * USEC_PER_MSEC) >= 0);
        assert_se(http_context_n_calls(env->http) == 0);
        control(env, "/_sim/clear-faults", "{}");
        printf("cancel and free: ok (the racing call %s before free)\n", racing.fired ? "completed" : "did not complete");
}

static pid_t start_sim(const char *python, const char *script, char *url, size_t urlsz) {
        const char *argv[] = { python, script, "--listen", "tcp:127.0.0.1:0", NULL };
        return test_spawn_ready(argv, url, urlsz);
}

int main(int argc, char *argv[]) {
        Env env = {};

        assert_se(argc == 3);
        test_parse_active();
        pid_t pid = start_sim(argv[1], argv[2], env.url, sizeof env.url);
        assert_se(sd_event_new(&env.event) >= 0);
        assert_se(http_context_new(env.event, &env.http) == 0);
        assert_se(platform_api_new(env.http, env.url, &env.api) == 0);

        test_spec(&env);
        test_validators(&env);
        test_active(&env);
        test_cancel_and_free(&env);

        http_context_free(env.http);
        sd_event_unref(env.event);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        printf("test-platform-api: ok\n");
        return 0;
}
