/* SPDX-License-Identifier: Apache-2.0 */
/* Where a VM's spec comes from: a document in the Platform API's spec format,
 * fetched with conditional requests, or read from a file when it changed; the
 * last good one is kept (in memory and in spec.json) and stays what is wanted
 * while the source fails. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "core/source.h"
#include "core/clock.h"
#include "core/state.h"
#include "core/vm.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/vm-decl.h"
#include "core/fileio.h"

Source *source_new(const char *url, const char *state_dir, bool is_api) {
        Source *s = g_new0(Source, 1);
        s->url = g_strdup(url);
        s->is_api = is_api;
        s->state_dir = g_strdup(state_dir);
        return s;
}

void source_free(Source *s) {
        if (!s)
                return;
        source_cancel(s);
        platform_api_free(s->api);
        platform_vm_spec_free(s->spec);
        g_free(s->url);
        g_free(s->api_url);
        g_free(s->state_dir);
        g_free(s->spec_error);
        g_free(s->fetch_error);
        g_free(s->spec_digest);
        g_free(s);
}

int source_set_url(Source *s, HttpContext *http, const char *url) {
        if (vm_source_file_path(url) || (s->api && streq(s->api_url, url))) {
                if (!streq(s->url, url)) {
                        g_free(s->url);
                        s->url = g_strdup(url);
                        s->stamp = (SourceFileStamp) {};
                }
                return 0;
        }
        PlatformApi *a = NULL;
        int q = platform_api_new(http, url, &a);
        if (q >= 0)
                q = platform_api_set_spec_url(a, url);
        if (q < 0) {
                platform_api_free(a);
                return q;
        }
        source_cancel(s);
        platform_api_free(s->api);
        s->api = a;
        g_free(s->api_url);
        s->api_url = g_strdup(url);
        g_free(s->url);
        s->url = g_strdup(url);
        return 0;
}

/* No write per poll against a source without validators. */
static void keep(Source *s, const char *data, size_t len) {
        if (!data)
                return;
        g_autofree char *digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *) data, len);
        if (streq_ptr(digest, s->spec_digest))
                return;
        int q = state_spec_save(s->state_dir, data, len);
        if (q < 0)
                return (void) log_warning_errno(q, "Cannot keep the spec in %s: %m", s->state_dir);
        g_free(s->spec_digest);
        s->spec_digest = g_steal_pointer(&digest);
}

int source_load_kept(Source *s, char **ret_error) {
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int q = state_spec_load(s->state_dir, API_DOC_MAX, &data, &len);
        if (q >= 0)
                q = platform_vm_spec_parse(data, len, &s->spec, ret_error);
        if (q < 0)
                return q;
        s->spec_digest = g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *) data, len);
        return 0;
}

static void fetch_failed(Source *s, const char *message) {
        g_autofree char *b = text_bound(message);
        if (!s->fetch_failed_usec)
                s->fetch_failed_usec = clock_usec(CLOCK_MONOTONIC);
        g_free(s->fetch_error);
        s->fetch_error = s->is_api ? g_strdup_printf("Platform API unreachable: %s", b)
                                   : g_strdup_printf("spec source %s unreachable: %s", s->url, b);
}

static void fetched(Source *s) {
        s->fetched_usec = clock_usec(CLOCK_MONOTONIC);
        s->fetch_failed_usec = 0;
        g_clear_pointer(&s->fetch_error, g_free);
}

static FetchOutcome invalid(Source *s, const char *message) {
        g_free(s->spec_error);
        s->spec_error = text_bound(message);
        return FETCH_INVALID;
}

static FetchOutcome take(Source *s, PlatformSpecResult *res) {
        if (res->error == -EINVAL)
                return invalid(s, res->message);
        if (res->error < 0) {
                fetch_failed(s, res->message);
                return FETCH_UNREACHABLE;
        }
        fetched(s);
        if (!res->unchanged) {
                platform_vm_spec_free(s->spec);
                s->spec = g_steal_pointer(&res->spec);
                g_clear_pointer(&s->spec_error, g_free);
                keep(s, res->body, res->body_len);
                return FETCH_NEW;
        }
        if (s->spec) {
                /* 304 against the validators of the last good document: that one is back. */
                g_clear_pointer(&s->spec_error, g_free);
                return FETCH_SAME;
        }
        /* A 304 with no good document to be "not modified" from: there is still
         * no spec, and the next request asks for the whole document. */
        platform_api_forget_validators(s->api);
        s->fetch_error = g_strdup("the Platform API answered 304 Not Modified, but no valid document was ever "
                                  "received");
        return FETCH_SAME;
}

static void on_spec(PlatformCall *call, PlatformSpecResult *res, void *userdata) {
        Source *s = userdata;
        s->call = NULL;
        s->cb(s, take(s, res), s->cb_userdata);
}

/* ---- file:// ---- */

/* Root's, and writable by no one else; a directory may also be root's sticky
 * one (as /tmp): nobody else can replace an entry of root's in it. */
static char *stat_problem(const char *path, const struct stat *st, bool dir) {
        if (st->st_uid != 0)
                return g_strdup_printf("%s is owned by uid %u, not by root", path, (unsigned) st->st_uid);
        if ((st->st_mode & 022) && !(dir && (st->st_mode & S_ISVTX)))
                return g_strdup_printf("%s is writable by %s", path, st->st_mode & 002 ? "others" : "its group");
        return NULL;
}

static char *dirs_problem(const char *path) {
        g_autofree char *dir = g_path_get_dirname(path);
        for (;;) {
                struct stat st;
                if (stat(dir, &st) < 0)
                        return g_strdup_printf("cannot look at %s: %s", dir, strerror(errno));
                char *why = stat_problem(dir, &st, true);
                if (why || streq(dir, "/"))
                        return why;
                char *up = g_path_get_dirname(dir);
                g_free(dir);
                dir = up;
        }
}

/* Opens path for reading without following a last symlink or blocking on a FIFO. */
static int open_file(const char *path, struct stat *st, char **ret_error) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd < 0) {
                *ret_error = g_strdup_printf("cannot open %s: %s", path, strerror(errno));
                return -errno;
        }
        if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
                *ret_error = g_strdup_printf("%s is not a regular file", path);
                close(fd);
                return -EINVAL;
        }
        return fd;
}

char *source_file_problem(const char *path) {
        struct stat st;
        g_autofree char *why = NULL;
        int fd = open_file(path, &st, &why);
        if (fd < 0)
                return g_steal_pointer(&why);
        close(fd);
        if ((uint64_t) st.st_size > API_DOC_MAX)
                return g_strdup_printf("%s is larger than %u bytes", path, (unsigned) API_DOC_MAX);
        why = stat_problem(path, &st, false);
        return why ? g_steal_pointer(&why) : dirs_problem(path);
}

static SourceFileStamp stamp_of(const struct stat *st) {
        return (SourceFileStamp) {
                .dev = st->st_dev,
                .ino = st->st_ino,
                .size = (uint64_t) st->st_size,
                .mtime_nsec = (int64_t) st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec,
                .ctime_nsec = (int64_t) st->st_ctim.tv_sec * 1000000000 + st->st_ctim.tv_nsec,
        };
}

static FetchOutcome fetch_file(Source *s, const char *path) {
        struct stat st;
        g_autofree char *why = NULL;
        _cleanup_close_ int fd = open_file(path, &st, &why);
        if (fd == -ENOENT || fd == -EACCES || fd == -ELOOP) {
                fetch_failed(s, why);
                return FETCH_UNREACHABLE;
        }
        if (fd < 0)
                return invalid(s, why);
        SourceFileStamp stamp = stamp_of(&st);
        if (s->spec && memcmp(&stamp, &s->stamp, sizeof stamp) == 0) {
                /* Unchanged since the last good read (an owner or mode change moves ctime). */
                fetched(s);
                g_clear_pointer(&s->spec_error, g_free);
                return FETCH_SAME;
        }
        why = stat_problem(path, &st, false);
        if (!why)
                why = dirs_problem(path);
        if (why)
                return invalid(s, why);
        if ((uint64_t) st.st_size > API_DOC_MAX)
                return invalid(s, "the document is larger than 8 MiB");

        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        int q = read_fd_limited(fd, API_DOC_MAX, &data, &len);
        if (q < 0) {
                g_autofree char *m = g_strdup_printf("cannot read %s: %s", path, strerror(-q));
                fetch_failed(s, m);
                return FETCH_UNREACHABLE;
        }
        fetched(s);
        PlatformVmSpec *spec = NULL;
        g_autofree char *bad = NULL;
        if (platform_vm_spec_parse(data, len, &spec, &bad) < 0)
                return invalid(s, bad ?: "the document cannot be parsed");
        platform_vm_spec_free(s->spec);
        s->spec = spec;
        s->stamp = stamp;
        g_clear_pointer(&s->spec_error, g_free);
        keep(s, data, len);
        return FETCH_NEW;
}

int source_fetch(Source *s, HttpContext *http, source_cb cb, void *userdata) {
        const char *path = vm_source_file_path(s->url);
        if (path) {
                cb(s, fetch_file(s, path), userdata);
                return 0;
        }
        if (s->call)
                return -EBUSY;
        int q = source_set_url(s, http, s->url);
        if (q < 0)
                return q;
        s->cb = cb;
        s->cb_userdata = userdata;
        return platform_api_fetch_spec(s->api, on_spec, s, &s->call);
}

void source_cancel(Source *s) {
        if (!s->call)
                return;
        platform_call_cancel(s->call);
        s->call = NULL;
}

char *source_blocked_reason(const Source *s) {
        if (s->spec_error)
                return s->is_api ? g_strdup_printf("invalid spec from the Platform API: %s", s->spec_error)
                                 : g_strdup_printf("invalid spec from %s: %s", s->url, s->spec_error);
        if (!s->spec)
                return s->fetch_error ? g_strdup_printf("no spec yet: %s", s->fetch_error)
                                      : g_strdup("no spec fetched yet");
        return NULL;
}
