/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "ctl/ctl.h"
#include "shared/macro.h"

#define UPDATER_INTERFACE "org.platform.Launcher1.Updater"

typedef struct UpdaterArgs {
        bool force, dry_run;
        const char *commit;
        unsigned lines;  /* history -n */
} UpdaterArgs;

int updater_info_get(sd_bus *bus, JsonObject **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = sd_bus_call_method(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, "org.freedesktop.DBus.Properties",
                                   "GetAll", &error, &reply, "s", UPDATER_INTERFACE);
        if (r < 0)
                return -ctl_bus_error("Failed to read the updater's properties", &error, r);
        g_autoptr(JsonNode) node = NULL;
        r = ctl_json_read(reply, &node);
        if (r < 0 || !JSON_NODE_HOLDS_OBJECT(node)) {
                fprintf(stderr, "Failed to parse the updater's properties.\n");
                return -EXIT_FAILURE;
        }
        *ret = json_object_ref(json_node_get_object(node));
        return 0;
}

static const char *short_commit(const char *c, char buf[13]) {
        if (isempty(c))
                return "(none)";
        g_strlcpy(buf, c, 13);
        return buf;
}

static void print_time(const char *label, uint64_t usec) {
        if (usec == 0) {
                printf("%20s: %s\n", label, "never");
                return;
        }
        g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc((gint64) (usec / USEC_PER_SEC));
        g_autoptr(GDateTime) local = t ? g_date_time_to_local(t) : NULL;
        g_autofree char *s = local ? g_date_time_format(local, "%a %Y-%m-%d %H:%M:%S %Z") : NULL;
        printf("%20s: %s\n", label, s ? s : "?");
}

/* Problems first: deferred (and why, since when), failed, quarantined. */
void updater_info_print_problems(JsonObject *u) {
        const char *state = ctl_json_str(u, "State");
        if (streq(state, "deferred")) {
                JsonNode *n = json_object_get_member(u, "DeferReasons");
                JsonArray *a = n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
                for (guint i = 0; a && i < json_array_get_length(a); i++) {
                        JsonArray *t = json_array_get_array_element(a, i);
                        if (t && json_array_get_length(t) == 3)
                                printf("Problem: update deferred by %s since %s: %s\n",
                                       json_array_get_string_element(t, 0), json_array_get_string_element(t, 2),
                                       json_array_get_string_element(t, 1));
                }
        }
        if (streq(state, "failed"))
                printf("Problem: the updater failed: %s\n", ctl_json_str(u, "LastError"));
        char buf[13];
        if (!isempty(ctl_json_str(u, "QuarantinedCommit")))
                printf("Problem: commit %s is quarantined (it failed and was rolled back)\n",
                       short_commit(ctl_json_str(u, "QuarantinedCommit"), buf));
        if (!streq(state, "failed") && !isempty(ctl_json_str(u, "LastError")))
                printf("Problem: last update: %s\n", ctl_json_str(u, "LastError"));
}

void updater_info_print(JsonObject *u) {
        char b1[13], b2[13];
        const char *state = ctl_json_str(u, "State");
        printf("%20s: %s", "Updater", state);
        if (!isempty(ctl_json_str(u, "Operation")))
                printf(" (%s, %" PRIu64 "%%)", ctl_json_str(u, "Operation"), ctl_json_uint(u, "Progress"));
        printf("\n");
        if (streq(state, "disabled"))
                return;
        printf("%20s: %s (%s/%s)\n", "Repository", ctl_json_str(u, "Repository"), ctl_json_str(u, "Remote"),
               ctl_json_str(u, "Branch"));
        printf("%20s: %s\n", "Current", short_commit(ctl_json_str(u, "CurrentCommit"), b1));
        printf("%20s: %s\n", "Target", short_commit(ctl_json_str(u, "TargetCommit"), b2));
        printf("%20s: %s\n", "Last good", short_commit(ctl_json_str(u, "LastGoodCommit"), b1));
        printf("%20s: %s\n", "Previous", short_commit(ctl_json_str(u, "PreviousCommit"), b2));
        JsonNode *au = json_object_get_member(u, "AutoUpdate");
        bool on = au && JSON_NODE_HOLDS_VALUE(au) && json_node_get_boolean(au);
        printf("%20s: %s, every %" PRIu64 " s\n", "Automatic updates", on ? "on" : "off",
               (uint64_t) (ctl_json_uint(u, "IntervalUSec") / USEC_PER_SEC));
        print_time("Last check", ctl_json_uint(u, "LastCheckTimestamp"));
        print_time("Last update", ctl_json_uint(u, "LastUpdateTimestamp"));
        if (on)
                print_time("Next check", ctl_json_uint(u, "NextCheckTimestamp"));
}

static int updater_status(sd_bus *bus, const UpdaterArgs *a) {
        g_autoptr(JsonObject) u = NULL;
        int r = updater_info_get(bus, &u);
        if (r < 0)
                return -r;
        if (arg.json) {
                g_autoptr(JsonNode) n = json_node_init_object(json_node_alloc(), u);
                ctl_json_print(n, true);
                return 0;
        }
        updater_info_print_problems(u);
        updater_info_print(u);
        return 0;
}

/* ---- long calls: follow Operation/Progress on a terminal ---- */

typedef struct Follow {
        sd_event *event;
        bool progress;
        const char *name;     /* the operation: "apply", "rollback", "check" */
        char *operation;
        sd_bus_message *reply;
        sd_bus_error error;
        int r;
} Follow;

static int on_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Follow *f = userdata;
        g_autoptr(JsonNode) changed = NULL;
        const char *iface;
        if (sd_bus_message_read(m, "s", &iface) <= 0 || !streq(iface, UPDATER_INTERFACE))
                return 0;
        if (ctl_json_read(m, &changed) < 0 || !JSON_NODE_HOLDS_OBJECT(changed))
                return 0;
        JsonObject *o = json_node_get_object(changed);
        if (!json_object_has_member(o, "Operation"))
                return 0;
        const char *op = ctl_json_str(o, "Operation");
        if (isempty(op) || streq_ptr(op, f->operation))
                return 0;
        g_free(f->operation);
        f->operation = g_strdup(op);
        fprintf(stderr, "%s: %s (%" PRIu64 "%%)\n", f->name, op, ctl_json_uint(o, "Progress"));
        return 0;
}

static int on_signal(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Follow *f = userdata;
        const char *a = NULL, *b = NULL;
        if (sd_bus_message_read(m, "ss", &a, &b) < 0)
                return 0;
        fprintf(stderr, "%s: %s: %s %s\n", f->name, sd_bus_message_get_member(m), a, b);
        return 0;
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Follow *f = userdata;
        if (sd_bus_message_is_method_error(reply, NULL)) {
                f->r = -sd_bus_message_get_errno(reply);
                (void) sd_bus_error_copy(&f->error, sd_bus_message_get_error(reply));
                if (f->r == 0)
                        f->r = -EIO;
        } else
                f->reply = sd_bus_message_ref(reply);
        return sd_event_exit(f->event, 0);
}

static int long_call(sd_bus *bus, sd_bus_message *m, const char *name, const char *what, sd_bus_message **ret) {
        Follow f = { .error = SD_BUS_ERROR_NULL, .progress = isatty(STDERR_FILENO) && !arg.quiet, .name = name };
        int r;
        if (f.progress) {
                _cleanup_(sd_event_unrefp) sd_event *event = NULL;
                r = sd_event_new(&event);
                if (r >= 0)
                        r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
                f.event = event;
                /* Subscribed before the call goes out, so no change is missed. */
                if (r >= 0)
                        r = sd_bus_match_signal(bus, NULL, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH,
                                                "org.freedesktop.DBus.Properties", "PropertiesChanged", on_changed, &f);
                if (r >= 0)
                        r = sd_bus_match_signal(bus, NULL, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, UPDATER_INTERFACE,
                                                "UpdateDeferred", on_signal, &f);
                if (r >= 0)
                        r = sd_bus_call_async(bus, NULL, m, on_reply, &f, CTL_LONG_CALL_USEC * 6);
                if (r >= 0)
                        r = sd_event_loop(event);
                (void) sd_bus_detach_event(bus);
        } else
                r = sd_bus_call(bus, m, CTL_LONG_CALL_USEC * 6, &f.error, &f.reply);
        g_free(f.operation);
        if (r >= 0 && f.r < 0)
                r = f.r;
        int ret_code = 0;
        if (r < 0)
                ret_code = ctl_bus_error(what, &f.error, r);
        sd_bus_error_free(&f.error);
        if (ret_code == 0)
                *ret = f.reply;
        else
                sd_bus_message_unref(f.reply);
        return ret_code;
}

static int new_call(sd_bus *bus, const char *method, sd_bus_message **ret) {
        int r = sd_bus_message_new_method_call(bus, ret, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, UPDATER_INTERFACE,
                                               method);
        if (r >= 0)
                r = sd_bus_message_set_allow_interactive_authorization(*ret, arg.ask_password);
        if (r < 0) {
                fprintf(stderr, "Failed to build the %s call: %s\n", method, strerror(-r));
                return EXIT_FAILURE;
        }
        return 0;
}

static void print_pair_json(const char *k1, JsonNode *v1, const char *k2, const char *v2) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, k1);
        json_builder_add_value(b, v1);
        json_builder_set_member_name(b, k2);
        json_builder_add_string_value(b, v2);
        json_builder_end_object(b);
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        ctl_json_print(root, true);
}

static int updater_check(sd_bus *bus, const UpdaterArgs *a) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r = new_call(bus, "Check", &m);
        if (r)
                return r;
        r = long_call(bus, m, "check", "Failed to check for updates", &reply);
        if (r)
                return r;
        int available;
        const char *commit;
        if (sd_bus_message_read(reply, "bs", &available, &commit) < 0)
                return EXIT_FAILURE;
        if (arg.json)
                print_pair_json("Available", json_node_init_boolean(json_node_alloc(), available), "Commit", commit);
        else if (!arg.quiet)
                printf(available ? "Update available: %s\n" : "Up to date: %s\n", commit);
        return 0;
}

static int from_to(sd_bus_message *reply, const char *done, const char *same) {
        const char *from, *to;
        if (sd_bus_message_read(reply, "ss", &from, &to) < 0)
                return EXIT_FAILURE;
        if (arg.json) {
                print_pair_json("From", json_node_init_string(json_node_alloc(), from), "To", to);
                return 0;
        }
        if (arg.quiet)
                return 0;
        if (streq(from, to))
                printf("%s: %s\n", same, to);
        else
                printf("%s %s -> %s\n", done, from, to);
        return 0;
}

static int new_apply(sd_bus *bus, bool force, bool dry_run, sd_bus_message **ret) {
        int r = new_call(bus, "Apply", ret);
        if (r)
                return r;
        r = sd_bus_message_open_container(*ret, 'a', "{sv}");
        if (r >= 0 && force)
                r = sd_bus_message_append(*ret, "{sv}", "force", "b", 1);
        if (r >= 0 && dry_run)
                r = sd_bus_message_append(*ret, "{sv}", "dry-run", "b", 1);
        if (r >= 0)
                r = sd_bus_message_close_container(*ret);
        return r < 0 ? EXIT_FAILURE : 0;
}

/* "alphacore.service, worker.service and 2 restart commands", NULL when nothing restarts. */
static char *restarts_text(JsonObject *u) {
        JsonNode *units = json_object_get_member(u, "RestartUnits"), *cmds = json_object_get_member(u, "RestartCommands");
        guint n_units = units && JSON_NODE_HOLDS_ARRAY(units) ? json_array_get_length(json_node_get_array(units)) : 0;
        guint n_cmds = cmds && JSON_NODE_HOLDS_ARRAY(cmds) ? json_array_get_length(json_node_get_array(cmds)) : 0;
        if (n_units + n_cmds == 0)
                return NULL;
        GString *s = g_string_new(NULL);
        for (guint k = 0; k < n_units; k++)
                g_string_append_printf(s, "%s%s", k ? ", " : "",
                                       json_array_get_string_element(json_node_get_array(units), k));
        if (n_cmds)
                g_string_append_printf(s, "%s%u restart command%s", n_units ? " and " : "", n_cmds,
                                       n_cmds > 1 ? "s" : "");
        return g_string_free(s, FALSE);
}

/* What the update or rollback will restart, for the question. */
static char *transaction_text(JsonObject *u, const char *verb, const char *from, const char *to) {
        char b1[13] = "", b2[13] = "";
        g_autofree char *restarts = restarts_text(u);
        bool rollback = streq(verb, "rolls back");
        return g_strdup_printf("This %s %s from %s to %s%s%s%s, builds it and %s%s.\n", verb,
                               ctl_json_str(u, "Repository"), short_commit(from, b1), short_commit(to, b2),
                               rollback ? " (" : "", rollback ? b1 : "", rollback ? " is quarantined)" : "",
                               restarts ? "restarts " : "restarts nothing", strempty(restarts));
}

/* The dry run says whether Apply would change anything: only then is there
 * something to restart and a question to ask. Its failure (deferred, dirty)
 * is left for the real call to report. */
static int confirm_apply(sd_bus *bus, const UpdaterArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        g_autoptr(JsonObject) u = NULL;
        const char *from, *to;
        if (!ctl_confirm_wanted() || a->dry_run || new_apply(bus, a->force, true, &m) != 0)
                return 0;
        ctl_polkit_agent_open(bus);
        if (sd_bus_call(bus, m, CTL_LONG_CALL_USEC, &error, &reply) < 0 ||
            sd_bus_message_read(reply, "ss", &from, &to) < 0 || streq(from, to))
                return 0;
        int r = updater_info_get(bus, &u);
        if (r < 0)
                return -r;
        g_autofree char *restarts = restarts_text(u);
        if (!restarts)
                return 0; /* nothing restarts: the checkout changes under a running service only */
        g_autofree char *what = transaction_text(u, "updates", from, to);
        return ctl_confirm(what);
}

static int updater_apply(sd_bus *bus, const UpdaterArgs *a) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r = confirm_apply(bus, a);
        if (r)
                return r;
        r = new_apply(bus, a->force, a->dry_run, &m);
        if (r)
                return r;
        r = long_call(bus, m, a->dry_run ? "apply --dry-run" : "apply",
                      a->dry_run ? "Dry run failed" : "Failed to apply the update", &reply);
        if (r)
                return r;
        return from_to(reply, a->dry_run ? "Would update" : "Updated", "Up to date");
}

static int confirm_rollback(sd_bus *bus, const UpdaterArgs *a) {
        g_autoptr(JsonObject) u = NULL;
        if (!ctl_confirm_wanted())
                return 0;
        int r = updater_info_get(bus, &u);
        if (r < 0)
                return -r;
        const char *to = isempty(a->commit) ? ctl_json_str(u, "PreviousCommit") : a->commit;
        const char *from = ctl_json_str(u, "CurrentCommit");
        if (isempty(to))
                return 0; /* nothing to go back to: the launcher says so */
        g_autofree char *what = transaction_text(u, "rolls back", from, to);
        return ctl_confirm(what);
}

static int updater_rollback(sd_bus *bus, const UpdaterArgs *a) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL, *reply = NULL;
        int r = confirm_rollback(bus, a);
        if (r)
                return r;
        r = new_call(bus, "Rollback", &m);
        if (r)
                return r;
        if (sd_bus_message_append(m, "s", strempty(a->commit)) < 0)
                return EXIT_FAILURE;
        r = long_call(bus, m, "rollback", "Failed to roll back", &reply);
        if (r)
                return r;
        return from_to(reply, "Rolled back", "Already at");
}

static int set_auto(sd_bus *bus, bool on) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = new_call(bus, "SetAutoUpdate", &m);
        if (r)
                return r;
        if (sd_bus_message_append(m, "b", (int) on) < 0)
                return EXIT_FAILURE;
        r = sd_bus_call(bus, m, 0, &error, NULL);
        if (r < 0)
                return ctl_bus_error(on ? "Failed to enable automatic updates" : "Failed to disable automatic updates",
                                     &error, r);
        return 0;
}

static int updater_enable(sd_bus *bus, const UpdaterArgs *a) {
        return set_auto(bus, true);
}

static int updater_history(sd_bus *bus, const UpdaterArgs *a) {
        return ctl_updater_history(bus, a->lines ?: 100);
}

static int updater_disable(sd_bus *bus, const UpdaterArgs *a) {
        return set_auto(bus, false);
}

enum { OPT_FORCE = 1, OPT_DRY_RUN = 2, OPT_COMMIT = 4, OPT_LINES = 8 };

static const struct {
        const char *verb;
        int (*run)(sd_bus *bus, const UpdaterArgs *a);
        unsigned opts;
        const char *usage;
} updater_verbs[] = {
        { "status", updater_status, 0, "status" },
        { "check", updater_check, 0, "check" },
        { "apply", updater_apply, OPT_FORCE | OPT_DRY_RUN, "apply [--dry-run] [--force]" },
        { "rollback", updater_rollback, OPT_COMMIT, "rollback [COMMIT]" },
        { "enable", updater_enable, 0, "enable" },
        { "disable", updater_disable, 0, "disable" },
        { "history", updater_history, OPT_LINES, "history [-n N]" },
};

/* The options were read by platformctl's one parser (they may stand anywhere). */
static int parse_updater_args(int argc, char **argv, unsigned allowed, const char *usage, UpdaterArgs *a) {
        if ((arg.force && !(allowed & OPT_FORCE)) || (arg.dry_run && !(allowed & OPT_DRY_RUN)) ||
            argc - 1 > ((allowed & OPT_COMMIT) ? 1 : 0)) {
                fprintf(stderr, "Usage: platformctl updater %s\n", usage);
                return EX_USAGE;
        }
        a->force = arg.force;
        a->dry_run = arg.dry_run;
        a->lines = arg.lines;
        if (argc > 1)
                a->commit = argv[1];
        return 0;
}

int verb_updater(sd_bus *bus, int argc, char **argv) {
        char *status_argv[] = { (char *) "status", NULL };
        argc--, argv++;
        if (argc == 0) {
                argc = 1;
                argv = status_argv;
        }
        for (size_t k = 0; k < ELEMENTSOF(updater_verbs); k++) {
                if (!streq(updater_verbs[k].verb, argv[0]))
                        continue;
                UpdaterArgs a = {};
                int r = parse_updater_args(argc, argv, updater_verbs[k].opts, updater_verbs[k].usage, &a);
                if (r)
                        return r;
                return updater_verbs[k].run(bus, &a);
        }
        fprintf(stderr, "Unknown updater command '%s'. See platformctl --help.\n", argv[0]);
        return EX_USAGE;
}
