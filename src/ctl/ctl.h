/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <sysexits.h>

#include <json-glib/json-glib.h>
#include <systemd/sd-bus.h>

#define LAUNCHER_BUS_NAME "org.platform.Launcher1"
#define LAUNCHER_OBJECT_PATH "/org/platform/Launcher1"
#define LAUNCHER_CONFIG_INTERFACE "org.platform.Launcher1.Config"
#define LAUNCHER_VM_INTERFACE "org.platform.Launcher1.Vm"
#define LAUNCHER_VM_PATH_PREFIX "/org/platform/Launcher1/vm"

/* Vm operations reply when done, which can take minutes (a VM stop alone may
 * take Config.StopTimeoutUSec): sd-bus's 25 s default would give up early. */
#define CTL_LONG_CALL_USEC (10 * 60 * 1000000ULL)

/* Every option, wherever it appears on the command line ("vm update
 * --no-block" = "--no-block vm update"): parsed once, in platformctl.c. */
typedef struct CtlOptions {
        bool json;
        bool ask_password;
        bool quiet;
        bool no_block;
        bool force;
        bool dry_run;          /* updater apply */
        const char *host;
        unsigned lines;        /* 0: not given */
        const char *channel;   /* NULL: not given */
        bool follow;           /* vm logs -f */
        bool yes;              /* -y: do not ask before replacing, restarting or stopping */
        bool allow_empty;      /* set-env: an empty value from stdin or the prompt */
        GPtrArray *args;       /* config set: --arg, in order; NULL when none */
        bool all;              /* vm logs -a: control characters as they are, also on a terminal */
        char **vm_env_keys;    /* vm add --env KEY (repeatable) */
        const char *vm_strategy;      /* vm add --strategy */
        const char *vm_adopt_policy;  /* vm add --adopt-policy */
        bool vm_no_autostart;  /* vm add --no-autostart */
        bool vm_destroy;       /* vm remove --destroy */
} CtlOptions;

extern CtlOptions arg;

/* For verbs that take no arguments beyond at most max_args: argv[0] is the
 * verb. Returns 0 or EX_USAGE after printing the usage line. */
int ctl_parse_common_options(int argc, char **argv, int max_args, const char *usage);

/* ctl-util.c */
typedef enum CtlColor {
        CTL_COLOR_NORMAL,
        CTL_COLOR_RED,
        CTL_COLOR_GREEN,
        CTL_COLOR_YELLOW,
        CTL_COLOR_BOLD,
} CtlColor;
/* systemd's rules: $NO_COLOR, $SYSTEMD_COLORS, else stdout a terminal. */
bool ctl_colors_enabled(void);
/* The escape sequence, or "" when colour is off. */
const char *ctl_color(CtlColor c);
CtlColor ctl_state_color(const char *state);
/* pkttyagent for interactive authorization, as systemctl runs it; while it
 * runs, calls on bus may wait for a person typing a password. */
void ctl_polkit_agent_open(sd_bus *bus);
void ctl_polkit_agent_close(void);
/* "30s", "500ms", "5min", "1h", "1d" (a plain number is seconds); ret_unit: the suffix used. */
int ctl_parse_usec(const char *s, uint64_t *ret, const char **ret_unit);
char *ctl_format_usec_in(uint64_t usec, const char *unit);
/* A CLOCK_REALTIME µs value as local time, "never" for 0. */
char *ctl_format_time(uint64_t usec);
/* The same with "; 3min ago" (ctl-vm.c). */
char *ctl_format_timestamp(uint64_t usec);
/* Per verb group help ("platformctl config --help"). */
void ctl_help(const char *group);

/* ctl-confirm.c: before a command replaces, restarts or stops a VM, or
 * restarts the validator's services. Asked only on a terminal (stdin) and
 * without --yes, so scripts keep working. */
bool ctl_confirm_wanted(void);
/* Prints what will happen (whole lines) and "Continue? [y/N] " on stderr;
 * returns 0 for y/yes, else EXIT_FAILURE after "Cancelled.". */
int ctl_confirm(const char *what);
/* "it is down from its graceful stop (up to 1min) until ..." for a VM
 * replaced (recreate) or updated in place (update-in-place). */
char *ctl_downtime_text(sd_bus *bus, const char *action);
uint64_t ctl_stop_timeout(sd_bus *bus);

/* Prints "<what>: <bus error message>" on one line; returns the exit status for it. */
int ctl_bus_error(const char *what, const sd_bus_error *error, int r);


/* ctl-json.c: D-Bus values as JSON (variants unwrapped, dicts as objects,
 * structs as arrays, 64-bit integers as JSON integers). */
int ctl_json_read(sd_bus_message *m, JsonNode **ret);
void ctl_json_print(JsonNode *node, bool pretty);
char *ctl_json_to_text(JsonNode *node);
const char *ctl_json_str(JsonObject *o, const char *name);
uint64_t ctl_json_uint(JsonObject *o, const char *name);

/* ctl-config.c */
typedef struct ConfigInfo {
        char *api_url, *vmm_url, *guest_vmm_url, *update_strategy, *config_path, *config_error, *metrics_path;
        uint64_t poll_interval_usec, stop_timeout_usec;
        char **env_keys, **required_env, **missing_env;
} ConfigInfo;
void config_info_clear(ConfigInfo *i);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(ConfigInfo, config_info_clear)
/* Returns 0, or minus the exit status after printing why. */
int config_info_get(sd_bus *bus, ConfigInfo *i);
void config_info_add_json(JsonBuilder *b, const ConfigInfo *i);
void config_info_print(const ConfigInfo *i);
void config_info_print_problems(const ConfigInfo *i, bool missing_env);
/* ConfigError says either why the file is not in force or, with the file in
 * force, which of its keys look misspelled ("unknown key 'x', did you mean
 * 'y'?", as the Config interface documents it). */
bool config_error_in_force(const char *config_error);

/* ctl-settings.c: config set (VALUE as the setting's type: a time, yes/no,
 * a JSON list, or the --arg values) and config show (every setting, from the
 * settings table). Return the exit status. */
int ctl_setting_set(sd_bus *bus, const char *name, const char *value);
int ctl_settings_show(sd_bus *bus);

/* ctl-vm.c: the Vm objects as GetManagedObjects lists them, sorted by name. */
typedef struct VmInfo {
        char *path;
        char *name;
        JsonObject *props;
} VmInfo;
void vm_info_list_free(VmInfo *list);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmInfo, vm_info_list_free)
/* A list ending with path == NULL. Returns 0, or minus the exit status after printing why. */
int vm_info_list(sd_bus *bus, VmInfo **ret);
void vm_info_print_problems(const VmInfo *vm);
void vm_info_print_summary(const VmInfo *vm);

/* ctl-operation.c: calls a method that may take minutes: --no-block sends it
 * and returns; else waits, showing the Vm's state changes on stderr, each
 * line starting with name ("restart validator_vm"); what prefixes an error. */
int ctl_long_call(sd_bus *bus, sd_bus_message *m, const char *vm_path, const char *name, const char *what);

/* ctl-history.c: Vm.GetHistory as a table, newest first, or --json. */
int ctl_vm_history(sd_bus *bus, const char *vm_path, unsigned limit);
/* Updater.GetHistory the same way. */
int ctl_updater_history(sd_bus *bus, unsigned limit);

/* ctl-operation.c: follows the VM through a change of config that replaces it
 * (set-env, remove-env, set-vmm-url): begin before the call (NULL if it cannot
 * subscribe: then nothing is followed), end with the call's exit status:
 * prints the plan, then the progress. Returns the exit status. */
typedef struct CtlFollow CtlFollow;
CtlFollow *ctl_config_change_begin(sd_bus *bus);
int ctl_config_change_end(sd_bus *bus, CtlFollow *f, int call_result, const char *what);

/* argv[0] is the verb's name; config gets what follows it. */
int verb_status(sd_bus *bus, int argc, char **argv);
int verb_config(sd_bus *bus, int argc, char **argv);
int verb_vm(sd_bus *bus, int argc, char **argv);
int verb_monitor(sd_bus *bus, int argc, char **argv);
int verb_updater(sd_bus *bus, int argc, char **argv);

/* ctl-updater.c: the Updater's properties (GetAll) as a JSON object.
 * Returns 0, or minus the exit status after printing why. */
int updater_info_get(sd_bus *bus, JsonObject **ret);
void updater_info_print_problems(JsonObject *u);
void updater_info_print(JsonObject *u);
