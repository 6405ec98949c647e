/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>

#include "core/updater-user.h"
#include "daemon/audit.h"
#include "daemon/bus-options.h"
#include "daemon/manager.h"
#include "shared/bus-errors.h"
#include "shared/log.h"
#include "shared/validate.h"
#include "shared/vm-decl.h"

#define ACTION_CONFIGURE "org.platform.launcher1.configure"
#define ACTION_READ_SECRETS "org.platform.launcher1.read-secrets"
#define ACTION_MANAGE_VM "org.platform.launcher1.manage-vm"

/* An invalid key can be a mistyped secret: show only a short, escaped prefix. */
static char *key_for_message(const char *key) {
        g_autofree char *prefix = g_strndup(key, 64);
        g_autofree char *esc = g_strescape(prefix, NULL);
        return g_strdup_printf("'%s'%s", esc, strlen(key) > 64 ? "..." : "");
}

static int error_invalid_key(sd_bus_error *error, const char *key) {
        g_autofree char *k = key_for_message(key);
        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                 "Invalid env key %s: must match ^[A-Za-z_][A-Za-z0-9_]*$ and be at most %d bytes.", k,
                                 ENV_KEY_MAX);
}

static char **missing_env(Manager *m) {
        GPtrArray *a = g_ptr_array_new();
        for (char **k = m->required_env; k && *k; k++)
                if (!launcher_config_env_get(m->settings->config, *k))
                        g_ptr_array_add(a, g_strdup(*k));
        g_ptr_array_add(a, NULL);
        return (char **) g_ptr_array_free(a, FALSE);
}

static int property_get_setting(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const SettingInfo *info = setting_info_by_property(property);
        if (!info)
                return -ENOENT;
        if (info->type == SETTING_USEC)
                return sd_bus_message_append(reply, "t", *setting_usec_ptr(m->settings->config, info));
        if (info->type == SETTING_U32)
                return sd_bus_message_append(reply, "u", (uint32_t) *setting_usec_ptr(m->settings->config, info));
        if (info->type == SETTING_STRV)
                return sd_bus_message_append_strv(reply, *setting_strv_ptr(m->settings->config, info));
        return sd_bus_message_append(reply, "s", *setting_string_ptr(m->settings->config, info));
}

static int property_get_vmm_url(sd_bus *bus, const char *path, const char *interface, const char *property,
                                sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", settings_store_vmm_url(m->settings));
}

static int property_get_env_keys(sd_bus *bus, const char *path, const char *interface, const char *property,
                                 sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        g_autofree const char **keys = launcher_config_env_keys(m->settings->config);
        return sd_bus_message_append_strv(reply, (char **) keys);
}

static int property_get_required_env(sd_bus *bus, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append_strv(reply, m->required_env);
}

static int property_get_missing_env(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        g_auto(GStrv) missing = missing_env(m);
        return sd_bus_message_append_strv(reply, missing);
}

static int property_get_vms(sd_bus *bus, const char *path, const char *interface, const char *property,
                            sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        int r = sd_bus_message_open_container(reply, 'a', "(ss)");
        for (Vm *const *v = reconciler_vms(m->reconciler); r >= 0 && *v; v++)
                r = sd_bus_message_append(reply, "(ss)", (*v)->name, reconciler_vm_source(m->reconciler, *v));
        return r < 0 ? r : sd_bus_message_close_container(reply);
}

static int property_get_config_path(sd_bus *bus, const char *path, const char *interface, const char *property,
                                    sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        return sd_bus_message_append(reply, "s", m->settings->path);
}

static int property_get_config_error(sd_bus *bus, const char *path, const char *interface, const char *property,
                                     sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        /* the file first; else settings in force that cannot run (UpdaterUser refused) */
        const char *updater = m->updater ? updater_status(m->updater)->config_error : NULL;
        return sd_bus_message_append(reply, "s", m->settings->error ? m->settings->error : strempty(updater));
}

static bool strv_equal(char **a, char **b) {
        return g_strv_equal((const char *const *) a, (const char *const *) b);
}

void bus_config_emit_changes(Manager *m, const LauncherConfig *old, bool error_changed) {
        const LauncherConfig *new = m->settings->config;
        g_autoptr(GPtrArray) names = g_ptr_array_new();
        size_t n;
        const SettingInfo *all = setting_info_all(&n);

        bus_updater_settings_changed(m, old);
        for (size_t i = 0; i < n; i++) {
                const SettingInfo *s = &all[i];
                if (!s->property || g_str_has_prefix(s->property, "Updater"))
                        continue; /* Updater settings are not Config properties */
                bool differ = !setting_equal(old, new, s);
                if (differ && !(streq(s->property, "VmmUrl") && m->settings->vmm_url_override))
                        g_ptr_array_add(names, (char *) s->property);
        }

        bool vms_differ = !streq(old->api_url, new->api_url) || old->vms->len != new->vms->len;
        for (guint i = 0; !vms_differ && i < new->vms->len; i++)
                vms_differ = !vm_decl_equal(g_ptr_array_index(old->vms, i), g_ptr_array_index(new->vms, i));
        if (vms_differ)
                g_ptr_array_add(names, (char *) "Vms");

        g_autofree const char **old_keys = launcher_config_env_keys(old);
        g_autofree const char **new_keys = launcher_config_env_keys(new);
        if (!strv_equal((char **) old_keys, (char **) new_keys)) {
                g_ptr_array_add(names, (char *) "EnvKeys");
                g_ptr_array_add(names, (char *) "MissingEnv");
        }
        if (error_changed)
                g_ptr_array_add(names, (char *) "ConfigError");
        if (names->len == 0)
                return;
        g_ptr_array_add(names, NULL);

        int r = sd_bus_emit_properties_changed_strv(m->bus, LAUNCHER_OBJECT_PATH, LAUNCHER_CONFIG_INTERFACE,
                                                    (char **) names->pdata);
        if (r < 0)
                log_warning_errno(r, "Cannot emit PropertiesChanged: %m");
}

/* Writes c (taking it), emits what changed, maps failures to bus errors. */
static int commit(Manager *m, LauncherConfig *c, sd_bus_error *error) {
        g_autoptr(LauncherConfig) old = launcher_config_copy(m->settings->config);
        g_autofree char *old_error = g_strdup(m->settings->error);
        g_autofree char *why = NULL;

        int r = settings_store_commit(m->settings, c, &why);
        if (r == -EBADMSG)
                return sd_bus_error_set(error, LAUNCHER_ERROR_INVALID_CONFIG, why);
        if (r == -E2BIG)
                return sd_bus_error_set(error, SD_BUS_ERROR_LIMITS_EXCEEDED, why);
        if (r < 0)
                return sd_bus_error_set(error, LAUNCHER_ERROR_FAILED, why);

        bus_config_emit_changes(m, old, !streq_ptr(old_error, m->settings->error));
        manager_config_changed(m);
        return 0;
}

void bus_config_vms_changed(Manager *m) {
        int r = sd_bus_emit_properties_changed(m->bus, LAUNCHER_OBJECT_PATH, LAUNCHER_CONFIG_INTERFACE, "Vms", NULL);
        if (r < 0)
                log_warning_errno(r, "Cannot emit PropertiesChanged: %m");
}

void manager_config_changed(Manager *m) {
        /* Who made the change, for the history of a deploy it causes: the
         * caller being served (SetEnv, RemoveEnv, SetSettings, Reload); none
         * for SIGHUP. */
        sd_bus_message *msg = m->bus ? sd_bus_get_current_message(m->bus) : NULL;
        g_autofree char *who = msg ? audit_caller(msg) : NULL;
        if (m->reconciler)
                reconciler_settings_changed(m->reconciler, who);
}

void manager_set_required_env(Manager *m, char **required) {
        if (g_strv_equal((const char *const *) m->required_env, (const char *const *) required))
                return;
        g_strfreev(m->required_env);
        m->required_env = g_strdupv(required);
        int r = sd_bus_emit_properties_changed(m->bus, LAUNCHER_OBJECT_PATH, LAUNCHER_CONFIG_INTERFACE, "RequiredEnv",
                                               "MissingEnv", NULL);
        if (r < 0)
                log_warning_errno(r, "Cannot emit PropertiesChanged: %m");
}

static int method_set_env(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *key, *value;

        int r = sd_bus_message_read(msg, "ss", &key, &value);
        if (r < 0)
                return r;
        if (!env_key_is_valid(key))
                return error_invalid_key(error, key);
        if (!env_value_is_valid(value))
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED, "Value of '%s' exceeds %d bytes.", key,
                                         ENV_VALUE_MAX);

        const char *details[] = { "env_key", key, NULL };
        r = polkit_check(msg, ACTION_CONFIGURE, details, m->polkit, error);
        if (r <= 0)
                return r < 0 ? r : 1;

        /* Compared only after authorization, or the reply would tell an
         * unprivileged caller whether it guessed a secret. */
        if (streq_ptr(launcher_config_env_get(m->settings->config, key), value))
                return sd_bus_reply_method_return(msg, NULL);

        LauncherConfig *c = launcher_config_copy(m->settings->config);
        launcher_config_env_set(c, key, value);
        g_autofree char *why = launcher_config_env_check(c);
        if (why) {
                launcher_config_free(c);
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED, "Cannot set '%s': env would have %s.", key, why);
        }

        r = commit(m, c, error);
        if (r < 0)
                return r;
        audit_log(msg, "set env value", key);
        return sd_bus_reply_method_return(msg, NULL);
}

/* The head of the one-key methods: read the key, check it, ask polkit with
 * the key as detail. > 0: authorized; 0: pending (return 1); < 0: error. */
static int read_key_authorized(sd_bus_message *msg, Manager *m, const char *action, const char **ret_key,
                               sd_bus_error *error) {
        int r = sd_bus_message_read(msg, "s", ret_key);
        if (r < 0)
                return r;
        if (!env_key_is_valid(*ret_key))
                return error_invalid_key(error, *ret_key);
        const char *details[] = { "env_key", *ret_key, NULL };
        return polkit_check(msg, action, details, m->polkit, error);
}

static int method_remove_env(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *key;

        int r = read_key_authorized(msg, m, ACTION_CONFIGURE, &key, error);
        if (r <= 0)
                return r < 0 ? r : 1;

        if (!launcher_config_env_get(m->settings->config, key))
                return sd_bus_error_setf(error, LAUNCHER_ERROR_NOT_FOUND, "No env value '%s' is set.", key);

        LauncherConfig *c = launcher_config_copy(m->settings->config);
        launcher_config_env_remove(c, key);
        r = commit(m, c, error);
        if (r < 0)
                return r;
        audit_log(msg, "removed env value", key);
        return sd_bus_reply_method_return(msg, NULL);
}

static int method_get_env(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *key;

        int r = read_key_authorized(msg, m, ACTION_READ_SECRETS, &key, error);
        if (r <= 0)
                return r < 0 ? r : 1;

        const char *value = launcher_config_env_get(m->settings->config, key);
        if (!value)
                return sd_bus_error_setf(error, LAUNCHER_ERROR_NOT_FOUND, "No env value '%s' is set.", key);

        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        r = sd_bus_message_new_method_return(msg, &reply);
        if (r < 0)
                return r;
        /* sd-bus wipes a sensitive message's memory when it is freed. */
        r = sd_bus_message_sensitive(reply);
        if (r >= 0)
                r = sd_bus_message_append(reply, "s", value);
        if (r < 0)
                return r;
        audit_log(msg, "read env value", key);
        return sd_bus_send(NULL, reply, NULL);
}

/* Reads the variant's value (of the right type, checked by the caller) into c. */
static int read_setting_value(sd_bus_message *msg, LauncherConfig *c, const SettingInfo *info, sd_bus_error *error) {
        const char *name = info->property, *why = NULL;
        int r;

        switch (info->type) {
        case SETTING_U32:
        case SETTING_USEC: {
                uint64_t v;
                uint32_t u;
                if (info->type == SETTING_U32) {
                        r = sd_bus_message_read(msg, "v", "u", &u);
                        v = u;
                } else
                        r = sd_bus_message_read(msg, "v", "t", &v);
                if (r < 0)
                        return r;
                why = setting_check_usec(info, v);
                if (why)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Setting '%s' %s: must be between %" PRIu64 " and %" PRIu64 " µs.", name,
                                                 why, info->min_usec, info->max_usec);
                *setting_usec_ptr(c, info) = v;
                return 0;
        }
        case SETTING_STRING: {
                const char *v;
                r = sd_bus_message_read(msg, "v", "s", &v);
                if (r < 0)
                        return r;
                why = setting_check_string(info, v);
                if (why)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Setting '%s' %s.", name, why);
                char **p = setting_string_ptr(c, info);
                g_free(*p);
                *p = g_strdup(v);
                return 0;
        }
        case SETTING_BOOL: {
                int v;
                r = sd_bus_message_read(msg, "v", "b", &v);
                if (r < 0)
                        return r;
                *setting_bool_ptr(c, info) = v;
                return 0;
        }
        case SETTING_STRV: {
                g_auto(GStrv) v = NULL;
                r = sd_bus_message_enter_container(msg, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_read_strv(msg, &v);
                if (r >= 0)
                        r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
                if (!v)
                        v = g_new0(char *, 1);
                why = setting_check_strv(info, v);
                if (why)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Setting '%s' %s.", name, why);
                g_strfreev(*setting_strv_ptr(c, info));
                *setting_strv_ptr(c, info) = TAKE_PTR(v);
                return 0;
        }
        case SETTING_ARGVV: {
                g_autoptr(GPtrArray) list = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
                r = sd_bus_message_enter_container(msg, 'v', "aas");
                if (r >= 0)
                        r = sd_bus_message_enter_container(msg, 'a', "as");
                if (r < 0)
                        return r;
                for (;;) {
                        char **argv = NULL;
                        /* read_strv at the end of an aas says -ENXIO, not 0: ask first */
                        r = sd_bus_message_at_end(msg, false);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                break;
                        r = sd_bus_message_read_strv(msg, &argv);
                        if (r < 0)
                                return r;
                        g_ptr_array_add(list, argv ? argv : g_new0(char *, 1));
                        if (list->len > SETTING_LIST_MAX)
                                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                         "Setting '%s' has too many commands (at most %u).", name,
                                                         SETTING_LIST_MAX);
                }
                r = sd_bus_message_exit_container(msg);
                if (r >= 0)
                        r = sd_bus_message_exit_container(msg);
                if (r < 0)
                        return r;
                g_ptr_array_add(list, NULL);
                char ***v = (char ***) g_ptr_array_steal(list, NULL);
                why = setting_check_argvv(info, v);
                if (why) {
                        argvv_free(v);
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Setting '%s' %s.", name, why);
                }
                argvv_free(*setting_argvv_ptr(c, info));
                *setting_argvv_ptr(c, info) = v;
                return 0;
        }
        }
        return -EINVAL;
}

/* Reads one {sv} entry of SetSettings into c; returns 0 at the end of the array. */
static int read_setting(sd_bus_message *msg, LauncherConfig *c, GHashTable *seen, sd_bus_error *error) {
        const char *name, *contents;
        int r = sd_bus_message_enter_container(msg, 'e', "sv");
        if (r <= 0)
                return r;
        r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;

        const SettingInfo *info = setting_info_by_property(name);
        if (!info) {
                g_autofree char *k = key_for_message(name);
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown setting %s.", k);
        }
        if (!g_hash_table_add(seen, (char *) info->property))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Setting '%s' given twice.", name);

        const char *want = setting_signature(info);
        r = sd_bus_message_peek_type(msg, NULL, &contents);
        if (r < 0)
                return r;
        if (!streq(contents, want))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Setting '%s' must be of type '%s', got '%s'.",
                                         name, want, contents);

        r = read_setting_value(msg, c, info, error);
        if (r < 0)
                return r;

        r = sd_bus_message_exit_container(msg);
        return r < 0 ? r : 1;
}

static int method_set_settings(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        g_autoptr(LauncherConfig) c = launcher_config_copy(m->settings->config);
        g_autoptr(GHashTable) seen = g_hash_table_new(g_str_hash, g_str_equal);

        int r = sd_bus_message_enter_container(msg, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = read_setting(msg, c, seen, error)) > 0)
                ;
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(msg);
        if (r < 0)
                return r;

        if (launcher_config_equal_settings(c, m->settings->config))
                return sd_bus_reply_method_return(msg, NULL);

        r = polkit_check(msg, ACTION_CONFIGURE, NULL, m->polkit, error);
        if (r <= 0)
                return r < 0 ? r : 1;

        /* Checks that look at the file system: the user, the commands, the
         * VMM's unit, MetricsPath's directory; only once authorized: their
         * answers would tell any caller which paths and users exist. */
        g_autofree char *why = updater_settings_check(m->settings->config, c,
                                                   m->settings->vmm_url_override ?: c->vmm_url);
        if (why)
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, why);
        if (!streq(c->metrics_path, m->settings->config->metrics_path)) {
                g_autofree char *mwhy = metrics_path_check(c->metrics_path);
                if (mwhy)
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Setting 'MetricsPath': %s.", mwhy);
        }

        r = commit(m, TAKE_PTR(c), error);
        if (r < 0)
                return r;
        g_autofree gpointer *names = g_hash_table_get_keys_as_array(seen, NULL);
        g_autofree char *keys = g_strjoinv(", ", (char **) names);
        audit_log(msg, "changed settings", keys);
        return sd_bus_reply_method_return(msg, NULL);
}

int manager_reload_config(Manager *m, char **ret_error) {
        g_autoptr(LauncherConfig) old = launcher_config_copy(m->settings->config);
        g_autofree char *old_error = g_strdup(m->settings->error);

        int r = settings_store_load(m->settings);
        bus_config_emit_changes(m, old, !streq_ptr(old_error, m->settings->error));
        if (r >= 0)
                manager_config_changed(m);
        if (r < 0 && ret_error)
                *ret_error = g_strdup(m->settings->error);
        return r;
}

static int method_reload(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;

        int r = polkit_check(msg, ACTION_CONFIGURE, NULL, m->polkit, error);
        if (r <= 0)
                return r < 0 ? r : 1;

        g_autofree char *why = NULL;
        r = manager_reload_config(m, &why);
        if (r < 0)
                return sd_bus_error_setf(error, LAUNCHER_ERROR_INVALID_CONFIG,
                                         "Config file is invalid and was not loaded: %s", why);
        audit_log(msg, "reloaded the configuration", NULL);
        return sd_bus_reply_method_return(msg, NULL);
}

/* ---- several VMs ---- */

static const VmDecl *decl_of(const LauncherConfig *c, const char *name, guint *ret_index) {
        for (guint i = 0; i < c->vms->len; i++) {
                const VmDecl *d = g_ptr_array_index(c->vms, i);
                if (streq(d->name, name)) {
                        if (ret_index)
                                *ret_index = i;
                        return d;
                }
        }
        return NULL;
}

static int check_decl(Manager *m, const VmDecl *d, sd_bus_error *error) {
        const char *why = vm_name_problem(d->name);
        if (why)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid VM name '%.64s': it %s.", d->name,
                                         why);
        if (reconciler_find_vm(m->reconciler, d->name) || decl_of(m->settings->config, d->name, NULL))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "A VM named '%.64s' is already managed.",
                                         d->name);
        if (!isempty(d->update_strategy) && !streq(d->update_strategy, "recreate") &&
            !streq(d->update_strategy, "in-place"))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "Option 'UpdateStrategy' must be \"recreate\" or \"in-place\".");
        if (!isempty(d->adopt_policy) && !streq(d->adopt_policy, "keep") && !streq(d->adopt_policy, "redeploy"))
                return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS,
                                        "Option 'AdoptPolicy' must be \"keep\" or \"redeploy\".");
        for (char **k = d->env_keys; *k; k++)
                if (!env_key_is_valid(*k)) {
                        g_autofree char *key = key_for_message(*k);
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                                 "Option 'EnvKeys' holds an invalid env key %s.", key);
                }
        g_autofree char *bad = reconciler_source_problem(d->source);
        if (bad)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Invalid source for VM '%.64s': %s.",
                                         d->name, bad);
        return 0;
}

static int method_add_vm(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name, *source, *strategy = "", *adopt = "";
        bool autostart = true;
        g_auto(GStrv) keys = NULL;

        int r = sd_bus_message_read(msg, "ss", &name, &source);
        if (r < 0)
                return r;
        const BusOption options[] = {
                { "UpdateStrategy", BUS_OPTION_STRING, &strategy },
                { "AdoptPolicy", BUS_OPTION_STRING, &adopt },
                { "Autostart", BUS_OPTION_BOOL, &autostart },
                { "EnvKeys", BUS_OPTION_STRV, &keys },
                {}
        };
        r = bus_read_options(msg, options, error);
        if (r < 0)
                return r;
        g_autoptr(VmDecl) d = vm_decl_new(name, source);
        g_free(d->update_strategy), d->update_strategy = g_strdup(strategy);
        g_free(d->adopt_policy), d->adopt_policy = g_strdup(adopt);
        d->autostart = autostart;
        if (keys)
                g_strfreev(d->env_keys), d->env_keys = g_steal_pointer(&keys);
        r = check_decl(m, d, error);
        if (r < 0)
                return r;

        const char *details[] = { "vm", name, NULL };
        r = polkit_check(msg, ACTION_MANAGE_VM, details, m->polkit, error);
        if (r <= 0)
                return r < 0 ? r : 1;

        LauncherConfig *c = launcher_config_copy(m->settings->config);
        if (c->vms->len >= VMS_MAX) {
                launcher_config_free(c);
                return sd_bus_error_setf(error, SD_BUS_ERROR_LIMITS_EXCEEDED, "At most %u VMs can be declared.",
                                         VMS_MAX);
        }
        g_ptr_array_add(c->vms, g_steal_pointer(&d));
        r = commit(m, c, error);
        if (r < 0)
                return r;
        audit_log(msg, "added VM", name);
        return sd_bus_reply_method_return(msg, NULL);
}

/* Drops a declared VM from the settings: the reconciler follows (its object goes). */
static int forget_vm(Manager *m, const char *name, sd_bus_error *error) {
        LauncherConfig *c = launcher_config_copy(m->settings->config);
        guint i;
        if (decl_of(c, name, &i))
                g_ptr_array_remove_index(c->vms, i);
        return commit(m, c, error);
}

typedef struct RemoveCall {
        Manager *m;
        sd_bus_message *msg;
        char *name;
} RemoveCall;

static void on_destroyed(ReconcilerError e, const char *message, void *userdata) {
        RemoveCall *rc = userdata;
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;
        if (e == RECONCILER_OK && forget_vm(rc->m, rc->name, &error) >= 0) {
                audit_log(rc->msg, "removed and destroyed VM", rc->name);
                r = sd_bus_reply_method_return(rc->msg, NULL);
        } else if (e == RECONCILER_OK)
                r = sd_bus_reply_method_errorf(rc->msg, error.name, "VM '%s' was removed at the VMM, but %s",
                                               rc->name, error.message);
        else if (e == RECONCILER_ERROR_SHUTDOWN)
                r = sd_bus_reply_method_errorf(rc->msg, SD_BUS_ERROR_NO_REPLY,
                                               "platform-launcherd is stopping; RemoveVm did not finish.");
        else
                r = sd_bus_reply_method_errorf(rc->msg, e == RECONCILER_ERROR_VMM_UNAVAILABLE
                                                                ? LAUNCHER_ERROR_VMM_UNAVAILABLE
                                                                : LAUNCHER_ERROR_FAILED,
                                               "Cannot remove VM '%s': %s", rc->name, strempty(message));
        if (r < 0)
                log_debug_errno(r, "Cannot reply to RemoveVm: %m");
        sd_bus_message_unref(rc->msg);
        g_free(rc->name);
        g_free(rc);
}

static int method_remove_vm(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *name;
        bool destroy = false;

        int r = sd_bus_message_read(msg, "s", &name);
        if (r < 0)
                return r;
        const BusOption options[] = { { "destroy", BUS_OPTION_BOOL, &destroy }, {} };
        r = bus_read_options(msg, options, error);
        if (r < 0)
                return r;
        Vm *vm = reconciler_find_vm(m->reconciler, name);
        if (!vm && !decl_of(m->settings->config, name, NULL))
                return sd_bus_error_setf(error, LAUNCHER_ERROR_NOT_FOUND, "No VM named '%.64s' is managed.", name);
        if (vm && !reconciler_vm_declared(m->reconciler, vm))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "VM '%.64s' is the Platform API's; set ApiUrl to \"\" to stop managing it.",
                                         name);

        const char *details[] = { "vm", name, NULL };
        r = polkit_check(msg, ACTION_MANAGE_VM, details, m->polkit, error);
        if (r <= 0)
                return r < 0 ? r : 1;

        if (destroy && vm) {
                g_autofree char *trigger = audit_caller(msg);
                RemoveCall *rc = g_new0(RemoveCall, 1);
                *rc = (RemoveCall) { m, sd_bus_message_ref(msg), g_strdup(name) };
                ReconcilerCaller caller = { .trigger = trigger, .done = on_destroyed, .userdata = rc };
                audit_log(msg, "asked to destroy VM", name);
                r = reconciler_destroy_vm(m->reconciler, vm, &caller);
                if (r < 0) {
                        sd_bus_message_unref(rc->msg);
                        g_free(rc->name);
                        g_free(rc);
                        return r;
                }
                return 1;
        }
        r = forget_vm(m, name, error);
        if (r < 0)
                return r;
        audit_log(msg, "removed VM (left at the VMM)", name);
        return sd_bus_reply_method_return(msg, NULL);
}

static const sd_bus_vtable config_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("ApiUrl", "s", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("VmmUrl", "s", property_get_vmm_url, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("GuestVmmUrl", "s", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("PollIntervalUSec", "t", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StopTimeoutUSec", "t", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UpdateStrategy", "s", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("AdoptPolicy", "s", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MetricsPath", "s", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("TrustedKmsSigners", "as", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("KmsSignatureMaxAgeUSec", "t", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("EnvKeys", "as", property_get_env_keys, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RequiredEnv", "as", property_get_required_env, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MissingEnv", "as", property_get_missing_env, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ConfigPath", "s", property_get_config_path, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("ConfigError", "s", property_get_config_error, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Vms", "a(ss)", property_get_vms, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CapacityVcpu", "u", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CapacityMemoryMiB", "u", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("CapacityDiskGiB", "u", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ReservedMemoryMiB", "u", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ResourceIntervalUSec", "t", property_get_setting, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("SetEnv", SD_BUS_ARGS("s", key, "s", value), SD_BUS_NO_RESULT, method_set_env,
                                SD_BUS_VTABLE_UNPRIVILEGED | SD_BUS_VTABLE_SENSITIVE),
        SD_BUS_METHOD_WITH_ARGS("RemoveEnv", SD_BUS_ARGS("s", key), SD_BUS_NO_RESULT, method_remove_env,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetEnv", SD_BUS_ARGS("s", key), SD_BUS_RESULT("s", value), method_get_env,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("SetSettings", SD_BUS_ARGS("a{sv}", settings), SD_BUS_NO_RESULT, method_set_settings,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Reload", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_reload, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("AddVm", SD_BUS_ARGS("s", name, "s", source, "a{sv}", options), SD_BUS_NO_RESULT,
                                method_add_vm, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("RemoveVm", SD_BUS_ARGS("s", name, "a{sv}", options), SD_BUS_NO_RESULT,
                                method_remove_vm, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

int bus_config_register(Manager *m) {
        return sd_bus_add_object_vtable(m->bus, NULL, LAUNCHER_OBJECT_PATH, LAUNCHER_CONFIG_INTERFACE, config_vtable, m);
}
