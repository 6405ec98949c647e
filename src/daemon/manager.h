/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "core/reconciler.h"
#include "core/settings.h"
#include "core/updater.h"
#include "daemon/bus-history.h"
#include "daemon/metrics.h"
#include "daemon/polkit.h"

#define LAUNCHER_BUS_NAME "org.platform.Launcher1"
#define LAUNCHER_OBJECT_PATH "/org/platform/Launcher1"
#define LAUNCHER_CONFIG_INTERFACE "org.platform.Launcher1.Config"
#define LAUNCHER_UPDATER_INTERFACE "org.platform.Launcher1.Updater"
#define LAUNCHER_HOST_INTERFACE "org.platform.Launcher1.Host"

/* The daemon's one context, passed down to every handler. */
typedef struct Manager {
        sd_event *event;
        sd_bus *bus;
        SettingsStore *settings;
        PolkitRegistry *polkit;
        char *state_dir;
        char *runtime_dir;
        StepRunnerBackend step_runner; /* how the Updater runs its commands (--step-runner) */
        char **required_env;  /* keys the Platform API says the VM needs; empty until a spec is known */
        Reconciler *reconciler;
        Updater *updater;
        GHashTable *vms_sent;     /* bus-vm.c: Vm * → its properties as last sent */
        sd_event_source *vms_flush;  /* bus-vm.c: sends what changed, once per loop iteration */
        struct BusSent *host_sent;   /* bus-host.c: the Host's properties as last sent */
        BusHistory *history;  /* bus-history.c */
        Metrics *metrics;     /* between the reconciler and the bus layer */
        struct LogStreams *log_streams; /* bus-logs.c: Vm.FollowLogs streams */
} Manager;

/* bus-config.c */
int bus_config_register(Manager *m);
/* Emits PropertiesChanged for what differs between old and the config in force. */
void bus_config_emit_changes(Manager *m, const LauncherConfig *old, bool error_changed);
/* Re-reads the config file (SIGHUP and Reload); < 0 when the file is bad. */
int manager_reload_config(Manager *m, char **ret_error);

/* The managed VMs changed (one came or went): Config.Vms follows. */
void bus_config_vms_changed(Manager *m);
/* Settings or env changed: the core re-evaluates the VM. */
void manager_config_changed(Manager *m);
/* The API's required_env changed: RequiredEnv and MissingEnv follow. */
void manager_set_required_env(Manager *m, char **required);

/* bus-vm.c */
extern const ReconcilerEvents bus_vm_events;
int bus_vm_register(Manager *m);
void bus_vm_free(Manager *m);
/* Answers every call still waiting for an operation ("stopping"). */
void bus_vm_shutdown(Manager *m);
/* Sends the VMs' property changes not sent yet: before any signal or reply
 * that follows from them. */
void bus_vm_flush(Manager *m);

/* bus-host.c: org.platform.Launcher1.Host (after the reconciler exists) */
int bus_host_register(Manager *m);
void bus_host_changed(Manager *m);
void bus_host_free(Manager *m);

/* bus-logs.c */
typedef struct LogStreams LogStreams;
/* Starts streaming vm's log into a new pipe; *ret_fd is its read end. */
int bus_logs_follow(Manager *m, const Vm *vm, uid_t uid, const char *channel, unsigned lines, int *ret_fd,
                    sd_bus_error *error);
/* Ends the streams of a VM that went away (readers see EOF). */
void bus_logs_vm_removed(Manager *m, const char *vm_name);
/* Ends, with a line saying so, the streams of a VM whose id changed. */
void bus_logs_vm_id_changed(Manager *m, const Vm *vm);
/* Vm.GetLogs after authorization: 1 when the call will be answered (even
 * if its caller leaves first), else < 0 or an error in *error. */
int bus_logs_get(Manager *m, const Vm *vm, sd_bus_message *msg, uid_t uid, const char *channel, unsigned lines,
                 sd_bus_error *error);
/* Ends every stream, answers every GetLogs ("stopping"), frees the HTTP context. */
void bus_logs_shutdown(Manager *m);

/* bus-updater.c */
extern const UpdaterEvents bus_updater_events;
int bus_updater_register(Manager *m);
/* Emits PropertiesChanged for the Updater settings that differ from old and
 * tells the updater. */
void bus_updater_settings_changed(Manager *m, const LauncherConfig *old);

/* log-control.c */
int bus_log_control_register(Manager *m);
