/* SPDX-License-Identifier: Apache-2.0 */
/* Vm.FollowLogs: the VMM's follow=true log stream, forwarded into a pipe whose
 * read end the caller holds (the way journald hands out fds). platformctl never
 * talks to the VMM itself.
 *
 * Nothing here blocks the loop and nothing grows without bound: the write end
 * is non-blocking; what the reader has not taken yet waits in a buffer of at
 * most LOG_STREAM_BUFFER_MAX bytes, past which whole lines are dropped and a
 * marker line says how many. The stream ends (pipe closed, everything freed)
 * when the reader closes its end, the VMM ends the stream, the VM goes away or
 * the daemon stops. */
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
#include "shared/log.h"

#define LOG_STREAMS_MAX 16u
#define LOG_STREAMS_PER_UID_MAX 4u
#define LOG_STREAM_BUFFER_MAX (256u * 1024u)
#define LOG_STREAM_LINE_MAX (16u * 1024u)
/* dstack vmm/src/main_routes.rs vm_logs (v0.5.5 and HEAD): with follow=true,
 * `yield format!("[vmm heartbeat]\n")` after 60 s without a new line. */
#define VMM_HEARTBEAT_LINE "[vmm heartbeat]"

typedef struct LogStream LogStream;

struct LogStreams {
        HttpContext *http;
        LogStream *streams;
        unsigned n;
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
        char line[LOG_STREAM_LINE_MAX]; /* a line not complete yet */
        size_t line_len;
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

static bool out_put(LogStream *s, const char *data, size_t n) {
        if (n > LOG_STREAM_BUFFER_MAX - s->out_len)
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

/* One line, with its '\n'. */
static void emit_line(LogStream *s, const char *line, size_t n) {
        if (n == strlen(VMM_HEARTBEAT_LINE) + 1 && memcmp(line, VMM_HEARTBEAT_LINE "\n", n) == 0)
                return;
        if (s->dropped > 0) {
                char marker[128];
                int k = snprintf(marker, sizeof marker,
                                 "-- platform-launcherd: %" PRIu64 " lines dropped: the reader did not keep up --\n",
                                 s->dropped);
                if (!out_put(s, marker, (size_t) k)) {
                        s->dropped++;
                        return;
                }
                s->dropped = 0;
        }
        if (!out_put(s, line, n))
                s->dropped++;
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
        const char *p = data, *end = p + size;

        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) + 1 : (size_t) (end - p);
                if (s->line_len + n > sizeof s->line) {
                        /* An overlong line goes out in pieces. */
                        size_t take = sizeof s->line - s->line_len;
                        memcpy(s->line + s->line_len, p, take);
                        emit_line(s, s->line, sizeof s->line);
                        s->line_len = 0;
                        p += take;
                        continue;
                }
                memcpy(s->line + s->line_len, p, n);
                s->line_len += n;
                p += n;
                if (nl) {
                        emit_line(s, s->line, s->line_len);
                        s->line_len = 0;
                }
        }
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
        if (s->line_len > 0) { /* the last line had no '\n' */
                if (s->line_len < sizeof s->line)
                        s->line[s->line_len++] = '\n';
                emit_line(s, s->line, s->line_len);
                s->line_len = 0;
        }
        if (res->error < 0) {
                g_autofree char *t = g_strdup_printf("-- platform-launcherd: the VMM log stream failed: %s --\n",
                                                     strempty(res->message));
                (void) out_put(s, t, strlen(t));
                log_debug("Log stream of VM %s: %s", s->vm_name, strempty(res->message));
        }
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

int bus_logs_follow(Manager *m, const Vm *vm, uid_t uid, const char *channel, unsigned lines, int *ret_fd,
                    sd_bus_error *error) {
        LogStreams *ls = m->log_streams;
        int q;

        if (isempty(vm->id))
                return sd_bus_error_setf(error, LAUNCHER_ERROR_NOT_FOUND, "VM %s does not exist at the VMM.", vm->name);
        if (!ls) {
                /* A reader may close its end between our poll and our write:
                 * that must be EPIPE, not SIGPIPE killing the daemon (systemd
                 * units ignore SIGPIPE by default; a daemon run by hand not). */
                struct sigaction sa = { .sa_handler = SIG_IGN };
                if (sigaction(SIGPIPE, &sa, NULL) < 0)
                        return -errno;
                ls = calloc(1, sizeof *ls);
                if (!ls)
                        return -ENOMEM;
                q = http_context_new(m->event, &ls->http);
                if (q < 0) {
                        free(ls);
                        return q;
                }
                m->log_streams = ls;
        }
        unsigned mine = 0;
        for (LogStream *s = ls->streams; s; s = s->next)
                mine += s->uid == uid;
        if (ls->n >= LOG_STREAMS_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "Too many log streams open (at most %u).", LOG_STREAMS_MAX);
        if (mine >= LOG_STREAMS_PER_UID_MAX)
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                         "Too many log streams open for this user (at most %u).",
                                         LOG_STREAMS_PER_UID_MAX);

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
                (void) out_put(s, t, strlen(t));
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
        http_context_free(ls->http);
        free(ls);
        m->log_streams = NULL;
}
