/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <time.h>

#include "clients/vmm.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/validate.h"

typedef enum ReplyKind {
        REPLY_STATUS,
        REPLY_INFO,
        REPLY_ID,
        REPLY_EMPTY,
        REPLY_UPDATE,
        REPLY_HASH,
        REPLY_PUBKEY,
        REPLY_VERSION,
        REPLY_META,
        REPLY_IMAGES,
        REPLY_TEXT,
        REPLY_SYSINFO,      /* a guest API call: POST /guest/<method>?json */
} ReplyKind;

struct VmmClient {
        HttpContext *http;
        char *url;
        char *token;
        uint64_t timeout_usec;
        size_t max_response;
        bool has_version;
        VmmVersion version;
        VmmCall *calls;
};

struct VmmCall {
        VmmClient *client;
        HttpCall *http;
        const char *method;
        ReplyKind kind;
        char *path;  /* GET when set (logs), else POST /prpc/<method>?json */
        char *body;
        bool in_callback;
        vmm_done_cb cb;
        vmm_data_cb on_data; /* logs follow */
        void *userdata;
        uint64_t started_usec;  /* CLOCK_MONOTONIC, for the debug log */
        VmmCall *prev, *next;
};

/* Parsed replies live here only for the duration of the callback. */
typedef struct Replies {
        VmmStatusReply status;
        VmmInfoReply info;
        VmmPubKeyReply pubkey;
        VmmVersionReply version;
        VmmMetaReply meta;
        VmmImagesReply images;
        VmmGuestSysInfo sysinfo;
        char *id;
        char *compose_app_id;
        char *hash;
} Replies;

static void replies_done(Replies *r) {
        vmm_status_reply_done(&r->status);
        vmm_info_reply_done(&r->info);
        vmm_version_reply_done(&r->version);
        vmm_images_reply_done(&r->images);
        free(r->id);
        free(r->compose_app_id);
        free(r->hash);
}

static void call_unlink_free(VmmCall *call) {
        VmmClient *c = call->client;
        if (call->prev)
                call->prev->next = call->next;
        else if (c->calls == call)
                c->calls = call->next;
        if (call->next)
                call->next->prev = call->prev;
        free(call->path);
        free(call->body);
        free(call);
}

void vmm_call_cancel(VmmCall *call) {
        if (!call || call->in_callback)
                return;
        http_call_cancel(call->http);
        call_unlink_free(call);
}

int vmm_client_new(HttpContext *http, const char *url, VmmClient **ret) {
        VmmClient *c;

        if (!http || !url_is_valid(url))
                return -EINVAL;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->http = http;
        c->url = strdup(url);
        if (!c->url) {
                free(c);
                return -ENOMEM;
        }
        c->timeout_usec = 30 * USEC_PER_SEC;
        c->max_response = HTTP_DEFAULT_MAX_RESPONSE;
        *ret = c;
        return 0;
}

VmmClient *vmm_client_free(VmmClient *c) {
        if (!c)
                return NULL;
        while (c->calls) {
                VmmCall *call = c->calls;
                /* A call inside its own callback is freed by its dispatcher;
                 * detach it so that does not touch this client. */
                if (call->in_callback) {
                        c->calls = call->next;
                        if (c->calls)
                                c->calls->prev = NULL;
                        call->client = NULL;
                        call->prev = call->next = NULL;
                        continue;
                }
                vmm_call_cancel(call);
        }
        free(c->url);
        erase_and_free(c->token);
        free(c);
        return NULL;
}

int vmm_client_set_token(VmmClient *c, const char *token) {
        char *t = NULL;
        if (token && !(t = strdup(token)))
                return -ENOMEM;
        erase_and_free(c->token);
        c->token = t;
        return 0;
}

void vmm_client_set_timeout(VmmClient *c, uint64_t usec) {
        c->timeout_usec = usec;
}

void vmm_client_set_max_response(VmmClient *c, size_t bytes) {
        c->max_response = bytes;
}

void vmm_client_set_version(VmmClient *c, const VmmVersion *v) {
        c->has_version = v != NULL;
        if (v)
                c->version = *v;
}

bool vmm_client_get_version(VmmClient *c, VmmVersion *ret) {
        if (c->has_version && ret)
                *ret = c->version;
        return c->has_version;
}

const char *vmm_client_url(VmmClient *c) {
        return c->url;
}

static void on_http_done(HttpCall *hc, const HttpResponse *resp, void *userdata);

/* Calls that change nothing may be replayed by libcurl; the others must not. */
static bool method_is_read_only(const char *method) {
        static const char *const reads[] = { "Status", "GetInfo", "GetComposeHash", "GetAppEnvEncryptPubKey",
                                             "Version", "GetMeta", "ListImages", "SysInfo" };
        for (size_t i = 0; i < ELEMENTSOF(reads); i++)
                if (streq(method, reads[i]))
                        return true;
        return false;
}

static int on_http_data(HttpCall *hc, const void *data, size_t size, void *userdata) {
        VmmCall *call = userdata;
        return call->on_data(call, data, size, call->userdata);
}

static int call_send(VmmCall *call) {
        VmmClient *c = call->client;
        _cleanup_free_ char *prpc = NULL;
        HttpRequest req = {
                .endpoint = c->url,
                .bearer_token = c->token,
                .timeout_usec = c->timeout_usec,
                .max_response_bytes = c->max_response,
        };

        if (call->path) {
                req.method = HTTP_GET;
                req.path = call->path;
                if (call->on_data) {
                        req.on_data = on_http_data;
                        req.timeout_usec = 0; /* a stream has no end */
                }
        } else {
                if (asprintf(&prpc, "/%s/%s?json", call->kind == REPLY_SYSINFO ? "guest" : "prpc", call->method) < 0)
                        return -ENOMEM;
                req.method = HTTP_POST;
                req.path = prpc;
                req.body = call->body;
                req.body_len = strlen(call->body);
                req.no_replay = !method_is_read_only(call->method);
        }
        return http_request_start(c->http, &req, on_http_done, call, &call->http);
}

static uint64_t vmm_now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static int call_start(VmmClient *c, const char *method, ReplyKind kind, char *body, char *path,
                      vmm_done_cb cb, void *userdata, VmmCall **ret) {
        VmmCall *call;
        int r;

        if (!cb) {
                free(body);
                free(path);
                return -EINVAL;
        }
        call = calloc(1, sizeof *call);
        if (!call) {
                free(body);
                free(path);
                return -ENOMEM;
        }
        *call = (VmmCall) { .client = c, .method = method, .kind = kind, .body = body, .path = path,
                            .cb = cb, .userdata = userdata, .started_usec = (uint64_t) vmm_now_usec() };
        call->next = c->calls;
        if (call->next)
                call->next->prev = call;
        c->calls = call;
        r = call_send(call);
        if (r < 0) {
                call_unlink_free(call);
                return r;
        }
        if (ret)
                *ret = call;
        return 0;
}

static int parse_ok(VmmCall *call, const HttpResponse *resp, Replies *p, VmmResult *res, char **err) {
        const char *d = resp->body, *m = call->method;
        size_t n = resp->body_len;
        int r;

        switch (call->kind) {
        case REPLY_STATUS:
                r = vmm_parse_status_reply(d, n, &p->status, err);
                res->status = &p->status;
                return r;
        case REPLY_INFO:
                r = vmm_parse_info_reply(d, n, &p->info, err);
                res->info = &p->info;
                return r;
        case REPLY_ID:
                r = vmm_parse_id_reply(m, d, n, &p->id, err);
                res->id = p->id;
                return r;
        case REPLY_EMPTY:
                return vmm_parse_empty_reply(m, d, n, err);
        case REPLY_UPDATE:
                /* {"id": app_id_of(the compose sent)}, {"id": ""} or null: never
                 * the VM's id or app id, so it is not required (issue 7, defect 5). */
                r = vmm_parse_update_reply(m, d, n, &p->compose_app_id, err);
                res->compose_app_id = p->compose_app_id;
                return r;
        case REPLY_HASH:
                r = vmm_parse_compose_hash_reply(d, n, &p->hash, err);
                res->hash = p->hash;
                return r;
        case REPLY_PUBKEY:
                r = vmm_parse_pubkey_reply(d, n, &p->pubkey, err);
                res->pubkey = &p->pubkey;
                return r;
        case REPLY_VERSION:
                r = vmm_parse_version_reply(d, n, &p->version, err);
                res->version = &p->version;
                return r;
        case REPLY_META:
                r = vmm_parse_meta_reply(d, n, &p->meta, err);
                res->meta = &p->meta;
                return r;
        case REPLY_IMAGES:
                r = vmm_parse_images_reply(d, n, &p->images, err);
                res->images = &p->images;
                return r;
        case REPLY_TEXT:
                res->text = d;
                res->text_len = n;
                return 0;
        case REPLY_SYSINFO:
                r = vmm_parse_sysinfo_reply(d, n, &p->sysinfo, err);
                res->sysinfo = &p->sysinfo;
                return r;
        }
        return -EINVAL;
}

static void record_version(VmmClient *c, const VmmVersionReply *v) {
        VmmVersion parsed;
        if (c && v && vmm_version_parse(v->version, &parsed) >= 0)
                vmm_client_set_version(c, &parsed);
}

/* Old VMMs lack UpdateVm: retry once as UpgradeApp. true if retried. */
static bool maybe_fallback(VmmCall *call, const char *vmm_message) {
        if (!call->client || !streq(call->method, "UpdateVm") || !vmm_message ||
            strncmp(vmm_message, "Service not found", 17) != 0)
                return false;
        call->method = "UpgradeApp";
        return call_send(call) >= 0;
}

static void fill_error(VmmCall *call, const HttpResponse *resp, VmmResult *res, char **vmm_msg) {
        const char *m = call->method;
        char *msg = NULL;

        if (resp->error < 0) {
                *res = (VmmResult) { .error = resp->error, .kind = VMM_ERROR_TRANSPORT };
                (void) !asprintf(&msg, "%s: %s", m, resp->error_message);
        } else if (resp->status == 401) {
                *res = (VmmResult) { .error = -EACCES, .kind = VMM_ERROR_AUTH };
                (void) !asprintf(&msg, "%s: not authorized by the VMM (HTTP 401)", m);
        } else {
                vmm_parse_error_reply(resp->body, resp->body_len, vmm_msg);
                bool refused = resp->status == 400;
                *res = (VmmResult) { .error = -EREMOTEIO, .kind = refused ? VMM_ERROR_REPLY : VMM_ERROR_HTTP,
                                     .vmm_message = refused ? *vmm_msg : NULL };
                if (refused)
                        (void) !asprintf(&msg, "%s: %s", m, strempty(*vmm_msg));
                else
                        (void) !asprintf(&msg, "%s: HTTP %ld: %s", m, resp->status, strempty(*vmm_msg));
        }
        res->message = msg;
}

static void on_http_done(HttpCall *hc, const HttpResponse *resp, void *userdata) {
        VmmCall *call = userdata;
        _cleanup_free_ char *vmm_msg = NULL, *err = NULL;
        Replies p = {};
        VmmResult res = {};

        call->http = NULL;
        if (resp->error < 0 || resp->status != 200) {
                fill_error(call, resp, &res, &vmm_msg);
                if (res.kind == VMM_ERROR_REPLY && maybe_fallback(call, vmm_msg)) {
                        free((char *) res.message);
                        return;
                }
        } else {
                int r = parse_ok(call, resp, &p, &res, &err);
                if (r < 0) {
                        res = (VmmResult) { .error = r, .kind = VMM_ERROR_PROTOCOL,
                                            .message = strdup(err ?: "reply failed validation") };
                } else if (call->kind == REPLY_VERSION)
                        record_version(call->client, res.version);
        }
        res.method = call->method;
        res.http_status = resp->status;
        /* The body may hold encrypted env and the reply VM details: only the
         * method, the outcome and the time are logged. */
        log_debug("VMM %s: %s%.200s (HTTP %ld, %.1f ms)", call->method, res.error < 0 ? "failed: " : "ok",
                  res.error < 0 ? strempty(res.message) : "", resp->status,
                  (double) (vmm_now_usec() - call->started_usec) / 1000.0);

        call->in_callback = true;
        call->cb(call, &res, call->userdata);
        free((char *) res.message);
        replies_done(&p);
        if (call->client)
                call_unlink_free(call);
        else {
                free(call->path);
                free(call->body);
                free(call);
        }
}

static int id_call(VmmClient *c, const char *method, ReplyKind kind, const char *id,
                   vmm_done_cb cb, void *userdata, VmmCall **ret) {
        char *body;
        int r = vmm_build_id_request(id, &body);
        if (r < 0)
                return r;
        return call_start(c, method, kind, body, NULL, cb, userdata, ret);
}

static int empty_call(VmmClient *c, const char *method, ReplyKind kind, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        char *body = strdup("{}");
        if (!body)
                return -ENOMEM;
        return call_start(c, method, kind, body, NULL, cb, userdata, ret);
}

int vmm_status(VmmClient *c, const char *const *ids, const char *keyword, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        char *body;
        int r = vmm_build_status_request(ids, keyword, false, &body);
        if (r < 0)
                return r;
        return call_start(c, "Status", REPLY_STATUS, body, NULL, cb, userdata, ret);
}

int vmm_get_info(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        return id_call(c, "GetInfo", REPLY_INFO, id, cb, userdata, ret);
}

int vmm_start_vm(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        return id_call(c, "StartVm", REPLY_EMPTY, id, cb, userdata, ret);
}

int vmm_shutdown_vm(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        return id_call(c, "ShutdownVm", REPLY_EMPTY, id, cb, userdata, ret);
}

int vmm_stop_vm(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        return id_call(c, "StopVm", REPLY_EMPTY, id, cb, userdata, ret);
}

int vmm_remove_vm(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        return id_call(c, "RemoveVm", REPLY_EMPTY, id, cb, userdata, ret);
}

int vmm_create_vm(VmmClient *c, const VmConfiguration *conf, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        char *body;
        int r = vmm_build_vm_configuration(conf, &body);
        if (r < 0)
                return r;
        return call_start(c, "CreateVm", REPLY_ID, body, NULL, cb, userdata, ret);
}

int vmm_get_compose_hash(VmmClient *c, const VmConfiguration *conf, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        char *body;
        int r = vmm_build_vm_configuration(conf, &body);
        if (r < 0)
                return r;
        return call_start(c, "GetComposeHash", REPLY_HASH, body, NULL, cb, userdata, ret);
}

int vmm_update_vm(VmmClient *c, const VmmUpdateRequest *req, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        char *body;
        int r = vmm_build_update_request(req, &body);
        if (r < 0)
                return r;
        const char *m = c->has_version && !vmm_version_has_update_vm(&c->version) ? "UpgradeApp" : "UpdateVm";
        return call_start(c, m, REPLY_UPDATE, body, NULL, cb, userdata, ret);
}

int vmm_get_app_env_encrypt_pubkey(VmmClient *c, const char *app_id, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        char *body;
        int r = vmm_build_pubkey_request(app_id, &body);
        if (r < 0)
                return r;
        return call_start(c, "GetAppEnvEncryptPubKey", REPLY_PUBKEY, body, NULL, cb, userdata, ret);
}

int vmm_version(VmmClient *c, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        return empty_call(c, "Version", REPLY_VERSION, cb, userdata, ret);
}

int vmm_guest_sys_info(VmmClient *c, const char *id, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        return id_call(c, "SysInfo", REPLY_SYSINFO, id, cb, userdata, ret);
}

int vmm_get_meta(VmmClient *c, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        return empty_call(c, "GetMeta", REPLY_META, cb, userdata, ret);
}

int vmm_list_images(VmmClient *c, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        return empty_call(c, "ListImages", REPLY_IMAGES, cb, userdata, ret);
}

static char *url_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *o = out;
        if (!out)
                return NULL;
        for (; *s; s++) {
                unsigned char ch = (unsigned char) *s;
                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || strchr("-._~", ch))
                        *o++ = (char) ch;
                else {
                        *o++ = '%';
                        *o++ = hex[ch >> 4];
                        *o++ = hex[ch & 15];
                }
        }
        *o = '\0';
        return out;
}

int vmm_logs(VmmClient *c, const char *id, unsigned lines, const char *channel, vmm_done_cb cb, void *userdata, VmmCall **ret) {
        _cleanup_free_ char *eid = NULL;
        char *path = NULL;

        channel = channel ?: "serial";
        if (isempty(id) || (!streq(channel, "serial") && !streq(channel, "stdout") && !streq(channel, "stderr")))
                return -EINVAL;
        eid = url_escape(id);
        if (!eid || asprintf(&path, "/logs?id=%s&follow=false&ansi=false&lines=%u&ch=%s", eid, lines, channel) < 0)
                return -ENOMEM;
        return call_start(c, "logs", REPLY_TEXT, NULL, path, cb, userdata, ret);
}

int vmm_logs_follow(VmmClient *c, const char *id, unsigned lines, const char *channel, vmm_data_cb data,
                    vmm_done_cb done, void *userdata, VmmCall **ret) {
        _cleanup_free_ char *eid = NULL;
        char *path = NULL;
        VmmCall *call = NULL;

        channel = channel ?: "serial";
        if (!data || !done || isempty(id) || (!streq(channel, "serial") && !streq(channel, "stdout") && !streq(channel, "stderr")))
                return -EINVAL;
        eid = url_escape(id);
        if (!eid || asprintf(&path, "/logs?id=%s&follow=true&ansi=false&lines=%u&ch=%s", eid, lines, channel) < 0)
                return -ENOMEM;
        /* Like call_start, but on_data must be set before the call is sent. */
        call = calloc(1, sizeof *call);
        if (!call) {
                free(path);
                return -ENOMEM;
        }
        *call = (VmmCall) { .client = c, .method = "logs", .kind = REPLY_TEXT, .path = path, .cb = done,
                            .on_data = data, .userdata = userdata };
        call->next = c->calls;
        if (call->next)
                call->next->prev = call;
        c->calls = call;
        int r = call_send(call);
        if (r < 0) {
                call_unlink_free(call);
                return r;
        }
        if (ret)
                *ret = call;
        return 0;
}

void vmm_result_take_status(const VmmResult *res, VmmStatusReply *ret) {
        /* The reply lives in the call's Replies until the callback returns; a
         * zeroed one frees nothing there. */
        VmmStatusReply *st = (VmmStatusReply *) res->status;
        *ret = *st;
        memset(st, 0, sizeof *st);
}
