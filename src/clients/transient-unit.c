/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "clients/step-output.h"
#include "clients/transient-unit.h"
#include "shared/log.h"
#include "shared/macro.h"

#define SYSTEMD_NAME "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"
#define SYSTEMD_UNIT "org.freedesktop.systemd1.Unit"
#define SYSTEMD_SERVICE "org.freedesktop.systemd1.Service"
#define BACKSTOP_EXTRA_USEC (5 * USEC_PER_SEC)

struct TransientUnit {
        sd_bus *bus;
        sd_event *event;
        char *name;              /* the step */
        char *unit;              /* platform-launcher-<step>-<random>.service */
        char *unit_path;
        char *user, *cwd, *path;
        sd_bus_slot *match;
        sd_bus_slot *call;
        sd_event_source *backstop;
        StepOutput *out;
        int out_w, err_w;        /* the write ends, until they are in the start message */
        uint64_t timeout_usec, grace_usec, started;
        bool inspect_only;
        char **argv, **envp;     /* copies: the start message is built after two round trips */
        bool start_sent, querying, requery, timed_out;
        char *failure;
        transient_unit_done_cb cb;
        void *userdata;
};

static uint64_t mono_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

const char *transient_unit_name(const TransientUnit *t) {
        return t ? t->unit : NULL;
}

static void unit_free(TransientUnit *t) {
        if (!t)
                return;
        sd_bus_slot_unref(t->match);
        sd_bus_slot_unref(t->call);
        sd_event_source_disable_unref(t->backstop);
        step_output_free(t->out);
        if (t->out_w >= 0)
                close(t->out_w);
        if (t->err_w >= 0)
                close(t->err_w);
        sd_bus_unref(t->bus);
        sd_event_unref(t->event);
        g_free(t->name);
        g_free(t->unit);
        g_free(t->unit_path);
        g_free(t->user);
        g_free(t->cwd);
        g_free(t->path);
        g_free(t->failure);
        g_strfreev(t->argv);
        g_strfreev(t->envp);
        g_free(t);
}

/* Fire and forget: no reply is expected (sd-bus sets NO_REPLY_EXPECTED). */
static void unit_call(TransientUnit *t, const char *iface, const char *path, const char *method, const char *types,
                      ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(t->bus, &m, SYSTEMD_NAME, path, iface, method);
        if (r >= 0 && types) {
                va_list ap;
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_message_set_expect_reply(m, false);
        if (r >= 0)
                r = sd_bus_send(t->bus, m, NULL);
        if (r < 0)
                log_debug_errno(r, "%s: cannot send %s to systemd: %m", t->unit, method);
}

static void release(TransientUnit *t) {
        if (t->start_sent)
                unit_call(t, SYSTEMD_UNIT, t->unit_path, "Unref", NULL);
}

static void finish(TransientUnit *t, StepResult *res) {
        step_output_finish(t->out);
        step_output_fill(t->out, res);
        if (t->failure) {
                res->output = t->failure;
                res->data = "";
        }
        res->timed_out = res->timed_out || t->timed_out;
        res->duration_usec = mono_usec() - t->started;
        release(t);
        transient_unit_done_cb cb = t->cb;
        t->cb = NULL;
        if (cb)
                cb(t, res, t->userdata);
        unit_free(t);
}

static void fail_start(TransientUnit *t, int error, const char *fmt, ...) _printf_(3, 4);
static void fail_start(TransientUnit *t, int error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        g_free(t->failure);
        t->failure = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        log_warning("%s: %s.", t->name, t->failure);
        StepResult res = { .error = error < 0 ? error : -EIO };
        finish(t, &res);
}

/* systemd's own exit statuses for what failed before the program ran
 * (systemd.exec(5), "Process Exit Codes"). */
static const char *setup_failure(int status) {
        switch (status) {
        case 200:
                return "200/CHDIR: cannot change to the working directory";
        case 203:
                return "203/EXEC: cannot execute the program";
        case 216:
                return "216/GROUP: cannot set the user's groups";
        case 217:
                return "217/USER: cannot switch to the user";
        default:
                return NULL;
        }
}

static void query_result(TransientUnit *t);

static int on_result(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        TransientUnit *t = userdata;
        t->call = sd_bus_slot_unref(t->call);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                fail_start(t, -EIO, "cannot read the result of %s: %s", t->unit, e && e->message ? e->message : "?");
                return 0;
        }
        const char *result = "";
        int32_t code = 0, status = 0;
        uint64_t exited = 0;
        int r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *key;
                r = sd_bus_message_read(reply, "s", &key);
                if (r >= 0 && streq(key, "Result"))
                        r = sd_bus_message_read(reply, "v", "s", &result);
                else if (r >= 0 && streq(key, "ExecMainCode"))
                        r = sd_bus_message_read(reply, "v", "i", &code);
                else if (r >= 0 && streq(key, "ExecMainStatus"))
                        r = sd_bus_message_read(reply, "v", "i", &status);
                else if (r >= 0 && streq(key, "ExecMainExitTimestampMonotonic"))
                        r = sd_bus_message_read(reply, "v", "t", &exited);
                else if (r >= 0)
                        r = sd_bus_message_skip(reply, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0) {
                fail_start(t, -EBADMSG, "cannot read the result of %s: bad reply", t->unit);
                return 0;
        }
        if (streq(result, "success") && exited == 0) {
                /* "inactive" before it started (the unit was just loaded): not over yet */
                t->querying = false;
                if (t->requery) {
                        t->requery = false;
                        query_result(t);
                }
                return 0;
        }
        log_debug("%s: %s ended: Result=%s ExecMainCode=%d ExecMainStatus=%d.", t->name, t->unit, result, code, status);
        StepResult res = {};
        bool killed = code == CLD_KILLED || code == CLD_DUMPED;
        if (streq(result, "success") || streq(result, "exit-code") || streq(result, "signal") ||
            streq(result, "core-dump") || streq(result, "timeout")) {
                if (killed)
                        res.signal = status;
                else
                        res.exit_status = status;
                res.timed_out = streq(result, "timeout");
                const char *setup = code == CLD_EXITED ? setup_failure(status) : NULL;
                if (setup && streq(result, "exit-code")) {
                        t->failure = g_strdup_printf("systemd could not start %s as %s in %s (status %s)", t->path,
                                                     t->user, t->cwd, setup);
                        log_warning("%s: %s.", t->name, t->failure);
                        res.error = -EIO;
                }
        } else {
                t->failure = g_strdup_printf("%s ended with result \"%s\"", t->unit, result);
                res.error = -EIO;
        }
        finish(t, &res);
        return 0;
}

static void query_result(TransientUnit *t) {
        if (!t->cb)
                return;
        if (t->querying) {
                t->requery = true; /* the answer in flight may predate this change */
                return;
        }
        t->querying = true;
        t->call = sd_bus_slot_unref(t->call);
        int r = sd_bus_call_method_async(t->bus, &t->call, SYSTEMD_NAME, t->unit_path, "org.freedesktop.DBus.Properties",
                                         "GetAll", on_result, t, "s", SYSTEMD_SERVICE);
        if (r < 0)
                fail_start(t, r, "cannot ask systemd for the result of %s: %s", t->unit, g_strerror(-r));
}

static bool state_is_over(const char *state) {
        return streq(state, "inactive") || streq(state, "failed");
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        TransientUnit *t = userdata;
        const char *iface;
        if (!t->start_sent || sd_bus_message_read(m, "s", &iface) < 0 || !streq(iface, SYSTEMD_UNIT))
                return 0;
        int r = sd_bus_message_enter_container(m, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
                const char *key, *state;
                r = sd_bus_message_read(m, "s", &key);
                if (r >= 0 && streq(key, "ActiveState")) {
                        r = sd_bus_message_read(m, "v", "s", &state);
                        if (r >= 0 && state_is_over(state)) {
                                query_result(t);
                                return 0;
                        }
                } else if (r >= 0)
                        r = sd_bus_message_skip(m, "v");
                if (r >= 0)
                        r = sd_bus_message_exit_container(m);
        }
        return 0;
}

static int on_active_state(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        TransientUnit *t = userdata;
        t->call = sd_bus_slot_unref(t->call);
        const char *state;
        /* No such unit any more would mean it was collected without us: AddRef prevents that. */
        if (!sd_bus_message_is_method_error(reply, NULL) && sd_bus_message_read(reply, "v", "s", &state) >= 0 &&
            state_is_over(state))
                query_result(t);
        return 0;
}

static int on_backstop(sd_event_source *s, uint64_t usec, void *userdata) {
        TransientUnit *t = userdata;
        log_warning("%s: %s still runs after its deadline; killing it.", t->name, t->unit);
        unit_call(t, SYSTEMD_UNIT, t->unit_path, "Kill", "si", "all", (int32_t) SIGKILL);
        t->timed_out = true;
        StepResult res = { .timed_out = true, .signal = SIGKILL };
        finish(t, &res);
        return 0;
}

static int on_started(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        TransientUnit *t = userdata;
        t->call = sd_bus_slot_unref(t->call);
        if (sd_bus_message_is_method_error(reply, NULL)) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                t->start_sent = false; /* nothing to Unref */
                fail_start(t, -sd_bus_message_get_errno(reply) ?: -EIO, "systemd refused to start %s as %s: %s",
                           t->path, t->user, e && e->message ? e->message : e ? e->name : "?");
                return 0;
        }
        log_debug("%s: started %s (%s as %s).", t->name, t->unit, t->path, t->user);
        /* It may have ended already: the signals say so too, this makes sure. */
        int r = sd_bus_call_method_async(t->bus, &t->call, SYSTEMD_NAME, t->unit_path, "org.freedesktop.DBus.Properties",
                                         "Get", on_active_state, t, "ss", SYSTEMD_UNIT, "ActiveState");
        if (r < 0)
                log_debug_errno(r, "%s: cannot ask for the state of %s: %m", t->name, t->unit);
        return 0;
}

static int append_props(TransientUnit *t, sd_bus_message *m) {
        int r = sd_bus_message_open_container(m, 'a', "(sv)");
        if (r < 0)
                return r;
        g_autofree char *description = g_strdup_printf("platform-launcher: %s in %s", t->name, t->cwd);
        g_autofree char *field = g_strdup_printf("PLATFORM_LAUNCHER_STEP=%s", t->name);
        r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)(sv)", "Description", "s", description,
                                  "Type", "s", "exec", "WorkingDirectory", "s", t->cwd, "UMask", "u", (uint32_t) 0022,
                                  "NoNewPrivileges", "b", 1, "KillMode", "s", "control-group", "CollectMode", "s",
                                  "inactive-or-failed", "AddRef", "b", 1, "StandardInput", "s", "null",
                                  "TimeoutStopUSec", "t", t->grace_usec);
        if (r >= 0 && t->user)
                r = sd_bus_message_append(m, "(sv)", "User", "s", t->user);
        if (r >= 0 && t->timeout_usec > 0)
                r = sd_bus_message_append(m, "(sv)", "RuntimeMaxUSec", "t", t->timeout_usec);
        if (r >= 0)
                r = sd_bus_message_append(m, "(sv)(sv)", "StandardOutputFileDescriptor", "h", t->out_w,
                                          "StandardErrorFileDescriptor", "h", t->err_w);
        if (r >= 0 && t->inspect_only)
                /* no PrivateTmp=: what it looks at may be in /tmp */
                r = sd_bus_message_append(m, "(sv)(sv)(sv)(sv)", "ProtectSystem", "s", "strict", "ProtectHome", "s",
                                          "read-only", "PrivateNetwork", "b", 1, "CapabilityBoundingSet", "t",
                                          (uint64_t) 1 << CAP_DAC_READ_SEARCH);
        /* LogExtraFields aay */
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "LogExtraFields");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "aay");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "ay");
        if (r >= 0)
                r = sd_bus_message_append_array(m, 'y', field, strlen(field));
        for (int k = 0; r >= 0 && k < 3; k++)
                r = sd_bus_message_close_container(m);
        /* Environment as */
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "Environment");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "as");
        if (r >= 0)
                r = sd_bus_message_append_strv(m, t->envp);
        for (int k = 0; r >= 0 && k < 2; k++)
                r = sd_bus_message_close_container(m);
        /* ExecStart a(sasb) */
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "ExecStart");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'v', "a(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "(sasb)");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'r', "sasb");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", t->path);
        if (r >= 0)
                r = sd_bus_message_append_strv(m, t->argv);
        if (r >= 0)
                r = sd_bus_message_append(m, "b", 0);
        for (int k = 0; r >= 0 && k < 4; k++)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m); /* a(sv) */
        return r;
}

static int send_start(TransientUnit *t) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(t->bus, &m, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                               "StartTransientUnit");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", t->unit, "fail");
        if (r >= 0)
                r = append_props(t, m);
        if (r >= 0)
                r = sd_bus_message_append(m, "a(sa(sv))", 0);
        if (r >= 0)
                r = sd_bus_call_async(t->bus, &t->call, m, on_started, t, 0);
        /* The message holds its own copies of the write ends; systemd keeps them. */
        close(t->out_w);
        close(t->err_w);
        t->out_w = t->err_w = -1;
        if (r >= 0)
                t->start_sent = true;
        return r;
}

static int on_subscribed(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        TransientUnit *t = userdata;
        t->call = sd_bus_slot_unref(t->call);
        /* Subscribe fails harmlessly when another client of ours subscribed already. */
        if (sd_bus_message_is_method_error(reply, NULL) &&
            !sd_bus_message_is_method_error(reply, "org.freedesktop.systemd1.AlreadySubscribed")) {
                const sd_bus_error *e = sd_bus_message_get_error(reply);
                fail_start(t, -EIO, "cannot subscribe to systemd: %s", e && e->message ? e->message : "?");
                return 0;
        }
        int r = send_start(t);
        if (r < 0)
                fail_start(t, r, "cannot send StartTransientUnit: %s", g_strerror(-r));
        return 0;
}

static int on_match_installed(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        TransientUnit *t = userdata;
        if (sd_bus_message_is_method_error(reply, NULL)) {
                fail_start(t, -EIO, "cannot watch %s", t->unit);
                return 0;
        }
        int r = sd_bus_call_method_async(t->bus, &t->call, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER, "Subscribe",
                                         on_subscribed, t, NULL);
        if (r < 0)
                fail_start(t, r, "cannot subscribe to systemd: %s", g_strerror(-r));
        return 0;
}

/* "git fetch" → "git-fetch": unit names take [a-zA-Z0-9:_.\-]. */
static char *unit_name_for(const char *step) {
        g_autofree char *slug = g_ascii_strdown(step, -1);
        for (char *p = slug; *p; p++)
                if (!g_ascii_isalnum(*p))
                        *p = '-';
        if (strlen(slug) > 32)
                slug[32] = 0;
        return g_strdup_printf("platform-launcher-%s-%08x.service", slug, g_random_int());
}

void transient_unit_cancel(TransientUnit *t) {
        if (!t)
                return;
        if (t->start_sent) {
                /* Sent after StartTransientUnit on the same connection: systemd sees them in order. */
                unit_call(t, SYSTEMD_MANAGER, SYSTEMD_PATH, "StopUnit", "ss", t->unit, "replace");
                log_debug("%s: stopping %s.", t->name, t->unit);
        }
        t->cb = NULL;
        release(t);
        unit_free(t);
}

int transient_unit_start(sd_bus *bus, sd_event *event, const StepSpec *spec, transient_unit_done_cb cb,
                         void *userdata, TransientUnit **ret) {
        if (!bus || !spec->path || spec->path[0] != '/' || !spec->argv || !spec->argv[0] || !spec->envp || !spec->cwd)
                return -EINVAL;
        int out[2] = { -1, -1 }, err[2] = { -1, -1 };
        if (pipe2(out, O_CLOEXEC) < 0)
                return -errno;
        if (pipe2(err, O_CLOEXEC) < 0) {
                int r = -errno;
                close(out[0]);
                close(out[1]);
                return r;
        }
        TransientUnit *t = g_new0(TransientUnit, 1);
        t->bus = sd_bus_ref(bus);
        t->event = sd_event_ref(event);
        t->name = g_strdup(spec->name ? spec->name : spec->argv[0]);
        t->unit = unit_name_for(t->name);
        t->user = spec->user ? g_strdup(spec->user->name) : NULL;
        t->cwd = g_strdup(spec->cwd);
        t->path = g_strdup(spec->path);
        t->argv = g_strdupv((char **) spec->argv);
        t->envp = g_strdupv((char **) spec->envp);
        t->out_w = out[1];
        t->err_w = err[1];
        t->timeout_usec = spec->timeout_usec;
        t->grace_usec = spec->kill_grace_usec ? spec->kill_grace_usec : STEP_KILL_GRACE_USEC;
        t->inspect_only = spec->inspect_only;
        t->started = mono_usec();
        t->cb = cb;
        t->userdata = userdata;
        int r = sd_bus_path_encode(SYSTEMD_PATH "/unit", t->unit, &t->unit_path);
        if (r >= 0)
                r = step_output_new(event, t->name, spec->quiet, out[0], err[0], NULL, NULL, &t->out);
        else {
                close(out[0]);
                close(err[0]);
        }
        if (r >= 0)
                r = sd_bus_match_signal_async(bus, &t->match, SYSTEMD_NAME, t->unit_path,
                                              "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                              on_properties_changed, on_match_installed, t);
        if (r >= 0 && spec->timeout_usec > 0)
                r = sd_event_add_time_relative(event, &t->backstop, CLOCK_MONOTONIC,
                                               spec->timeout_usec + t->grace_usec + BACKSTOP_EXTRA_USEC,
                                               100 * USEC_PER_MSEC, on_backstop, t);
        if (r < 0) {
                unit_free(t);
                return r;
        }
        if (ret)
                *ret = t;
        return 0;
}
