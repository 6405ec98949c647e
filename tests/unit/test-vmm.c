/* SPDX-License-Identifier: Apache-2.0 */
/* Lifetimes of the VMM client on a real sd-event loop against
 * tests/sim/vmm_sim.py: cancellation, freeing the client from inside a
 * callback with other calls in flight, the UpdateVm fallback re-issued from
 * inside the HTTP callback. argv[1] = python3, argv[2] = vmm_sim.py. */

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
#include "tests.h"

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
        char *compose_app_id;
        bool has_pubkey, has_signature, has_signature_v1, has_timestamp;
        Env *env;
        bool free_client;
} Out;

static void out_clear(Out *o) {
        free(o->method);
        free(o->id);
        free(o->compose_app_id);
        *o = (Out) { .env = o->env };
}

static void on_done(VmmCall *call, const VmmResult *r, void *userdata) {
        Out *o = userdata;
        assert_se(!o->done);
        o->done = true;
        o->error = r->error;
        o->kind = r->kind;
        o->method = strdup(r->method);
        o->id = r->id ? strdup(r->id) : NULL;
        o->compose_app_id = r->compose_app_id ? strdup(r->compose_app_id) : NULL;
        if (r->pubkey) {
                o->has_pubkey = true;
                o->has_signature = r->pubkey->has_signature;
                o->has_signature_v1 = r->pubkey->has_signature_v1;
                o->has_timestamp = r->pubkey->has_timestamp;
        }
        assert_se(r->error == 0 || r->message);
        /* Cancelling oneself from inside the callback is a no-op. */
        vmm_call_cancel(call);
        if (o->free_client)
                o->env->vmm = vmm_client_free(o->env->vmm);
}

static void on_never(VmmCall *call, const VmmResult *r, void *userdata) {
        assert_se(!"cancelled callback fired");
}

static void run_until(Env *env, bool *done) {
        while (!*done)
                assert_se(sd_event_run(env->event, UINT64_MAX) >= 0);
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
        assert_se(http_request_start(env->http, &req, on_http, &o, NULL) == 0);
        run_until(env, &o.done);
        assert_se(o.status == 200);
}

static void test_cancel(Env *env) {
        VmmCall *call;
        Out o = { .env = env };

        control(env, "/_sim/fault", "{\"method\": \"Status\", \"kind\": \"hang\"}");
        assert_se(vmm_status(env->vmm, NULL, NULL, on_never, NULL, &call) == 0);
        assert_se(sd_event_run(env->event, 50 * USEC_PER_MSEC) >= 0);
        vmm_call_cancel(call);
        assert_se(http_context_n_calls(env->http) == 0);
        control(env, "/_sim/clear-faults", "{}");

        assert_se(vmm_version(env->vmm, on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert_se(o.error == 0 && streq(o.method, "Version"));
        out_clear(&o);
        printf("cancel: ok\n");
}

/* The first reply frees the client; the hanging calls never call back. */
static void test_free_in_callback(Env *env) {
        Out o = { .env = env, .free_client = true };

        control(env, "/_sim/fault", "{\"method\": \"Status\", \"kind\": \"hang\", \"times\": 0}");
        for (int i = 0; i < 3; i++)
                assert_se(vmm_status(env->vmm, NULL, NULL, on_never, NULL, NULL) == 0);
        assert_se(vmm_version(env->vmm, on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert_se(!env->vmm && http_context_n_calls(env->http) == 0);
        for (int i = 0; i < 5; i++)
                assert_se(sd_event_run(env->event, 20 * USEC_PER_MSEC) >= 0);
        control(env, "/_sim/clear-faults", "{}");
        out_clear(&o);
        assert_se(vmm_client_new(env->http, env->url, &env->vmm) == 0);
        printf("free in callback: ok\n");
}

#define COMPOSE "{\"manifest_version\":2,\"name\":\"vm\",\"runner\":\"docker-compose\"}"
#define COMPOSE_APP_ID "b6b6efda87a251912d238a3d1d42ff84ec326da4"
#define COMPOSE2 "{\"manifest_version\":2,\"name\":\"vm2\",\"runner\":\"docker-compose\"}"
#define COMPOSE2_APP_ID "3fcd0d32fdc99e6916e5ebec684c166353f1ebc1"

static void test_update_fallback(Env *env) {
        VmConfiguration conf = { .name = (char *) "vm", .image = (char *) "dstack-0.5.2",
                                 .compose_file = (char *) COMPOSE, .vcpu = 1, .memory = 1024, .disk_size = 10 };
        Out o = { .env = env };

        assert_se(vmm_create_vm(env->vmm, &conf, on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert_se(o.error == 0 && o.id);
        _cleanup_free_ char *id = strdup(o.id);
        out_clear(&o);

        /* The simulator runs 0.5.5 here: UpdateVm is "Service not found". */
        VmmUpdateRequest u = { .id = id, .compose_file = COMPOSE2 };
        assert_se(vmm_update_vm(env->vmm, &u, on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert_se(o.error == 0 && streq(o.method, "UpgradeApp"));
        /* The reply id is the new compose's app-id prefix, not the VM's id or
         * app id, and is reported as such (issue 7, defect 5). */
        assert_se(!o.id && o.compose_app_id && streq(o.compose_app_id, COMPOSE2_APP_ID));
        out_clear(&o);

        /* Nothing but the env or user config sent: the VMM answers {"id": ""}. */
        VmmUpdateRequest u2 = { .id = id, .user_config = "uc" };
        assert_se(vmm_update_vm(env->vmm, &u2, on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert_se(o.error == 0 && !o.id && !o.compose_app_id);
        out_clear(&o);

        assert_se(vmm_start_vm(env->vmm, "no-such-vm", on_done, &o, NULL) == 0);
        run_until(env, &o.done);
        assert_se(o.error == -EREMOTEIO && o.kind == VMM_ERROR_REPLY);
        out_clear(&o);

        assert_se(vmm_get_info(env->vmm, "", on_done, &o, NULL) == -EINVAL);
        assert_se(vmm_logs(env->vmm, id, 5, "tty", on_done, &o, NULL) == -EINVAL);
        printf("update fallback: ok\n");
}

/* GetAppEnvEncryptPubKey through a VMM ≥0.5.6 in front of a KMS that fills in
 * less: "" signatures and timestamp 0 are absent, not errors (issue 7, defect 4). */
static void test_pubkey_empty_signatures(Env *env) {
        static const struct {
                const char *config;
                bool sig, sig_v1, ts;
        } cases[] = {
                { "{\"version\": \"0.5.7\", \"kms_reply\": \"full\"}", true, true, true },
                { "{\"version\": \"0.5.7\", \"kms_reply\": \"legacy\"}", true, false, false },
                { "{\"version\": \"0.5.7\", \"kms_reply\": \"unsigned\"}", false, false, false },
                { "{\"version\": \"0.5.5\", \"kms_reply\": \"full\"}", true, false, false },
        };
        Out o = { .env = env };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                control(env, "/_sim/config", cases[i].config);
                assert_se(vmm_get_app_env_encrypt_pubkey(env->vmm, COMPOSE_APP_ID, on_done, &o, NULL) == 0);
                run_until(env, &o.done);
                assert_se(o.error == 0 && o.has_pubkey);
                assert_se(o.has_signature == cases[i].sig && o.has_signature_v1 == cases[i].sig_v1 &&
                          o.has_timestamp == cases[i].ts);
                out_clear(&o);
        }
        printf("pubkey empty signatures: ok\n");
}

static pid_t start_sim(const char *python, const char *script, char *url, size_t urlsz) {
        const char *argv[] = { python, script, "--listen", "tcp:127.0.0.1:0", "--version", "0.5.5", NULL };
        return test_spawn_ready(argv, url, urlsz);
}

int main(int argc, char *argv[]) {
        Env env = {};

        assert_se(argc == 3);
        pid_t pid = start_sim(argv[1], argv[2], env.url, sizeof env.url);
        assert_se(sd_event_new(&env.event) >= 0);
        assert_se(http_context_new(env.event, &env.http) == 0);
        assert_se(vmm_client_new(env.http, env.url, &env.vmm) == 0);
        assert_se(vmm_client_new(env.http, "ftp://x", &(VmmClient *) { NULL }) == -EINVAL);

        test_cancel(&env);
        test_free_in_callback(&env);
        test_update_fallback(&env);
        test_pubkey_empty_signatures(&env);

        vmm_client_free(env.vmm);
        http_context_free(env.http);
        sd_event_unref(env.event);
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        printf("test-vmm: ok\n");
        return 0;
}
