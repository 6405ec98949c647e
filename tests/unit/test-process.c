/* SPDX-License-Identifier: Apache-2.0 */
/* Child processes on sd-event: output, exit codes, signals, the timeout that
 * kills the whole group, stdin, the clean environment, no fd leaks, cancel,
 * and the fixed git environment. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <systemd/sd-event.h>

#include "clients/process.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "tests.h"

typedef struct R {
        bool done;
        ProcessResult res;
        char *output;
} R;

static void on_done(Process *p, const ProcessResult *res, void *ud) {
        R *r = ud;
        r->done = true;
        r->res = *res;
        r->output = g_strdup(res->output);
        r->res.output = r->output;
}

static void run_until(sd_event *e, R *r) {
        for (int i = 0; i < 2000 && !r->done; i++)
                assert_se(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
        assert_se(r->done);
}

static R run(sd_event *e, uint64_t timeout, uint64_t grace, char **argv) {
        R r = {};
        ProcessOptions o = { .name = "test", .argv = argv, .timeout_usec = timeout, .kill_grace_usec = grace,
                             .home = "/nonexistent-home" };
        assert_se(process_spawn(e, &o, on_done, &r, NULL) == 0);
        assert_se(!r.done); /* never synchronous */
        run_until(e, &r);
        return r;
}

#define SH(script) ((char *[]) { (char *) "/bin/sh", (char *) "-c", (char *) (script), NULL })

static bool pid_gone(pid_t pid) {
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return true;
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        char *close_paren = strrchr(buf, ')');
        return !close_paren || close_paren[2] == 'Z' || close_paren[2] == 'X';
}

static void test_output_and_exit(sd_event *e) {
        R r = run(e, 0, 0, SH("echo line-one; echo line-two >&2; printf 'no-newline'; exit 3"));
        assert_se(r.res.exit_status == 3 && r.res.signal == 0 && !r.res.timed_out);
        assert_se(!process_result_ok(&r.res));
        assert_se(strstr(r.output, "line-one\n"));
        assert_se(strstr(r.output, "line-two\n"));
        assert_se(strstr(r.output, "no-newline"));
        g_autofree char *d = process_result_describe(&r.res, 0);
        assert_se(streq(d, "exited with status 3"));
        g_free(r.output);

        r = run(e, 0, 0, (char *[]) { (char *) "true", NULL }); /* looked up in the fixed PATH */
        assert_se(process_result_ok(&r.res));
        g_free(r.output);
}

static void test_tail_bounded(sd_event *e) {
        /* 20 KB of output, one very long line: the tail keeps the end only. */
        R r = run(e, 0, 0, SH("head -c 20000 /dev/zero | tr '\\0' x; echo; echo END"));
        assert_se(process_result_ok(&r.res));
        assert_se(strlen(r.output) <= PROCESS_TAIL_MAX);
        assert_se(g_str_has_suffix(r.output, "END\n"));
        g_free(r.output);
}

static void test_signal(sd_event *e) {
        R r = run(e, 0, 0, SH("kill -9 $$"));
        assert_se(r.res.signal == SIGKILL && !r.res.timed_out);
        g_autofree char *d = process_result_describe(&r.res, 0);
        assert_se(g_str_has_prefix(d, "killed by signal 9"));
        g_free(r.output);
}

static void test_timeout_kills_group(sd_event *e) {
        g_autofree char *dir = g_dir_make_tmp("test-process-XXXXXX", NULL);
        g_autofree char *pidfile = g_build_filename(dir, "pid", NULL);
        /* The grandchild ignores nothing; the leader ignores SIGTERM so the
         * SIGKILL after the grace is needed too. */
        g_autofree char *script = g_strdup_printf("sleep 60 & echo $! > %s; trap '' TERM; while :; do sleep 1; done",
                                                  pidfile);
        uint64_t t0 = g_get_monotonic_time();
        R r = run(e, 300 * USEC_PER_MSEC, 200 * USEC_PER_MSEC, SH(script));
        uint64_t took = (uint64_t) g_get_monotonic_time() - t0;
        assert_se(r.res.timed_out);
        assert_se(r.res.signal == SIGKILL);
        assert_se(took < 3 * USEC_PER_SEC);
        g_autofree char *text = NULL;
        assert_se(g_file_get_contents(pidfile, &text, NULL, NULL));
        pid_t grandchild = (pid_t) atoi(text);
        assert_se(grandchild > 0);
        for (int i = 0; i < 200 && !pid_gone(grandchild); i++)
                g_usleep(10000);
        assert_se(pid_gone(grandchild));
        g_autofree char *d = process_result_describe(&r.res, 300 * USEC_PER_MSEC);
        assert_se(g_str_has_prefix(d, "timed out"));
        unlink(pidfile);
        rmdir(dir);
        g_free(r.output);
}

static void test_stdin_null(sd_event *e) {
        R r = run(e, 0, 0, SH("readlink /proc/self/fd/0; cat; echo eof"));
        assert_se(process_result_ok(&r.res));
        assert_se(streq(r.output, "/dev/null\neof\n"));
        g_free(r.output);
}

static void test_clean_env(sd_event *e) {
        setenv("TEST_PROCESS_CANARY", "secret", 1);
        R r = run(e, 0, 0, (char *[]) { (char *) "/usr/bin/env", NULL });
        assert_se(process_result_ok(&r.res));
        assert_se(streq(r.output, "PATH=" PROCESS_PATH "\nLANG=C.UTF-8\nHOME=/nonexistent-home\n"));
        g_free(r.output);
}

static void test_no_fd_leak(sd_event *e) {
        int leak = open("/dev/null", O_RDONLY); /* deliberately without O_CLOEXEC */
        assert_se(leak >= 3);
        /* "[ -e ]" opens nothing itself, so any fd >= 3 seen is inherited. */
        g_autofree char *script = g_strdup_printf(
                "for n in 3 4 5 6 7 8 9 10 11 12 %d; do [ -e /proc/$$/fd/$n ] && echo \"open $n\"; done; true", leak);
        R r = run(e, 0, 0, SH(script));
        assert_se(process_result_ok(&r.res));
        assert_se(streq(r.output, ""));
        close(leak);
        g_free(r.output);
}

static void test_own_group(sd_event *e) {
        R r = run(e, 0, 0, SH("ps -o pgid= -p $$; echo $$"));
        assert_se(process_result_ok(&r.res));
        g_auto(GStrv) l = g_strsplit(r.output, "\n", -1);
        assert_se(atoi(l[0]) == atoi(l[1]));
        assert_se(atoi(l[0]) != getpgrp());
        g_free(r.output);
}

static void test_not_found(sd_event *e) {
        R r = {};
        ProcessOptions o = { .argv = (char *[]) { (char *) "no-such-program-here", NULL } };
        assert_se(process_spawn(e, &o, on_done, &r, NULL) == -ENOENT);
        o.argv = (char *[]) { NULL };
        assert_se(process_spawn(e, &o, on_done, &r, NULL) == -EINVAL);
}

static void test_cancel(sd_event *e) {
        R r = {};
        Process *p = NULL;
        ProcessOptions o = { .argv = (char *[]) { (char *) "sleep", (char *) "60", NULL } };
        assert_se(process_spawn(e, &o, on_done, &r, &p) == 0);
        pid_t pid = process_pid(p);
        process_cancel(p);
        for (int i = 0; i < 50 && !pid_gone(pid); i++)
                assert_se(sd_event_run(e, 20 * USEC_PER_MSEC) >= 0);
        for (int i = 0; i < 5; i++)
                assert_se(sd_event_run(e, 10 * USEC_PER_MSEC) >= 0);
        assert_se(pid_gone(pid));
        assert_se(!r.done);
        assert_se(kill(pid, 0) < 0 && errno == ESRCH); /* reaped, not a zombie */
}

static void test_git_env(sd_event *e) {
        g_autofree char *dir = g_dir_make_tmp("test-process-git-XXXXXX", NULL);
        R r = {};
        char *args[] = { (char *) "config", (char *) "core.hooksPath", NULL };
        assert_se(process_spawn_git(e, dir, "git config", args, 10 * USEC_PER_SEC, on_done, &r, NULL) == 0);
        run_until(e, &r);
        /* not a repository, but -c still answers */
        assert_se(process_result_ok(&r.res));
        assert_se(streq(r.output, "/dev/null\n"));
        g_free(r.output);

        g_auto(GStrv) env = process_git_env();
        assert_se(g_strv_contains((const char *const *) env, "GIT_TERMINAL_PROMPT=0"));
        assert_se(g_strv_contains((const char *const *) env, "GIT_CONFIG_GLOBAL=/dev/null"));
        g_auto(GStrv) argv = process_git_argv("/srv/x", (char *[]) { (char *) "status", NULL });
        g_autofree char *joined = g_strjoinv(" ", argv);
        assert_se(g_str_has_prefix(joined, "git -C /srv/x -c safe.directory=/srv/x -c core.hooksPath=/dev/null"));
        assert_se(g_str_has_suffix(joined, " status"));
        rmdir(dir);
}

int main(void) {
        sd_event *e = NULL;
        log_set_max_level(LOG_WARNING);
        assert_se(sd_event_new(&e) >= 0);
        test_output_and_exit(e);
        test_tail_bounded(e);
        test_signal(e);
        test_timeout_kills_group(e);
        test_stdin_null(e);
        test_clean_env(e);
        test_no_fd_leak(e);
        test_own_group(e);
        test_not_found(e);
        test_cancel(e);
        test_git_env(e);
        sd_event_unref(e);
        printf("test-process: OK\n");
        return 0;
}
