/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <signal.h>
#include <sys/stat.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "clients/platform-api.h"
#include "core/fileio.h"
#include "core/gates.h"
#include "shared/log.h"
#include "shared/macro.h"

#define ROUND_LOCK_READ_MAX (64u * 1024u)
#define VALIDATION_API_TIMEOUT_USEC (10 * USEC_PER_SEC)

static const char *const gate_names[_GATE_MAX] = {
        [GATE_ROUND_LOCK] = "round-lock",
        [GATE_VALIDATION_API] = "validation-api",
        [GATE_VM_OPERATION] = "vm-operation",
};

const char *gate_kind_to_string(GateKind k) {
        return k < _GATE_MAX ? gate_names[k] : NULL;
}

/* The pid a lockfile names in its JSON ({"pid": 1234, ...}), 0 if none. */
static pid_t lock_pid(const char *path) {
        g_autofree char *data = NULL;
        size_t len;
        if (read_file_limited(path, ROUND_LOCK_READ_MAX, &data, &len) < 0 || len == 0)
                return 0;
        g_autoptr(JsonParser) p = json_parser_new();
        if (memchr(data, 0, len) || !json_parser_load_from_data(p, data, (gssize) len, NULL))
                return 0;
        JsonNode *root = json_parser_get_root(p);
        if (!root || !JSON_NODE_HOLDS_OBJECT(root))
                return 0;
        JsonNode *n = json_object_get_member(json_node_get_object(root), "pid");
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return 0;
        gint64 pid = json_node_get_int(n);
        return pid > 0 && pid < INT32_MAX ? (pid_t) pid : 0;
}

static bool pid_alive(pid_t pid) {
        if (kill(pid, 0) < 0 && errno == ESRCH)
                return false;
        /* A zombie is gone for our purposes. */
        g_autofree char *stat_path = g_strdup_printf("/proc/%d/stat", (int) pid);
        g_autofree char *text = NULL;
        if (!g_file_get_contents(stat_path, &text, NULL, NULL))
                return true;
        const char *p = strrchr(text, ')');
        return !(p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'));
}

RoundLockState round_lock_check(const char *path, uint64_t max_age_usec, uint64_t now_usec, char **ret_detail) {
        struct stat st;
        if (isempty(path) || stat(path, &st) < 0) {
                if (ret_detail)
                        *ret_detail = NULL;
                return ROUND_LOCK_ABSENT;
        }
        uint64_t mtime = (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC + (uint64_t) st.st_mtim.tv_nsec / 1000;
        uint64_t age = now_usec > mtime ? now_usec - mtime : 0;
        if (age > max_age_usec) {
                if (ret_detail)
                        *ret_detail = g_strdup_printf("%s is %llu s old (more than %llu s): stale", path,
                                                      (unsigned long long) (age / USEC_PER_SEC),
                                                      (unsigned long long) (max_age_usec / USEC_PER_SEC));
                return ROUND_LOCK_STALE;
        }
        pid_t pid = lock_pid(path);
        if (pid > 0 && !pid_alive(pid)) {
                if (ret_detail)
                        *ret_detail = g_strdup_printf("%s names pid %d, which is not running: stale", path, (int) pid);
                return ROUND_LOCK_STALE;
        }
        if (ret_detail)
                *ret_detail = pid > 0 ? g_strdup_printf("%s held by pid %d", path, (int) pid)
                                      : g_strdup_printf("%s present", path);
        return ROUND_LOCK_FRESH;
}

struct Gates {
        sd_event *event;
        HttpContext *http;
        PlatformApi *api;
        char *api_url;
        char *stale_logged;      /* the last stale lockfile reported, so it is logged once */
        GList *checks;
};

struct GateCheck {
        Gates *gates;
        char *closed[_GATE_MAX];
        bool unreachable_busy;
        PlatformCall *call;
        sd_event_source *defer;
        gates_done_cb cb;
        void *userdata;
};

int gates_new(sd_event *event, Gates **ret) {
        Gates *g = g_new0(Gates, 1);
        g->event = sd_event_ref(event);
        int r = http_context_new(event, &g->http);
        if (r < 0) {
                sd_event_unref(g->event);
                g_free(g);
                return r;
        }
        *ret = g;
        return 0;
}

static void check_free(GateCheck *c) {
        c->gates->checks = g_list_remove(c->gates->checks, c);
        if (c->call)
                platform_call_cancel(c->call);
        sd_event_source_disable_unref(c->defer);
        for (int i = 0; i < _GATE_MAX; i++)
                g_free(c->closed[i]);
        g_free(c);
}

void gates_free(Gates *g) {
        if (!g)
                return;
        while (g->checks)
                check_free(g->checks->data);
        if (g->api)
                platform_api_free(g->api);
        http_context_free(g->http);
        sd_event_unref(g->event);
        g_free(g->api_url);
        g_free(g->stale_logged);
        g_free(g);
}

void gate_check_cancel(GateCheck *c) {
        if (c)
                check_free(c);
}

static void finish(GateCheck *c) {
        gates_done_cb cb = c->cb;
        c->call = NULL;
        cb(c, c->closed, c->userdata);
        check_free(c);
}

static int on_defer(sd_event_source *s, void *userdata) {
        finish(userdata);
        return 0;
}

static void on_active(PlatformCall *call, const PlatformActiveResult *res, void *userdata) {
        GateCheck *c = userdata;
        c->call = NULL;
        if (res->error == 0) {
                if (res->active.n_active > 0)
                        c->closed[GATE_VALIDATION_API] = g_strdup(res->detail);
        } else {
                const char *what = res->error == -EBADMSG || res->error == -EINVAL ? "malformed reply" : "unreachable";
                if (c->unreachable_busy)
                        c->closed[GATE_VALIDATION_API] = g_strdup_printf("Validation API %s (%s); policy: busy", what,
                                                                         strempty(res->message));
                else
                        log_notice("Validation API %s (%s); policy says idle.", what, strempty(res->message));
        }
        finish(c);
}

static int ensure_api(Gates *g, const char *url) {
        if (g->api && streq_ptr(g->api_url, url))
                return 0;
        if (g->api)
                g->api = platform_api_free(g->api);
        int r = platform_api_new(g->http, url, &g->api);
        if (r < 0)
                return r;
        platform_api_set_timeout(g->api, VALIDATION_API_TIMEOUT_USEC);
        g_free(g->api_url);
        g->api_url = g_strdup(url);
        return 0;
}

int gates_evaluate(Gates *g, const LauncherConfig *cfg, Reconciler *reconciler, gates_done_cb cb, void *userdata,
                   GateCheck **ret) {
        GateCheck *c = g_new0(GateCheck, 1);
        c->gates = g;
        c->cb = cb;
        c->userdata = userdata;
        c->unreachable_busy = streq(cfg->updater_api_unreachable, "busy");
        g->checks = g_list_prepend(g->checks, c);

        g_autofree char *detail = NULL;
        uint64_t now = (uint64_t) g_get_real_time();
        switch (round_lock_check(cfg->updater_round_lock_file, cfg->updater_round_lock_max_age_usec, now, &detail)) {
        case ROUND_LOCK_FRESH:
                c->closed[GATE_ROUND_LOCK] = TAKE_PTR(detail);
                break;
        case ROUND_LOCK_STALE: {
                /* Logged once per lockfile (its path and mtime), not at every check. */
                struct stat st;
                g_autofree char *key = stat(cfg->updater_round_lock_file, &st) >= 0
                                               ? g_strdup_printf("%s@%lld.%ld", cfg->updater_round_lock_file,
                                                                 (long long) st.st_mtim.tv_sec, st.st_mtim.tv_nsec)
                                               : g_strdup(detail);
                if (!streq_ptr(g->stale_logged, key)) {
                        log_warning("Round lockfile %s; not deferring.", detail);
                        g_free(g->stale_logged);
                        g->stale_logged = TAKE_PTR(key);
                }
                break;
        }
        case ROUND_LOCK_ABSENT:
                break;
        }

        if (reconciler && reconciler_busy(reconciler))
                c->closed[GATE_VM_OPERATION] = g_strdup("a VM operation is in progress");

        int r;
        if (!isempty(cfg->updater_validation_api_url)) {
                r = ensure_api(g, cfg->updater_validation_api_url);
                if (r >= 0)
                        r = platform_api_fetch_active(g->api, on_active, c, &c->call);
        } else
                r = sd_event_add_defer(g->event, &c->defer, on_defer, c);
        if (r < 0) {
                check_free(c);
                return r;
        }
        if (ret)
                *ret = c;
        return 0;
}
