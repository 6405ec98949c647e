/* SPDX-License-Identifier: Apache-2.0 */
/* A VM's log as text: cut into valid UTF-8 lines for FollowLogs and GetLogs
 * (shared/log-lines.c), and escaped for a terminal (shared/term-escape.c),
 * whatever the chunking. */
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "shared/log-lines.h"
#include "shared/macro.h"
#include "shared/round-lock.h"
#include "shared/term-escape.h"
#include "tests.h"

static void collect(const char *line, size_t n, void *userdata) {
        assert_se(strlen(line) == n);
        assert_se(g_utf8_validate(line, (gssize) n, NULL));
        g_ptr_array_add(userdata, g_strdup(line));
}

static void test_make_valid(void) {
        static const char in[] = "a\0b\xff" "c\xe2\x82 d\xed\xa0\x80";
        g_autofree char *v = log_text_make_valid(in, sizeof in - 1);
        assert_se(streq(v, "a\xef\xbf\xbd" "b\xef\xbf\xbd" "c\xef\xbf\xbd\xef\xbf\xbd d"
                           "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"));
        g_autofree char *e = log_text_make_valid(NULL, 0);
        assert_se(streq(e, ""));
}

static void test_incomplete_tail(void) {
        assert_se(utf8_incomplete_tail("abc", 3) == 0);
        assert_se(utf8_incomplete_tail("a\xe2", 2) == 1);
        assert_se(utf8_incomplete_tail("a\xe2\x82", 3) == 2);
        assert_se(utf8_incomplete_tail("a\xe2\x82\xac", 4) == 0);
        assert_se(utf8_incomplete_tail("a\xf0\x9f\x98", 4) == 3);
        assert_se(utf8_incomplete_tail("\x80\x80\x80\x80", 4) == 0);
        assert_se(utf8_incomplete_tail("a\xff", 2) == 0);
        assert_se(utf8_incomplete_tail("", 0) == 0);
}

static void test_lines_any_chunking(void) {
        static const char in[] = "one\ntwo \xe2\x82\xac\nbad \xff\nnul \0 x\nlast";
        const size_t n = sizeof in - 1;
        for (size_t cut = 0; cut <= n; cut++) {
                g_autoptr(GPtrArray) got = g_ptr_array_new_with_free_func(g_free);
                LogLines l = {};
                log_lines_feed(&l, in, cut, collect, got);
                log_lines_feed(&l, in + cut, n - cut, collect, got);
                log_lines_finish(&l, collect, got);
                assert_se(got->len == 5);
                assert_se(streq(got->pdata[0], "one\n"));
                assert_se(streq(got->pdata[1], "two \xe2\x82\xac\n"));
                assert_se(streq(got->pdata[2], "bad \xef\xbf\xbd\n"));
                assert_se(streq(got->pdata[3], "nul \xef\xbf\xbd x\n"));
                assert_se(streq(got->pdata[4], "last\n"));
        }
}

static void test_overlong_line_is_cut_between_characters(void) {
        /* LOG_LINE_MAX - 1 bytes of 'x', then a euro sign across the cut. */
        GString *in = g_string_new(NULL);
        for (size_t i = 0; i < LOG_LINE_MAX - 1; i++)
                g_string_append_c(in, 'x');
        g_string_append(in, "\xe2\x82\xac tail\n");
        g_autoptr(GPtrArray) got = g_ptr_array_new_with_free_func(g_free);
        LogLines l = {};
        log_lines_feed(&l, in->str, in->len, collect, got);
        log_lines_finish(&l, collect, got);
        assert_se(got->len == 2);
        assert_se(strlen(got->pdata[0]) == LOG_LINE_MAX - 1); /* the euro sign waits for the next piece */
        assert_se(streq(got->pdata[1], "\xe2\x82\xac tail\n"));
        g_string_free(in, TRUE);
}

static char *escape_in_two(const char *in, size_t n, size_t cut) {
        GString *out = g_string_new(NULL);
        TermEscape t = {};
        term_escape_feed(&t, in, cut, out);
        term_escape_feed(&t, in + cut, n - cut, out);
        term_escape_finish(&t, out);
        return g_string_free(out, FALSE);
}

static void test_term_escape(void) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "plain text\n", "plain text\n" },
                { "tab\there\n", "tab\there\n" },
                { "\x1b[31mred\x1b[0m\n", "\\033[31mred\\033[0m\n" },
                { "bell \a back\b ff\f vt\v cr\rX\n", "bell \\a back\\b ff\\f vt\\v cr\\rX\n" },
                { "crlf\r\n", "crlf\n" },
                { "cr at end\r", "cr at end\\r" },
                { "two\r\r\n", "two\\r\n" },
                { "del \x7f nul-free\n", "del \\177 nul-free\n" },
                { "c1 \xc2\x9b" "31m\n", "c1 \\302\\23331m\n" },
                { "euro \xe2\x82\xac ok\n", "euro \xe2\x82\xac ok\n" },
                { "bad \xff \xe2\x82\n", "bad \\377 \\342\\202\n" },
                { "surrogate \xed\xa0\x80\n", "surrogate \\355\\240\\200\n" },
                { "cut \xe2\x82", "cut \\342\\202" },
                { "\r\xe2\x82\xac\r\n", "\\r\xe2\x82\xac\n" },
        };
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                size_t n = strlen(cases[i].in);
                for (size_t cut = 0; cut <= n; cut++) {
                        g_autofree char *got = escape_in_two(cases[i].in, n, cut);
                        if (!streq(got, cases[i].out)) {
                                fprintf(stderr, "case %zu cut %zu: got \"%s\"\n", i, cut, got);
                                assert_se(false);
                        }
                }
        }
}

static pid_t pid_of(const char *text) {
        return round_lock_parse_pid(text, strlen(text));
}

static void test_round_lock_pid(void) {
        assert_se(pid_of("{\"pid\": 1234}") == 1234);
        assert_se(pid_of("{\"pid\": 1234, \"round\": 7}") == 1234);
        assert_se(pid_of("{}") == 0);
        assert_se(pid_of("") == 0);
        assert_se(pid_of("  \n") == 0);
        assert_se(pid_of("{\"pid\": -5}") == 0);
        assert_se(pid_of("{\"pid\": \"5\"}") == 0);
        assert_se(pid_of("{\"pid\": 2147483648}") == 0);
        assert_se(pid_of("[1]") == 0);
        assert_se(pid_of("{\"pid\": 1") == 0);
}

int main(void) {
        test_make_valid();
        test_incomplete_tail();
        test_lines_any_chunking();
        test_overlong_line_is_cut_between_characters();
        test_term_escape();
        test_round_lock_pid();
        printf("test-log-text: ok\n");
        return 0;
}
