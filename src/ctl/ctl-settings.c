/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "ctl/ctl.h"
#include "shared/config-file.h"
#include "shared/macro.h"

/* config set and config show: every setting the launcher takes through
 * Config.SetSettings, by the name SetSettings takes, driven by the settings
 * table so that a new setting is settable and shown without touching this. */

#define UPDATER_INTERFACE "org.platform.Launcher1.Updater"

static const char *list_example(const SettingInfo *info) {
        if (info->type == SETTING_ARGVV)
                return "a JSON array of commands, each an array of strings (e.g. '[[\"make\"],[\"./build.sh\","
                       "\"--release\"]]'), or one command as --arg PROGRAM [--arg ARG ...]";
        return "a JSON array of strings (e.g. '[\"validator.service\",\"worker.service\"]'), or one --arg per element";
}

/* A JSON array of strings; on failure *ret_why says which element is not. */
static int json_strv(JsonNode *n, const char *what, char ***ret, char **ret_why) {
        if (!JSON_NODE_HOLDS_ARRAY(n)) {
                *ret_why = g_strdup_printf("%s is not an array", *what ? what : "it");
                return -EINVAL;
        }
        JsonArray *a = json_node_get_array(n);
        g_autoptr(GStrvBuilder) b = g_strv_builder_new();
        for (guint k = 0; k < json_array_get_length(a); k++) {
                JsonNode *e = json_array_get_element(a, k);
                if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING) {
                        *ret_why = g_strdup_printf("%s%selement %u is not a string", what, *what ? ", " : "", k + 1);
                        return -EINVAL;
                }
                g_strv_builder_add(b, json_node_get_string(e));
        }
        *ret = g_strv_builder_end(b);
        return 0;
}

/* The value of a list setting as a list of strv: one for "as", one per
 * command for "aas". From VALUE (JSON) or from --arg. */
static int parse_list(const SettingInfo *info, const char *value, GPtrArray **ret) {
        g_autoptr(GPtrArray) l = g_ptr_array_new_with_free_func((GDestroyNotify) g_strfreev);
        g_autofree char *why = NULL;
        if (!value) {
                g_autoptr(GStrvBuilder) b = g_strv_builder_new();
                for (guint k = 0; k < arg.args->len; k++)
                        g_strv_builder_add(b, arg.args->pdata[k]);
                g_ptr_array_add(l, g_strv_builder_end(b));
                *ret = g_steal_pointer(&l);
                return 0;
        }
        g_autoptr(JsonParser) parser = json_parser_new();
        g_autoptr(GError) error = NULL;
        if (!json_parser_load_from_data(parser, value, -1, &error) || !json_parser_get_root(parser))
                why = g_strdup("it is not JSON");
        JsonNode *root = why ? NULL : json_parser_get_root(parser);
        if (root && info->type == SETTING_STRV) {
                char **v = NULL;
                if (json_strv(root, "", &v, &why) >= 0)
                        g_ptr_array_add(l, v);
        } else if (root && !JSON_NODE_HOLDS_ARRAY(root))
                why = g_strdup("it is not an array");
        else if (root) {
                JsonArray *a = json_node_get_array(root);
                for (guint k = 0; k < json_array_get_length(a) && !why; k++) {
                        g_autofree char *what = g_strdup_printf("command %u", k + 1);
                        char **v = NULL;
                        if (json_strv(json_array_get_element(a, k), what, &v, &why) >= 0)
                                g_ptr_array_add(l, v);
                }
        }
        if (why) {
                fprintf(stderr, "Invalid value for %s: %s; give %s.\n", info->property, why, list_example(info));
                return -EX_USAGE;
        }
        *ret = g_steal_pointer(&l);
        return 0;
}

static int parse_bool(const char *s, int *ret) {
        static const char *const yes[] = { "1", "yes", "y", "true", "on" }, *const no[] = { "0", "no", "n", "false", "off" };
        for (size_t k = 0; k < ELEMENTSOF(yes); k++)
                if (!strcasecmp(s, yes[k]) || !strcasecmp(s, no[k])) {
                        *ret = !strcasecmp(s, yes[k]);
                        return 0;
                }
        return -EINVAL;
}

static int parse_usec(const SettingInfo *info, const char *value, uint64_t *ret) {
        const char *unit = NULL;
        g_autofree char *min = ctl_format_usec_in(info->min_usec, NULL);
        g_autofree char *max = ctl_format_usec_in(info->max_usec, NULL);
        int r = ctl_parse_usec(value, ret, &unit);
        if (r >= 0 && *ret >= info->min_usec && *ret <= info->max_usec)
                return 0;
        if (r == -EINVAL)
                fprintf(stderr, "Invalid time '%s' for %s: use e.g. 30s, 500ms, 5min, 1h, 1d.\n", value,
                        info->property);
        else
                fprintf(stderr, "Invalid time '%s' for %s: must be between %s and %s.\n", value, info->property, min,
                        max);
        return -EX_USAGE;
}

/* The variant's contents, typed as the setting is; an unknown name goes as a
 * string, for the launcher to refuse by name. Returns 0 or minus an exit status. */
static int append_value(sd_bus_message *m, const SettingInfo *info, const char *value) {
        int r, b;
        uint64_t usec;
        g_autoptr(GPtrArray) l = NULL;

        switch (info ? info->type : SETTING_STRING) {
        case SETTING_USEC:
                if ((r = parse_usec(info, value, &usec)) < 0)
                        return r;
                return sd_bus_message_append(m, "v", "t", usec) < 0 ? -EXIT_FAILURE : 0;
        case SETTING_U32: {
                char *end = NULL;
                errno = 0;
                unsigned long long v = strtoull(value, &end, 10);
                if (errno || end == value || *end || value[0] == '-' || v > info->max_usec) {
                        fprintf(stderr, "Invalid number '%s' for %s: use 0..%" PRIu64 ".\n", value, info->property,
                                info->max_usec);
                        return -EX_USAGE;
                }
                return sd_bus_message_append(m, "v", "u", (uint32_t) v) < 0 ? -EXIT_FAILURE : 0;
        }
        case SETTING_BOOL:
                if (parse_bool(value, &b) < 0) {
                        fprintf(stderr, "Invalid value '%s' for %s: use yes or no.\n", value, info->property);
                        return -EX_USAGE;
                }
                return sd_bus_message_append(m, "v", "b", b) < 0 ? -EXIT_FAILURE : 0;
        case SETTING_STRV:
        case SETTING_ARGVV:
                if ((r = parse_list(info, value, &l)) < 0)
                        return r;
                r = sd_bus_message_open_container(m, 'v', setting_signature(info));
                if (r >= 0 && info->type == SETTING_ARGVV)
                        r = sd_bus_message_open_container(m, 'a', "as");
                for (guint k = 0; r >= 0 && k < l->len; k++)
                        r = sd_bus_message_append_strv(m, l->pdata[k]);
                if (r >= 0 && info->type == SETTING_ARGVV)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                return r < 0 ? -EXIT_FAILURE : 0;
        default:
                return sd_bus_message_append(m, "v", "s", value) < 0 ? -EXIT_FAILURE : 0;
        }
}

int ctl_setting_set(sd_bus *bus, const char *name, const char *value) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        const SettingInfo *info = setting_info_by_property(name);
        bool list = info && (info->type == SETTING_STRV || info->type == SETTING_ARGVV);

        if (arg.args && !list) {
                fprintf(stderr, "--arg is for list settings (%s is not one); give its value instead.\n", name);
                return EX_USAGE;
        }
        if (!!arg.args == !!value) {
                fprintf(stderr, "Usage: platformctl config set SETTING VALUE%s\n",
                        list ? " | config set SETTING --arg A [--arg B ...]" : "");
                return EX_USAGE;
        }
        int r = sd_bus_message_new_method_call(bus, &m, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH,
                                               LAUNCHER_CONFIG_INTERFACE, "SetSettings");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'e', "sv");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", name);
        if (r >= 0 && (r = append_value(m, info, value)) < 0)
                return -r;
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                fprintf(stderr, "Failed to change the setting: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        ctl_polkit_agent_open(bus);
        r = sd_bus_call(bus, m, 0, &error, NULL);
        if (r < 0)
                return ctl_bus_error("Failed to change the setting", &error, r);
        return 0;
}

/* ---- config show ---- */

static int get_all(sd_bus *bus, const char *interface, JsonObject **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(JsonNode) node = NULL;
        int r = sd_bus_call_method(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, "org.freedesktop.DBus.Properties",
                                   "GetAll", &error, &reply, "s", interface);
        if (r < 0)
                return -ctl_bus_error("Failed to query the launcher", &error, r);
        r = ctl_json_read(reply, &node);
        if (r < 0 || !JSON_NODE_HOLDS_OBJECT(node)) {
                fprintf(stderr, "Failed to parse the launcher's reply: %s\n", strerror(r < 0 ? -r : EBADMSG));
                return -EXIT_FAILURE;
        }
        *ret = json_object_ref(json_node_get_object(node));
        return 0;
}

/* A setting's value as the launcher exports it: a Config property of the
 * same name, or an Updater property named without the "Updater" prefix. */
static JsonNode *setting_value(JsonObject *config, JsonObject *updater, const char *name) {
        if (json_object_has_member(config, name))
                return json_object_get_member(config, name);
        if (updater && g_str_has_prefix(name, "Updater") && json_object_has_member(updater, name + 7))
                return json_object_get_member(updater, name + 7);
        return NULL;
}

/* As config set takes it: times with their unit, lists as JSON. */
static char *format_value(const SettingInfo *info, JsonNode *v) {
        if (info->type == SETTING_USEC && JSON_NODE_HOLDS_VALUE(v) && json_node_get_value_type(v) == G_TYPE_INT64)
                return ctl_format_usec_in((uint64_t) json_node_get_int(v), NULL);
        if (info->type == SETTING_BOOL && JSON_NODE_HOLDS_VALUE(v) && json_node_get_value_type(v) == G_TYPE_BOOLEAN)
                return g_strdup(json_node_get_boolean(v) ? "yes" : "no");
        if (JSON_NODE_HOLDS_VALUE(v) && json_node_get_value_type(v) == G_TYPE_STRING)
                return g_strdup(isempty(json_node_get_string(v)) ? "(none)" : json_node_get_string(v));
        return ctl_json_to_text(v);
}

static char *join_strv(JsonObject *o, const char *name) {
        JsonNode *n = json_object_get_member(o, name);
        JsonArray *a = n && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
        GString *s = g_string_new(NULL);
        for (guint k = 0; a && k < json_array_get_length(a); k++)
                g_string_append_printf(s, "%s%s", k ? " " : "", json_array_get_string_element(a, k));
        if (s->len == 0)
                g_string_append(s, "(none)");
        return g_string_free(s, FALSE);
}

int ctl_settings_show(sd_bus *bus) {
        g_autoptr(JsonObject) config = NULL, updater = NULL;
        int r = get_all(bus, LAUNCHER_CONFIG_INTERFACE, &config);
        if (r < 0)
                return -r;
        if (get_all(bus, UPDATER_INTERFACE, &updater) < 0)
                updater = NULL; /* said why; the rest still shows */

        size_t n;
        const SettingInfo *all = setting_info_all(&n);
        if (arg.json) {
                g_autoptr(JsonBuilder) b = json_builder_new();
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "Config");
                json_builder_begin_object(b);
                for (size_t k = 0; k < n; k++) {
                        JsonNode *v = setting_value(config, updater, all[k].property);
                        if (!v)
                                continue;
                        json_builder_set_member_name(b, all[k].property);
                        json_builder_add_value(b, json_node_copy(v));
                }
                static const char *const info[] = { "EnvKeys", "RequiredEnv", "MissingEnv", "ConfigPath",
                                                    "ConfigError" };
                for (size_t k = 0; k < ELEMENTSOF(info); k++)
                        if (json_object_has_member(config, info[k])) {
                                json_builder_set_member_name(b, info[k]);
                                json_builder_add_value(b, json_node_copy(json_object_get_member(config, info[k])));
                        }
                json_builder_end_object(b);
                json_builder_end_object(b);
                g_autoptr(JsonNode) root = json_builder_get_root(b);
                ctl_json_print(root, true);
                return 0;
        }

        int width = (int) strlen("Config file");
        for (size_t k = 0; k < n; k++)
                width = MAX(width, (int) strlen(all[k].property));
        const char *error = ctl_json_str(config, "ConfigError");
        if (!isempty(error) && config_error_in_force(error))
                printf("%*s%sNote:%s config file in force, with %s\n", width - 4, "", ctl_color(CTL_COLOR_YELLOW),
                       ctl_color(CTL_COLOR_NORMAL), error);
        else if (!isempty(error))
                printf("%*s%sProblem:%s config file not in force: %s\n", width - 7, "", ctl_color(CTL_COLOR_RED),
                       ctl_color(CTL_COLOR_NORMAL), error);
        for (size_t k = 0; k < n; k++) {
                JsonNode *v = setting_value(config, updater, all[k].property);
                if (!v)
                        continue; /* an older launcher */
                g_autofree char *text = format_value(&all[k], v);
                printf("%*s: %s\n", width, all[k].property, text);
        }
        g_autofree char *keys = join_strv(config, "EnvKeys"), *req = join_strv(config, "RequiredEnv");
        printf("%*s: %s\n", width, "Env keys", keys);
        printf("%*s: %s\n", width, "Required env", req);
        printf("%*s: %s\n", width, "Config file", ctl_json_str(config, "ConfigPath"));
        return 0;
}
