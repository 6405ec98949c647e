/* SPDX-License-Identifier: Apache-2.0 */
/* Lifetimes of the VMM client on a real sd-event loop against
 * tests/sim/vmm_sim.py: cancellation, freeing the client from inside a
 * callback with other calls in flight, the UpdateVm fallback re-issued from
 * inside the HTTP callback. argv[1] = python3, argv[2] = vmm_sim.py. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "clients/vmm.h"
#include "test-spawn.h"
#include "shared/macro.h"

typedef struct Env {
        sd_event *event;
        HttpContext *http;
        VmmClient *vmm;
        char url[128];
} Env;

typedef struct Out {
        bool done;
        int error;
        VmmErrorKind kind;
        char *method;
        char *id;
        Env *env;
        bool free_client;
} Out;

static void out_clear(Out *o) {
        free(o->method);
        free(o->id);
        *o = (Out) { .env = o->env };
}

static void on_done(VmmCall *call, const VmmResult *r, void *userdata) {
        Out *o = userdata;
        assert(!o->done);
        o->done = true;
        o->error = r->error;
        o->kind = r->kind;
        o->method = strdup(r->method);
        o->id = r->id ? strdup(r->id) : NULL;
        assert(r->error == 0 || r->message);
        /* Cancelling oneself from inside the callback is a no-op. */
        vmm_call_cancel(call);
        if (o->free_client)
                o->env->vmm = vmm_client_free(o->env->vmm);
}

static void on_never(VmmCall *call, const VmmResult *r, void *userdata) {
        assert(!"cancelled callback fired");
}

static void run_until(Env *env, bool *done) {
        while (!*done)
                assert(sd_event_run(env->event, UINT64_MAX) >= 0);
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

static void control(Env *env, const char *path, const char *body) {
        HttpOut o = {};
        HttpRequest req = { .method = HTTP_POST, .endpoint = env->url, .path = path,
                            .body = body, .body_len = strlen(body) };
        assert(http_request_start(env->http, &req, on_http, &o, NULL) == 0);
        run_until(env, &o.done);
        assert(o.status == 200);
}

static void test_cancel(Env *env) {
        VmmCall *call;
        Out o = { .env = env };

        control(env, "/_sim/fault", "{\"method\": \"Status\", \"kind\": \"hang\"}");
        assert(vmm_status(env->vmm, NULL, NULL, on_never, NULL, &call) == 0);
        assert(sd_event_run(env->event, 50 * USEC_PER_MSEC) >= 0);
        vmm_call_cancel(call);
        assert(http_context_n_calls(env->http) == 0);
        control(env, "/_sim/clear-faults", "{}");

        assert(vmm_version(env->vmm, on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert(o.error == 0 && streq(o.method, "Version"));
        out_clear(&o);
        printf("cancel: ok\n");
}

/* The first reply frees the client; the hanging calls never call back. */
static void test_free_in_callback(Env *env) {
        Out o = { .env = env, .free_client = true };

        control(env, "/_sim/fault", "{\"method\": \"Status\", \"kind\": \"hang\", \"times\": 0}");
        for (int i = 0; i < 3; i++)
                assert(vmm_status(env->vmm, NULL, NULL, on_never, NULL, NULL) == 0);
        assert(vmm_version(env->vmm, on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert(!env->vmm && http_context_n_calls(env->http) == 0);
        for (int i = 0; i < 5; i++)
                assert(sd_event_run(env->event, 20 * USEC_PER_MSEC) >= 0);
        control(env, "/_sim/clear-faults", "{}");
        out_clear(&o);
        assert(vmm_client_new(env->http, env->url, &env->vmm) == 0);
        printf("free in callback: ok\n");
}

static void test_update_fallback(Env *env) {
        VmConfiguration conf = { .name = (char *) "vm", .image = (char *) "dstack-0.5.2",
                                 .compose_file = (char *) "{}", .vcpu = 1, .memory = 1024, .disk_size = 10 };
        Out o = { .env = env };

        assert(vmm_create_vm(env->vmm, &conf, on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert(o.error == 0 && o.id);
        _cleanup_free_ char *id = strdup(o.id);
        out_clear(&o);

        /* The simulator runs 0.5.5 here: UpdateVm is "Service not found". */
        VmmUpdateRequest u = { .id = id, .compose_file = "{\"a\":1}" };
        assert(vmm_update_vm(env->vmm, &u, on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert(o.error == 0 && streq(o.method, "UpgradeApp"));
        out_clear(&o);

        assert(vmm_start_vm(env->vmm, "no-such-vm", on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert(o.error == -EREMOTEIO && o.kind == VMM_ERROR_REPLY);
        out_clear(&o);

        assert(vmm_get_info(env->vmm, "", on_done, &o, NULL) == -EINVAL);
        assert(vmm_logs(env->vmm, id, 5, "tty", on_done, &o, NULL) == -EINVAL);
        printf("update fallback: ok\n");
}

static pid_t start_sim(const char *python, const char *script, char *url, size_t urlsz) {
        const char *argv[] = { python, script, "--listen", "tcp:127.0.0.1:0", "--version", "0.5.5", NULL };
        return test_spawn_ready(argv, url, urlsz);
}

int main(int argc, char *argv[]) {
        Env env = {};

        assert(argc == 3);
        pid_t pid = start_sim(argv[1], argv[2], env.url, sizeof env.url);
        assert(sd_event_new(&env.event) >= 0);
        assert(http_context_new(env.event, &env.http) == 0);
        assert(vmm_client_new(env.http, env.url, &env.vmm) == 0);
        assert(vmm_client_new(env.http, "ftp://x", &(VmmClient *) { NULL }) == -EINVAL);

        test_cancel(&env);
        test_free_in_callback(&env);
        test_update_fallback(&env);

        vmm_client_free(env.vmm);
        http_context_free(env.http);
        sd_event_unref(env.event);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        printf("test-vmm: ok\n");
        return 0;
}
