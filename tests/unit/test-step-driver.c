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
        g_free(t->message); /* a driver run again reports again */
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

/* ---- loops, choices, compensation ---- */

typedef struct L {
        T t;
        size_t n_items;             /* each() offers this many */
        size_t fail_item;           /* (size_t) -1 = none fails */
        GString *item_failures;
        const StepTable *chosen;
        GString *states;            /* .vm_state of each leaf as it begins */
        size_t item;                /* the item each() made current */
} L;

static bool each_item(void *ud, size_t i) {
        L *l = ud;
        char buf[16];
        snprintf(buf, sizeof buf, "i%zu", i);
        if (i >= l->n_items)
                return false;
        note(&l->t, buf);
        l->item = i;
        return true;
}

static void start_item(StepDriver *d, void *ud) {
        L *l = ud;
        note(&l->t, "x");
        if (l->item == l->fail_item)
                return step_driver_fail(d, -EPIPE, "item failed");
        step_driver_done(d);
}

static void item_failed(void *ud, int code, const char *message) {
        L *l = ud;
        g_string_append_printf(l->item_failures, "%d:%s ", code, message);
}

static void start_z(StepDriver *d, void *ud) {
        note(&((L *) ud)->t, "z");
        step_driver_done(d);
}

static void start_undo(StepDriver *d, void *ud) {
        note(&((L *) ud)->t, "undo");
        step_driver_done(d);
}

static void start_undo_fails(StepDriver *d, void *ud) {
        note(&((L *) ud)->t, "undo!");
        step_driver_fail(d, -EBADF, "undo broke");
}

static const StepTable *choose_it(void *ud) {
        L *l = ud;
        note(&l->t, "choose");
        return l->chosen;
}

static void on_progress_state(StepDriver *d, void *ud) {
        L *l = ud;
        const StepDef *s = step_driver_step(d);
        assert_se(s);
        if (step_driver_step_started(d) && l->states)
                g_string_append_printf(l->states, "%s=%d ", s->name, s->vm_state);
}

static void on_done_l(StepDriver *d, int code, const char *message, void *ud) {
        on_done(d, code, message, &((L *) ud)->t);
}

static const StepDriverEvents l_events = { .progress = on_progress_state, .done = on_done_l };

static const StepDef item_steps[] = { { .name = "x", .description = "an item", .start = start_item, .vm_state = 7 } };
static const StepTable item_table = STEP_TABLE("item", item_steps);

static const StepDef loop_steps[] = {
        { .name = "items", STEP_EACH(each_item, item_table) },
        { .name = "z", .description = "after", .start = start_z, .vm_state = 3 },
};
static const StepTable loop_table = STEP_TABLE("loop", loop_steps);

static const StepDef tolerant_steps[] = {
        { .name = "items", STEP_EACH(each_item, item_table), .item_failed = item_failed },
        { .name = "z", .description = "after", .start = start_z },
};
static const StepTable tolerant_table = STEP_TABLE("tolerant", tolerant_steps);

static void l_init(L *l, size_t n, size_t fail_item) {
        *l = (L) { .n_items = n, .fail_item = fail_item, .item_failures = g_string_new(NULL),
                   .states = g_string_new(NULL) };
        t_init(&l->t);
}

static void l_done(L *l) {
        g_string_free(l->item_failures, TRUE);
        g_string_free(l->states, TRUE);
        t_done(&l->t);
}

static void test_each(void) {
        L l;
        l_init(&l, 3, (size_t) -1);
        assert_se(step_driver_run(l.t.d, &loop_table, &l_events, &l) == 0);
        run_until_finished(&l.t);
        assert_se(l.t.code == 0);
        assert_se(streq(l.t.trace->str, "i0 x i1 x i2 x z "));
        /* each leaf's state comes from its row */
        assert_se(streq(l.states->str, "x=7 x=7 x=7 z=3 "));
        l_done(&l);

        /* no items: the loop is complete at once */
        l_init(&l, 0, (size_t) -1);
        assert_se(step_driver_run(l.t.d, &loop_table, &l_events, &l) == 0);
        run_until_finished(&l.t);
        assert_se(l.t.code == 0 && streq(l.t.trace->str, "z "));
        l_done(&l);

        /* a failing item fails the loop and the table */
        l_init(&l, 3, 1);
        assert_se(step_driver_run(l.t.d, &loop_table, &l_events, &l) == 0);
        run_until_finished(&l.t);
        assert_se(l.t.code == -EPIPE && streq(l.t.message, "item failed"));
        assert_se(streq(l.t.trace->str, "i0 x i1 x "));
        l_done(&l);

        /* ... unless the loop takes failures one by one */
        l_init(&l, 3, 1);
        assert_se(step_driver_run(l.t.d, &tolerant_table, &l_events, &l) == 0);
        run_until_finished(&l.t);
        assert_se(l.t.code == 0);
        assert_se(streq(l.t.trace->str, "i0 x i1 x i2 x z "));
        assert_se(streq(l.item_failures->str, "-32:item failed "));
        l_done(&l);
}

static const StepDef choice_steps[] = {
        { .name = "plan", STEP_CHOOSE(choose_it) },
        { .name = "z", .description = "after", .start = start_z },
};
static const StepTable choice_table = STEP_TABLE("choice", choice_steps);

static void test_choose(void) {
        L l;
        l_init(&l, 2, (size_t) -1);
        l.chosen = &loop_table; /* a choice may run a table that loops */
        assert_se(step_driver_run(l.t.d, &choice_table, &l_events, &l) == 0);
        run_until_finished(&l.t);
        assert_se(l.t.code == 0);
        assert_se(streq(l.t.trace->str, "choose i0 x i1 x z z "));
        l_done(&l);

        l_init(&l, 2, (size_t) -1);
        l.chosen = NULL; /* nothing to do */
        assert_se(step_driver_run(l.t.d, &choice_table, &l_events, &l) == 0);
        run_until_finished(&l.t);
        assert_se(l.t.code == 0 && streq(l.t.trace->str, "choose z "));
        l_done(&l);
}

static const StepDef undo_steps[] = { { .name = "undo", .description = "undoing", .start = start_undo } };
static const StepTable undo_table = STEP_TABLE("undo", undo_steps);
static const StepDef undo_fail_steps[] = { { .name = "undo", .description = "undoing", .start = start_undo_fails } };
static const StepTable undo_fail_table = STEP_TABLE("undo", undo_fail_steps);

static const StepDef forward_steps[] = {
        { .name = "x", .description = "an item", .start = start_item },
        { .name = "f", .description = "failing", .start = start_fail },
        { .name = "never", .description = "never", .start = start_z },
};
static const StepTable forward_table = STEP_TABLE_ON_FAIL("forward", forward_steps, undo_table);
static const StepTable forward_bad_undo = STEP_TABLE_ON_FAIL("forward", forward_steps, undo_fail_table);

static const StepDef outer_steps[] = {
        { .name = "plan", STEP_CHOOSE(choose_it) },
        { .name = "z", .description = "never after a failure", .start = start_z },
};
static const StepTable outer_table = STEP_TABLE("outer", outer_steps);

static void test_on_fail(void) {
        L l;
        /* forward fails: its reverse runs, then the failure goes up with its own message */
        l_init(&l, 0, (size_t) -1);
        l.chosen = &forward_table;
        assert_se(step_driver_run(l.t.d, &outer_table, &l_events, &l) == 0);
        run_until_finished(&l.t);
        assert_se(l.t.code == -EPROTO && streq(l.t.message, "step f failed"));
        assert_se(streq(l.t.trace->str, "choose x f undo "));
        l_done(&l);

        /* the reverse fails too: both are told, the first code stays */
        l_init(&l, 0, (size_t) -1);
        l.chosen = &forward_bad_undo;
        assert_se(step_driver_run(l.t.d, &outer_table, &l_events, &l) == 0);
        run_until_finished(&l.t);
        assert_se(l.t.code == -EPROTO);
        assert_se(streq(l.t.message, "step f failed; undo failed too: undo broke"));
        assert_se(streq(l.t.trace->str, "choose x f undo! "));
        l_done(&l);
}

static void start_hang_l(StepDriver *d, void *ud) {
        start_hang(d, &((L *) ud)->t);
}

static void cancel_hang_l(void *ud) {
        cancel_hang(&((L *) ud)->t);
}

static const StepDef deep_hang_l_steps[] = {
        { .name = "h", .description = "hanging", .start = start_hang_l, .cancel = cancel_hang_l },
};
static const StepTable deep_hang_l = STEP_TABLE("deep", deep_hang_l_steps);

static void test_abort_nested(void) {
        L l;
        l_init(&l, 0, (size_t) -1);
        l.chosen = &deep_hang_l;
        assert_se(step_driver_run(l.t.d, &outer_table, &l_events, &l) == 0);
        while (!strstr(l.t.trace->str, "h "))
                assert_se(sd_event_run(l.t.event, USEC_PER_SEC) >= 0);
        assert_se(streq(step_driver_table_name(l.t.d), "deep"));
        assert_se(step_driver_outer_table(l.t.d) == &outer_table);
        assert_se(step_driver_table(l.t.d) == &deep_hang_l);
        step_driver_abort(l.t.d, -ECANCELED, "gone");
        assert_se(l.t.finished && l.t.code == -ECANCELED && l.t.cancels == 1);
        assert_se(!step_driver_running(l.t.d));
        /* the driver runs again after an abort */
        l.t.finished = false;
        l.chosen = NULL;
        assert_se(step_driver_run(l.t.d, &outer_table, &l_events, &l) == 0);
        run_until_finished(&l.t);
        assert_se(l.t.code == 0);
        l_done(&l);
}

/* A row's own check interval: a retry every 50 ms, not the fast poll. */
static const StepDef paced_steps[] = {
        { .name = "c", .description = "step c", .check = check_wait, .timeout = wait_timeout,
          .check_interval_usec = 50 * USEC_PER_MSEC },
};
static const StepTable paced = STEP_TABLE("paced", paced_steps);

static void test_check_interval(void) {
        T t;
        t_init(&t);
        t.checks_left = 3;
        t.timeout = 10 * USEC_PER_SEC;
        uint64_t begin = 0, end = 0;
        assert_se(sd_event_now(t.event, CLOCK_MONOTONIC, &begin) >= 0);
        assert_se(step_driver_run(t.d, &paced, &events, &t) == 0);
        run_until_finished(&t);
        end = (uint64_t) g_get_monotonic_time();
        assert_se(t.code == 0);
        assert_se(streq(t.trace->str, "c? c? c? c? "));
        assert_se(end - begin >= 3 * 50 * USEC_PER_MSEC); /* three waits of 50 ms, not 3 × 20 */
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
        test_each();
        test_choose();
        test_on_fail();
        test_abort_nested();
        test_check_interval();
        printf("test-step-driver: all passed\n");
        return 0;
}
