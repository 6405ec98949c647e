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
#include "shared/macro.h"

void config_info_clear(ConfigInfo *i) {
        g_free(i->api_url);
        g_free(i->vmm_url);
        g_free(i->guest_vmm_url);
        g_free(i->update_strategy);
        g_free(i->config_path);
        g_free(i->config_error);
        g_free(i->metrics_path);
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

bool config_error_in_force(const char *config_error) {
        return config_error && strstr(config_error, ": unknown key '") && strstr(config_error, "', did you mean '");
}

/* missing_env: false when the VM's own problem line already names it. */
void config_info_print_problems(const ConfigInfo *i, bool missing_env) {
        const char *on = ctl_color(CTL_COLOR_RED), *off = ctl_color(CTL_COLOR_NORMAL);
        if (config_error_in_force(i->config_error))
                printf("         %sNote:%s config file in force, with %s\n", ctl_color(CTL_COLOR_YELLOW), off,
                       i->config_error);
        else if (!isempty(i->config_error))
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
static char *read_secret(const char *key, bool *ret_prompt) {
        size_t max = 128 * 1024 + 2;
        g_autofree char *buf = g_malloc0(max + 1);
        size_t n = 0;

        *ret_prompt = isatty(STDIN_FILENO);
        if (*ret_prompt) {
                struct termios old, quiet;
                /* Echo off before the prompt shows, and nothing typed flushed:
                 * a value typed as soon as the prompt appears is neither shown
                 * nor lost. */
                bool restore = tcgetattr(STDIN_FILENO, &old) >= 0;
                if (restore) {
                        quiet = old;
                        quiet.c_lflag &= ~(tcflag_t) ECHO;
                        (void) tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
                }
                fprintf(stderr, "Value for %s: ", key);
                fflush(stderr);
                bool ok = fgets(buf, (int) max, stdin) != NULL;
                if (restore)
                        (void) tcsetattr(STDIN_FILENO, TCSANOW, &old);
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

static int need_args(int argc, int min, int max, const char *usage) {
        if (argc < min || argc > max) {
                fprintf(stderr, "Usage: platformctl config %s\n", usage);
                return EX_USAGE;
        }
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

/* Which VMs a change of env key replaces (they receive the key and exist at
 * the VMM), said before the change: the value is not compared here (a secret
 * is never read back), so "if the value differs" unless the key is new or goes. */
typedef enum EnvChange { ENV_SET, ENV_REMOVE, ENV_DIFFERS } EnvChange;

static char *env_change_consequence(sd_bus *bus, const char *key, EnvChange how) {
        g_auto(ConfigInfo) c = {};
        g_autoptr(VmInfo) vms = NULL;
        if (config_info_get(bus, &c) < 0 || vm_info_list(bus, &vms) < 0)
                return NULL;
        bool is_set = how == ENV_DIFFERS || (c.env_keys && g_strv_contains((const char *const *) c.env_keys, key));
        if (how == ENV_REMOVE && !is_set)
                return NULL; /* NotFound: nothing changes */
        const char *change = how == ENV_REMOVE ? "is removed" : is_set ? "changes" : "is added";
        const char *when = how == ENV_SET && is_set ? " if the value differs" : "";
        GString *s = g_string_new(NULL);
        for (const VmInfo *v = vms; v->path; v++) {
                if (isempty(ctl_json_str(v->props, "Id")))
                        continue; /* nothing to replace: the VM is created */
                JsonNode *n = json_object_get_member(v->props, "AllowedEnv");
                if (n && JSON_NODE_HOLDS_ARRAY(n)) { /* an older launcher does not say: assume it does */
                        bool receives = false;
                        JsonArray *a = json_node_get_array(n);
                        for (guint k = 0; k < json_array_get_length(a) && !receives; k++)
                                receives = streq_ptr(json_array_get_string_element(a, k), key);
                        if (!receives)
                                continue;
                }
                bool in_place = g_strcmp0(c.update_strategy, "in-place") == 0;
                g_autofree char *down = ctl_downtime_text(bus, in_place ? "update-in-place" : "recreate");
                g_string_append_printf(s, "This %s VM %s%s%s: env %s %s; %s.\n", in_place ? "updates" : "replaces",
                                       v->name, in_place ? " in place and restarts it" : "", when, key, change, down);
        }
        return g_string_free(s, s->len == 0);
}

static int confirm_env_change(sd_bus *bus, const char *key, EnvChange how) {
        if (!ctl_confirm_wanted())
                return 0;
        g_autofree char *what = env_change_consequence(bus, key, how);
        return what ? ctl_confirm(what) : 0;
}

static int config_set_env(sd_bus *bus, int argc, char **argv) {
        const char *key = argv[0];
        _cleanup_erase_free_ char *value = NULL;
        if (argc < 2 || streq(argv[1], "-")) {
                bool prompt = false;
                value = read_secret(key, &prompt);
                if (!value)
                        return EX_DATAERR;
                /* A stray Enter or </dev/null must not replace the VM without its secret. */
                if (isempty(value) && !arg.allow_empty) {
                        fprintf(stderr, "Refusing an empty value for %s (from %s); nothing was changed. "
                                        "Use --allow-empty to set it empty.\n",
                                key, prompt ? "the prompt" : "standard input");
                        return EX_DATAERR;
                }
        } else {
                /* Any user reads a command line (ps) while we run, and the question
                 * or a polkit prompt may keep us running: out of it at once. */
                value = strdup(argv[1]);
                if (!value)
                        return EXIT_FAILURE;
                explicit_bzero(argv[1], strlen(argv[1]));
        }
        int r = confirm_env_change(bus, key, ENV_SET);
        if (r)
                return r;
        CtlFollow *f = ctl_config_change_begin(bus);
        r = call(bus, "Failed to set env value", "SetEnv", NULL, "ss", key, value);
        return ctl_config_change_end(bus, f, r, "Env value set");
}

/* GuestVmmUrl is the VM's DSTACK_VMM_URL: a new one replaces the VM. */
static int set_setting(sd_bus *bus, const char *name, const char *value) {
        if (streq(name, "GuestVmmUrl") && value && ctl_confirm_wanted()) {
                g_autofree char *current = NULL;
                (void) sd_bus_get_property_string(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH,
                                                  LAUNCHER_CONFIG_INTERFACE, "GuestVmmUrl", NULL, &current);
                int r = streq_ptr(current, value) ? 0 : confirm_env_change(bus, "DSTACK_VMM_URL", ENV_DIFFERS);
                if (r)
                        return r;
        }
        return ctl_setting_set(bus, name, value);
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
                return need_args(n, 0, 0, "show") ?: ctl_settings_show(bus);
        if (streq(verb, "list-env"))
                return need_args(n, 0, 0, "list-env") ?: config_list_env(bus);
        if (streq(verb, "set-env"))
                return need_args(n, 1, 2, "set-env KEY [VALUE|-]") ?: config_set_env(bus, n, a);
        if (streq(verb, "get-env"))
                return need_args(n, 1, 1, "get-env KEY") ?: config_get_env(bus, a[0]);
        if (streq(verb, "remove-env")) {
                if ((r = need_args(n, 1, 1, "remove-env KEY")) || (r = confirm_env_change(bus, a[0], ENV_REMOVE)))
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
                return need_args(n, 1, 2, "set SETTING VALUE") ?: set_setting(bus, a[0], n > 1 ? a[1] : NULL);
        if (streq(verb, "reload"))
                return need_args(n, 0, 0, "reload") ?: call(bus, "Failed to reload", "Reload", NULL, NULL);

        fprintf(stderr, "Unknown config command '%s'. See platformctl --help.\n", verb);
        return EX_USAGE;
}
