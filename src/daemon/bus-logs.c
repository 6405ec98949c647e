/* SPDX-License-Identifier: Apache-2.0 */
/* Vm.GetLogs and Vm.FollowLogs: the VMM's log endpoint, from the daemon, so
 * platformctl never talks to the VMM itself. The log is text someone else
 * wrote: what reaches the bus or the pipe is valid UTF-8 (an invalid byte or
 * a NUL becomes U+FFFD, shared/log-lines.c).
 *
 * GetLogs: one VMM request per call, bounded per uid and in total, owned here
 * from start to answer; dropped (request cancelled) as soon as the caller
 * leaves the bus, answered "stopping" at shutdown.
 *
 * FollowLogs: the VMM's follow=true log stream, forwarded into a pipe whose
 * read end the caller holds (the way journald hands out fds). Nothing here
 * blocks the loop and nothing grows without bound: the write end is
 * non-blocking; what the reader has not taken yet waits in a buffer of at
 * most LOG_STREAM_BUFFER_MAX bytes, past which whole lines are dropped and a
 * marker line before the next line that fits says exactly how many. The
 * stream ends (pipe closed, everything freed) when the reader closes its end,
 * the VMM ends the stream, the VM goes away or the daemon stops. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "clients/vmm.h"
#include "daemon/manager.h"
#include "shared/bus-errors.h"
#include "shared/log-lines.h"
#include "shared/log.h"

#define LOG_STREAMS_MAX 16u
#define LOG_STREAMS_PER_UID_MAX 4u
#define LOG_STREAM_BUFFER_MAX (256u * 1024u)
/* Lines leave this much of the buffer to the markers and the last words. */
#define LOG_STREAM_RESERVE 1024u
#define LOG_REQUESTS_MAX 16u
#define LOG_REQUESTS_PER_UID_MAX 4u
#define LOG_ERROR_TEXT_MAX 512u
/* dstack vmm/src/main_routes.rs vm_logs (v0.5.5 and HEAD): with follow=true,
 * `yield format!("[vmm heartbeat]\n")` after 60 s without a new line. */
#define VMM_HEARTBEAT_LINE "[vmm heartbeat]"

typedef struct LogStream LogStream;
typedef struct LogRequest LogRequest;

struct LogStreams {
        HttpContext *http;
        LogStream *streams;
        unsigned n;
        LogRequest *requests;   /* GetLogs in flight */
        unsigned n_requests;
};

struct LogRequest {
        Manager *m;
        sd_bus_message *msg;    /* the call, answered once */
        sd_bus_track *caller;   /* its sender: gone, the request goes */
        uid_t uid;
        char *vm_name;
        VmmClient *vmm;         /* its own: a new VmmUrl does not cut it off */
        VmmCall *call;
        LogRequest *prev, *next;
};

struct LogStream {
        Manager *m;
        char *vm_name;
        char *vm_id;            /* the VM followed; a replacement has another */
        uid_t uid;
        int fd;                 /* write end, O_NONBLOCK */
        sd_event_source *io;    /* EPOLLOUT while out is not empty; EPOLLERR always */
        VmmClient *vmm;
        VmmCall *call;
        LogLines lines;         /* the VMM's bytes cut into valid UTF-8 lines */
        char *out;              /* waiting for the reader */
        size_t out_len, out_alloc;
        uint64_t dropped;       /* lines dropped since the last marker */
        bool vmm_done;          /* the VMM ended the stream: close once out is written */
        LogStream *prev, *next;
};

static void stream_free(LogStream *s) {
        LogStreams *ls = s->m->log_streams;
        if (s->prev)
                s->prev->next = s->next;
        else
                ls->streams = s->next;
        if (s->next)
                s->next->prev = s->prev;
        ls->n--;
        log_debug("Log stream of VM %s for uid %u closed; %u open.", s->vm_name, (unsigned) s->uid, ls->n);
        vmm_call_cancel(s->call); /* a no-op from inside its own callback */
        vmm_client_free(s->vmm);
        sd_event_source_disable_unref(s->io);
        if (s->fd >= 0)
                close(s->fd);
        free(s->out);
        free(s->vm_name);
        free(s->vm_id);
        free(s);
}

static bool fits(const LogStream *s, size_t n, size_t limit) {
        return s->out_len <= limit && n <= limit - s->out_len;
}

/* limit: LOG_STREAM_BUFFER_MAX - LOG_STREAM_RESERVE for lines, the whole buffer for our own words. */
static bool out_put(LogStream *s, const char *data, size_t n, size_t limit) {
        if (!fits(s, n, limit))
                return false;
        if (s->out_len + n > s->out_alloc) {
                size_t a = s->out_alloc ? s->out_alloc : 4096;
                while (a < s->out_len + n)
                        a *= 2;
                if (a > LOG_STREAM_BUFFER_MAX)
                        a = LOG_STREAM_BUFFER_MAX;
                char *b = realloc(s->out, a);
                if (!b)
                        return false;
                s->out = b;
                s->out_alloc = a;
        }
        memcpy(s->out + s->out_len, data, n);
        s->out_len += n;
        return true;
}

static int dropped_marker(const LogStream *s, char *buf, size_t size) {
        return snprintf(buf, size, "-- platform-launcherd: %" PRIu64 " %s dropped: the reader did not keep up --\n",
                        s->dropped, s->dropped == 1 ? "line" : "lines");
}

/* Says how many lines were dropped, if any, when it and `then` more bytes fit
 * under limit. */
static bool put_dropped_marker(LogStream *s, size_t then, size_t limit) {
        char marker[128];
        if (s->dropped == 0)
                return true;
        int k = dropped_marker(s, marker, sizeof marker);
        if (k < 0 || !fits(s, (size_t) k + then, limit))
                return false;
        (void) out_put(s, marker, (size_t) k, limit);
        s->dropped = 0;
        return true;
}

/* One line, with its '\n', valid UTF-8. The marker of a gap goes out only
 * together with the line after it, so it counts the whole gap. */
static void emit_line(const char *line, size_t n, void *userdata) {
        LogStream *s = userdata;
        const size_t limit = LOG_STREAM_BUFFER_MAX - LOG_STREAM_RESERVE;

        if (n == strlen(VMM_HEARTBEAT_LINE) + 1 && memcmp(line, VMM_HEARTBEAT_LINE "\n", n) == 0)
                return;
        if (!put_dropped_marker(s, n, limit) || !out_put(s, line, n, limit))
                s->dropped++;
}

/* Our last words on a stream (the count of a last gap first): they use the reserve. */
static void put_last_words(LogStream *s, const char *text) {
        (void) put_dropped_marker(s, 0, LOG_STREAM_BUFFER_MAX);
        if (text)
                (void) out_put(s, text, strlen(text), LOG_STREAM_BUFFER_MAX);
}

/* Writes what the pipe takes. < 0: the reader is gone. > 0: all done. */
static int stream_flush(LogStream *s) {
        while (s->out_len > 0) {
                ssize_t k = write(s->fd, s->out, s->out_len);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return -errno;
                }
                memmove(s->out, s->out + k, s->out_len - (size_t) k);
                s->out_len -= (size_t) k;
        }
        int q = sd_event_source_set_io_events(s->io, s->out_len > 0 ? EPOLLOUT : 0);
        if (q < 0)
                return q;
        return s->vmm_done && s->out_len == 0;
}

static int on_vmm_data(VmmCall *call, const void *data, size_t size, void *userdata) {
        LogStream *s = userdata;
        log_lines_feed(&s->lines, data, size, emit_line, s);
        /* Freeing the stream from inside libcurl's write callback is not
         * allowed: end the transfer, the done callback frees it. */
        return stream_flush(s) < 0 ? -EPIPE : 0;
}

static void on_vmm_done(VmmCall *call, const VmmResult *res, void *userdata) {
        LogStream *s = userdata;

        s->call = NULL;
        if (res->error == -ECANCELED) { /* on_vmm_data gave up: the reader is gone */
                stream_free(s);
                return;
        }
        log_lines_finish(&s->lines, emit_line, s); /* the last line had no '\n' */
        g_autofree char *t = NULL;
        if (res->error < 0) {
                g_autofree char *why = log_text_make_valid(strempty(res->message), strlen(strempty(res->message)));
                t = g_strdup_printf("-- platform-launcherd: the VMM log stream failed: %.256s --\n", why);
                log_debug("Log stream of VM %s: %s", s->vm_name, why);
        }
        put_last_words(s, t);
        s->vmm_done = true;
        if (stream_flush(s) != 0)
                stream_free(s);
}

static int on_pipe_io(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        LogStream *s = userdata;
        if (revents & (EPOLLERR | EPOLLHUP)) { /* the reader closed its end */
                stream_free(s);
                return 0;
        }
        if (stream_flush(s) != 0)
                stream_free(s);
        return 0;
}

static int log_streams_get(Manager *m, LogStreams **ret) {
        if (!m->log_streams) {
                /* A reader may close its end between our poll and our write:
                 * that must be EPIPE, not SIGPIPE killing the daemon (systemd
                 * units ignore SIGPIPE by default; a daemon run by hand not). */
                struct sigaction sa = { .sa_handler = SIG_IGN };
                if (sigaction(SIGPIPE, &sa, NULL) < 0)
                        return -errno;
                LogStreams *ls = calloc(1, sizeof *ls);
                if (!ls)
                        return -ENOMEM;
                int q = http_context_new(m->event, &ls->http);
                if (q < 0) {
                        free(ls);
                        return q;
                }
                m->log_streams = ls;
        }
        *ret = m->log_streams;
        return 0;
}

/* LimitsExceeded when all callers together, or this caller's uid, hold as
 * many as allowed: "Too many log streams open for this user (at most 4)." */
static int check_limits(unsigned n, unsigned max, unsigned mine, unsigned max_uid, const char *what,
                        sd_bus_error *error) {
        if (n >= max)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED, "Too many %s (at most %u).", what, max);
        if (mine >= max_uid)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED, "Too many %s for this user (at most %u).",
                                         what, max_uid);
        return 0;
}

int bus_logs_follow(Manager *m, const Vm *vm, uid_t uid, const char *channel, unsigned lines, int *ret_fd,
                    sd_bus_error *error) {
        LogStreams *ls;
        int q;

        if (isempty(vm->id))
                return sd_bus_error_setf(error, LAUNCHER_ERROR_NOT_FOUND, "VM %s does not exist at the VMM.", vm->name);
        q = log_streams_get(m, &ls);
        if (q < 0)
                return q;
        unsigned mine = 0;
        for (LogStream *s = ls->streams; s; s = s->next)
                mine += s->uid == uid;
        q = check_limits(ls->n, LOG_STREAMS_MAX, mine, LOG_STREAMS_PER_UID_MAX, "log streams open", error);
        if (q < 0)
                return q;

        /* Only our end is non-blocking (the flag belongs to each end's open
         * file description): the reader gets an ordinary blocking fd. */
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        if (fcntl(fds[1], F_SETFL, O_NONBLOCK) < 0) {
                q = -errno;
                close(fds[0]);
                close(fds[1]);
                return q;
        }
        LogStream *s = calloc(1, sizeof *s);
        if (!s) {
                close(fds[0]);
                close(fds[1]);
                return -ENOMEM;
        }
        s->m = m;
        s->uid = uid;
        s->fd = fds[1];
        s->vm_name = strdup(vm->name);
        s->vm_id = strdup(vm->id);
        s->next = ls->streams;
        if (s->next)
                s->next->prev = s;
        ls->streams = s;
        ls->n++;
        q = s->vm_name && s->vm_id ? 0 : -ENOMEM;
        if (q >= 0)
                q = sd_event_add_io(m->event, &s->io, s->fd, 0, on_pipe_io, s);
        if (q >= 0)
                q = vmm_client_new(ls->http, settings_store_vmm_url(m->settings), &s->vmm);
        if (q >= 0)
                q = vmm_logs_follow(s->vmm, vm->id, lines, channel, on_vmm_data, on_vmm_done, s, &s->call);
        if (q < 0) {
                close(fds[0]);
                stream_free(s);
                return q;
        }
        log_debug("Log stream of VM %s (%s) for uid %u opened; %u open.", vm->name, channel, (unsigned) uid, ls->n);
        *ret_fd = fds[0];
        return 0;
}

/* ---- GetLogs ---- */

static void request_free(LogRequest *r) {
        LogStreams *ls = r->m->log_streams;
        if (r->prev)
                r->prev->next = r->next;
        else
                ls->requests = r->next;
        if (r->next)
                r->next->prev = r->prev;
        ls->n_requests--;
        vmm_call_cancel(r->call); /* a no-op from inside its own callback */
        vmm_client_free(r->vmm);
        sd_bus_track_unref(r->caller);
        sd_bus_message_unref(r->msg);
        free(r->vm_name);
        free(r);
}

static void request_reply_error(LogRequest *r, const char *name, const char *message) {
        g_autofree char *valid = log_text_make_valid(message, strnlen(message, LOG_ERROR_TEXT_MAX));
        int q = sd_bus_reply_method_errorf(r->msg, name, "%s", valid);
        if (q < 0)
                log_debug_errno(q, "Cannot answer GetLogs: %m");
}

static void on_get_logs_done(VmmCall *call, const VmmResult *res, void *userdata) {
        LogRequest *r = userdata;
        int q;

        r->call = NULL;
        if (res->error < 0) {
                const char *name = res->kind == VMM_ERROR_TRANSPORT || res->kind == VMM_ERROR_AUTH ||
                                                   res->kind == VMM_ERROR_HTTP
                                           ? LAUNCHER_ERROR_VMM_UNAVAILABLE
                                           : LAUNCHER_ERROR_FAILED;
                request_reply_error(r, name, strempty(res->message));
        } else {
                /* sd-bus refuses an "s" that is not UTF-8: the caller would never hear back. */
                g_autofree char *text = log_text_make_valid(strempty(res->text), res->text ? res->text_len : 0);
                q = sd_bus_reply_method_return(r->msg, "s", text);
                if (q < 0)
                        log_debug_errno(q, "Cannot answer GetLogs: %m");
        }
        request_free(r);
}

static int on_caller_gone(sd_bus_track *t, void *userdata) {
        LogRequest *r = userdata;
        log_debug("GetLogs caller of VM %s left; its VMM request is cancelled.", r->vm_name);
        request_free(r);
        return 1;
}

int bus_logs_get(Manager *m, const Vm *vm, sd_bus_message *msg, uid_t uid, const char *channel, unsigned lines,
                 sd_bus_error *error) {
        LogStreams *ls;
        int q;

        if (isempty(vm->id))
                return sd_bus_error_setf(error, LAUNCHER_ERROR_NOT_FOUND, "VM %s does not exist at the VMM.", vm->name);
        q = log_streams_get(m, &ls);
        if (q < 0)
                return q;
        unsigned mine = 0;
        for (LogRequest *r = ls->requests; r; r = r->next)
                mine += r->uid == uid;
        q = check_limits(ls->n_requests, LOG_REQUESTS_MAX, mine, LOG_REQUESTS_PER_UID_MAX, "GetLogs calls in flight",
                         error);
        if (q < 0)
                return q;

        LogRequest *r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->m = m;
        r->uid = uid;
        r->msg = sd_bus_message_ref(msg);
        r->vm_name = strdup(vm->name);
        r->next = ls->requests;
        if (r->next)
                r->next->prev = r;
        ls->requests = r;
        ls->n_requests++;
        q = r->vm_name ? 0 : -ENOMEM;
        if (q >= 0)
                q = sd_bus_track_new(sd_bus_message_get_bus(msg), &r->caller, on_caller_gone, r);
        if (q >= 0)
                q = sd_bus_track_add_sender(r->caller, msg);
        if (q >= 0)
                q = vmm_client_new(ls->http, settings_store_vmm_url(m->settings), &r->vmm);
        if (q >= 0)
                q = vmm_logs(r->vmm, vm->id, lines, channel, on_get_logs_done, r, &r->call);
        if (q < 0) {
                request_free(r);
                return q;
        }
        return 1; /* answered by on_get_logs_done */
}

void bus_logs_vm_removed(Manager *m, const char *vm_name) {
        if (!m->log_streams)
                return;
        for (LogStream *s = m->log_streams->streams, *next; s; s = next) {
                next = s->next;
                if (streq(s->vm_name, vm_name))
                        stream_free(s);
        }
}

void bus_logs_vm_id_changed(Manager *m, const Vm *vm) {
        if (!m->log_streams)
                return;
        for (LogStream *s = m->log_streams->streams, *next; s; s = next) {
                next = s->next;
                if (!streq(s->vm_name, vm->name) || streq(s->vm_id, strempty(vm->id)) || s->vmm_done)
                        continue;
                /* The log followed belongs to the VM that was replaced. */
                vmm_call_cancel(s->call);
                s->call = NULL;
                g_autofree char *t = isempty(vm->id)
                        ? g_strdup_printf("-- platform-launcherd: VM %s (id %s) went away --\n", s->vm_name, s->vm_id)
                        : g_strdup_printf("-- platform-launcherd: VM %s was replaced (new id %s); follow again --\n",
                                          s->vm_name, vm->id);
                put_last_words(s, t);
                s->vmm_done = true;
                if (stream_flush(s) != 0)
                        stream_free(s);
        }
}

void bus_logs_shutdown(Manager *m) {
        LogStreams *ls = m->log_streams;
        if (!ls)
                return;
        while (ls->streams)
                stream_free(ls->streams);
        while (ls->requests) {
                request_reply_error(ls->requests, SD_BUS_ERROR_NO_REPLY, "platform-launcherd is stopping; GetLogs did not finish.");
                request_free(ls->requests);
        }
        http_context_free(ls->http);
        free(ls);
        m->log_streams = NULL;
}
