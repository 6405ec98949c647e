/* SPDX-License-Identifier: Apache-2.0 */
/* The step driver: order of steps, polling, deadlines, escalation, cancel,
 * synchronous and asynchronous reports, abort, freeing from done. */
#include <errno.h>
#include <string.h>

#include <glib.h>
#include <systemd/sd-event.h>

#include "core/step-driver.h"
#include "shared/macro.h"
#include "tests.h"

typedef struct T {
        sd_event *event;
        StepDriver *d;
        GString *trace;
        int checks_left;            /* check says "again" this many times */
        int code;
        char *message;
        bool finished;
        int progress_calls;
        int cancels;
        uint64_t timeout;           /* for the waiting step */
        uint64_t escalate;          /* on_timeout returns this once */
        bool escalated;
        sd_event_source *later;
        bool free_in_done;
} T;

static void note(T *t, const char *what) {
        g_string_append(t->trace, what);
        g_string_append_c(t->trace, ' ');
}

static void start_sync(StepDriver *d, void *ud) {
        note(ud, "a");
        step_driver_done(d);
}

static int on_later(sd_event_source *s, uint64_t usec, void *ud) {
        T *t = ud;
        t->later = sd_event_source_disable_unref(t->later);
        note(t, "b-reply");
        step_driver_done(t->d);
        return 0;
}

static void start_async(StepDriver *d, void *ud) {
        T *t = ud;
        note(t, "b");
        assert_se(sd_event_add_time_relative(t->event, &t->later, CLOCK_MONOTONIC, 1000, 0, on_later, t) >= 0);
}

static void check_wait(StepDriver *d, void *ud) {
        T *t = ud;
        note(t, "c?");
        if (t->checks_left-- > 0)
                step_driver_again(d);
        else
                step_driver_done(d);
}

static uint64_t wait_timeout(void *ud) {
        return ((T *) ud)->timeout;
}

static uint64_t wait_on_timeout(StepDriver *d, void *ud) {
        T *t = ud;
        note(t, "escalate");
        if (t->escalated || t->escalate == 0)
                return 0;
        t->escalated = true;
        t->checks_left = 1;
        step_driver_again(d);
        return t->escalate;
}

static void start_fail(StepDriver *d, void *ud) {
        note(ud, "f");
        step_driver_fail(d, -EPROTO, "step f failed");
}

static void start_hang(StepDriver *d, void *ud) {
        note(ud, "h");
}

static void cancel_hang(void *ud) {
        T *t = ud;
        t->cancels++;
        note(t, "cancel");
}

static void on_progress(StepDriver *d, void *ud) {
        ((T *) ud)->progress_calls++;
}

static void on_done(StepDriver *d, int code, const char *message, void *ud) {
        T *t = ud;
        t->finished = true;
        t->code = code;
        t->message = g_strdup(message);
        if (t->free_in_done) {
                step_driver_free(d);
                t->d = NULL;
        }
}

static const StepDriverEvents events = { .progress = on_progress, .done = on_done };

static void run_until_finished(T *t) {
        while (!t->finished)
                assert_se(sd_event_run(t->event, 5 * USEC_PER_SEC) >= 0);
}

static void t_init(T *t) {
        *t = (T) { .trace = g_string_new(NULL) };
        assert_se(sd_event_default(&t->event) >= 0);
        assert_se(step_driver_new(t->event, &t->d) >= 0);
}

static void t_done(T *t) {
        step_driver_free(t->d);
        sd_event_source_disable_unref(t->later);
        sd_event_unref(t->event);
        g_string_free(t->trace, TRUE);
        g_free(t->message);
}

static const StepDef happy_steps[] = {
        { .name = "a", .description = "step a", .start = start_sync },
        { .name = "b", .description = "step b", .start = start_async },
        { .name = "c", .description = "step c", .check = check_wait, .timeout = wait_timeout },
};
static const StepTable happy = STEP_TABLE("happy", happy_steps);

static void test_order_and_polling(void) {
        T t;
        t_init(&t);
        t.checks_left = 3;
        t.timeout = 10 * USEC_PER_SEC;
        assert_se(step_driver_run(t.d, &happy, &events, &t) == 0);
        assert_se(step_driver_run(t.d, &happy, &events, &t) == -EBUSY);
        assert_se(strlen(t.trace->str) == 0); /* nothing runs inside run() */
        run_until_finished(&t);
        assert_se(t.code == 0 && t.message == NULL);
        assert_se(streq(t.trace->str, "a b b-reply c? c? c? c? "));
        assert_se(t.progress_calls >= 3);
        assert_se(!step_driver_running(t.d));
        assert_se(streq(step_driver_step_name(t.d), ""));
        t_done(&t);
}

static const StepDef fail_steps[] = {
        { .name = "a", .description = "step a", .start = start_sync },
        { .name = "f", .description = "step f", .start = start_fail },
        { .name = "a2", .description = "never", .start = start_sync },
};
static const StepTable failing = STEP_TABLE("failing", fail_steps);

static void test_fail_stops(void) {
        T t;
        t_init(&t);
        assert_se(step_driver_run(t.d, &failing, &events, &t) == 0);
        run_until_finished(&t);
        assert_se(t.code == -EPROTO);
        assert_se(streq(t.message, "step f failed"));
        assert_se(streq(t.trace->str, "a f "));
        t_done(&t);
}

static const StepDef timeout_steps[] = {
        { .name = "c", .description = "waiting for c", .check = check_wait, .timeout = wait_timeout,
          .on_timeout = wait_on_timeout },
};
static const StepTable timing = STEP_TABLE("timing", timeout_steps);

static void test_timeout_fails(void) {
        T t;
        t_init(&t);
        t.checks_left = 1000000;
        t.timeout = 100 * USEC_PER_MSEC;
        assert_se(step_driver_run(t.d, &timing, &events, &t) == 0);
        run_until_finished(&t);
        assert_se(t.code == -ETIMEDOUT);
        assert_se(g_str_has_prefix(t.message, "waiting for c: timed out"));
        assert_se(strstr(t.trace->str, "escalate") != NULL);
        t_done(&t);
}

static void test_timeout_escalates(void) {
        T t;
        t_init(&t);
        t.checks_left = 1000000;
        t.timeout = 60 * USEC_PER_MSEC;
        t.escalate = 5 * USEC_PER_SEC;
        assert_se(step_driver_run(t.d, &timing, &events, &t) == 0);
        run_until_finished(&t);
        assert_se(t.code == 0);
        assert_se(g_str_has_suffix(t.trace->str, "escalate c? c? "));
        t_done(&t);
}

static uint64_t short_timeout(void *ud) {
        return 50 * USEC_PER_MSEC;
}

static const StepDef hang_steps[] = {
        { .name = "h", .description = "hanging", .start = start_hang, .timeout = short_timeout,
          .cancel = cancel_hang },
};
static const StepTable hanging = STEP_TABLE("hanging", hang_steps);

static void test_outstanding_cancelled_at_deadline(void) {
        T t;
        t_init(&t);
        assert_se(step_driver_run(t.d, &hanging, &events, &t) == 0);
        run_until_finished(&t);
        assert_se(t.code == -ETIMEDOUT);
        assert_se(t.cancels == 1);
        assert_se(streq(t.trace->str, "h cancel "));
        t_done(&t);
}

static void test_abort_and_describe(void) {
        T t;
        t_init(&t);
        assert_se(step_driver_run(t.d, &hanging, &events, &t) == 0);
        while (!step_driver_running(t.d) || streq(t.trace->str, ""))
                assert_se(sd_event_run(t.event, USEC_PER_SEC) >= 0);
        assert_se(streq(step_driver_step_name(t.d), "h"));
        assert_se(streq(step_driver_table_name(t.d), "hanging"));
        assert_se(step_driver_progress(t.d) == 0);
        g_autofree char *desc = step_driver_describe(t.d);
        assert_se(streq(desc, "hanging: 0 s of 0 s"));
        step_driver_abort(t.d, -ECANCELED, "stopping");
        assert_se(t.finished && t.code == -ECANCELED && streq(t.message, "stopping"));
        assert_se(t.cancels == 1);
        t_done(&t);
}

static void test_free_in_done(void) {
        T t;
        t_init(&t);
        t.free_in_done = true;
        assert_se(step_driver_run(t.d, &failing, &events, &t) == 0);
        run_until_finished(&t);
        assert_se(t.d == NULL);
        t_done(&t);
}

int main(void) {
        test_order_and_polling();
        test_fail_stops();
        test_timeout_fails();
        test_timeout_escalates();
        test_outstanding_cancelled_at_deadline();
        test_abort_and_describe();
        test_free_in_done();
        printf("test-step-driver: all passed\n");
        return 0;
}
