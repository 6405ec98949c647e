/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "clients/platform-api.h"
#include "core/fileio.h"
#include "core/gates.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/round-lock.h"

#define VALIDATION_API_TIMEOUT_USEC (10 * USEC_PER_SEC)

static const char *const gate_names[_GATE_MAX] = {
        [GATE_ROUND_LOCK] = "round-lock",
        [GATE_VALIDATION_API] = "validation-api",
        [GATE_VM_OPERATION] = "vm-operation",
};

const char *gate_kind_to_string(GateKind k) {
        return k < _GATE_MAX ? gate_names[k] : NULL;
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

static const char *file_type_name(mode_t mode) {
        switch (mode & S_IFMT) {
        case S_IFIFO:
                return "a FIFO";
        case S_IFDIR:
                return "a directory";
        case S_IFSOCK:
                return "a socket";
        case S_IFCHR:
                return "a character device";
        case S_IFBLK:
                return "a block device";
        case S_IFLNK:
                return "a symbolic link";
        default:
                return "not a regular file";
        }
}

/* Anything at the path that is not a plain lockfile closes the gate, with the
 * reason naming it: the path is the validator's, not ours to interpret. */
static RoundLockState closed(char **ret_detail, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static RoundLockState closed(char **ret_detail, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        *ret_detail = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        return ROUND_LOCK_FRESH;
}

/* Opens what is at path without ever blocking (a FIFO, a device), following
 * no symbolic link and taking no controlling terminal. */
static RoundLockState lock_open(const char *path, int *ret_fd, struct stat *st, char **ret_detail) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
        if (fd < 0) {
                int e = errno;
                struct stat lst;
                if (e == ENOENT || e == ENOTDIR)
                        return ROUND_LOCK_ABSENT;
                if (lstat(path, &lst) >= 0 && !S_ISREG(lst.st_mode))
                        return closed(ret_detail, "round lockfile %s is %s, not a regular file", path,
                                      file_type_name(lst.st_mode));
                return closed(ret_detail, "round lockfile %s cannot be read: %s", path, g_strerror(e));
        }
        if (fstat(fd, st) < 0) {
                int e = errno;
                close(fd);
                return closed(ret_detail, "round lockfile %s cannot be read: %s", path, g_strerror(e));
        }
        if (!S_ISREG(st->st_mode)) {
                close(fd);
                return closed(ret_detail, "round lockfile %s is %s, not a regular file", path,
                              file_type_name(st->st_mode));
        }
        if ((uint64_t) st->st_size > ROUND_LOCK_FILE_MAX) {
                close(fd);
                return closed(ret_detail, "round lockfile %s is larger than %u bytes", path, ROUND_LOCK_FILE_MAX);
        }
        *ret_fd = fd;
        return ROUND_LOCK_ABSENT; /* opened: the caller decides */
}

RoundLockState round_lock_check(const char *path, uint64_t max_age_usec, uint64_t now_usec, char **ret_detail,
                                char **ret_key) {
        g_autofree char *detail = NULL;
        _cleanup_close_ int fd = -1;
        struct stat st;

        *ret_detail = NULL;
        if (ret_key)
                *ret_key = NULL;
        if (isempty(path))
                return ROUND_LOCK_ABSENT;
        RoundLockState s = lock_open(path, &fd, &st, &detail);
        if (fd < 0) {
                *ret_detail = TAKE_PTR(detail);
                return s;
        }

        if (ret_key)
                *ret_key = g_strdup_printf("%s@%llu:%llu@%lld.%ld", path, (unsigned long long) st.st_dev,
                                           (unsigned long long) st.st_ino, (long long) st.st_mtim.tv_sec,
                                           st.st_mtim.tv_nsec);
        uint64_t mtime = (uint64_t) st.st_mtim.tv_sec * USEC_PER_SEC + (uint64_t) st.st_mtim.tv_nsec / 1000;
        uint64_t age = now_usec > mtime ? now_usec - mtime : 0;
        if (age > max_age_usec) {
                *ret_detail = g_strdup_printf("%s is %llu s old (more than %llu s): stale", path,
                                              (unsigned long long) (age / USEC_PER_SEC),
                                              (unsigned long long) (max_age_usec / USEC_PER_SEC));
                return ROUND_LOCK_STALE;
        }

        g_autofree char *data = NULL;
        size_t len = 0;
        int r = read_fd_limited(fd, ROUND_LOCK_FILE_MAX, &data, &len);
        if (r == -EFBIG) /* it grew while we read */
                return closed(ret_detail, "round lockfile %s is larger than %u bytes", path, ROUND_LOCK_FILE_MAX);
        pid_t pid = r < 0 ? 0 : round_lock_parse_pid(data, len);
        if (pid > 0 && !pid_alive(pid)) {
                *ret_detail = g_strdup_printf("%s names pid %d, which is not running: stale", path, (int) pid);
                return ROUND_LOCK_STALE;
        }
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

        g_autofree char *detail = NULL, *key = NULL;
        uint64_t now = (uint64_t) g_get_real_time();
        switch (round_lock_check(cfg->updater_round_lock_file, cfg->updater_round_lock_max_age_usec, now, &detail,
                                 &key)) {
        case ROUND_LOCK_FRESH:
                c->closed[GATE_ROUND_LOCK] = TAKE_PTR(detail);
                break;
        case ROUND_LOCK_STALE:
                /* Logged once per lockfile (its path, inode and mtime), not at every check. */
                if (!streq_ptr(g->stale_logged, key)) {
                        log_warning("Round lockfile %s; not deferring.", detail);
                        g_free(g->stale_logged);
                        g->stale_logged = TAKE_PTR(key);
                }
                break;
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
