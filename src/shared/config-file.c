/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <string.h>

#include "shared/config-file.h"
#include "shared/json-load.h"
#include "shared/kms-signature.h"
#include "shared/macro.h"
#include "shared/validate.h"
#include "shared/vm-decl.h"

#define SEC 1000000ULL

static const char *check_url(const char *v) {
        return url_is_valid(v) ? NULL : "must be an http://, https:// or unix:/ URL without credentials";
}

/* "" stops managing the API's VM (dbus-api.md "Several managed VMs"). */
static const char *check_url_or_empty(const char *v) {
        return isempty(v) ? NULL : check_url(v);
}

static const char *check_http_url(const char *v) {
        return url_is_valid(v) && !g_str_has_prefix(v, "unix:") ? NULL : "must be an http:// or https:// URL without credentials";
}

static const char *check_strategy(const char *v) {
        return streq(v, "recreate") || streq(v, "in-place") ? NULL : "must be \"recreate\" or \"in-place\"";
}

static const char *check_adopt_policy(const char *v) {
        return streq(v, "keep") || streq(v, "redeploy") ? NULL : "must be \"keep\" or \"redeploy\"";
}

static const char *check_repository(const char *v) {
        if (isempty(v))
                return NULL; /* updater disabled */
        if (v[0] != '/' || strlen(v) > 4096 || strstr(v, "/../") || g_str_has_suffix(v, "/.."))
                return "must be an absolute path without \"..\" (or empty to disable the updater)";
        return NULL;
}

/* A user name as useradd(8) takes it (NAME_REGEX), or "" for the repository's owner. */
static const char *check_user_name(const char *v) {
        if (isempty(v))
                return NULL;
        if (strlen(v) > 32 || v[0] == '-')
                return "must be a user name (letters, digits, \"._-\", not starting with \"-\") or empty";
        for (const char *p = v; *p; p++)
                if (!g_ascii_isalnum(*p) && !strchr("._-", *p) && !(*p == '$' && p[1] == 0))
                        return "must be a user name (letters, digits, \"._-\", not starting with \"-\") or empty";
        return NULL;
}

/* git check-ref-format, reduced to what a remote or branch name needs to be safe as an argv word. */
static const char *check_ref_name(const char *v) {
        if (isempty(v) || strlen(v) > 255 || v[0] == '-' || v[0] == '.' || v[0] == '/' || strstr(v, "..") ||
            strstr(v, "//") || g_str_has_suffix(v, "/") || g_str_has_suffix(v, ".lock"))
                return "must be a valid git name (letters, digits, \"-_./\", not starting with \"-\" or \".\")";
        for (const char *p = v; *p; p++)
                if (!g_ascii_isalnum(*p) && !strchr("-_./", *p))
                        return "must be a valid git name (letters, digits, \"-_./\", not starting with \"-\" or \".\")";
        return NULL;
}

static const char *check_abs_path_or_empty(const char *v) {
        if (isempty(v))
                return NULL;
        if (v[0] != '/' || strstr(v, "/../") || g_str_has_suffix(v, "/.."))
                return "must be an absolute path without \"..\" (or empty)";
        return NULL;
}

static const char *check_http_url_or_empty(const char *v) {
        return isempty(v) ? NULL : check_http_url(v);
}

static const char *check_unreachable(const char *v) {
        return streq(v, "busy") || streq(v, "idle") ? NULL : "must be \"busy\" or \"idle\"";
}

static const char *check_argv(char *const *argv) {
        size_t n = 0;
        for (char *const *a = argv; a && *a; a++, n++)
                if (strlen(*a) > SETTING_ARG_MAX)
                        return "has an argument that is too long";
        if (n > SETTING_ARGV_MAX)
                return "has a command with too many arguments";
        if (n > 0 && isempty(argv[0]))
                return "has a command with an empty program name";
        return NULL;
}

static const char *check_health_command(char *const *v) {
        return check_argv(v);
}

/* The units that host the VMs: restarting any of them stops every VM (the
 * Rust launcher's self-update did exactly that). */
static const char *check_units(char *const *v) {
        static const char *const forbidden[] = { "dstack-vmm", "dstack-kms", "dstack-gateway" };
        size_t n = 0;
        for (char *const *u = v; u && *u; u++, n++) {
                /* "dstack-vmm", "dstack-vmm.service", and the instances of a template: "dstack-vmm@main.service" */
                size_t len = strcspn(*u, "@");
                if (len == strlen(*u) && g_str_has_suffix(*u, ".service"))
                        len -= strlen(".service");
                if (len == strlen(forbidden[0]) && strncmp(*u, forbidden[0], len) == 0)
                        return "must not contain dstack-vmm or an instance of it (restarting it stops every VM)";
                if (len == strlen(forbidden[1]) && strncmp(*u, forbidden[1], len) == 0)
                        return "must not contain dstack-kms or an instance of it (restarting it stops every VM)";
                if (len == strlen(forbidden[2]) && strncmp(*u, forbidden[2], len) == 0)
                        return "must not contain dstack-gateway or an instance of it (restarting it stops every VM)";
                if (isempty(*u) || strlen(*u) > 255 || (*u)[0] == '-' || (*u)[0] == '.')
                        return "must be unit names (letters, digits, \":-_.\\@\", not starting with \"-\")";
                for (const char *p = *u; *p; p++)
                        if (!g_ascii_isalnum(*p) && !strchr(":-_.\\@", *p))
                                return "must be unit names (letters, digits, \":-_.\\@\", not starting with \"-\")";
        }
        return n > SETTING_LIST_MAX ? "has too many units" : NULL;
}

/* dstack's kms-whitelist.json trusted_signers: the KMS's GetMeta k256_pubkey. */
static const char *check_kms_signers(char *const *v) {
        size_t n = 0;
        for (char *const *k = v; k && *k; k++, n++)
                if (kms_signer_parse(*k, NULL) < 0)
                        return "must be compressed secp256k1 public keys in hex (66 digits starting 02 or 03, as the "
                               "KMS's GetMeta k256_pubkey)";
        return n > SETTING_LIST_MAX ? "has too many keys" : NULL;
}

/* node_exporter's textfile collector reads *.prom files only. */
static const char *check_metrics_path(const char *v) {
        if (isempty(v))
                return NULL;
        if (v[0] != '/' || strstr(v, "/../") || g_str_has_suffix(v, "/..") || !g_str_has_suffix(v, ".prom") ||
            g_str_has_suffix(v, "/.prom"))
                return "must be an absolute path ending in \".prom\" (or empty for no metrics)";
        return NULL;
}

#define STR(prop, key, field, def, check)                                                    \
        { .property = prop, .file_key = key, .type = SETTING_STRING,                         \
          .offset = offsetof(LauncherConfig, field), .default_string = def, .check_string = check }
#define USEC(prop, key, field, def, min, max)                                                \
        { .property = prop, .file_key = key, .type = SETTING_USEC,                           \
          .offset = offsetof(LauncherConfig, field), .default_usec = def, .min_usec = min, .max_usec = max }

#define U32(prop, key, field, def, min, max)                                                 \
        { .property = prop, .file_key = key, .type = SETTING_U32,                            \
          .offset = offsetof(LauncherConfig, field), .default_usec = def, .min_usec = min, .max_usec = max }
#define BOOL(prop, key, field, def)                                                          \
        { .property = prop, .file_key = key, .type = SETTING_BOOL,                           \
          .offset = offsetof(LauncherConfig, field), .default_bool = def }
#define STRV(prop, key, field, check)                                                        \
        { .property = prop, .file_key = key, .type = SETTING_STRV,                           \
          .offset = offsetof(LauncherConfig, field), .check_strv = check }
#define ARGVV(prop, key, field)                                                              \
        { .property = prop, .file_key = key, .type = SETTING_ARGVV,                          \
          .offset = offsetof(LauncherConfig, field) }

static const SettingInfo settings[] = {
        STR("ApiUrl", "api_url", api_url, "https://api.platform.network/config/compose/validator_vm",
            check_url_or_empty),
        STR("VmmUrl", "vmm_url", vmm_url, "http://localhost:10300", check_url),
        STR("GuestVmmUrl", "dstack_vmm_url", guest_vmm_url, "http://10.0.2.2:10300/", check_http_url),
        USEC("PollIntervalUSec", "poll_interval_usec", poll_interval_usec, 5 * SEC, 1 * SEC, 24 * 3600 * SEC),
        USEC("StopTimeoutUSec", "stop_timeout_usec", stop_timeout_usec, 120 * SEC, 1 * SEC, 3600 * SEC),
        STR("UpdateStrategy", "update_strategy", update_strategy, "recreate", check_strategy),
        STR("AdoptPolicy", "adopt_policy", adopt_policy, "keep", check_adopt_policy),
        STR("UpdaterRepository", "updater_repository", updater_repository, "", check_repository),
        STR("UpdaterUser", "updater_user", updater_user, "", check_user_name),
        STR("UpdaterRemote", "updater_remote", updater_remote, "origin", check_ref_name),
        STR("UpdaterBranch", "updater_branch", updater_branch, "release", check_ref_name),
        USEC("UpdaterIntervalUSec", "updater_interval_usec", updater_interval_usec, 300 * SEC, 1 * SEC,
             7 * 24 * 3600 * SEC),
        STR("UpdaterRoundLockFile", "updater_round_lock_file", updater_round_lock_file, "", check_abs_path_or_empty),
        USEC("UpdaterRoundLockMaxAgeUSec", "updater_round_lock_max_age_usec", updater_round_lock_max_age_usec,
             2 * 3600 * SEC, 1 * SEC, 30 * 24 * 3600 * SEC),
        STR("UpdaterValidationApiUrl", "updater_validation_api_url", updater_validation_api_url, "",
            check_http_url_or_empty),
        STR("UpdaterApiUnreachable", "updater_api_unreachable", updater_api_unreachable, "busy", check_unreachable),
        ARGVV("UpdaterBuildCommands", "updater_build_commands", updater_build_commands),
        STRV("UpdaterRestartUnits", "updater_restart_units", updater_restart_units, check_units),
        ARGVV("UpdaterRestartCommands", "updater_restart_commands", updater_restart_commands),
        STRV("UpdaterHealthCommand", "updater_health_command", updater_health_command, check_health_command),
        STR("UpdaterHealthUrl", "updater_health_url", updater_health_url, "", check_http_url_or_empty),
        USEC("UpdaterHealthTimeoutUSec", "updater_health_timeout_usec", updater_health_timeout_usec, 120 * SEC,
             1 * SEC, 24 * 3600 * SEC),
        USEC("UpdaterCommandTimeoutUSec", "updater_command_timeout_usec", updater_command_timeout_usec, 600 * SEC,
             100 * 1000ULL, 24 * 3600 * SEC),
        STR("UpdaterAllowedSignersFile", "updater_allowed_signers_file", updater_allowed_signers_file, "",
            check_abs_path_or_empty),
        BOOL("UpdaterAutoUpdate", "updater_auto_update", updater_auto_update, false),
        STR("MetricsPath", "metrics_path", metrics_path, "", check_metrics_path),
        STRV("TrustedKmsSigners", "trusted_kms_signers", trusted_kms_signers, check_kms_signers),
        USEC("KmsSignatureMaxAgeUSec", "kms_signature_max_age_usec", kms_signature_max_age_usec, 0, 0,
             30 * 24 * 3600 * SEC),
        U32("CapacityVcpu", "capacity_vcpu", capacity_vcpu, 0, 0, UINT32_MAX),
        U32("CapacityMemoryMiB", "capacity_memory_mib", capacity_memory_mib, 0, 0, UINT32_MAX),
        U32("CapacityDiskGiB", "capacity_disk_gib", capacity_disk_gib, 0, 0, UINT32_MAX),
        U32("ReservedMemoryMiB", "reserved_memory_mib", reserved_memory_mib, 2048, 0, UINT32_MAX),
        USEC("ResourceIntervalUSec", "resource_interval_usec", resource_interval_usec, 30 * SEC, 1 * SEC,
             24 * 3600 * SEC),
};

const SettingInfo *setting_info_all(size_t *ret_n) {
        *ret_n = ELEMENTSOF(settings);
        return settings;
}

const SettingInfo *setting_info_by_property(const char *property) {
        for (size_t i = 0; i < ELEMENTSOF(settings); i++)
                if (streq(settings[i].property, property))
                        return &settings[i];
        return NULL;
}

const char *setting_check_string(const SettingInfo *info, const char *value) {
        if (strlen(value) > 4096)
                return "is too long";
        return info->check_string ? info->check_string(value) : NULL;
}

const char *setting_check_usec(const SettingInfo *info, uint64_t value) {
        if (value < info->min_usec || value > info->max_usec)
                return "is out of range";
        return NULL;
}

char **setting_string_ptr(LauncherConfig *c, const SettingInfo *info) {
        return (char **) ((uint8_t *) c + info->offset);
}

uint64_t *setting_usec_ptr(LauncherConfig *c, const SettingInfo *info) {
        return (uint64_t *) ((uint8_t *) c + info->offset);
}

bool *setting_bool_ptr(LauncherConfig *c, const SettingInfo *info) {
        return (bool *) ((uint8_t *) c + info->offset);
}

char ***setting_strv_ptr(LauncherConfig *c, const SettingInfo *info) {
        return (char ***) ((uint8_t *) c + info->offset);
}

char ****setting_argvv_ptr(LauncherConfig *c, const SettingInfo *info) {
        return (char ****) ((uint8_t *) c + info->offset);
}

const char *setting_check_strv(const SettingInfo *info, char *const *value) {
        size_t n = 0;
        for (char *const *s = value; s && *s; s++, n++)
                if (strlen(*s) > SETTING_ARG_MAX)
                        return "has an entry that is too long";
        if (n > SETTING_ARGV_MAX)
                return "has too many entries";
        return info->check_strv ? info->check_strv(value) : NULL;
}

const char *setting_check_argvv(const SettingInfo *info, char **const *value) {
        if (argvv_length(value) > SETTING_LIST_MAX)
                return "has too many commands";
        for (char **const *a = value; a && *a; a++) {
                if (!(*a)[0])
                        return "has an empty command (each must be a non-empty argv list)";
                const char *why = check_argv(*a);
                if (why)
                        return why;
        }
        return NULL;
}

const char *setting_signature(const SettingInfo *info) {
        switch (info->type) {
        case SETTING_USEC:
                return "t";
        case SETTING_U32:
                return "u";
        case SETTING_BOOL:
                return "b";
        case SETTING_STRV:
                return "as";
        case SETTING_ARGVV:
                return "aas";
        default:
                return "s";
        }
}

size_t argvv_length(char **const *l) {
        size_t n = 0;
        while (l && l[n])
                n++;
        return n;
}

char ***argvv_copy(char **const *l) {
        size_t n = argvv_length(l);
        char ***c = g_new0(char **, n + 1);
        for (size_t i = 0; i < n; i++)
                c[i] = g_strdupv(l[i]);
        return c;
}

void argvv_free(char ***l) {
        for (size_t i = 0; l && l[i]; i++)
                g_strfreev(l[i]);
        g_free(l);
}

static void setting_set_default(LauncherConfig *c, const SettingInfo *info) {
        switch (info->type) {
        case SETTING_STRING:
                *setting_string_ptr(c, info) = g_strdup(info->default_string);
                break;
        case SETTING_USEC:
        case SETTING_U32:
                *setting_usec_ptr(c, info) = info->default_usec;
                break;
        case SETTING_BOOL:
                *setting_bool_ptr(c, info) = info->default_bool;
                break;
        case SETTING_STRV:
                *setting_strv_ptr(c, info) = g_new0(char *, 1);
                break;
        case SETTING_ARGVV:
                *setting_argvv_ptr(c, info) = g_new0(char **, 1);
                break;
        }
}

static void setting_copy(LauncherConfig *dst, const LauncherConfig *src_c, const SettingInfo *info) {
        LauncherConfig *src = (LauncherConfig *) src_c;
        switch (info->type) {
        case SETTING_STRING:
                *setting_string_ptr(dst, info) = g_strdup(*setting_string_ptr(src, info));
                break;
        case SETTING_USEC:
        case SETTING_U32:
                *setting_usec_ptr(dst, info) = *setting_usec_ptr(src, info);
                break;
        case SETTING_BOOL:
                *setting_bool_ptr(dst, info) = *setting_bool_ptr(src, info);
                break;
        case SETTING_STRV:
                *setting_strv_ptr(dst, info) = g_strdupv(*setting_strv_ptr(src, info));
                break;
        case SETTING_ARGVV:
                *setting_argvv_ptr(dst, info) = argvv_copy(*setting_argvv_ptr(src, info));
                break;
        }
}

static void setting_clear(LauncherConfig *c, const SettingInfo *info) {
        switch (info->type) {
        case SETTING_STRING:
                g_clear_pointer(setting_string_ptr(c, info), g_free);
                break;
        case SETTING_STRV:
                g_clear_pointer(setting_strv_ptr(c, info), g_strfreev);
                break;
        case SETTING_ARGVV:
                argvv_free(*setting_argvv_ptr(c, info));
                *setting_argvv_ptr(c, info) = NULL;
                break;
        default:
                break;
        }
}

static bool strv_eq(char *const *a, char *const *b) {
        return g_strv_equal((const char *const *) a, (const char *const *) b);
}

bool setting_equal(const LauncherConfig *a_c, const LauncherConfig *b_c, const SettingInfo *info) {
        LauncherConfig *a = (LauncherConfig *) a_c, *b = (LauncherConfig *) b_c;
        switch (info->type) {
        case SETTING_STRING:
                return streq(*setting_string_ptr(a, info), *setting_string_ptr(b, info));
        case SETTING_USEC:
        case SETTING_U32:
                return *setting_usec_ptr(a, info) == *setting_usec_ptr(b, info);
        case SETTING_BOOL:
                return *setting_bool_ptr(a, info) == *setting_bool_ptr(b, info);
        case SETTING_STRV:
                return strv_eq(*setting_strv_ptr(a, info), *setting_strv_ptr(b, info));
        case SETTING_ARGVV: {
                char ***x = *setting_argvv_ptr(a, info), ***y = *setting_argvv_ptr(b, info);
                if (argvv_length(x) != argvv_length(y))
                        return false;
                for (size_t i = 0; x[i]; i++)
                        if (!strv_eq(x[i], y[i]))
                                return false;
                return true;
        }
        }
        return false;
}

static int fail(char **ret_error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* JSON ↔ the list and bool types. */
static int parse_strv_node(JsonNode *node, char ***ret) {
        if (!JSON_NODE_HOLDS_ARRAY(node))
                return -EINVAL;
        JsonArray *a = json_node_get_array(node);
        guint n = json_array_get_length(a);
        if (n > SETTING_ARGV_MAX)
                return -E2BIG;
        g_auto(GStrv) v = g_new0(char *, n + 1);
        for (guint i = 0; i < n; i++) {
                JsonNode *e = json_array_get_element(a, i);
                if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING)
                        return -EINVAL;
                v[i] = g_strdup(json_node_get_string(e));
        }
        *ret = TAKE_PTR(v);
        return 0;
}

static int parse_list_setting(LauncherConfig *c, const SettingInfo *info, JsonNode *node, char **ret_error) {
        if (info->type == SETTING_BOOL) {
                if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_BOOLEAN)
                        return fail(ret_error, "%s: must be true or false", info->file_key);
                *setting_bool_ptr(c, info) = json_node_get_boolean(node);
                return 0;
        }
        if (info->type == SETTING_STRV) {
                char **v = NULL;
                if (parse_strv_node(node, &v) < 0)
                        return fail(ret_error, "%s: must be an array of strings", info->file_key);
                const char *why = setting_check_strv(info, v);
                if (why) {
                        g_strfreev(v);
                        return fail(ret_error, "%s: %s", info->file_key, why);
                }
                g_strfreev(*setting_strv_ptr(c, info));
                *setting_strv_ptr(c, info) = v;
                return 0;
        }
        if (!JSON_NODE_HOLDS_ARRAY(node) || json_array_get_length(json_node_get_array(node)) > SETTING_LIST_MAX)
                return fail(ret_error, "%s: must be an array of at most %u argv arrays", info->file_key,
                            SETTING_LIST_MAX);
        JsonArray *a = json_node_get_array(node);
        guint n = json_array_get_length(a);
        char ***v = g_new0(char **, n + 1);
        for (guint i = 0; i < n; i++)
                if (parse_strv_node(json_array_get_element(a, i), &v[i]) < 0) {
                        argvv_free(v);
                        return fail(ret_error, "%s[%u]: must be an array of strings", info->file_key, i);
                }
        const char *why = setting_check_argvv(info, v);
        if (why) {
                argvv_free(v);
                return fail(ret_error, "%s: %s", info->file_key, why);
        }
        argvv_free(*setting_argvv_ptr(c, info));
        *setting_argvv_ptr(c, info) = v;
        return 0;
}

static JsonNode *strv_to_node(char *const *v) {
        JsonArray *a = json_array_new();
        for (char *const *s = v; s && *s; s++)
                json_array_add_string_element(a, *s);
        JsonNode *n = json_node_init_array(json_node_alloc(), a);
        json_array_unref(a);
        return n;
}

static JsonNode *list_setting_to_node(const LauncherConfig *c, const SettingInfo *info) {
        if (info->type == SETTING_BOOL)
                return json_node_init_boolean(json_node_alloc(), *setting_bool_ptr((LauncherConfig *) c, info));
        if (info->type == SETTING_STRV)
                return strv_to_node(*setting_strv_ptr((LauncherConfig *) c, info));
        JsonArray *a = json_array_new();
        for (char ***l = *setting_argvv_ptr((LauncherConfig *) c, info); l && *l; l++)
                json_array_add_element(a, strv_to_node(*l));
        JsonNode *n = json_node_init_array(json_node_alloc(), a);
        json_array_unref(a);
        return n;
}

static int key_compare(gconstpointer a, gconstpointer b, gpointer unused) {
        return strcmp(a, b);
}

static void value_free(gpointer v) {
        erase_and_free(v);
}

static GTree *env_tree_new(void) {
        return g_tree_new_full(key_compare, NULL, g_free, value_free);
}

LauncherConfig *launcher_config_new_default(void) {
        LauncherConfig *c = g_new0(LauncherConfig, 1);
        for (size_t i = 0; i < ELEMENTSOF(settings); i++)
                setting_set_default(c, &settings[i]);
        c->env = env_tree_new();
        c->file = json_object_new();
        c->vms = g_ptr_array_new_with_free_func((GDestroyNotify) vm_decl_free);
        return c;
}

static gboolean copy_env(gpointer k, gpointer v, gpointer data) {
        g_tree_insert(data, g_strdup(k), g_strdup(v));
        return FALSE;
}

LauncherConfig *launcher_config_copy(const LauncherConfig *src) {
        LauncherConfig *c = g_new0(LauncherConfig, 1);
        for (size_t i = 0; i < ELEMENTSOF(settings); i++)
                setting_copy(c, src, &settings[i]);
        c->env = env_tree_new();
        g_tree_foreach(src->env, copy_env, c->env);
        c->file = json_object_ref(src->file);
        c->vms = g_ptr_array_new_with_free_func((GDestroyNotify) vm_decl_free);
        for (guint i = 0; i < src->vms->len; i++)
                g_ptr_array_add(c->vms, vm_decl_copy(g_ptr_array_index(src->vms, i)));
        return c;
}

void launcher_config_free(LauncherConfig *c) {
        if (!c)
                return;
        for (size_t i = 0; i < ELEMENTSOF(settings); i++)
                setting_clear(c, &settings[i]);
        if (c->env)
                g_tree_destroy(c->env);
        if (c->file)
                json_object_unref(c->file);
        if (c->vms)
                g_ptr_array_unref(c->vms);
        g_free(c);
}

static int fail(char **ret_error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static int fail(char **ret_error, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        *ret_error = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static int parse_setting(LauncherConfig *c, const SettingInfo *info, JsonNode *node, char **ret_error) {
        /* null means "not set", as serde writes an Option that is None. */
        if (JSON_NODE_HOLDS_NULL(node))
                return 0;
        if (info->type == SETTING_BOOL || info->type == SETTING_STRV || info->type == SETTING_ARGVV)
                return parse_list_setting(c, info, node, ret_error);

        if (info->type == SETTING_STRING) {
                if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING)
                        return fail(ret_error, "%s: must be a string", info->file_key);
                const char *v = json_node_get_string(node);
                const char *why = setting_check_string(info, v);
                if (why)
                        return fail(ret_error, "%s: %s", info->file_key, why);
                char **p = setting_string_ptr(c, info);
                g_free(*p);
                *p = g_strdup(v);
                return 0;
        }

        if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64 ||
            json_node_get_int(node) < 0)
                return fail(ret_error, "%s: must be a non-negative integer%s", info->file_key,
                            info->type == SETTING_USEC ? " (microseconds)" : "");
        uint64_t v = (uint64_t) json_node_get_int(node);
        const char *why = setting_check_usec(info, v);
        if (why)
                return fail(ret_error, "%s: %s (%" PRIu64 "..%" PRIu64 ")", info->file_key, why, info->min_usec,
                            info->max_usec);
        *setting_usec_ptr(c, info) = v;
        return 0;
}

static int parse_env(LauncherConfig *c, JsonNode *node, char **ret_error) {
        if (JSON_NODE_HOLDS_NULL(node))
                return 0;
        if (!JSON_NODE_HOLDS_OBJECT(node))
                return fail(ret_error, "env: must be an object of strings");

        JsonObjectIter it;
        const char *key;
        JsonNode *v;
        json_object_iter_init(&it, json_node_get_object(node));
        while (json_object_iter_next(&it, &key, &v)) {
                if (!env_key_is_valid(key))
                        return fail(ret_error, "env: invalid key name (must match ^[A-Za-z_][A-Za-z0-9_]*$, at most %d bytes)",
                                    ENV_KEY_MAX);
                if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) != G_TYPE_STRING)
                        return fail(ret_error, "env.%s: must be a string", key);
                if (!env_value_is_valid(json_node_get_string(v)))
                        return fail(ret_error, "env.%s: value exceeds %d bytes", key, ENV_VALUE_MAX);
                g_tree_insert(c->env, g_strdup(key), g_strdup(json_node_get_string(v)));
        }

        char *why = launcher_config_env_check(c);
        if (why) {
                *ret_error = g_strdup_printf("env: %s", why);
                g_free(why);
                return -EINVAL;
        }
        return 0;
}

int launcher_config_parse(const char *data, size_t len, LauncherConfig **ret, char **ret_error) {
        g_autoptr(LauncherConfig) c = launcher_config_new_default();

        if (len > CONFIG_FILE_MAX)
                return fail(ret_error, "file exceeds %u bytes", CONFIG_FILE_MAX);

        /* An empty file is a truncated or clobbered one (a failed copy, "> config.json"), not "no
         * settings": taking it as such would drop every setting and secret in force without a word. */
        size_t i = 0;
        while (i < len && g_ascii_isspace(data[i]))
                i++;
        if (i == len)
                return fail(ret_error, "is empty%s; a file with every default holds {}", len > 0 ? " (only white space)" : "");

        /* The one JSON edge: size, NUL, depth guards; errors give a position, never a token. */
        g_autoptr(JsonParser) parser = NULL;
        JsonObject *obj = NULL;
        _cleanup_free_ char *why = NULL;
        int r = json_load_object(data, len, CONFIG_FILE_MAX, NULL, &parser, &obj, &why);
        if (r == -EINVAL)
                return fail(ret_error, "%s", why);
        if (r < 0)
                return r;

        for (size_t k = 0; k < ELEMENTSOF(settings); k++) {
                JsonNode *n = json_object_get_member(obj, settings[k].file_key);
                if (n && parse_setting(c, &settings[k], n, ret_error) < 0)
                        return -EINVAL;
        }

        JsonNode *env = json_object_get_member(obj, "env");
        if (env && parse_env(c, env, ret_error) < 0)
                return -EINVAL;
        JsonNode *vms = json_object_get_member(obj, "vms");
        if (vms) {
                GPtrArray *decls = NULL;
                if (vm_decls_from_json(vms, &decls, ret_error) < 0)
                        return -EINVAL;
                g_ptr_array_unref(c->vms);
                c->vms = decls;
        }

        json_object_unref(c->file);
        c->file = json_object_ref(obj);
        *ret = TAKE_PTR(c);
        return 0;
}

static const SettingInfo *setting_by_file_key(const char *key);

/* ---- keys we do not know: misspellings of ours are worth a word ---- */

#define KEY_SUGGEST_LEN_MAX 64u
#define KEY_REPORT_MAX 8u

/* Optimal string alignment distance (Levenshtein plus adjacent
 * transpositions) of two short ASCII-folded strings. */
static unsigned key_distance(const char *a, const char *b) {
        size_t n = strlen(a), m = strlen(b);
        unsigned d[KEY_SUGGEST_LEN_MAX + 1][KEY_SUGGEST_LEN_MAX + 1];
        if (n > KEY_SUGGEST_LEN_MAX || m > KEY_SUGGEST_LEN_MAX)
                return UINT32_MAX;
        for (size_t i = 0; i <= n; i++)
                d[i][0] = (unsigned) i;
        for (size_t j = 0; j <= m; j++)
                d[0][j] = (unsigned) j;
        for (size_t i = 1; i <= n; i++)
                for (size_t j = 1; j <= m; j++) {
                        unsigned cost = g_ascii_tolower(a[i - 1]) != g_ascii_tolower(b[j - 1]);
                        unsigned v = MIN(MIN(d[i - 1][j] + 1, d[i][j - 1] + 1), d[i - 1][j - 1] + cost);
                        if (i > 1 && j > 1 && g_ascii_tolower(a[i - 1]) == g_ascii_tolower(b[j - 2]) &&
                            g_ascii_tolower(a[i - 2]) == g_ascii_tolower(b[j - 1]))
                                v = MIN(v, d[i - 2][j - 2] + 1);
                        d[i][j] = v;
                }
        return d[n][m];
}

/* How far a key may be from one of ours to count as a misspelling of it:
 * one edit in a short key, two from 6 characters, three from 12. */
static unsigned key_distance_max(size_t len) {
        return len < 6 ? 1 : len < 12 ? 2 : 3;
}

/* Distance of key to a known key, also to it without its unit ("poll_interval"
 * for "poll_interval_usec"), and to the bus property name ("PollIntervalUSec"). */
static unsigned known_key_distance(const char *key, const char *file_key, const char *property) {
        unsigned best = key_distance(key, file_key);
        if (g_str_has_suffix(file_key, "_usec")) {
                g_autofree char *bare = g_strndup(file_key, strlen(file_key) - strlen("_usec"));
                best = MIN(best, key_distance(key, bare));
        }
        if (property)
                best = MIN(best, key_distance(key, property));
        return best;
}

/* The known key that key misspells, or NULL. */
static const char *key_suggestion(const char *key) {
        static const char *const other_keys[] = { "env" }; /* the Rust launcher's; dstack_vmm_url is a setting */
        const char *best = NULL;
        unsigned best_d = UINT32_MAX;

        if (strlen(key) > KEY_SUGGEST_LEN_MAX)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(settings) + ELEMENTSOF(other_keys); i++) {
                const char *k = i < ELEMENTSOF(settings) ? settings[i].file_key : other_keys[i - ELEMENTSOF(settings)];
                const char *prop = i < ELEMENTSOF(settings) ? settings[i].property : NULL;
                unsigned d = known_key_distance(key, k, prop);
                if (d <= key_distance_max(strlen(k)) && d < best_d) {
                        best = k;
                        best_d = d;
                }
        }
        return best;
}

/* A key as it may be shown: printable ASCII as is, anything else \xNN. */
static void append_key_escaped(GString *out, const char *key) {
        for (const unsigned char *p = (const unsigned char *) key; *p; p++)
                if (*p >= 0x20 && *p < 0x7f && *p != '\'' && *p != '\\')
                        g_string_append_c(out, (char) *p);
                else
                        g_string_append_printf(out, "\\x%02x", *p);
}

char *launcher_config_misspelled_keys(const LauncherConfig *c) {
        g_autoptr(GList) members = json_object_get_members(c->file);
        GString *out = NULL;
        unsigned n = 0;

        for (GList *l = members; l; l = l->next) {
                const char *key = l->data;
                if (setting_by_file_key(key) || streq(key, "env"))
                        continue;
                const char *known = key_suggestion(key);
                if (!known)
                        continue;
                if (++n > KEY_REPORT_MAX)
                        continue;
                if (!out)
                        out = g_string_new(NULL);
                else
                        g_string_append(out, "; ");
                g_string_append(out, "unknown key '");
                append_key_escaped(out, key);
                g_string_append_printf(out, "', did you mean '%s'?", known);
        }
        if (n > KEY_REPORT_MAX)
                g_string_append_printf(out, "; %u more unknown keys like these", n - KEY_REPORT_MAX);
        return out ? g_string_free(out, FALSE) : NULL;
}

static const SettingInfo *setting_by_file_key(const char *key) {
        for (size_t i = 0; i < ELEMENTSOF(settings); i++)
                if (streq(settings[i].file_key, key))
                        return &settings[i];
        return NULL;
}

static bool setting_is_default(const LauncherConfig *c, const SettingInfo *info) {
        if (info->type == SETTING_BOOL)
                return *setting_bool_ptr((LauncherConfig *) c, info) == info->default_bool;
        if (info->type == SETTING_STRV)
                return !(*setting_strv_ptr((LauncherConfig *) c, info))[0];
        if (info->type == SETTING_ARGVV)
                return !(*setting_argvv_ptr((LauncherConfig *) c, info))[0];
        if (info->type == SETTING_STRING)
                return streq(*setting_string_ptr((LauncherConfig *) c, info), info->default_string);
        return *setting_usec_ptr((LauncherConfig *) c, info) == info->default_usec;
}

static JsonNode *setting_to_node(const LauncherConfig *c, const SettingInfo *info) {
        if (info->type == SETTING_BOOL || info->type == SETTING_STRV || info->type == SETTING_ARGVV)
                return list_setting_to_node(c, info);
        JsonNode *n = json_node_alloc();
        if (info->type == SETTING_STRING)
                return json_node_init_string(n, *setting_string_ptr((LauncherConfig *) c, info));
        return json_node_init_int(n, (gint64) *setting_usec_ptr((LauncherConfig *) c, info));
}

static gboolean add_env_member(gpointer k, gpointer v, gpointer data) {
        json_object_set_string_member(data, k, v);
        return FALSE;
}

static JsonNode *env_to_node(const LauncherConfig *c) {
        JsonObject *o = json_object_new();
        g_tree_foreach(c->env, add_env_member, o);
        JsonNode *n = json_node_init_object(json_node_alloc(), o);
        json_object_unref(o);
        return n;
}

/* json-glib (1.6) appends ".0" to a double whose text has no '.', also to
 * "3e+74": "3e+74.0" is not JSON, and the file written would not be read
 * again. At p (outside strings): is this such a ".0"? */
static bool number_has_dot_zero_after_exponent(const char *text, const char *p) {
        if (p[0] != '.' || p[1] != '0' || g_ascii_isdigit(p[2]) || p == text || !g_ascii_isdigit(p[-1]))
                return false;
        const char *q = p - 1;
        while (q > text && g_ascii_isdigit(*q))
                q--;
        if ((*q == '+' || *q == '-') && q > text)
                q--;
        return *q == 'e' || *q == 'E';
}

char *launcher_config_serialize(const LauncherConfig *c) {
        g_autoptr(JsonObject) out = json_object_new();
        bool have_env = false, have_vms = false;

        /* The original file's members first, in their order. */
        g_autoptr(GList) members = json_object_get_members(c->file);
        for (GList *l = members; l; l = l->next) {
                const char *key = l->data;
                const SettingInfo *info = setting_by_file_key(key);
                if (info)
                        json_object_set_member(out, key, setting_to_node(c, info));
                else if (streq(key, "env")) {
                        json_object_set_member(out, key, env_to_node(c));
                        have_env = true;
                } else if (streq(key, "vms")) {
                        json_object_set_member(out, key, vm_decls_to_json(c->vms));
                        have_vms = true;
                } else
                        json_object_set_member(out, key, json_node_copy(json_object_get_member(c->file, key)));
        }

        for (size_t i = 0; i < ELEMENTSOF(settings); i++)
                if (!json_object_has_member(out, settings[i].file_key) && !setting_is_default(c, &settings[i]))
                        json_object_set_member(out, settings[i].file_key, setting_to_node(c, &settings[i]));
        if (!have_env)
                json_object_set_member(out, "env", env_to_node(c));
        if (!have_vms && c->vms->len > 0)
                json_object_set_member(out, "vms", vm_decls_to_json(c->vms));

        g_autoptr(JsonNode) root = json_node_init_object(json_node_alloc(), out);
        g_autoptr(JsonGenerator) gen = json_generator_new();
        json_generator_set_pretty(gen, TRUE);
        json_generator_set_indent(gen, 2);
        json_generator_set_root(gen, root);
        char *text = json_generator_to_data(gen, NULL);

        /* json-glib (1.6) writes U+001F raw, which RFC 8259, serde_json and
         * Python refuse; outside strings the generator writes no control
         * byte, so every 0x1f is inside one. */
        size_t n = 0;
        for (const char *p = text; *p; p++)
                n += *p == 0x1f ? 6 : 1;
        GString *out_text = g_string_sized_new(n + 2); /* no realloc: no stray copy of a secret */
        bool in_string = false;
        for (const char *p = text; *p; p++) {
                if (in_string && *p == '\\' && p[1]) {
                        g_string_append_c(out_text, *p++);
                        g_string_append_c(out_text, *p);
                        continue;
                }
                if (*p == '"')
                        in_string = !in_string;
                if (*p == 0x1f)
                        g_string_append(out_text, "\\u001f");
                else if (!in_string && number_has_dot_zero_after_exponent(text, p))
                        p++; /* drop ".0" */
                else
                        g_string_append_c(out_text, *p);
        }
        g_string_append_c(out_text, '\n');
        erase_and_free(text);
        return g_string_free(out_text, FALSE);
}

static gboolean collect_key(gpointer k, gpointer v, gpointer data) {
        g_ptr_array_add(data, k);
        return FALSE;
}

const char **launcher_config_env_keys(const LauncherConfig *c) {
        GPtrArray *a = g_ptr_array_new();
        g_tree_foreach(c->env, collect_key, a);
        g_ptr_array_add(a, NULL);
        return (const char **) g_ptr_array_free(a, FALSE);
}

const char *launcher_config_env_get(const LauncherConfig *c, const char *key) {
        return g_tree_lookup(c->env, key);
}

void launcher_config_env_set(LauncherConfig *c, const char *key, const char *value) {
        g_tree_replace(c->env, g_strdup(key), g_strdup(value));
}

bool launcher_config_env_remove(LauncherConfig *c, const char *key) {
        return g_tree_remove(c->env, key);
}

size_t launcher_config_env_count(const LauncherConfig *c) {
        return (size_t) g_tree_nnodes(c->env);
}

static gboolean add_len(gpointer k, gpointer v, gpointer data) {
        *(size_t *) data += strlen(k) + strlen(v);
        return FALSE;
}

size_t launcher_config_env_total_bytes(const LauncherConfig *c) {
        size_t n = 0;
        g_tree_foreach(c->env, add_len, &n);
        return n;
}

char *launcher_config_env_check(const LauncherConfig *c) {
        if (launcher_config_env_count(c) > ENV_MAX_ENTRIES)
                return g_strdup_printf("more than %d entries", ENV_MAX_ENTRIES);
        if (launcher_config_env_total_bytes(c) > ENV_MAX_TOTAL_BYTES)
                return g_strdup_printf("keys and values exceed %d bytes in total", ENV_MAX_TOTAL_BYTES);
        return NULL;
}

bool launcher_config_equal_settings(const LauncherConfig *a, const LauncherConfig *b) {
        for (size_t i = 0; i < ELEMENTSOF(settings); i++)
                if (!setting_equal(a, b, &settings[i]))
                        return false;
        return true;
}
