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

typedef struct CtlOptions {
        bool json;
        bool ask_password;
        bool quiet;
        bool no_block;
        const char *host;
} CtlOptions;

extern CtlOptions arg;

/* The options every verb accepts after its name too ("vm update --no-block"). */
enum {
        ARG_VERSION = 0x100,
        ARG_JSON,
        ARG_NO_PAGER,
        ARG_NO_ASK_PASSWORD,
        ARG_NO_BLOCK,
        ARG_FORCE,
        ARG_CHANNEL,
};
#define CTL_COMMON_OPTIONS                                                     \
        { "json", no_argument, NULL, ARG_JSON },                               \
        { "no-pager", no_argument, NULL, ARG_NO_PAGER },                       \
        { "no-ask-password", no_argument, NULL, ARG_NO_ASK_PASSWORD },         \
        { "no-block", no_argument, NULL, ARG_NO_BLOCK },                       \
        { "quiet", no_argument, NULL, 'q' }

/* Applies one of CTL_COMMON_OPTIONS to arg; false if c is not one of them. */
bool ctl_common_option(int c);
/* getopt's "unknown option" / "missing argument" as one line; returns EX_USAGE. */
int ctl_option_error(int c, char **argv);
/* For verbs that take only CTL_COMMON_OPTIONS and at most max_args arguments:
 * argv[0] is the verb. Returns 0 (optind at the first argument) or EX_USAGE. */
int ctl_parse_common_options(int argc, char **argv, int max_args, const char *usage);

/* Prints "<what>: <bus error message>" on one line; returns the exit status for it. */
int ctl_bus_error(const char *what, const sd_bus_error *error, int r);

/* Connects to the system bus (or over SSH with -H). */
int ctl_connect(sd_bus **ret);

/* ctl-json.c: D-Bus values as JSON (variants unwrapped, dicts as objects,
 * structs as arrays, 64-bit integers as JSON integers). */
int ctl_json_read(sd_bus_message *m, JsonNode **ret);
void ctl_json_print(JsonNode *node, bool pretty);
char *ctl_json_to_text(JsonNode *node);
const char *ctl_json_str(JsonObject *o, const char *name);
uint64_t ctl_json_uint(JsonObject *o, const char *name);

/* ctl-config.c */
typedef struct ConfigInfo {
        char *api_url, *vmm_url, *guest_vmm_url, *update_strategy, *config_path, *config_error;
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
 * and returns; else waits, showing the Vm's state changes on stderr if a tty. */
int ctl_long_call(sd_bus *bus, sd_bus_message *m, const char *vm_path, const char *what);

/* argv[0] is the verb's name, as getopt expects; config gets what follows it. */
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
