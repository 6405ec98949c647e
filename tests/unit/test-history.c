/* SPDX-License-Identifier: Apache-2.0 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <glib.h>

#include "core/fileio.h"
#include "core/history.h"
#include "shared/macro.h"
#include "tests.h"

static unsigned calls;
static char last_action[64];

static void on_appended(History *h, const HistoryEntry *e, void *userdata) {
        calls++;
        g_strlcpy(last_action, e->action, sizeof(last_action));
        assert_se(userdata == (void *) h);
}

static HistoryEntry entry(const char *action, unsigned i) {
        static char to[32];
        snprintf(to, sizeof(to), "hash-%u", i);
        return (HistoryEntry) { .kind = HISTORY_KIND_VM, .subject = "validator_vm", .action = action,
                                .trigger = "poll", .from = "", .to = to, .ok = true, .duration_usec = i };
}

static void test_append_bound_persist(const char *dir) {
        g_autofree char *path = g_build_filename(dir, "h1", HISTORY_FILE, NULL);
        History *h = NULL;
        assert_se(history_new(path, 5, &h) == 0);
        history_set_callback(h, on_appended, h);
        assert_se(history_size(h) == 0);

        for (unsigned i = 0; i < 8; i++) {
                HistoryEntry e = entry(i % 2 ? "stop" : "deploy", i);
                assert_se(history_append(h, &e) == 0);
        }
        assert_se(calls == 8);
        assert_se(streq(last_action, "stop"));
        assert_se(history_size(h) == 5);
        assert_se(streq(history_get(h, 0)->to, "hash-3")); /* 0..2 dropped */
        assert_se(streq(history_get(h, 4)->to, "hash-7"));
        assert_se(history_get(h, 4)->timestamp_usec > 0);
        assert_se(history_get(h, 5) == NULL);

        HistoryEntry bad = entry("", 0);
        assert_se(history_append(h, &bad) == -EINVAL);
        bad = entry("deploy", 0);
        bad.kind = _HISTORY_KIND_MAX;
        assert_se(history_append(h, &bad) == -EINVAL);
        assert_se(history_size(h) == 5);

        HistoryEntry failed = { .kind = HISTORY_KIND_UPDATER, .subject = "/srv/app", .action = "apply",
                                .trigger = "auto-update", .from = "aaaa", .to = "bbbb", .ok = false,
                                .reason = "health check failed", .duration_usec = 42, .timestamp_usec = 7 };
        uint64_t ts = history_get(h, 4)->timestamp_usec;
        assert_se(history_append(h, &failed) == 0);
        history_free(h);

        /* Reloaded as written, and the bound applies to what is loaded. */
        assert_se(history_new(path, 3, &h) == 0);
        assert_se(history_size(h) == 3);
        const HistoryEntry *e = history_get(h, 2);
        assert_se(e->kind == HISTORY_KIND_UPDATER && !e->ok && e->timestamp_usec == 7 && e->duration_usec == 42);
        assert_se(streq(e->action, "apply") && streq(e->trigger, "auto-update") && streq(e->from, "aaaa") &&
                  streq(e->to, "bbbb") && streq(e->reason, "health check failed") && streq(e->subject, "/srv/app"));
        assert_se(history_get(h, 1)->timestamp_usec == ts);
        assert_se(history_get(h, 1)->ok && streq(history_get(h, 1)->reason, ""));
        history_free(h);
}

static void test_bounded_strings(const char *dir) {
        g_autofree char *path = g_build_filename(dir, "h2", HISTORY_FILE, NULL);
        History *h = NULL;
        assert_se(history_new(path, 0, &h) == 0);

        /* 600 bytes of two-byte characters: cut at a boundary under the bound. */
        GString *s = g_string_new(NULL);
        for (int i = 0; i < 300; i++)
                g_string_append(s, "é");
        HistoryEntry e = { .kind = HISTORY_KIND_VM, .action = "deploy", .trigger = "uid 0 (x\n\x01y)",
                           .from = s->str, .to = "\xff\xfe", .ok = false, .reason = s->str };
        assert_se(history_append(h, &e) == 0);
        const HistoryEntry *c = history_get(h, 0);
        assert_se(strlen(c->from) <= HISTORY_FIELD_MAX && strlen(c->from) >= HISTORY_FIELD_MAX - 1);
        assert_se(g_utf8_validate(c->from, -1, NULL));
        assert_se(strlen(c->reason) <= HISTORY_REASON_MAX && g_utf8_validate(c->reason, -1, NULL));
        assert_se(g_utf8_validate(c->to, -1, NULL) && strlen(c->to) > 0);
        assert_se(streq(c->trigger, "uid 0 (x  y)"));
        assert_se(streq(c->subject, ""));

        /* C1 controls (U+009B: CSI to some terminals) go too; other text stays */
        HistoryEntry c1 = { .kind = HISTORY_KIND_VM, .action = "deploy", .ok = false,
                            .reason = "a \xc2\x9b" "2J b \xc2\x85 c \xc2\xa0 \xc3\xa9" };
        assert_se(history_append(h, &c1) == 0);
        assert_se(streq(history_get(h, 1)->reason, "a  2J b   c \xc2\xa0 \xc3\xa9"));

        /* ok entries carry no reason. */
        HistoryEntry ok = { .kind = HISTORY_KIND_VM, .action = "start", .ok = true, .reason = "ignored" };
        assert_se(history_append(h, &ok) == 0);
        assert_se(streq(history_get(h, 2)->reason, ""));
        g_string_free(s, TRUE);
        history_free(h);
}

static void test_corrupt_moved_aside(const char *dir) {
        g_autofree char *path = g_build_filename(dir, "h3", HISTORY_FILE, NULL);
        g_autofree char *aside = g_strconcat(path, ".corrupt", NULL);
        const char *junk = "{\"entries\": [ not json";
        assert_se(write_file_atomic(path, junk, strlen(junk), 0600) == 0);

        History *h = NULL;
        assert_se(history_new(path, 0, &h) == 0);
        assert_se(history_size(h) == 0);
        assert_se(access(aside, F_OK) == 0);
        assert_se(access(path, F_OK) < 0);
        history_free(h);

        /* Malformed entries are skipped, the good ones kept. */
        const char *mixed = "{\"version\":1,\"entries\":[{\"kind\":\"vm\",\"action\":\"stop\",\"result\":\"ok\","
                            "\"timestamp_usec\":5,\"duration_usec\":1},{\"kind\":\"nope\",\"action\":\"x\"},7,"
                            "{\"kind\":\"vm\",\"action\":\"start\",\"result\":\"maybe\",\"timestamp_usec\":5,"
                            "\"duration_usec\":1}]}";
        assert_se(write_file_atomic(path, mixed, strlen(mixed), 0600) == 0);
        assert_se(history_new(path, 0, &h) == 0);
        assert_se(history_size(h) == 1);
        assert_se(streq(history_get(h, 0)->action, "stop") && streq(history_get(h, 0)->trigger, ""));
        history_free(h);
}

int main(void) {
        char tmpl[] = "/tmp/test-history-XXXXXX";
        assert_se(mkdtemp(tmpl));
        test_append_bound_persist(tmpl);
        test_bounded_strings(tmpl);
        test_corrupt_moved_aside(tmpl);
        g_autofree char *cmd_dir = g_strdup(tmpl);
        /* Leave no files behind. */
        const char *sub[] = { "h1", "h2", "h3" };
        for (size_t i = 0; i < ELEMENTSOF(sub); i++) {
                g_autofree char *d = g_build_filename(tmpl, sub[i], NULL);
                g_autoptr(GDir) gd = g_dir_open(d, 0, NULL);
                const char *n;
                while (gd && (n = g_dir_read_name(gd))) {
                        g_autofree char *f = g_build_filename(d, n, NULL);
                        (void) unlink(f);
                }
                (void) rmdir(d);
        }
        (void) rmdir(cmd_dir);
        return 0;
}
