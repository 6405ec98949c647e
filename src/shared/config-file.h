/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

/* The launcher's settings and env, as held in /etc/platform-validator/config.json.
 * The Rust launcher's keys ("dstack_vmm_url", "env") are read as it wrote them;
 * new keys sit beside them; keys we do not know are carried through unchanged.
 * Pure: bytes in, bytes out. */

#define CONFIG_FILE_MAX (4u * 1024u * 1024u)

typedef enum UpdateStrategy {
        UPDATE_STRATEGY_RECREATE,
        UPDATE_STRATEGY_IN_PLACE,
} UpdateStrategy;

typedef struct LauncherConfig {
        char *api_url;
        char *vmm_url;
        char *guest_vmm_url;
        uint64_t poll_interval_usec;
        uint64_t stop_timeout_usec;
        char *update_strategy;
        char *adopt_policy;  /* "keep" or "redeploy": a VM with our name we did not deploy */
        char *updater_repository;
        char *updater_user;  /* who runs the Updater's commands; "" = the repository's owner */
        char *updater_remote;
        char *updater_branch;
        uint64_t updater_interval_usec;
        char *updater_round_lock_file;
        uint64_t updater_round_lock_max_age_usec;
        char *updater_validation_api_url;
        char *updater_api_unreachable;
        char ***updater_build_commands;     /* NULL-terminated list of argv (NULL-terminated) */
        char **updater_restart_units;
        char ***updater_restart_commands;
        char **updater_health_command;
        char *updater_health_url;
        uint64_t updater_health_timeout_usec;
        uint64_t updater_command_timeout_usec;
        char *updater_allowed_signers_file;
        bool updater_auto_update;
        char *metrics_path;  /* Prometheus textfile, "" = none */
        char **trusted_kms_signers;         /* compressed secp256k1 keys (hex); empty = pin on first use */
        uint64_t kms_signature_max_age_usec;  /* of a signature_v1 timestamp; 0 = not checked */
        uint64_t capacity_vcpu;        /* 0 = the online CPUs */
        uint64_t capacity_memory_mib;  /* 0 = MemTotal - reserved_memory_mib */
        uint64_t capacity_disk_gib;    /* 0 = not checked */
        uint64_t reserved_memory_mib;
        uint64_t resource_interval_usec;  /* guest figures of running VMs, this often */
        GPtrArray *vms;      /* VmDecl *: the VMs declared beside the API's (key "vms"), never NULL */

        GTree *env;         /* key → value, both owned; byte-wise sorted */
        JsonObject *file;   /* the root object as read, for the keys we do not know */
} LauncherConfig;

typedef enum SettingType {
        SETTING_STRING,     /* s */
        SETTING_USEC,       /* t */
        SETTING_BOOL,       /* b */
        SETTING_STRV,       /* as: never NULL, maybe empty */
        SETTING_ARGVV,      /* aas: a list of argv lists; never NULL, maybe empty */
        SETTING_U32,        /* u: a count, kept as a uint64_t (as SETTING_USEC) within min..max */
} SettingType;

/* Limits of the list settings (argv lists are also refused empty). */
#define SETTING_LIST_MAX 64u
#define SETTING_ARGV_MAX 256u
#define SETTING_ARG_MAX 4096u

/* One setting: its bus property name, its key in the file, where it lives. */
typedef struct SettingInfo {
        const char *property;
        const char *file_key;
        SettingType type;
        size_t offset;
        const char *default_string;
        uint64_t default_usec;
        /* Returns NULL when valid, else a static explanation ("must be ..."). */
        const char *(*check_string)(const char *value);
        uint64_t min_usec, max_usec;
        bool default_bool;
        /* as / aas: NULL when valid, else why not (static text). */
        const char *(*check_strv)(char *const *value);
} SettingInfo;

const SettingInfo *setting_info_all(size_t *ret_n);
const SettingInfo *setting_info_by_property(const char *property);

/* Checks a value for a setting; NULL when valid, else why not (static text). */
const char *setting_check_string(const SettingInfo *info, const char *value);
const char *setting_check_usec(const SettingInfo *info, uint64_t value);

char **setting_string_ptr(LauncherConfig *c, const SettingInfo *info);
uint64_t *setting_usec_ptr(LauncherConfig *c, const SettingInfo *info);
bool *setting_bool_ptr(LauncherConfig *c, const SettingInfo *info);
char ***setting_strv_ptr(LauncherConfig *c, const SettingInfo *info);
char ****setting_argvv_ptr(LauncherConfig *c, const SettingInfo *info);

/* For as and aas settings: NULL when valid, else why not (static text). */
const char *setting_check_strv(const SettingInfo *info, char *const *value);
const char *setting_check_argvv(const SettingInfo *info, char **const *value);
/* The D-Bus signature of a setting's type: "s", "t", "b", "as", "aas". */
const char *setting_signature(const SettingInfo *info);
bool setting_equal(const LauncherConfig *a, const LauncherConfig *b, const SettingInfo *info);

/* aas helpers: copy and free a NULL-terminated list of argv lists. */
char ***argvv_copy(char **const *l);
void argvv_free(char ***l);
size_t argvv_length(char **const *l);

LauncherConfig *launcher_config_new_default(void);
LauncherConfig *launcher_config_copy(const LauncherConfig *c);
void launcher_config_free(LauncherConfig *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(LauncherConfig, launcher_config_free)

/* Parses a file's bytes. On failure returns -EINVAL and a message naming the
 * field (or line:column) in *ret_error. Nothing in the message is a value. */
int launcher_config_parse(const char *data, size_t len, LauncherConfig **ret, char **ret_error);

/* The file's top-level keys that are not ours but look like a misspelling of
 * one of ours (a small edit distance, case ignored, a unit left off, the bus
 * property's name): "unknown key 'pol_interval', did you mean
 * 'poll_interval_usec'?", several joined by "; ". NULL when there is none.
 * Keys of others (the Rust launcher's, future ones, an operator's note) are
 * far from ours and not reported; every unknown key is kept on write. */
char *launcher_config_misspelled_keys(const LauncherConfig *c);

/* Serialises for the file: the original file's keys in their order with known
 * ones replaced, then new keys. Settings at their default and absent from the
 * original are left out so a later default change applies. */
char *launcher_config_serialize(const LauncherConfig *c);

/* Env helpers. Keys come back sorted byte-wise, NULL-terminated, owned by c. */
const char **launcher_config_env_keys(const LauncherConfig *c);
const char *launcher_config_env_get(const LauncherConfig *c, const char *key);
void launcher_config_env_set(LauncherConfig *c, const char *key, const char *value);
bool launcher_config_env_remove(LauncherConfig *c, const char *key);
size_t launcher_config_env_count(const LauncherConfig *c);
/* Sum of key and value bytes, as the guest counts them against its 1 MiB limit. */
size_t launcher_config_env_total_bytes(const LauncherConfig *c);

/* Checks the env of a config against the guest's limits. NULL when fine, else
 * a message naming the key (caller frees). */
char *launcher_config_env_check(const LauncherConfig *c);

bool launcher_config_equal_settings(const LauncherConfig *a, const LauncherConfig *b);
