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

struct StepDriver {
        sd_event *event;
        sd_event_source *defer;
        sd_event_source *timer;
        sd_event_source *progress_timer;

        const StepTable *table;
        StepDriverEvents events;
        void *userdata;
        size_t index;
        Phase phase;
        bool begin_pending;         /* the deferred source begins step `index` */

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

static const StepDef *current(const StepDriver *d) {
        return d->table && d->index < d->table->n_steps ? &d->table->steps[d->index] : NULL;
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

/* Ends the table. d may be freed by done(): nothing touches d afterwards. */
static void finish(StepDriver *d, int code, const char *message) {
        g_autofree char *msg = g_strdup(message);
        StepDriverEvents ev = d->events;
        void *ud = d->userdata;

        stop_timers(d);
        (void) sd_event_source_set_enabled(d->defer, SD_EVENT_OFF);
        d->table = NULL;
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

static void begin_step(StepDriver *d) {
        const StepDef *s = current(d);
        uint64_t now = now_mono(), t = s->timeout ? s->timeout(d->userdata) : 0;

        d->step_started = now;
        d->deadline = t > 0 ? now + t : 0;
        d->poll_usec = POLL_MIN_USEC;
        log_debug("%s: step %zu/%zu %s", d->table->name, d->index + 1, d->table->n_steps, s->name);
        if (d->deadline > 0) {
                (void) sd_event_source_set_time(d->progress_timer, now + USEC_PER_SEC);
                (void) sd_event_source_set_enabled(d->progress_timer, SD_EVENT_ON);
        } else
                (void) sd_event_source_set_enabled(d->progress_timer, SD_EVENT_OFF);
        if (d->events.progress)
                d->events.progress(d, d->userdata);
        invoke(d, s->start ? s->start : s->check);
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
        finish(d, -ETIMEDOUT, msg);
}

static void act_on_report(StepDriver *d) {
        const StepDef *s = current(d);

        switch (d->verdict) {
        case VERDICT_DONE:
                d->index++;
                if (d->index >= d->table->n_steps)
                        return finish(d, 0, NULL);
                return begin_step(d);
        case VERDICT_AGAIN: {
                if (!s->check)
                        return finish(d, -EINVAL, "internal error: a step without check asked to wait");
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
                return finish(d, d->code, msg ? msg : "failed");
        }
        }
}

static int on_defer(sd_event_source *src, void *userdata) {
        StepDriver *d = userdata;

        if (d->begin_pending) {
                d->begin_pending = false;
                begin_step(d);
        } else if (d->phase == PHASE_REPORTED)
                act_on_report(d);
        return 0;
}

static int on_timer(sd_event_source *src, uint64_t usec, void *userdata) {
        StepDriver *d = userdata;
        const StepDef *s = current(d);

        if (!s)
                return 0;
        if (d->deadline > 0 && now_mono() >= d->deadline)
                timed_out(d);
        else if (d->phase == PHASE_WAITING)
                invoke(d, s->check);
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
        sd_event_source_disable_unref(d->defer);
        sd_event_source_disable_unref(d->timer);
        sd_event_source_disable_unref(d->progress_timer);
        sd_event_unref(d->event);
        g_free(d->message);
        g_free(d);
}

int step_driver_run(StepDriver *d, const StepTable *table, const StepDriverEvents *events, void *userdata) {
        if (d->table)
                return -EBUSY;
        if (!table || table->n_steps == 0)
                return -EINVAL;
        d->table = table;
        d->events = events ? *events : (StepDriverEvents) {};
        d->userdata = userdata;
        d->index = 0;
        d->phase = PHASE_IDLE;
        d->begin_pending = true;
        kick(d);
        return 0;
}

void step_driver_abort(StepDriver *d, int code, const char *message) {
        const StepDef *s = current(d);
        if (!s)
                return;
        if (d->phase == PHASE_OUTSTANDING && s->cancel)
                s->cancel(d->userdata);
        finish(d, code, message);
}

bool step_driver_running(const StepDriver *d) {
        return d && d->table;
}

const char *step_driver_table_name(const StepDriver *d) {
        return d && d->table ? d->table->name : "";
}

const char *step_driver_step_name(const StepDriver *d) {
        const StepDef *s = d ? current(d) : NULL;
        return s ? s->name : "";
}

const char *step_driver_step_description(const StepDriver *d) {
        const StepDef *s = d ? current(d) : NULL;
        return s ? s->description : "";
}

size_t step_driver_step_index(const StepDriver *d) {
        return d ? d->index : 0;
}

size_t step_driver_n_steps(const StepDriver *d) {
        return d && d->table ? d->table->n_steps : 0;
}

unsigned step_driver_progress(const StepDriver *d) {
        if (!d || !d->table)
                return 0;
        return (unsigned) (d->index * 100 / d->table->n_steps);
}

uint64_t step_driver_step_started(const StepDriver *d) {
        return d && d->table ? d->step_started : 0;
}

uint64_t step_driver_step_deadline(const StepDriver *d) {
        return d && d->table ? d->deadline : 0;
}

char *step_driver_describe(const StepDriver *d) {
        const StepDef *s = d ? current(d) : NULL;
        if (!s)
                return g_strdup("");
        uint64_t now = now_mono();
        uint64_t elapsed = (uint64_t) ((now - d->step_started) / USEC_PER_SEC);
        if (d->deadline > d->step_started)
                return g_strdup_printf("%s: %" PRIu64 " s of %" PRIu64 " s", s->description, elapsed,
                                       (uint64_t) ((d->deadline - d->step_started + USEC_PER_SEC / 2) / USEC_PER_SEC));
        return g_strdup_printf("%s: %" PRIu64 " s", s->description, elapsed);
}
