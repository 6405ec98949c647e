/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include <systemd/sd-daemon.h>

#include "config.h"
#include "core/fileio.h"
#include "daemon/manager.h"
#include "shared/bus-errors.h"
#include "shared/log.h"

typedef struct Options {
        const char *config_path;
        const char *state_dir;
        const char *runtime_dir;
        bool allow_core_dumps;
        StepRunnerBackend step_runner;
} Options;

static void help(void) {
        printf("platform-launcherd [OPTIONS...]\n\n"
               "Keeps the validator's dstack VM equal to the Platform API's spec and\n"
               "offers org.platform.Launcher1 on the system bus.\n\n"
               "  -h --help              Show this help\n"
               "     --version           Show the version\n"
               "     --config=PATH       Config file (default %s, $PLATFORM_LAUNCHER_CONFIG)\n"
               "     --state-dir=DIR     State directory (default %s, $PLATFORM_LAUNCHER_STATE_DIR)\n"
               "     --runtime-dir=DIR   Runtime directory (default %s, $PLATFORM_LAUNCHER_RUNTIME_DIR)\n"
               "     --log-level=LEVEL   emerg..debug (default info, $PLATFORM_LAUNCHER_LOG_LEVEL)\n"
               "     --allow-core-dumps  Stay dumpable for debugging: a core dump holds the secrets\n"
               "                         ($PLATFORM_LAUNCHER_ALLOW_CORE_DUMPS=1)\n"
               "     --step-runner=auto|systemd|fork\n"
               "                         How the Updater runs its commands as the repository's user:\n"
               "                         transient units (systemd), a child that drops to the user\n"
               "                         (fork), or systemd when booted with it (auto, the default;\n"
               "                         $PLATFORM_LAUNCHER_STEP_RUNNER)\n"
               "\nThe bus is the system bus, or $DBUS_SYSTEM_BUS_ADDRESS. $VMM_URL overrides VmmUrl.\n",
               DEFAULT_CONFIG_PATH, DEFAULT_STATE_DIR, DEFAULT_RUNTIME_DIR);
}

static const char *env_or(const char *name, const char *fallback) {
        const char *e = getenv(name);
        return e && *e ? e : fallback;
}

static int parse_argv(int argc, char *argv[], Options *o) {
        enum {
                ARG_VERSION = 0x100,
                ARG_CONFIG,
                ARG_STATE_DIR,
                ARG_RUNTIME_DIR,
                ARG_LOG_LEVEL,
                ARG_ALLOW_CORE_DUMPS,
                ARG_STEP_RUNNER,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "config", required_argument, NULL, ARG_CONFIG },
                { "state-dir", required_argument, NULL, ARG_STATE_DIR },
                { "runtime-dir", required_argument, NULL, ARG_RUNTIME_DIR },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "allow-core-dumps", no_argument, NULL, ARG_ALLOW_CORE_DUMPS },
                { "step-runner", required_argument, NULL, ARG_STEP_RUNNER },
                {}
        };

        o->config_path = env_or("PLATFORM_LAUNCHER_CONFIG", DEFAULT_CONFIG_PATH);
        o->state_dir = env_or("PLATFORM_LAUNCHER_STATE_DIR", DEFAULT_STATE_DIR);
        o->runtime_dir = env_or("PLATFORM_LAUNCHER_RUNTIME_DIR", DEFAULT_RUNTIME_DIR);
        o->allow_core_dumps = streq(env_or("PLATFORM_LAUNCHER_ALLOW_CORE_DUMPS", "0"), "1");
        const char *runner = env_or("PLATFORM_LAUNCHER_STEP_RUNNER", "auto");

        int c;
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("platform-launcherd %s\n", PACKAGE_VERSION);
                        return 0;
                case ARG_CONFIG:
                        o->config_path = optarg;
                        break;
                case ARG_STATE_DIR:
                        o->state_dir = optarg;
                        break;
                case ARG_RUNTIME_DIR:
                        o->runtime_dir = optarg;
                        break;
                case ARG_ALLOW_CORE_DUMPS:
                        o->allow_core_dumps = true;
                        break;
                case ARG_STEP_RUNNER:
                        runner = optarg;
                        break;
                case ARG_LOG_LEVEL: {
                        int level = log_level_from_string(optarg);
                        if (level < 0) {
                                log_error("Invalid --log-level '%s'.", optarg);
                                return -EINVAL;
                        }
                        log_set_max_level(level);
                        break;
                }
                default:
                        return -EINVAL;
                }
        if (optind < argc) {
                log_error("This program takes no positional arguments.");
                return -EINVAL;
        }
        o->step_runner = step_runner_backend_from_string(runner);
        if (o->step_runner < 0) {
                log_error("Invalid --step-runner '%s': auto, systemd or fork.", runner);
                return -EINVAL;
        }
        return 1;
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        (void) sd_notify(false, "RELOADING=1");
        (void) manager_reload_config(m, NULL);
        (void) sd_notify(false, "READY=1\nSTATUS=Configuration reloaded.");
        return 0;
}

static int on_exit_answer_callers(sd_event_source *s, void *userdata) {
        Manager *m = userdata;
        /* Runs before sd-bus's own exit handler closes the connection, so
         * every waiting caller still gets its answer from us. */
        metrics_set_updater_section(m->metrics, NULL, NULL);
        updater_free(m->updater); /* answers a caller waiting on a transaction */
        m->updater = NULL;
        bus_vm_shutdown(m);
        polkit_registry_free(m->polkit);
        m->polkit = NULL;
        return 0;
}

static int on_name_acquired(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Manager *m = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        if (e) {
                log_error("Cannot own %s: %s", LAUNCHER_BUS_NAME, e->message);
                return sd_event_exit(m->event, EXIT_FAILURE);
        }
        log_info("Serving %s.", LAUNCHER_BUS_NAME);
        /* After the name: a transaction finished at start-up signals under it. */
        int r = updater_start(m->updater);
        if (r < 0)
                log_error_errno(r, "Cannot start the updater: %m");
        (void) sd_notify(false, "READY=1\nSTATUS=Serving " LAUNCHER_BUS_NAME ".");
        return 0;
}

static int manager_connect_bus(Manager *m) {
        int r = sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Cannot connect to the system bus: %m");
        r = sd_bus_attach_event(m->bus, m->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return log_error_errno(r, "Cannot attach the bus to the event loop: %m");
        (void) sd_bus_set_exit_on_disconnect(m->bus, true);

        /* Objects first, then the name: nobody may see the name without them. */
        r = sd_bus_add_object_manager(m->bus, NULL, LAUNCHER_OBJECT_PATH);
        if (r >= 0)
                r = bus_config_register(m);
        if (r >= 0)
                r = bus_vm_register(m);
        if (r >= 0)
                r = bus_updater_register(m);
        if (r >= 0)
                r = bus_log_control_register(m);
        if (r < 0)
                return log_error_errno(r, "Cannot register bus objects: %m");

        r = sd_bus_request_name_async(m->bus, NULL, LAUNCHER_BUS_NAME, 0, on_name_acquired, m);
        if (r < 0)
                return log_error_errno(r, "Cannot request %s: %m", LAUNCHER_BUS_NAME);

        r = bus_history_new(m, &m->history);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the history: %m");

        ReconcilerEvents ev = bus_vm_events;
        ev.userdata = m;
        r = metrics_new(m->event, m->settings, &ev, &m->metrics);
        if (r >= 0)
                r = reconciler_new(m->event, m->settings, m->state_dir, bus_history_get(m->history),
                                   metrics_events(m->metrics), &m->reconciler);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the VM reconciler: %m");
        r = metrics_start(m->metrics, m->reconciler);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the metrics timer: %m");
        r = bus_host_register(m);
        if (r < 0)
                return log_error_errno(r, "Cannot register the Host object: %m");

        UpdaterEvents uev = bus_updater_events;
        uev.userdata = m;
        r = updater_new(m->event, m->bus, m->settings, m->state_dir, m->reconciler, m->step_runner, &uev,
                        &m->updater);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the updater: %m");
        metrics_set_updater_section(m->metrics, metrics_updater_section, m->updater);
        return reconciler_start(m->reconciler);
}

static int manager_new(const Options *o, Manager **ret) {
        Manager *m = g_new0(Manager, 1);
        m->state_dir = g_strdup(o->state_dir);
        m->runtime_dir = g_strdup(o->runtime_dir);
        m->step_runner = o->step_runner;
        m->polkit = polkit_registry_new();
        m->required_env = g_new0(char *, 1);
        (void) settings_store_new(o->config_path, &m->settings);
        *ret = m;
        return 0;
}

static void manager_free(Manager *m) {
        if (!m)
                return;
        /* Pending authorizations and operations hold bus slots: drop them before the bus. */
        updater_free(m->updater);
        bus_vm_shutdown(m);
        reconciler_free(m->reconciler);
        bus_vm_free(m);
        bus_host_free(m);
        bus_history_free(m->history);
        metrics_free(m->metrics);
        polkit_registry_free(m->polkit);
        sd_bus_flush_close_unref(m->bus);
        sd_event_unref(m->event);
        settings_store_free(m->settings);
        g_strfreev(m->required_env);
        g_free(m->state_dir);
        g_free(m->runtime_dir);
        g_free(m);
}

static int run(int argc, char *argv[]) {
        Options o = {};
        int r = parse_argv(argc, argv, &o);
        if (r <= 0)
                return r;

        /* Before any secret is read: a crash must not write them into a core
         * file, and no same-uid process may read our memory through /proc. */
        if (!o.allow_core_dumps && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                return log_error_errno(errno, "Cannot make the process non-dumpable: %m");
        if (o.allow_core_dumps)
                log_warning("Core dumps allowed (--allow-core-dumps): a core file holds the secrets.");

        Manager *m = NULL;
        _cleanup_(sd_event_source_unrefp) sd_event_source *exit_source = NULL;
        manager_new(&o, &m);

        r = mkdir_p(m->state_dir, 0700);
        if (r >= 0)
                r = mkdir_p(m->runtime_dir, 0755);
        if (r < 0) {
                log_error_errno(r, "Cannot create the state or runtime directory: %m");
                goto finish;
        }

        /* A bad file is reported (ConfigError) and left alone; we start on defaults. */
        (void) settings_store_load(m->settings);

        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD); /* child processes are reaped by the event loop */
        sigprocmask(SIG_BLOCK, &mask, NULL);

        r = sd_event_default(&m->event);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGTERM, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, NULL, NULL);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGHUP, on_sighup, m);
        if (r >= 0)
                r = sd_event_add_exit(m->event, &exit_source, on_exit_answer_callers, m);
        if (r >= 0)
                r = sd_event_source_set_priority(exit_source, SD_EVENT_PRIORITY_IMPORTANT);
        if (r < 0) {
                log_error_errno(r, "Cannot set up the event loop: %m");
                goto finish;
        }

        r = launcher_bus_errors_register();
        if (r >= 0)
                r = manager_connect_bus(m);
        if (r < 0)
                goto finish;

        r = sd_event_loop(m->event);
        if (r < 0)
                log_error_errno(r, "Event loop failed: %m");
        else if (r > 0)
                r = -r;
        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down.");

finish:
        manager_free(m);
        return r;
}

int main(int argc, char *argv[]) {
        log_setup("platform-launcherd");
        int r = run(argc, argv);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
