/* SPDX-License-Identifier: Apache-2.0 */
/* The step runner's fork back end, through the runner's own API: output
 * (stdout as data, the tail of both), exit codes, signals, the timeout that
 * kills the whole group, stdin, the minimal environment, no fd leaks, its own
 * process group and session (no controlling terminal), umask, cancel, argv[0]
 * lookup (PATH, relative to the working directory), the fixed git environment, invalid UTF-8 made valid, a
 * flood of output kept bounded, and (as root) the drop to another user with
 * its groups and no_new_privs, and a failure before exec reported. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>
#include <systemd/sd-event.h>

#include "clients/step-runner.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "tests.h"

typedef struct R {
        bool done;
        StepResult res;
        char *output;
        char *data;
} R;

static StepRunner *runner;
static StepUser *me;

static void on_done(StepRun *run, const StepResult *res, void *ud) {
        R *r = ud;
        r->done = true;
        r->res = *res;
        r->output = g_strdup(res->output);
        r->data = g_strdup(res->data);
        r->res.output = r->output;
        r->res.data = r->data;
}

static void r_clear(R *r) {
        g_free(r->output);
        g_free(r->data);
        *r = (R) {};
}

/* Bounded by time, not by iterations: a flooding child makes many. */
static void run_until(sd_event *e, R *r) {
        uint64_t deadline = (uint64_t) g_get_monotonic_time() + 60 * USEC_PER_SEC;
        while (!r->done && (uint64_t) g_get_monotonic_time() < deadline)
                assert_se(sd_event_run(e, 100 * USEC_PER_MSEC) >= 0);
        assert_se(r->done);
}

static R run_as(sd_event *e, const StepUser *user, const char *cwd, uint64_t timeout, uint64_t grace, char **argv) {
        R r = {};
        StepOptions o = { .name = "test", .argv = argv, .cwd = cwd, .user = user, .timeout_usec = timeout,
                          .kill_grace_usec = grace, .quiet = true };
        assert_se(step_runner_run(runner, &o, on_done, &r, NULL) == 0);
        assert_se(!r.done); /* never synchronous */
        run_until(e, &r);
        return r;
}

static R run(sd_event *e, uint64_t timeout, uint64_t grace, char **argv) {
        return run_as(e, me, "/", timeout, grace, argv);
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
        assert_se(r.res.exit_status == 3 && r.res.signal == 0 && !r.res.timed_out && r.res.error == 0);
        assert_se(!step_result_ok(&r.res));
        assert_se(strstr(r.output, "line-one\n"));
        assert_se(strstr(r.output, "line-two\n"));
        assert_se(strstr(r.output, "no-newline"));
        /* stdout alone is the data */
        assert_se(streq(r.data, "line-one\nno-newline"));
        assert_se(r.res.output_bytes == strlen("line-one\nline-two\nno-newline"));
        g_autofree char *d = step_result_describe(&r.res, 0);
        assert_se(streq(d, "exited with status 3"));
        r_clear(&r);

        r = run(e, 0, 0, (char *[]) { (char *) "true", NULL }); /* looked up in the fixed PATH */
        assert_se(step_result_ok(&r.res));
        r_clear(&r);
}

static void test_tail_bounded(sd_event *e) {
        /* 200 KB of output, one very long line: the tail keeps the end only, the data the start. */
        R r = run(e, 0, 0, SH("head -c 200000 /dev/zero | tr '\\0' x; echo; echo END"));
        assert_se(step_result_ok(&r.res));
        assert_se(strlen(r.output) <= STEP_OUTPUT_TAIL_MAX);
        assert_se(g_str_has_suffix(r.output, "END\n"));
        assert_se(strlen(r.data) == STEP_OUTPUT_DATA_MAX);
        assert_se(r.res.output_bytes == 200000 + 5);
        r_clear(&r);
}

static void test_invalid_utf8(sd_event *e) {
        /* bytes that are not UTF-8, a NUL and an escape: valid text comes back */
        R r = run(e, 0, 0, SH("printf 'bad \\377\\376 nul \\000 esc \\033[31m end\\n'"));
        assert_se(step_result_ok(&r.res));
        assert_se(g_utf8_validate(r.output, -1, NULL) && g_utf8_validate(r.data, -1, NULL));
        assert_se(strstr(r.output, "bad \xef\xbf\xbd\xef\xbf\xbd nul ? esc ?[31m end"));
        r_clear(&r);
        /* C1 controls too (U+009B is CSI to a terminal that takes 8-bit controls); other text stays */
        r = run(e, 0, 0, SH("printf 'a \302\2332J b \302\205 c \302\240 d \303\251\n'"));
        assert_se(step_result_ok(&r.res));
        assert_se(strstr(r.output, "a ?2J b ? c \xc2\xa0 d \xc3\xa9"));
        g_autofree char *cut = step_text_sanitize("\xe2\x82\xac\xe2\x82\xac\xe2\x82\xac", 9, 7);
        assert_se(g_utf8_validate(cut, -1, NULL) && strlen(cut) <= 7 && g_str_has_suffix(cut, "…"));
        r_clear(&r);
}

static void test_flood_bounded(sd_event *e) {
        /* "yes" as fast as it can for 1 s: the timeout holds, memory stays bounded. */
        uint64_t t0 = g_get_monotonic_time();
        R r = run(e, USEC_PER_SEC, 200 * USEC_PER_MSEC, (char *[]) { (char *) "yes", NULL });
        uint64_t took = (uint64_t) g_get_monotonic_time() - t0;
        assert_se(r.res.timed_out);
        assert_se(took < 2 * USEC_PER_SEC);
        assert_se(strlen(r.output) <= STEP_OUTPUT_TAIL_MAX && strlen(r.data) <= STEP_OUTPUT_DATA_MAX);
        assert_se(r.res.output_bytes > STEP_OUTPUT_TAIL_MAX);
        r_clear(&r);
}

static void test_signal(sd_event *e) {
        R r = run(e, 0, 0, SH("kill -9 $$"));
        assert_se(r.res.signal == SIGKILL && !r.res.timed_out);
        g_autofree char *d = step_result_describe(&r.res, 0);
        assert_se(g_str_has_prefix(d, "killed by signal 9"));
        r_clear(&r);
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
        g_autofree char *d = step_result_describe(&r.res, 300 * USEC_PER_MSEC);
        assert_se(g_str_has_prefix(d, "timed out"));
        unlink(pidfile);
        rmdir(dir);
        r_clear(&r);
}

static void test_stdin_null(sd_event *e) {
        R r = run(e, 0, 0, SH("readlink /proc/self/fd/0; cat; echo eof"));
        assert_se(step_result_ok(&r.res));
        assert_se(streq(r.output, "/dev/null\neof\n"));
        r_clear(&r);
}

static void test_clean_env(sd_event *e) {
        setenv("TEST_PROCESS_CANARY", "secret", 1);
        R r = run(e, 0, 0, (char *[]) { (char *) "/usr/bin/env", NULL });
        assert_se(step_result_ok(&r.res));
        g_autofree char *want = g_strdup_printf("PATH=" STEP_PATH "\nHOME=%s\nUSER=%s\nLANG=C.UTF-8\n", me->home,
                                                me->name);
        assert_se(streq(r.output, want));
        r_clear(&r);
}

static void test_no_fd_leak(sd_event *e) {
        int leak = open("/dev/null", O_RDONLY); /* deliberately without O_CLOEXEC */
        assert_se(leak >= 3);
        /* "[ -e ]" opens nothing itself, so any fd >= 3 seen is inherited. */
        g_autofree char *script = g_strdup_printf(
                "for n in 3 4 5 6 7 8 9 10 11 12 %d; do [ -e /proc/$$/fd/$n ] && echo \"open $n\"; done; true", leak);
        R r = run(e, 0, 0, SH(script));
        assert_se(step_result_ok(&r.res));
        assert_se(streq(r.output, ""));
        close(leak);
        r_clear(&r);
}

static void test_own_group_umask_nnp(sd_event *e) {
        mode_t old = umask(0077);
        R r = run(e, 0, 0, SH("ps -o pgid= -p $$; echo $$; umask; grep NoNewPrivs /proc/self/status; "
                              "ps -o sid= -p $$; if true 2>/dev/null </dev/tty; then echo tty; else echo no-tty; fi"));
        umask(old);
        assert_se(step_result_ok(&r.res));
        g_auto(GStrv) l = g_strsplit(r.output, "\n", -1);
        assert_se(atoi(l[0]) == atoi(l[1]));
        assert_se(atoi(l[0]) != getpgrp());
        assert_se(streq(l[2], "0022"));
        assert_se(g_str_has_prefix(l[3], "NoNewPrivs:") && g_str_has_suffix(l[3], "1"));
        /* its own session: no controlling terminal of ours to write to or push input into */
        assert_se(atoi(l[4]) == atoi(l[1]));
        assert_se(atoi(l[4]) != getsid(0));
        assert_se(streq(l[5], "no-tty"));
        r_clear(&r);
}

static void test_not_found_and_relative(sd_event *e) {
        R r = {};
        StepOptions o = { .argv = (char *[]) { (char *) "no-such-program-here", NULL }, .cwd = "/", .user = me };
        assert_se(step_runner_run(runner, &o, on_done, &r, NULL) == -ENOENT);
        o.argv = (char *[]) { NULL };
        assert_se(step_runner_run(runner, &o, on_done, &r, NULL) == -EINVAL);

        /* "./x.sh" and "sub/y.sh": in the working directory */
        g_autofree char *dir = g_dir_make_tmp("test-process-rel-XXXXXX", NULL);
        g_autofree char *sub = g_build_filename(dir, "sub", NULL);
        assert_se(mkdir(sub, 0755) == 0);
        g_autofree char *x = g_build_filename(dir, "x.sh", NULL);
        g_autofree char *y = g_build_filename(sub, "y.sh", NULL);
        assert_se(g_file_set_contents(x, "#!/bin/sh\necho x\n", -1, NULL) && chmod(x, 0755) == 0);
        assert_se(g_file_set_contents(y, "#!/bin/sh\necho y\n", -1, NULL) && chmod(y, 0755) == 0);
        r = run_as(e, me, dir, 0, 0, (char *[]) { (char *) "./x.sh", NULL });
        assert_se(step_result_ok(&r.res) && streq(r.data, "x\n"));
        r_clear(&r);
        r = run_as(e, me, dir, 0, 0, (char *[]) { (char *) "sub/y.sh", NULL });
        assert_se(step_result_ok(&r.res) && streq(r.data, "y\n"));
        r_clear(&r);
        g_autofree char *where = NULL;
        assert_se(!step_find_executable("./missing.sh", dir, &where));
        g_autofree char *want = g_build_filename(dir, "missing.sh", NULL);
        assert_se(streq(where, want));
        g_autofree char *where2 = NULL;
        assert_se(!step_find_executable("no-such-program-here", dir, &where2));
        assert_se(strstr(where2, "/usr/bin"));
        unlink(x);
        unlink(y);
        rmdir(sub);
        rmdir(dir);
}

static void test_cancel(sd_event *e) {
        R r = {};
        StepRun *run = NULL;
        g_autofree char *dir = g_dir_make_tmp("test-process-cancel-XXXXXX", NULL);
        g_autofree char *pidfile = g_build_filename(dir, "pid", NULL);
        g_autofree char *script = g_strdup_printf("echo $$ > %s.tmp; mv %s.tmp %s; exec sleep 60", pidfile, pidfile,
                                                  pidfile);
        StepOptions o = { .argv = SH(script), .cwd = "/", .user = me };
        assert_se(step_runner_run(runner, &o, on_done, &r, &run) == 0);
        for (int i = 0; i < 500 && !g_file_test(pidfile, G_FILE_TEST_EXISTS); i++)
                assert_se(sd_event_run(e, 10 * USEC_PER_MSEC) >= 0);
        g_autofree char *text = NULL;
        assert_se(g_file_get_contents(pidfile, &text, NULL, NULL));
        pid_t pid = (pid_t) atoi(text);
        step_run_cancel(run);
        for (int i = 0; i < 50 && !pid_gone(pid); i++)
                assert_se(sd_event_run(e, 20 * USEC_PER_MSEC) >= 0);
        for (int i = 0; i < 5; i++)
                assert_se(sd_event_run(e, 10 * USEC_PER_MSEC) >= 0);
        assert_se(pid_gone(pid));
        assert_se(!r.done);
        assert_se(kill(pid, 0) < 0 && errno == ESRCH); /* reaped, not a zombie */
        unlink(pidfile);
        rmdir(dir);
}

static void test_git_env(sd_event *e) {
        g_autofree char *dir = g_dir_make_tmp("test-process-git-XXXXXX", NULL);
        R r = {};
        char *args[] = { (char *) "config", (char *) "core.hooksPath", NULL };
        assert_se(step_runner_git(runner, dir, me, "git config", args, 10 * USEC_PER_SEC, on_done, &r, NULL) == 0);
        run_until(e, &r);
        /* not a repository, but -c still answers */
        assert_se(step_result_ok(&r.res));
        assert_se(streq(r.data, "/dev/null\n"));
        r_clear(&r);

        g_auto(GStrv) env = step_git_env();
        assert_se(g_strv_contains((const char *const *) env, "GIT_TERMINAL_PROMPT=0"));
        assert_se(g_strv_contains((const char *const *) env, "GIT_CONFIG_GLOBAL=/dev/null"));
        g_auto(GStrv) argv = step_git_argv("/srv/x", (char *[]) { (char *) "status", NULL });
        g_autofree char *joined = g_strjoinv(" ", argv);
        assert_se(g_str_has_prefix(joined, "git -C /srv/x -c core.hooksPath=/dev/null"));
        /* the repository is trusted because its owner runs git, never by safe.directory */
        assert_se(!strstr(joined, "safe.directory"));
        assert_se(g_str_has_suffix(joined, " status"));
        rmdir(dir);
}

static void test_drop_to_user(sd_event *e) {
        if (geteuid() != 0) {
                printf("test-process: not root, the drop to another user is not tested\n");
                return;
        }
        g_autoptr(StepUser) nobody = NULL;
        assert_se(step_user_lookup("nobody", &nobody) == 0);
        assert_se(step_user_lookup("no-such-user-here", &(StepUser *) { NULL }) == -ESRCH);
        R r = run_as(e, nobody, "/", 0, 0, SH("id -u; id -g; id -G; echo $HOME $USER; grep CapEff /proc/self/status"));
        assert_se(step_result_ok(&r.res));
        g_auto(GStrv) l = g_strsplit(r.data, "\n", -1);
        assert_se(atoi(l[0]) == (int) nobody->uid && atoi(l[1]) == (int) nobody->gid);
        g_autofree char *groups = g_strdup_printf("%u", (unsigned) nobody->gid);
        assert_se(streq(l[2], groups)); /* supplementary groups: its own, not root's */
        g_autofree char *home = g_strdup_printf("%s %s", nobody->home, nobody->name);
        assert_se(streq(l[3], home));
        assert_se(g_str_has_suffix(l[4], "0000000000000000"));
        r_clear(&r);

        /* a working directory the user may not enter: reported, nothing run */
        g_autofree char *dir = g_dir_make_tmp("test-process-closed-XXXXXX", NULL); /* 0700 root */
        r = run_as(e, nobody, dir, 0, 0, (char *[]) { (char *) "true", NULL });
        assert_se(r.res.error == -EACCES);
        g_autofree char *d = step_result_describe(&r.res, 0);
        assert_se(strstr(d, "could not be started: cannot change to") && strstr(d, "as nobody"));
        r_clear(&r);
        rmdir(dir);
}

/* A step that ends leaves nothing behind in its group, as a unit's cgroup
 * does not (KillMode=control-group). */
static void test_leftovers_killed(sd_event *e) {
        g_autofree char *dir = g_dir_make_tmp("test-process-XXXXXX", NULL);
        g_autofree char *pidfile = g_build_filename(dir, "pid", NULL);
        g_autofree char *script = g_strdup_printf("sleep 60 >/dev/null 2>&1 & echo $! > %s", pidfile);
        R r = run(e, 0, 0, SH(script));
        assert_se(step_result_ok(&r.res));
        g_autofree char *text = NULL;
        assert_se(g_file_get_contents(pidfile, &text, NULL, NULL));
        pid_t left = (pid_t) atoi(text);
        assert_se(left > 0);
        for (int i = 0; i < 200 && !pid_gone(left); i++)
                g_usleep(10000);
        assert_se(pid_gone(left));
        unlink(pidfile);
        rmdir(dir);
        r_clear(&r);
}

int main(void) {
        sd_event *e = NULL;
        log_set_max_level(getenv("TEST_DEBUG") ? LOG_DEBUG : LOG_WARNING);
        assert_se(sd_event_new(&e) >= 0);
        assert_se(step_runner_new(e, NULL, STEP_RUNNER_FORK, &runner) == 0);
        assert_se(step_runner_backend(runner) == STEP_RUNNER_FORK);
        assert_se(step_runner_new(e, NULL, STEP_RUNNER_SYSTEMD, &(StepRunner *) { NULL }) == -EINVAL);
        assert_se(step_user_lookup_uid(geteuid(), &me) == 0);
        test_output_and_exit(e);
        test_tail_bounded(e);
        test_invalid_utf8(e);
        test_flood_bounded(e);
        test_signal(e);
        test_timeout_kills_group(e);
        test_leftovers_killed(e);
        test_stdin_null(e);
        test_clean_env(e);
        test_no_fd_leak(e);
        test_own_group_umask_nnp(e);
        test_not_found_and_relative(e);
        test_cancel(e);
        test_git_env(e);
        test_drop_to_user(e);
        step_runner_free(runner);
        step_user_free(me);
        sd_event_unref(e);
        printf("test-process: OK\n");
        return 0;
}
