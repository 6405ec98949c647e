/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "clients/step-output.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/text.h"

#define FINISH_SLICES 4u        /* the last read after the step ended: at most this many slices */
#define READ_WINDOW_USEC (100 * USEC_PER_MSEC)
#define READ_WINDOW_BYTES (STEP_OUTPUT_BYTES_PER_SEC / 10u)

typedef struct Stream {
        int fd;
        sd_event_source *source;
        GString *line;
        uint64_t bytes;
} Stream;

struct StepOutput {
        sd_event *event;
        char *name;
        char *field;            /* PLATFORM_LAUNCHER_STEP=<name> */
        bool quiet;
        Stream stream[2];       /* stdout, stderr */
        GByteArray *tail;       /* the last STEP_OUTPUT_TAIL_MAX bytes of both, in arrival order */
        GByteArray *data;       /* the first STEP_OUTPUT_DATA_MAX bytes of stdout */
        char *buf;              /* one slice */
        /* reading: at most READ_WINDOW_BYTES per READ_WINDOW_USEC */
        uint64_t read_window_usec;
        size_t read_window_bytes;
        sd_event_source *resume;
        /* log lines: at most STEP_OUTPUT_LINES_PER_SEC per second */
        uint64_t window_usec;
        unsigned window_lines;
        uint64_t suppressed;
        char *tail_text, *data_text;
        step_output_eof_cb cb;
        void *userdata;
};

char *step_text_sanitize(const char *s, size_t len, size_t max) {
        return text_sanitize(s, len, max, 0);
}

static bool line_allowed(StepOutput *o) {
        uint64_t now = 0;
        (void) sd_event_now(o->event, CLOCK_MONOTONIC, &now);
        if (now - o->window_usec >= USEC_PER_SEC) {
                if (o->suppressed > 0)
                        log_full_field(o->quiet ? LOG_DEBUG : LOG_NOTICE, o->field,
                                       "%s: %llu lines not logged (output faster than %u lines/s).", o->name,
                                       (unsigned long long) o->suppressed, STEP_OUTPUT_LINES_PER_SEC);
                o->window_usec = now;
                o->window_lines = 0;
                o->suppressed = 0;
        }
        if (o->window_lines < STEP_OUTPUT_LINES_PER_SEC) {
                o->window_lines++;
                return true;
        }
        o->suppressed++;
        return false;
}

static void emit_line(StepOutput *o, int i) {
        GString *l = o->stream[i].line;
        if (line_allowed(o)) {
                g_autofree char *text = step_text_sanitize(l->str, l->len, STEP_LINE_MAX + 3);
                int level = o->quiet ? LOG_DEBUG : (i ? LOG_NOTICE : LOG_INFO);
                log_full_field(level, o->field, "%s: %s", o->name, text);
        }
        g_string_truncate(l, 0);
}

static void keep_bounded(GByteArray *a, size_t max, const char *s, size_t n) {
        if (n >= max) {
                g_byte_array_set_size(a, 0);
                g_byte_array_append(a, (const guint8 *) s + n - max, (guint) max);
                return;
        }
        g_byte_array_append(a, (const guint8 *) s, (guint) n);
        if (a->len > 2 * max) /* amortized: trim once it holds twice the bound */
                g_byte_array_remove_range(a, 0, a->len - max);
}

static void feed(StepOutput *o, int i, const char *buf, size_t n) {
        Stream *st = &o->stream[i];
        st->bytes += n;
        keep_bounded(o->tail, STEP_OUTPUT_TAIL_MAX, buf, n);
        if (i == 0 && o->data->len < STEP_OUTPUT_DATA_MAX)
                g_byte_array_append(o->data, (const guint8 *) buf, (guint) MIN(n, STEP_OUTPUT_DATA_MAX - o->data->len));
        const char *p = buf, *end = buf + n;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t) (end - p));
                size_t seg = (size_t) ((nl ? nl : end) - p);
                size_t room = STEP_LINE_MAX - st->line->len;
                if (seg >= room) {
                        /* a piece of a long line: logged as it fills */
                        g_string_append_len(st->line, p, (gssize) room);
                        emit_line(o, i);
                        p += room;
                        continue;
                }
                g_string_append_len(st->line, p, (gssize) seg);
                p += seg;
                if (nl) {
                        emit_line(o, i);
                        p++;
                }
        }
}

static void close_stream(StepOutput *o, int i) {
        Stream *st = &o->stream[i];
        if (st->fd < 0)
                return;
        if (st->line->len > 0)
                emit_line(o, i);
        st->source = sd_event_source_disable_unref(st->source);
        close(st->fd);
        st->fd = -1;
}

/* One read of at most a slice. Returns false at EOF or error. */
static bool read_slice(StepOutput *o, int i) {
        ssize_t n = read(o->stream[i].fd, o->buf, STEP_OUTPUT_SLICE);
        if (n > 0) {
                feed(o, i, o->buf, (size_t) n);
                return true;
        }
        return n < 0 && (errno == EAGAIN || errno == EINTR);
}

static void set_reading(StepOutput *o, int enabled) {
        for (int i = 0; i < 2; i++)
                if (o->stream[i].source)
                        (void) sd_event_source_set_enabled(o->stream[i].source, enabled);
}

static int on_resume(sd_event_source *s, uint64_t usec, void *userdata) {
        StepOutput *o = userdata;
        o->resume = sd_event_source_disable_unref(o->resume);
        set_reading(o, SD_EVENT_ON);
        return 0;
}

/* A child printing faster than anyone reads is slowed down, not us: past the
 * window's budget the pipes rest until the next window (it blocks on write). */
static void account(StepOutput *o, size_t n) {
        uint64_t now = 0;
        (void) sd_event_now(o->event, CLOCK_MONOTONIC, &now);
        if (now - o->read_window_usec >= READ_WINDOW_USEC) {
                o->read_window_usec = now;
                o->read_window_bytes = 0;
        }
        o->read_window_bytes += n;
        if (o->read_window_bytes < READ_WINDOW_BYTES || o->resume)
                return;
        if (sd_event_add_time(o->event, &o->resume, CLOCK_MONOTONIC, o->read_window_usec + READ_WINDOW_USEC,
                              10 * USEC_PER_MSEC, on_resume, o) >= 0)
                set_reading(o, SD_EVENT_OFF);
}

static int on_readable(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        StepOutput *o = userdata;
        int i = s == o->stream[0].source ? 0 : 1;
        ssize_t before = (ssize_t) o->stream[i].bytes;
        if (read_slice(o, i)) {
                account(o, (size_t) ((ssize_t) o->stream[i].bytes - before));
                return 0;
        }
        close_stream(o, i);
        if (step_output_eof(o) && o->cb)
                o->cb(o, o->userdata);
        return 0;
}

bool step_output_eof(const StepOutput *o) {
        return o->stream[0].fd < 0 && o->stream[1].fd < 0;
}

void step_output_finish(StepOutput *o) {
        o->resume = sd_event_source_disable_unref(o->resume);
        for (int i = 0; i < 2; i++) {
                for (unsigned k = 0; o->stream[i].fd >= 0 && k < FINISH_SLICES; k++) {
                        ssize_t n = read(o->stream[i].fd, o->buf, STEP_OUTPUT_SLICE);
                        if (n <= 0 && !(n < 0 && errno == EINTR))
                                break;
                        if (n > 0)
                                feed(o, i, o->buf, (size_t) n);
                }
                close_stream(o, i);
        }
        if (o->suppressed > 0) {
                log_full_field(o->quiet ? LOG_DEBUG : LOG_NOTICE, o->field,
                               "%s: %llu lines not logged (output faster than %u lines/s).", o->name,
                               (unsigned long long) o->suppressed, STEP_OUTPUT_LINES_PER_SEC);
                o->suppressed = 0;
        }
}

void step_output_fill(StepOutput *o, StepResult *res) {
        g_free(o->tail_text);
        g_free(o->data_text);
        const char *t = (const char *) o->tail->data;
        size_t n = o->tail->len;
        if (n > STEP_OUTPUT_TAIL_MAX) {
                t += n - STEP_OUTPUT_TAIL_MAX;
                n = STEP_OUTPUT_TAIL_MAX;
        }
        /* a tail cut inside a character starts at the next one */
        while (n > 0 && (o->stream[0].bytes + o->stream[1].bytes > n) && ((unsigned char) *t & 0xc0) == 0x80) {
                t++;
                n--;
        }
        /* Invalid bytes grow into U+FFFD (3 bytes): bounded all the same. */
        o->tail_text = step_text_sanitize(t, n, 3 * STEP_OUTPUT_TAIL_MAX);
        o->data_text = step_text_sanitize((const char *) o->data->data, o->data->len, 3 * STEP_OUTPUT_DATA_MAX);
        res->output = o->tail_text;
        res->data = o->data_text;
        res->output_bytes = o->stream[0].bytes + o->stream[1].bytes;
}

void step_output_free(StepOutput *o) {
        if (!o)
                return;
        for (int i = 0; i < 2; i++) {
                o->stream[i].source = sd_event_source_disable_unref(o->stream[i].source);
                if (o->stream[i].fd >= 0)
                        close(o->stream[i].fd);
                g_string_free(o->stream[i].line, TRUE);
        }
        o->resume = sd_event_source_disable_unref(o->resume);
        g_byte_array_unref(o->tail);
        g_byte_array_unref(o->data);
        sd_event_unref(o->event);
        g_free(o->buf);
        g_free(o->name);
        g_free(o->field);
        g_free(o->tail_text);
        g_free(o->data_text);
        g_free(o);
}

int step_output_new(sd_event *event, const char *name, bool quiet, int out_fd, int err_fd, step_output_eof_cb cb,
                    void *userdata, StepOutput **ret) {
        StepOutput *o = g_new0(StepOutput, 1);
        o->event = sd_event_ref(event);
        o->name = g_strdup(name);
        o->field = g_strdup_printf("PLATFORM_LAUNCHER_STEP=%s", name);
        o->quiet = quiet;
        o->tail = g_byte_array_new();
        o->data = g_byte_array_new();
        o->buf = g_malloc(STEP_OUTPUT_SLICE);
        o->cb = cb;
        o->userdata = userdata;
        o->stream[0].fd = out_fd;
        o->stream[1].fd = err_fd;
        int r = 0;
        for (int i = 0; i < 2; i++) {
                o->stream[i].line = g_string_new(NULL);
                if (r < 0)
                        continue;
                (void) fcntl(o->stream[i].fd, F_SETFL, fcntl(o->stream[i].fd, F_GETFL) | O_NONBLOCK);
                r = sd_event_add_io(event, &o->stream[i].source, o->stream[i].fd, EPOLLIN, on_readable, o);
                /* Bus calls and timers (the step's own timeout) go before a flood of output. */
                if (r >= 0)
                        r = sd_event_source_set_priority(o->stream[i].source, SD_EVENT_PRIORITY_IDLE);
        }
        if (r < 0) {
                step_output_free(o);
                return r;
        }
        *ret = o;
        return 0;
}
