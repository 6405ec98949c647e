/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include "clients/step-runner.h"
#include "core/updater.h"
#include "daemon/manager.h"
#include "shared/bus-errors.h"
#include "shared/log.h"

#define ACTION_CHECK_UPDATES "org.platform.launcher1.check-updates"
#define ACTION_APPLY_UPDATES "org.platform.launcher1.apply-updates"

/* Every setting is an Updater property named without the prefix. */
static const SettingInfo *setting_of(const char *property) {
        g_autofree char *name = g_strconcat("Updater", property, NULL);
        return setting_info_by_property(name);
}

static int property_get_setting(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const SettingInfo *info = setting_of(property);
        LauncherConfig *c = m->settings->config;
        if (!info)
                return -ENOENT;
        switch (info->type) {
        case SETTING_STRING:
                return sd_bus_message_append(reply, "s", *setting_string_ptr(c, info));
        case SETTING_USEC:
                return sd_bus_message_append(reply, "t", *setting_usec_ptr(c, info));
        case SETTING_U32:
                return sd_bus_message_append(reply, "u", (uint32_t) *setting_usec_ptr(c, info));
        case SETTING_BOOL:
                return sd_bus_message_append(reply, "b", (int) *setting_bool_ptr(c, info));
        case SETTING_STRV:
                return sd_bus_message_append_strv(reply, *setting_strv_ptr(c, info));
        case SETTING_ARGVV: {
                int r = sd_bus_message_open_container(reply, 'a', "as");
                for (char ***l = *setting_argvv_ptr(c, info); r >= 0 && l && *l; l++)
                        r = sd_bus_message_append_strv(reply, *l);
                return r < 0 ? r : sd_bus_message_close_container(reply);
        }
        }
        return -EINVAL;
}

static const UpdaterStatus *status(Manager *m) {
        return updater_status(m->updater);
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "s", updater_state_to_string(status(userdata)->state));
}

/* The string fields of UpdaterStatus, by property name. */
static int property_get_status_str(sd_bus *bus, const char *path, const char *interface, const char *property,
                                   sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const UpdaterStatus *s = status(userdata);
        const char *v = streq(property, "CurrentCommit")       ? s->current_commit
                        : streq(property, "TargetCommit")      ? s->target_commit
                        : streq(property, "LastGoodCommit")    ? s->last_good_commit
                        : streq(property, "PreviousCommit")    ? s->previous_commit
                        : streq(property, "QuarantinedCommit") ? s->quarantined_commit
                        : streq(property, "Operation")         ? s->operation
                        : streq(property, "LastError")         ? s->last_error
                                                               : NULL;
        if (!v)
                return -ENOENT;
        return sd_bus_message_append(reply, "s", v);
}

static int property_get_status_usec(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const UpdaterStatus *s = status(userdata);
        uint64_t v = streq(property, "LastCheckTimestamp")    ? s->last_check_usec
                     : streq(property, "LastUpdateTimestamp") ? s->last_update_usec
                                                              : s->next_check_usec;
        return sd_bus_message_append(reply, "t", v);
}

static int property_get_progress(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        return sd_bus_message_append(reply, "u", (uint32_t) status(userdata)->progress);
}

static int property_get_defer_reasons(sd_bus *bus, const char *path, const char *interface, const char *property,
                                      sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const UpdaterStatus *s = status(userdata);
        int r = sd_bus_message_open_container(reply, 'a', "(sss)");
        for (guint i = 0; r >= 0 && i < s->defer_reasons->len; i++) {
                const DeferReason *d = s->defer_reasons->pdata[i];
                r = sd_bus_message_append(reply, "(sss)", d->gate, d->detail, d->since);
        }
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

static void emit(Manager *m, char **names) {
        if (!names[0])
                return;
        int r = sd_bus_emit_properties_changed_strv(m->bus, LAUNCHER_OBJECT_PATH, LAUNCHER_UPDATER_INTERFACE, names);
        if (r < 0)
                log_warning_errno(r, "Cannot emit PropertiesChanged on the Updater: %m");
}

void bus_updater_settings_changed(Manager *m, const LauncherConfig *old) {
        size_t n;
        const SettingInfo *all = setting_info_all(&n);
        g_autoptr(GPtrArray) names = g_ptr_array_new();
        for (size_t i = 0; i < n; i++)
                if (g_str_has_prefix(all[i].property, "Updater") && !setting_equal(old, m->settings->config, &all[i]))
                        g_ptr_array_add(names, (char *) all[i].property + strlen("Updater"));
        g_ptr_array_add(names, NULL);
        emit(m, (char **) names->pdata);
        if (m->updater)
                updater_settings_changed(m->updater);
}

static void on_changed(Updater *u, uint32_t fields, void *userdata) {
        static const struct {
                UpdaterField bit;
                const char *name;
        } map[] = {
                { UPDATER_FIELD_STATE, "State" },
                { UPDATER_FIELD_CURRENT, "CurrentCommit" },
                { UPDATER_FIELD_TARGET, "TargetCommit" },
                { UPDATER_FIELD_LAST_GOOD, "LastGoodCommit" },
                { UPDATER_FIELD_PREVIOUS, "PreviousCommit" },
                { UPDATER_FIELD_QUARANTINED, "QuarantinedCommit" },
                { UPDATER_FIELD_DEFER_REASONS, "DeferReasons" },
                { UPDATER_FIELD_OPERATION, "Operation" },
                { UPDATER_FIELD_PROGRESS, "Progress" },
                { UPDATER_FIELD_LAST_CHECK, "LastCheckTimestamp" },
                { UPDATER_FIELD_LAST_UPDATE, "LastUpdateTimestamp" },
                { UPDATER_FIELD_NEXT_CHECK, "NextCheckTimestamp" },
                { UPDATER_FIELD_LAST_ERROR, "LastError" },
        };
        Manager *m = userdata;
        const char *names[ELEMENTSOF(map) + 1] = {};
        size_t k = 0;
        for (size_t i = 0; i < ELEMENTSOF(map); i++)
                if (fields & map[i].bit)
                        names[k++] = map[i].name;
        emit(m, (char **) names);
        /* Config.ConfigError also says why the Updater's settings cannot run. */
        if (fields & UPDATER_FIELD_CONFIG_ERROR) {
                int r = sd_bus_emit_properties_changed(m->bus, LAUNCHER_OBJECT_PATH, LAUNCHER_CONFIG_INTERFACE,
                                                       "ConfigError", NULL);
                if (r < 0)
                        log_warning_errno(r, "Cannot emit PropertiesChanged on the Config: %m");
        }
}

/* What a child printed reaches these strings: valid UTF-8 (U+FFFD for the
 * rest) and bounded, whatever happened upstream. */
#define BUS_TEXT_MAX 4096

static char *bus_text(const char *s) {
        return step_text_sanitize(strempty(s), strlen(strempty(s)), BUS_TEXT_MAX);
}

static void emit_signal(Manager *m, const char *member, const char *types, ...) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *s = NULL;
        int r = sd_bus_message_new_signal(m->bus, &s, LAUNCHER_OBJECT_PATH, LAUNCHER_UPDATER_INTERFACE, member);
        if (r >= 0) {
                va_list ap;
                va_start(ap, types);
                r = sd_bus_message_appendv(s, types, ap);
                va_end(ap);
        }
        if (r >= 0)
                r = sd_bus_send(m->bus, s, NULL);
        if (r < 0)
                log_warning_errno(r, "Cannot emit %s: %m", member);
}

static void on_deferred(Updater *u, const char *reason, const char *target, void *userdata) {
        g_autofree char *text = bus_text(reason);
        emit_signal(userdata, "UpdateDeferred", "ss", text, strempty(target));
}

static void on_applied(Updater *u, const char *old_commit, const char *new_commit, void *userdata) {
        emit_signal(userdata, "UpdateApplied", "ss", strempty(old_commit), strempty(new_commit));
}

static void on_failed(Updater *u, const char *target, const char *reason, bool rolled_back, void *userdata) {
        g_autofree char *text = bus_text(reason);
        emit_signal(userdata, "UpdateFailed", "ssb", strempty(target), text, (int) rolled_back);
}

static void on_finished(Updater *u, const UpdaterTransaction *t, void *userdata) {
        Manager *m = userdata;
        bus_history_updater_finished(m->history, m->settings->config->updater_repository, t);
}

const UpdaterEvents bus_updater_events = {
        .changed = on_changed,
        .deferred = on_deferred,
        .applied = on_applied,
        .failed = on_failed,
        .finished = on_finished,
};

/* ---- methods ---- */

static int reply_error(sd_bus_message *msg, UpdaterError e, const char *message) {
        const char *name = e == UPDATER_ERROR_BUSY         ? LAUNCHER_ERROR_BUSY
                           : e == UPDATER_ERROR_DEFERRED   ? LAUNCHER_ERROR_DEFERRED
                           : e == UPDATER_ERROR_DIRTY_TREE ? LAUNCHER_ERROR_DIRTY_TREE
                           : e == UPDATER_ERROR_INVALID    ? SD_BUS_ERROR_INVALID_ARGS
                                                           : LAUNCHER_ERROR_FAILED;
        g_autofree char *text = bus_text(message);
        if (*text)
                text[0] = g_ascii_toupper(text[0]);
        return sd_bus_reply_method_errorf(msg, name, "%s%s", text, g_str_has_suffix(text, ".") ? "" : ".");
}

static void on_done(Updater *u, UpdaterError error, const char *message, const char *from, const char *to,
                    bool available, void *userdata) {
        sd_bus_message *msg = userdata;
        int q;
        if (error != UPDATER_OK)
                q = reply_error(msg, error, message);
        else if (streq(sd_bus_message_get_member(msg), "Check"))
                q = sd_bus_reply_method_return(msg, "bs", (int) available, strempty(to));
        else
                q = sd_bus_reply_method_return(msg, "ss", strempty(from), strempty(to));
        if (q < 0)
                log_debug_errno(q, "Cannot reply to %s (caller gone?): %m", sd_bus_message_get_member(msg));
        sd_bus_message_unref(msg);
}

static int started(Manager *m, sd_bus_message *msg, int q, sd_bus_error *error) {
        if (q == -EBUSY)
                return sd_bus_error_setf(error, LAUNCHER_ERROR_BUSY, "An update transaction of %s is running.",
                                         m->settings->config->updater_repository);
        if (q == -ENOMEDIUM)
                return sd_bus_error_set(error, LAUNCHER_ERROR_FAILED,
                                        "The updater is disabled: UpdaterRepository is empty.");
        if (q == -ENOENT)
                return sd_bus_error_set(error, LAUNCHER_ERROR_NOT_FOUND, "There is no PreviousCommit to roll back to.");
        if (q == -EACCES) {
                g_autofree char *why = bus_text(status(m)->config_error);
                return sd_bus_error_setf(error, LAUNCHER_ERROR_FAILED, "The Updater's settings cannot run: %s.", why);
        }
        if (q < 0)
                return q;
        sd_bus_message_ref(msg); /* until on_done */
        return 1;
}

static int authorize(sd_bus_message *msg, Manager *m, const char *action, sd_bus_error *error) {
        const char *details[] = { "repository", m->settings->config->updater_repository, NULL };
        return polkit_check(msg, action, details, m->polkit, error);
}

static int method_check(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int q = authorize(msg, m, ACTION_CHECK_UPDATES, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        return started(m, msg, updater_check(m->updater, on_done, msg), error);
}

static int read_apply_options(sd_bus_message *msg, bool *force, bool *dry_run, sd_bus_error *error) {
        int q = sd_bus_message_enter_container(msg, 'a', "{sv}");
        while (q >= 0 && (q = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key, *contents;
                q = sd_bus_message_read(msg, "s", &key);
                if (q < 0)
                        return q;
                bool *dst = streq(key, "force") ? force : streq(key, "dry-run") ? dry_run : NULL;
                if (!dst)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown option '%.64s'.", key);
                q = sd_bus_message_peek_type(msg, NULL, &contents);
                if (q < 0)
                        return q;
                if (!streq(contents, "b"))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Option '%s' must be of type 'b', got '%s'.", key, contents);
                int v;
                q = sd_bus_message_read(msg, "v", "b", &v);
                if (q < 0)
                        return q;
                *dst = v;
                q = sd_bus_message_exit_container(msg);
        }
        if (q < 0)
                return q;
        return sd_bus_message_exit_container(msg);
}

static int method_apply(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        bool force = false, dry_run = false;
        int q = read_apply_options(msg, &force, &dry_run, error);
        if (q < 0)
                return q;
        q = authorize(msg, m, ACTION_APPLY_UPDATES, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        bus_history_updater_started(m->history, msg); /* who asked, while the caller is surely connected */
        q = updater_apply(m->updater, force, dry_run, on_done, msg);
        if (q < 0)
                bus_history_updater_ended(m->history);
        return started(m, msg, q, error);
}

/* A commit id or an abbreviation of one; never a ref or an option. */
static bool commit_arg_valid(const char *c) {
        size_t n = strlen(c);
        if (n == 0)
                return true;
        if (n < 4 || n > 64)
                return false;
        for (const char *p = c; *p; p++)
                if (!g_ascii_isxdigit(*p))
                        return false;
        return true;
}

static int method_rollback(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *commit;
        int q = sd_bus_message_read(msg, "s", &commit);
        if (q < 0)
                return q;
        if (!commit_arg_valid(commit))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Invalid commit '%.64s': must be a hexadecimal commit id (4 to 64 digits) or \"\".",
                                         commit);
        q = authorize(msg, m, ACTION_APPLY_UPDATES, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        g_autofree char *lower = g_ascii_strdown(commit, -1);
        bus_history_updater_started(m->history, msg);
        q = updater_rollback(m->updater, lower, on_done, msg);
        if (q < 0)
                bus_history_updater_ended(m->history);
        return started(m, msg, q, error);
}

static int method_set_auto_update(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int enabled;
        int q = sd_bus_message_read(msg, "b", &enabled);
        if (q < 0)
                return q;
        if (m->settings->config->updater_auto_update == !!enabled)
                return sd_bus_reply_method_return(msg, NULL);
        q = authorize(msg, m, ACTION_APPLY_UPDATES, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        g_autoptr(LauncherConfig) old = launcher_config_copy(m->settings->config);
        g_autofree char *why = NULL;
        q = updater_set_auto_update(m->updater, enabled, &why);
        if (q == -EBADMSG)
                return sd_bus_error_set(error, LAUNCHER_ERROR_INVALID_CONFIG, why);
        if (q < 0)
                return sd_bus_error_set(error, LAUNCHER_ERROR_FAILED, why);
        bus_updater_settings_changed(m, old);
        log_info("Automatic updates %s by %s.", enabled ? "enabled" : "disabled",
                 strempty(sd_bus_message_get_sender(msg)));
        return sd_bus_reply_method_return(msg, NULL);
}

#define SETTING_PROPERTY(name, sig) \
        SD_BUS_PROPERTY(name, sig, property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)
#define STATUS_STR(name) SD_BUS_PROPERTY(name, "s", property_get_status_str, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)
#define STATUS_USEC(name) SD_BUS_PROPERTY(name, "t", property_get_status_usec, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable updater_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("State", "s", property_get_state, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SETTING_PROPERTY("Repository", "s"),
        SETTING_PROPERTY("User", "s"),
        SETTING_PROPERTY("Remote", "s"),
        SETTING_PROPERTY("Branch", "s"),
        STATUS_STR("CurrentCommit"),
        STATUS_STR("TargetCommit"),
        STATUS_STR("LastGoodCommit"),
        STATUS_STR("PreviousCommit"),
        STATUS_STR("QuarantinedCommit"),
        SD_BUS_PROPERTY("DeferReasons", "a(sss)", property_get_defer_reasons, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        STATUS_STR("Operation"),
        SD_BUS_PROPERTY("Progress", "u", property_get_progress, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SETTING_PROPERTY("AutoUpdate", "b"),
        SETTING_PROPERTY("IntervalUSec", "t"),
        STATUS_USEC("LastCheckTimestamp"),
        STATUS_USEC("LastUpdateTimestamp"),
        STATUS_USEC("NextCheckTimestamp"),
        STATUS_STR("LastError"),
        SETTING_PROPERTY("RoundLockFile", "s"),
        SETTING_PROPERTY("RoundLockMaxAgeUSec", "t"),
        SETTING_PROPERTY("ValidationApiUrl", "s"),
        SETTING_PROPERTY("ApiUnreachable", "s"),
        SETTING_PROPERTY("BuildCommands", "aas"),
        SETTING_PROPERTY("RestartUnits", "as"),
        SETTING_PROPERTY("RestartCommands", "aas"),
        SETTING_PROPERTY("HealthCommand", "as"),
        SETTING_PROPERTY("HealthUrl", "s"),
        SETTING_PROPERTY("HealthTimeoutUSec", "t"),
        SETTING_PROPERTY("CommandTimeoutUSec", "t"),
        SETTING_PROPERTY("AllowedSignersFile", "s"),
        SD_BUS_METHOD_WITH_ARGS("Check", SD_BUS_NO_ARGS, SD_BUS_RESULT("b", available, "s", commit), method_check,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Apply", SD_BUS_ARGS("a{sv}", options),
                                SD_BUS_RESULT("s", from_commit, "s", to_commit), method_apply,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Rollback", SD_BUS_ARGS("s", commit), SD_BUS_RESULT("s", from_commit, "s", to_commit),
                                method_rollback, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetAutoUpdate", SD_BUS_ARGS("b", enabled), SD_BUS_NO_RESULT, method_set_auto_update,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("UpdateDeferred", SD_BUS_ARGS("s", reason, "s", target_commit), 0),
        SD_BUS_SIGNAL_WITH_ARGS("UpdateApplied", SD_BUS_ARGS("s", old_commit, "s", new_commit), 0),
        SD_BUS_SIGNAL_WITH_ARGS("UpdateFailed", SD_BUS_ARGS("s", target_commit, "s", reason, "b", rolled_back), 0),
        SD_BUS_METHOD_WITH_ARGS("GetHistory", SD_BUS_ARGS("u", limit), SD_BUS_RESULT("a(tssssssst)", entries),
                                bus_history_method_get_updater, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("HistoryAdded",
                                SD_BUS_ARGS("t", timestamp, "s", kind, "s", action, "s", trigger, "s", from, "s", to,
                                            "s", result, "s", reason, "t", duration),
                                0),
        SD_BUS_VTABLE_END,
};

int bus_updater_register(Manager *m) {
        return sd_bus_add_object_vtable(m->bus, NULL, LAUNCHER_OBJECT_PATH, LAUNCHER_UPDATER_INTERFACE, updater_vtable,
                                        m);
}
