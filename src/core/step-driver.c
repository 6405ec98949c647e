/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <time.h>

#include <glib.h>

#include "core/step-driver.h"
#include "shared/log.h"
#include "shared/macro.h"

/* Most waits end quickly and every millisecond of a VM replacement is downtime
 * of the validator, so a check runs every 20 ms for the first 5 s of a step,
 * then the interval doubles up to 250 ms. */
#define POLL_MIN_USEC (20 * USEC_PER_MSEC)
#define POLL_MAX_USEC (250 * USEC_PER_MSEC)
#define POLL_FAST_USEC (5 * USEC_PER_SEC)

typedef enum Phase {
        PHASE_IDLE,
        PHASE_OUTSTANDING,  /* start, check or on_timeout runs; a report is due */
        PHASE_REPORTED,     /* the report is in; the deferred source acts on it */
        PHASE_WAITING,      /* the timer calls check next */
} Phase;

typedef enum Verdict {
        VERDICT_DONE,
        VERDICT_AGAIN,
        VERDICT_FAIL,
} Verdict;

/* One table being run: the outermost at frames[0], a loop's or a choice's
 * table above the frame whose step runs it. */
typedef struct Frame {
        const StepTable *table;
        size_t index;               /* the step running */
        size_t item;                /* a loop step: the item whose table runs above */
        bool compensating;          /* table is the on_fail of the table that failed here */
        int failed_code;            /* compensating: the failure that started it */
        char *failed_message;
} Frame;

struct StepDriver {
        sd_event *event;
        sd_event_source *defer;
        sd_event_source *timer;
        sd_event_source *progress_timer;

        Frame frames[STEP_DEPTH_MAX];
        size_t depth;               /* 0 = idle */
        StepDriverEvents events;
        void *userdata;
        Phase phase;
        bool begin_pending;         /* the deferred source enters the first step */

        uint64_t step_started;
        uint64_t deadline;          /* 0 = none */
        uint64_t poll_usec;

        Verdict verdict;
        int code;
        char *message;
};

static uint64_t now_mono(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static Frame *top(StepDriver *d) {
        return d->depth > 0 ? &d->frames[d->depth - 1] : NULL;
}

static const StepDef *step_of(const Frame *f) {
        return f && f->index < f->table->n_steps ? &f->table->steps[f->index] : NULL;
}

/* The leaf running (or the step being entered). */
static const StepDef *current(const StepDriver *d) {
        return d->depth > 0 ? step_of(&d->frames[d->depth - 1]) : NULL;
}

static void kick(StepDriver *d) {
        (void) sd_event_source_set_enabled(d->defer, SD_EVENT_ONESHOT);
}

static void stop_timers(StepDriver *d) {
        (void) sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(d->progress_timer, SD_EVENT_OFF);
}

static void arm_timer(StepDriver *d, uint64_t when) {
        (void) sd_event_source_set_time(d->timer, when);
        (void) sd_event_source_set_enabled(d->timer, SD_EVENT_ONESHOT);
}

static void frame_clear(Frame *f) {
        g_free(f->failed_message);
        *f = (Frame) {};
}

/* A table run by a loop or a choice ended. */
static void tell_table_done(StepDriver *d, const Frame *f, int code) {
        if (d->depth > 1 && !f->compensating && d->events.table_done)
                d->events.table_done(d, f->table, code, d->userdata);
}

static void unwind(StepDriver *d) {
        while (d->depth > 0)
                frame_clear(&d->frames[--d->depth]);
}

/* Ends the run. d may be freed by done(): nothing touches d afterwards. */
static void finish(StepDriver *d, int code, const char *message) {
        g_autofree char *msg = g_strdup(message);
        StepDriverEvents ev = d->events;
        void *ud = d->userdata;

        stop_timers(d);
        (void) sd_event_source_set_enabled(d->defer, SD_EVENT_OFF);
        unwind(d);
        d->phase = PHASE_IDLE;
        d->begin_pending = false;
        d->deadline = 0;
        g_clear_pointer(&d->message, g_free);
        if (ev.done)
                ev.done(d, code, msg, ud);
}

/* Calls a step function that must report exactly once. While it is
 * outstanding, the deadline timer watches it. */
static void invoke(StepDriver *d, void (*fn)(StepDriver *, void *)) {
        d->phase = PHASE_OUTSTANDING;
        if (d->deadline > 0)
                arm_timer(d, d->deadline);
        else
                (void) sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
        fn(d, d->userdata);
}

static void begin_leaf(StepDriver *d) {
        const StepDef *s = current(d);
        uint64_t now = now_mono(), t = s->timeout ? s->timeout(d->userdata) : 0;

        d->step_started = now;
        d->deadline = t > 0 ? now + t : 0;
        d->poll_usec = POLL_MIN_USEC;
        log_debug("%s: step %zu/%zu %s", top(d)->table->name, top(d)->index + 1, top(d)->table->n_steps, s->name);
        if (d->deadline > 0) {
                (void) sd_event_source_set_time(d->progress_timer, now + USEC_PER_SEC);
                (void) sd_event_source_set_enabled(d->progress_timer, SD_EVENT_ON);
        } else
                (void) sd_event_source_set_enabled(d->progress_timer, SD_EVENT_OFF);
        if (d->events.progress)
                d->events.progress(d, d->userdata);
        invoke(d, s->start ? s->start : s->check);
}

static void enter(StepDriver *d);
static void fail_here(StepDriver *d, int code, const char *message);
static void fail_above(StepDriver *d, int code, const char *message);

static void push(StepDriver *d, const StepTable *t) {
        if (d->depth >= STEP_DEPTH_MAX || !t || t->n_steps == 0)
                return fail_here(d, -EINVAL, "internal error: a table cannot be run here");
        d->frames[d->depth++] = (Frame) { .table = t };
        enter(d);
}

/* The loop step of the top frame: its next item, or on to the next step. */
static void loop_next(StepDriver *d) {
        Frame *f = top(d);
        const StepDef *s = step_of(f);
        if (s->each(d->userdata, f->item))
                return push(d, s->sub);
        f->index++;
        enter(d);
}

static void table_complete(StepDriver *d) {
        Frame *f = top(d);
        if (f->compensating) {
                /* The compensation ran through: the failure that started it goes on. */
                g_autofree char *msg = g_steal_pointer(&f->failed_message);
                int code = f->failed_code;
                frame_clear(f);
                d->depth--;
                return fail_above(d, code, msg);
        }
        tell_table_done(d, f, 0);
        frame_clear(f);
        d->depth--;
        if (d->depth == 0)
                return finish(d, 0, NULL);
        f = top(d);
        if (step_of(f)->each) {
                f->item++;
                return loop_next(d);
        }
        f->index++;
        enter(d);
}

/* Enters the step at the top frame's index: a leaf begins, a loop or a
 * choice runs its table or is complete at once. */
static void enter(StepDriver *d) {
        Frame *f = top(d);
        const StepDef *s = step_of(f);

        if (!s)
                return table_complete(d);
        if (s->each) {
                f->item = 0;
                return loop_next(d);
        }
        if (s->choose) {
                const StepTable *t = s->choose(d->userdata);
                if (t)
                        return push(d, t);
                f->index++;
                return enter(d);
        }
        if (!s->start && !s->check)
                return fail_here(d, -EINVAL, "internal error: a step with nothing to do");
        begin_leaf(d);
}

/* The top frame's table fails at its current step. */
static void fail_here(StepDriver *d, int code, const char *message) {
        Frame *f = top(d);
        stop_timers(d);
        d->phase = PHASE_IDLE;
        d->deadline = 0;

        if (f->compensating) {
                /* The compensation failed too: say both, keep the first code. */
                g_autofree char *msg = g_strdup_printf("%s; %s failed too: %s", f->failed_message, f->table->name,
                                                       message);
                int first = f->failed_code;
                frame_clear(f);
                d->depth--;
                return fail_above(d, first, msg);
        }
        tell_table_done(d, f, code);
        if (f->table->on_fail) {
                log_debug("%s failed at %s, running %s", f->table->name, strempty(step_of(f) ? step_of(f)->name : NULL),
                          f->table->on_fail->name);
                const StepTable *comp = f->table->on_fail;
                frame_clear(f);
                *f = (Frame) { .table = comp, .compensating = true, .failed_code = code,
                               .failed_message = g_strdup(message) };
                return enter(d);
        }
        frame_clear(f);
        d->depth--;
        fail_above(d, code, message);
}

/* A table above failed and is gone: its failure reaches the step that ran it. */
static void fail_above(StepDriver *d, int code, const char *message) {
        if (d->depth == 0)
                return finish(d, code, message);
        Frame *f = top(d);
        const StepDef *s = step_of(f);
        if (s->each && s->item_failed) {
                s->item_failed(d->userdata, code, message);
                f->item++;
                return loop_next(d);
        }
        fail_here(d, code, message);
}

static void timed_out(StepDriver *d) {
        const StepDef *s = current(d);
        uint64_t waited = (uint64_t) ((now_mono() - d->step_started) / USEC_PER_SEC);

        if (d->phase == PHASE_OUTSTANDING && s->cancel)
                s->cancel(d->userdata);
        if (s->on_timeout) {
                d->phase = PHASE_OUTSTANDING;
                uint64_t t = s->on_timeout(d, d->userdata);
                if (t > 0) {
                        d->deadline = now_mono() + t;
                        d->poll_usec = POLL_MIN_USEC;
                        if (d->phase == PHASE_OUTSTANDING)
                                arm_timer(d, d->deadline);
                        return;
                }
                if (d->phase != PHASE_OUTSTANDING)
                        return; /* it reported (a failure, say) itself */
        }
        g_autofree char *msg = g_strdup_printf("%s: timed out after %" PRIu64 " s", s->description, waited);
        fail_here(d, -ETIMEDOUT, msg);
}

static void act_on_report(StepDriver *d) {
        const StepDef *s = current(d);

        switch (d->verdict) {
        case VERDICT_DONE:
                d->phase = PHASE_IDLE;
                top(d)->index++;
                return enter(d);
        case VERDICT_AGAIN: {
                if (!s->check)
                        return fail_here(d, -EINVAL, "internal error: a step without check asked to wait");
                uint64_t now = now_mono(), when = now + d->poll_usec;
                if (now - d->step_started >= POLL_FAST_USEC)
                        d->poll_usec = MIN(2 * d->poll_usec, POLL_MAX_USEC);
                if (d->deadline > 0)
                        when = MIN(when, MAX(d->deadline, now));
                d->phase = PHASE_WAITING;
                arm_timer(d, when);
                return;
        }
        case VERDICT_FAIL: {
                g_autofree char *msg = g_steal_pointer(&d->message);
                return fail_here(d, d->code, msg ? msg : "failed");
        }
        }
}

static int on_defer(sd_event_source *src, void *userdata) {
        StepDriver *d = userdata;

        if (d->begin_pending) {
                d->begin_pending = false;
                enter(d);
        } else if (d->phase == PHASE_REPORTED)
                act_on_report(d);
        return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        StepDriver *d = userdata;

        if (!current(d) || d->phase == PHASE_IDLE || d->phase == PHASE_REPORTED)
                return 0;
        if (d->deadline > 0 && now_mono() >= d->deadline)
                timed_out(d);
        else if (d->phase == PHASE_WAITING)
                invoke(d, current(d)->check);
        return 0;
}

static int on_progress_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        StepDriver *d = userdata;

        if (!current(d))
                return 0;
        (void) sd_event_source_set_time(src, usec + USEC_PER_SEC);
        if (d->events.progress)
                d->events.progress(d, d->userdata);
        return 0;
}

static void report(StepDriver *d, Verdict v, int code, const char *message) {
        if (d->phase != PHASE_OUTSTANDING) {
                log_debug("step driver: a report with none due, ignored");
                return;
        }
        d->phase = PHASE_REPORTED;
        d->verdict = v;
        d->code = code;
        g_free(d->message);
        d->message = g_strdup(message);
        (void) sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
        kick(d);
}

void step_driver_done(StepDriver *d) {
        report(d, VERDICT_DONE, 0, NULL);
}

void step_driver_again(StepDriver *d) {
        report(d, VERDICT_AGAIN, 0, NULL);
}

void step_driver_fail(StepDriver *d, int code, const char *message) {
        report(d, VERDICT_FAIL, code < 0 ? code : -EIO, message);
}

void step_driver_poll_fast(StepDriver *d) {
        d->poll_usec = POLL_MIN_USEC;
}

int step_driver_new(sd_event *event, StepDriver **ret) {
        g_autofree StepDriver *d = g_new0(StepDriver, 1);
        int r;

        d->event = sd_event_ref(event);
        r = sd_event_add_defer(event, &d->defer, on_defer, d);
        if (r >= 0)
                r = sd_event_add_time(event, &d->timer, CLOCK_MONOTONIC, 0, 1000, on_timer, d);
        if (r >= 0)
                r = sd_event_add_time(event, &d->progress_timer, CLOCK_MONOTONIC, 0, 10000, on_progress_timer, d);
        if (r < 0) {
                step_driver_free(g_steal_pointer(&d));
                return r;
        }
        (void) sd_event_source_set_enabled(d->defer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(d->timer, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(d->progress_timer, SD_EVENT_OFF);
        *ret = g_steal_pointer(&d);
        return 0;
}

void step_driver_free(StepDriver *d) {
        if (!d)
                return;
        const StepDef *s = current(d);
        if (s && d->phase == PHASE_OUTSTANDING && s->cancel)
                s->cancel(d->userdata);
        unwind(d);
        sd_event_source_disable_unref(d->defer);
        sd_event_source_disable_unref(d->timer);
        sd_event_source_disable_unref(d->progress_timer);
        sd_event_unref(d->event);
        g_free(d->message);
        g_free(d);
}

int step_driver_run(StepDriver *d, const StepTable *table, const StepDriverEvents *events, void *userdata) {
        if (d->depth > 0)
                return -EBUSY;
        if (!table || table->n_steps == 0)
                return -EINVAL;
        d->frames[0] = (Frame) { .table = table };
        d->depth = 1;
        d->events = events ? *events : (StepDriverEvents) {};
        d->userdata = userdata;
        d->phase = PHASE_IDLE;
        d->begin_pending = true;
        kick(d);
        return 0;
}

void step_driver_abort(StepDriver *d, int code, const char *message) {
        if (d->depth == 0)
                return;
        const StepDef *s = current(d);
        if (s && d->phase == PHASE_OUTSTANDING && s->cancel)
                s->cancel(d->userdata);
        finish(d, code, message);
}

bool step_driver_running(const StepDriver *d) {
        return d && d->depth > 0;
}

const StepDef *step_driver_step(const StepDriver *d) {
        return d ? current(d) : NULL;
}

const StepTable *step_driver_table(const StepDriver *d) {
        return d && d->depth > 0 ? d->frames[d->depth - 1].table : NULL;
}

const StepTable *step_driver_outer_table(const StepDriver *d) {
        return d && d->depth > 0 ? d->frames[0].table : NULL;
}

bool step_driver_compensating(const StepDriver *d) {
        return d && d->depth > 0 && d->frames[d->depth - 1].compensating;
}

const char *step_driver_failure_message(const StepDriver *d) {
        return step_driver_compensating(d) ? d->frames[d->depth - 1].failed_message : NULL;
}

const char *step_driver_table_name(const StepDriver *d) {
        const StepTable *t = step_driver_table(d);
        return t ? t->name : "";
}

const char *step_driver_step_name(const StepDriver *d) {
        const StepDef *s = step_driver_step(d);
        return s ? s->name : "";
}

const char *step_driver_step_description(const StepDriver *d) {
        const StepDef *s = step_driver_step(d);
        return s ? s->description : "";
}

size_t step_driver_step_index(const StepDriver *d) {
        return d && d->depth > 0 ? d->frames[d->depth - 1].index : 0;
}

size_t step_driver_n_steps(const StepDriver *d) {
        const StepTable *t = step_driver_table(d);
        return t ? t->n_steps : 0;
}

unsigned step_driver_progress(const StepDriver *d) {
        const StepTable *t = step_driver_table(d);
        if (!t)
                return 0;
        return (unsigned) (MIN(step_driver_step_index(d), t->n_steps) * 100 / t->n_steps);
}

uint64_t step_driver_step_started(const StepDriver *d) {
        return step_driver_running(d) ? d->step_started : 0;
}

uint64_t step_driver_step_deadline(const StepDriver *d) {
        return step_driver_running(d) ? d->deadline : 0;
}

char *step_driver_describe(const StepDriver *d) {
        const StepDef *s = step_driver_step(d);
        if (!s)
                return g_strdup("");
        uint64_t now = now_mono();
        uint64_t elapsed = (uint64_t) ((now - d->step_started) / USEC_PER_SEC);
        if (d->deadline > d->step_started)
                return g_strdup_printf("%s: %" PRIu64 " s of %" PRIu64 " s", s->description, elapsed,
                                       (uint64_t) ((d->deadline - d->step_started + USEC_PER_SEC / 2) / USEC_PER_SEC));
        return g_strdup_printf("%s: %" PRIu64 " s", s->description, elapsed);
}
