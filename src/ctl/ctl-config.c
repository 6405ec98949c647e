/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "ctl/ctl.h"
#include "shared/config-file.h"
#include "shared/macro.h"

void config_info_clear(ConfigInfo *i) {
        g_free(i->api_url);
        g_free(i->vmm_url);
        g_free(i->guest_vmm_url);
        g_free(i->update_strategy);
        g_free(i->config_path);
        g_free(i->config_error);
        g_free(i->metrics_path);
        g_free(i->adopt_policy);
        g_strfreev(i->env_keys);
        g_strfreev(i->required_env);
        g_strfreev(i->missing_env);
}

static int read_one(sd_bus_message *reply, const char *name, ConfigInfo *i) {
        static const struct { const char *name; size_t off; char type; } map[] = {
                { "ApiUrl", offsetof(ConfigInfo, api_url), 's' },
                { "VmmUrl", offsetof(ConfigInfo, vmm_url), 's' },
                { "GuestVmmUrl", offsetof(ConfigInfo, guest_vmm_url), 's' },
                { "UpdateStrategy", offsetof(ConfigInfo, update_strategy), 's' },
                { "ConfigPath", offsetof(ConfigInfo, config_path), 's' },
                { "ConfigError", offsetof(ConfigInfo, config_error), 's' },
                { "MetricsPath", offsetof(ConfigInfo, metrics_path), 's' },
                { "AdoptPolicy", offsetof(ConfigInfo, adopt_policy), 's' },
                { "PollIntervalUSec", offsetof(ConfigInfo, poll_interval_usec), 't' },
                { "StopTimeoutUSec", offsetof(ConfigInfo, stop_timeout_usec), 't' },
                { "EnvKeys", offsetof(ConfigInfo, env_keys), 'a' },
                { "RequiredEnv", offsetof(ConfigInfo, required_env), 'a' },
                { "MissingEnv", offsetof(ConfigInfo, missing_env), 'a' },
        };
        for (size_t k = 0; k < ELEMENTSOF(map); k++) {
                if (!streq(map[k].name, name))
                        continue;
                void *p = (uint8_t *) i + map[k].off;
                if (map[k].type == 's') {
                        const char *s;
                        int r = sd_bus_message_read(reply, "v", "s", &s);
                        if (r >= 0)
                                *(char **) p = g_strdup(s);
                        return r;
                }
                if (map[k].type == 't')
                        return sd_bus_message_read(reply, "v", "t", (uint64_t *) p);
                int r = sd_bus_message_enter_container(reply, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_read_strv(reply, (char ***) p);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
                return r;
        }
        return sd_bus_message_skip(reply, "v");
}

int config_info_get(sd_bus *bus, ConfigInfo *i) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;

        int r = sd_bus_call_method(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, "org.freedesktop.DBus.Properties",
                                   "GetAll", &error, &reply, "s", LAUNCHER_CONFIG_INTERFACE);
        if (r < 0)
                return -ctl_bus_error("Failed to query the launcher", &error, r);

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        while (r >= 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *name;
                r = sd_bus_message_read(reply, "s", &name);
                if (r >= 0)
                        r = read_one(reply, name, i);
                if (r >= 0)
                        r = sd_bus_message_exit_container(reply);
        }
        if (r < 0) {
                fprintf(stderr, "Failed to parse the launcher's reply: %s\n", strerror(-r));
                return -EXIT_FAILURE;
        }
        return 0;
}

static char *format_usec(uint64_t usec) {
        return ctl_format_usec_in(usec, NULL);
}

static char *join_or_none(char **v) {
        return v && v[0] ? g_strjoinv(" ", v) : g_strdup("(none)");
}

static void add_strv(JsonBuilder *b, const char *name, char **v) {
        json_builder_set_member_name(b, name);
        json_builder_begin_array(b);
        for (char **p = v; p && *p; p++)
                json_builder_add_string_value(b, *p);
        json_builder_end_array(b);
}

void config_info_add_json(JsonBuilder *b, const ConfigInfo *i) {
        json_builder_set_member_name(b, "Config");
        json_builder_begin_object(b);
        struct { const char *k, *v; } strs[] = {
                { "ApiUrl", i->api_url }, { "VmmUrl", i->vmm_url }, { "GuestVmmUrl", i->guest_vmm_url },
                { "UpdateStrategy", i->update_strategy }, { "ConfigPath", i->config_path },
                { "ConfigError", i->config_error }, { "MetricsPath", i->metrics_path },
                { "AdoptPolicy", i->adopt_policy },
        };
        for (size_t k = 0; k < ELEMENTSOF(strs); k++) {
                json_builder_set_member_name(b, strs[k].k);
                json_builder_add_string_value(b, strempty(strs[k].v));
        }
        json_builder_set_member_name(b, "PollIntervalUSec");
        json_builder_add_int_value(b, (gint64) i->poll_interval_usec);
        json_builder_set_member_name(b, "StopTimeoutUSec");
        json_builder_add_int_value(b, (gint64) i->stop_timeout_usec);
        add_strv(b, "EnvKeys", i->env_keys);
        add_strv(b, "RequiredEnv", i->required_env);
        add_strv(b, "MissingEnv", i->missing_env);
        json_builder_end_object(b);
}

static void print_json(const ConfigInfo *i) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        config_info_add_json(b, i);
        json_builder_end_object(b);
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        ctl_json_print(root, true);
}

/* missing_env: false when the VM's own problem line already names it. */
void config_info_print_problems(const ConfigInfo *i, bool missing_env) {
        const char *on = ctl_color(CTL_COLOR_RED), *off = ctl_color(CTL_COLOR_NORMAL);
        if (!isempty(i->config_error))
                printf("         %sProblem:%s config file not in force: %s\n", on, off, i->config_error);
        if (missing_env && i->missing_env && i->missing_env[0]) {
                g_autofree char *m = g_strjoinv(" ", i->missing_env);
                printf("         %sProblem:%s missing env: %s (platformctl config set-env KEY)\n", on, off, m);
        }
}

void config_info_print(const ConfigInfo *i) {
        g_autofree char *poll = format_usec(i->poll_interval_usec), *stop = format_usec(i->stop_timeout_usec);
        g_autofree char *keys = join_or_none(i->env_keys), *req = join_or_none(i->required_env);
        printf("         API URL: %s\n", i->api_url);
        printf("         VMM URL: %s\n", i->vmm_url);
        printf("   Guest VMM URL: %s\n", i->guest_vmm_url);
        printf("   Poll interval: %s\n", poll);
        printf("    Stop timeout: %s\n", stop);
        printf(" Update strategy: %s\n", i->update_strategy);
        printf("        Env keys: %s\n", keys);
        printf("    Required env: %s\n", req);
        printf("         Metrics: %s\n", isempty(i->metrics_path) ? "(off)" : i->metrics_path);
        printf("     Config file: %s\n", i->config_path);
}

static int call(sd_bus *bus, const char *what, const char *method, sd_bus_message **ret_reply, const char *types, ...) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;

        int r = sd_bus_message_new_method_call(bus, &m, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH,
                                               LAUNCHER_CONFIG_INTERFACE, method);
        if (r >= 0 && types) {
                va_list ap;
                va_start(ap, types);
                r = sd_bus_message_appendv(m, types, ap);
                va_end(ap);
        }
        if (r >= 0 && streq(method, "SetEnv"))
                r = sd_bus_message_sensitive(m);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", what, strerror(-r));
                return EXIT_FAILURE;
        }
        ctl_polkit_agent_open(bus);
        r = sd_bus_call(bus, m, 0, &error, ret_reply);
        if (r < 0)
                return ctl_bus_error(what, &error, r);
        return 0;
}

/* A secret read from a terminal without echo, or from stdin when piped. */
static char *read_secret(const char *key) {
        size_t max = 128 * 1024 + 2;
        g_autofree char *buf = g_malloc0(max + 1);
        size_t n = 0;

        if (isatty(STDIN_FILENO)) {
                struct termios old, quiet;
                fprintf(stderr, "Value for %s: ", key);
                fflush(stderr);
                bool restore = tcgetattr(STDIN_FILENO, &old) >= 0;
                if (restore) {
                        quiet = old;
                        quiet.c_lflag &= ~(tcflag_t) ECHO;
                        (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
                }
                bool ok = fgets(buf, (int) max, stdin) != NULL;
                if (restore)
                        (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
                fputc('\n', stderr);
                if (!ok)
                        return NULL;
                n = strlen(buf);
        } else {
                size_t k;
                while (n < max && (k = fread(buf + n, 1, max - n, stdin)) > 0)
                        n += k;
        }
        if (n > 0 && buf[n - 1] == '\n')
                buf[--n] = '\0';
        if (memchr(buf, '\0', n)) {
                explicit_bzero(buf, max);
                fprintf(stderr, "The value contains a NUL byte.\n");
                return NULL;
        }
        return TAKE_PTR(buf);
}

static int set_setting(sd_bus *bus, const char *name, const char *value) {
        const SettingInfo *info = setting_info_by_property(name);
        if (!info || info->type != SETTING_USEC)
                return call(bus, "Failed to change the setting", "SetSettings", NULL, "a{sv}", 1, name, "s", value);

        uint64_t usec;
        const char *unit = NULL;
        g_autofree char *min = ctl_format_usec_in(info->min_usec, NULL);
        g_autofree char *max = ctl_format_usec_in(info->max_usec, NULL);
        int r = ctl_parse_usec(value, &usec, &unit);
        if (r < 0 || usec < info->min_usec || usec > info->max_usec) {
                if (r == -EINVAL)
                        fprintf(stderr, "Invalid time '%s' for %s: use e.g. 30s, 500ms, 5min, 1h, 1d.\n", value, name);
                else
                        fprintf(stderr, "Invalid time '%s' for %s: must be between %s and %s.\n", value, name, min,
                                max);
                return EX_USAGE;
        }
        return call(bus, "Failed to change the setting", "SetSettings", NULL, "a{sv}", 1, name, "t", usec);
}

static int need_args(int argc, int min, int max, const char *usage) {
        if (argc < min || argc > max) {
                fprintf(stderr, "Usage: platformctl config %s\n", usage);
                return EX_USAGE;
        }
        return 0;
}

static int config_show(sd_bus *bus) {
        g_auto(ConfigInfo) i = {};
        int r = config_info_get(bus, &i);
        if (r < 0)
                return -r;
        if (arg.json)
                print_json(&i);
        else
                config_info_print(&i);
        return 0;
}

static int config_list_env(sd_bus *bus) {
        g_auto(ConfigInfo) i = {};
        int r = config_info_get(bus, &i);
        if (r < 0)
                return -r;
        if (arg.json) {
                g_autofree char *j = NULL;
                GString *s = g_string_new("[");
                for (char **k = i.env_keys; k && *k; k++)
                        g_string_append_printf(s, "%s\"%s\"", k == i.env_keys ? "" : ",", *k);
                g_string_append(s, "]");
                j = g_string_free(s, FALSE);
                printf("%s\n", j); /* keys match ^[A-Za-z_][A-Za-z0-9_]*$: nothing to escape */
                return 0;
        }
        if ((!i.env_keys || !i.env_keys[0]) && !arg.quiet)
                printf("No env values are set.\n");
        for (char **k = i.env_keys; k && *k; k++)
                printf("%s\n", *k);
        return 0;
}

static int config_set_env(sd_bus *bus, int argc, char **argv) {
        const char *key = argv[0];
        _cleanup_erase_free_ char *value = NULL;
        if (argc < 2 || streq(argv[1], "-")) {
                value = read_secret(key);
                if (!value)
                        return EX_DATAERR;
        } else
                value = strdup(argv[1]);
        CtlFollow *f = ctl_config_change_begin(bus);
        int r = call(bus, "Failed to set env value", "SetEnv", NULL, "ss", key, value);
        return ctl_config_change_end(bus, f, r, "Env value set");
}

static int config_get_env(sd_bus *bus, const char *key) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = call(bus, "Failed to get env value", "GetEnv", &reply, "s", key);
        if (r != 0)
                return r;
        (void) sd_bus_message_sensitive(reply);
        const char *value;
        r = sd_bus_message_read(reply, "s", &value);
        if (r < 0)
                return EXIT_FAILURE;
        printf("%s\n", value);
        return 0;
}

int verb_config(sd_bus *bus, int argc, char **argv) {
        const char *verb = argc > 0 ? argv[0] : "show";
        int n = argc > 0 ? argc - 1 : 0;
        char **a = argv + 1;
        int r;

        if (streq(verb, "show"))
                return need_args(n, 0, 0, "show") ?: config_show(bus);
        if (streq(verb, "list-env"))
                return need_args(n, 0, 0, "list-env") ?: config_list_env(bus);
        if (streq(verb, "set-env"))
                return need_args(n, 1, 2, "set-env KEY [VALUE|-]") ?: config_set_env(bus, n, a);
        if (streq(verb, "get-env"))
                return need_args(n, 1, 1, "get-env KEY") ?: config_get_env(bus, a[0]);
        if (streq(verb, "remove-env")) {
                if ((r = need_args(n, 1, 1, "remove-env KEY")))
                        return r;
                CtlFollow *f = ctl_config_change_begin(bus);
                r = call(bus, "Failed to remove env value", "RemoveEnv", NULL, "s", a[0]);
                return ctl_config_change_end(bus, f, r, "Env value removed");
        }
        if (streq(verb, "set-vmm-url")) {
                if ((r = need_args(n, 1, 1, "set-vmm-url URL")))
                        return r;
                CtlFollow *f = ctl_config_change_begin(bus);
                r = set_setting(bus, "GuestVmmUrl", a[0]);
                return ctl_config_change_end(bus, f, r, "Guest VMM URL set");
        }
        if (streq(verb, "set"))
                return need_args(n, 2, 2, "set SETTING VALUE") ?: set_setting(bus, a[0], a[1]);
        if (streq(verb, "reload"))
                return need_args(n, 0, 0, "reload") ?: call(bus, "Failed to reload", "Reload", NULL, NULL);

        fprintf(stderr, "Unknown config command '%s'. See platformctl --help.\n", verb);
        return EX_USAGE;
}
