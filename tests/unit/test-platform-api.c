/* SPDX-License-Identifier: Apache-2.0 */
/* The Platform API client on a real sd-event loop against tests/sim/api_sim.py.
 * argv[1] = python3, argv[2] = api_sim.py. */
#include <assert.h>
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
}

static void run_until(Env *env, bool *done) {
        while (!*done)
                assert(sd_event_run(env->event, UINT64_MAX) >= 0);
}

static void fetch(Env *env, SpecOut *o) {
        spec_out_clear(o);
        assert(platform_api_fetch_spec(env->api, on_spec, o, NULL) == 0);
        run_until(env, &o->done);
}

typedef struct HttpOut {
        bool done;
        long status;
} HttpOut;

static void on_http(HttpCall *c, const HttpResponse *r, void *userdata) {
        HttpOut *o = userdata;
        o->done = true;
        o->status = r->status;
}

/* POSTs to the simulator's control API with the client under test. */
static void control(Env *env, const char *path, const char *body) {
        HttpOut o = {};
        HttpRequest req = { .method = HTTP_POST, .endpoint = env->url, .path = path,
                            .body = body, .body_len = strlen(body) };
        assert(http_request_start(env->http, &req, on_http, &o, NULL) == 0);
        run_until(env, &o.done);
        assert(o.status == 200);
}

static char *replace(const char *s, const char *from, const char *to) {
        const char *p = strstr(s, from);
        char *out;
        assert(p);
        assert(asprintf(&out, "%.*s%s%s", (int) (p - s), s, to, p + strlen(from)) > 0);
        return out;
}

static void test_spec(Env *env) {
        SpecOut o = {};

        fetch(env, &o);
        assert(o.error == 0 && o.status == 200 && o.spec && !o.unchanged);
        assert(o.spec->vm.vcpu == 16 && streq(o.spec->vm.image, "dstack-0.5.2"));
        _cleanup_free_ char *doc = strdup(o.body);

        fetch(env, &o);
        assert(o.error == 0 && o.status == 304 && o.unchanged && !o.spec);

        _cleanup_free_ char *doc8 = replace(doc, "\"vcpu\": 16", "\"vcpu\": 8");
        control(env, "/_sim/doc", doc8);
        fetch(env, &o);
        assert(o.error == 0 && o.status == 200 && o.spec->vm.vcpu == 8);

        /* An invalid document is refused with the field named, and its
         * validators are not remembered: it is refused again, not 304. */
        _cleanup_free_ char *doc0 = replace(doc, "\"vcpu\": 16", "\"vcpu\": 0");
        control(env, "/_sim/doc", doc0);
        for (int i = 0; i < 2; i++) {
                fetch(env, &o);
                assert(o.error == -EINVAL && o.status == 200 && !o.spec);
                assert(strstr(o.message, "provisioning.vm_parameters.vcpu"));
        }

        control(env, "/_sim/doc", doc);
        platform_api_set_max_doc(env->api, 100);
        fetch(env, &o);
        assert(o.error == -EFBIG && streq(o.message, "response exceeds 100 bytes"));
        platform_api_set_max_doc(env->api, API_DOC_MAX);

        control(env, "/_sim/status", "{\"status\": 500}");
        fetch(env, &o);
        assert(o.error == -EREMOTEIO && o.status == 500);
        control(env, "/_sim/status", "{\"status\": 200}");

        control(env, "/_sim/fault", "{\"method\": \"" PLATFORM_SPEC_PATH "\", \"kind\": \"hang\"}");
        platform_api_set_timeout(env->api, 300 * USEC_PER_MSEC);
        fetch(env, &o);
        assert(o.error == -ETIMEDOUT);
        platform_api_set_timeout(env->api, 30 * USEC_PER_SEC);
        control(env, "/_sim/clear-faults", "{}");

        fetch(env, &o);
        assert(o.error == 0 && o.status == 200 && o.spec->vm.vcpu == 16);
        spec_out_clear(&o);
        printf("spec: ok\n");
}

typedef struct ActiveOut {
        bool done;
        int error;
        long status;
        uint32_t jobs;
} ActiveOut;

static void on_active(PlatformCall *call, const PlatformActiveResult *r, void *userdata) {
        ActiveOut *o = userdata;
        *o = (ActiveOut) { .done = true, .error = r->error, .status = r->http_status, .jobs = r->active_jobs };
        assert(r->error == 0 || r->message);
}

static ActiveOut active(Env *env) {
        ActiveOut o = {};
        assert(platform_api_fetch_active(env->api, on_active, &o, NULL) == 0);
        run_until(env, &o.done);
        return o;
}

static void test_active(Env *env) {
        ActiveOut o = active(env);
        assert(o.error == 0 && o.jobs == 0);
        control(env, "/_sim/active", "{\"active_jobs\": 3, \"other\": true}");
        o = active(env);
        assert(o.error == 0 && o.jobs == 3);
        control(env, "/_sim/active", "{\"active_jobs\": -1}");
        assert(active(env).error == -EBADMSG);
        control(env, "/_sim/active", "[]");
        assert(active(env).error == -EBADMSG);
        control(env, "/_sim/active?status=503", "{\"active_jobs\": 0}");
        o = active(env);
        assert(o.error == -EREMOTEIO && o.status == 503);
        printf("active: ok\n");
}

static void test_parse_active(void) {
        _cleanup_free_ char *err = NULL;
        uint32_t n = 0;

        assert(platform_parse_active_reply("{\"active_jobs\":7}", 17, &n, &err) == 0 && n == 7);
        assert(platform_parse_active_reply("{\"active_jobs\":1.5}", 19, &n, &err) == -EBADMSG);
        assert(streq(err, "validate/active.active_jobs: must be an integer between 0 and 4294967295"));
        err = mfree(err);
        assert(platform_parse_active_reply("{}", 2, &n, &err) == -EBADMSG && err);
        err = mfree(err);
        assert(platform_parse_active_reply("nope", 4, &n, &err) == -EBADMSG && err);
        printf("parse active: ok\n");
}

static void on_never(PlatformCall *call, PlatformSpecResult *r, void *userdata) {
        assert(!"cancelled callback fired");
}

static void test_cancel_and_free(Env *env) {
        PlatformCall *call;

        assert(platform_api_fetch_spec(env->api, on_never, NULL, &call) == 0);
        platform_call_cancel(call);
        assert(platform_api_fetch_spec(env->api, on_never, NULL, NULL) == 0);
        assert(sd_event_run(env->event, 1000) >= 0);
        env->api = platform_api_free(env->api);
        for (int i = 0; i < 5; i++)
                assert(sd_event_run(env->event, 20 * USEC_PER_MSEC) >= 0);
        assert(http_context_n_calls(env->http) == 0);
        printf("cancel and free: ok\n");
}

static pid_t start_sim(const char *python, const char *script, char *url, size_t urlsz) {
        const char *argv[] = { python, script, "--listen", "tcp:127.0.0.1:0", NULL };
        return test_spawn_ready(argv, url, urlsz);
}

int main(int argc, char *argv[]) {
        Env env = {};

        assert(argc == 3);
        test_parse_active();
        pid_t pid = start_sim(argv[1], argv[2], env.url, sizeof env.url);
        assert(sd_event_new(&env.event) >= 0);
        assert(http_context_new(env.event, &env.http) == 0);
        assert(platform_api_new(env.http, env.url, &env.api) == 0);

        test_spec(&env);
        test_active(&env);
        test_cancel_and_free(&env);

        http_context_free(env.http);
        sd_event_unref(env.event);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        printf("test-platform-api: ok\n");
        return 0;
}
