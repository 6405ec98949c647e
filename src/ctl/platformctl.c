/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>

#include "config.h"
#include "ctl/ctl.h"
#include "shared/bus-errors.h"
#include "shared/macro.h"

CtlOptions arg = { .ask_password = true };

static const char help_vm[] =
        "VM commands (NAME: needed only when the launcher manages several VMs):\n"
        "  vm status [NAME]            Show the VM's state and properties\n"
        "  vm plan [NAME]              Show what 'vm update' would do\n"
        "  vm update [--force] [NAME]  Fetch the spec now and apply it if it differs\n"
        "                              (--force: replace the VM even if equal)\n"
        "  vm start [NAME]             Start the VM\n"
        "  vm stop [NAME]              Stop the VM gracefully; it stays stopped\n"
        "  vm restart [NAME]           Restart the VM\n"
        "  vm logs [-f] [-a] [-n N] [--channel serial|stdout|stderr] [NAME]\n"
        "                              Print the last N (default 100) log lines\n"
        "                              (-f, --follow: the last N, default 10, then new\n"
        "                              lines as they come, until Ctrl-C; on a terminal\n"
        "                              control characters are shown escaped, -a, --all:\n"
        "                              as they are)\n"
        "  vm history [-n N] [NAME]    What was done to the VM and who asked, newest\n"
        "                              first (the last N, default 100)\n"
        "  vm list                     List the managed VMs and where their specs come from\n"
        "  vm add NAME SOURCE [--env KEY...] [--strategy recreate|in-place]\n"
        "         [--adopt-policy keep|redeploy] [--no-autostart]\n"
        "                              Manage one more VM; SOURCE: https://... or\n"
        "                              file:///path.json (the API's spec format); --env\n"
        "                              grants it a local env key (repeatable)\n"
        "  vm remove NAME [--destroy]  Stop managing a VM (--destroy: stop and remove it\n"
        "                              at the VMM too)\n"
        "On a terminal, update (when it replaces the VM), stop and restart say what\n"
        "will happen and ask [y/N] first (--yes: do not ask).\n";

static const char help_updater[] =
        "Updater commands (the git deployment kept on its release branch):\n"
        "  updater status              Show the updater's state, problems first\n"
        "  updater check               Fetch and say whether an update is available\n"
        "  updater apply [--dry-run] [--force]\n"
        "                              Apply the branch head now (--dry-run: only say\n"
        "                              what would happen; --force: skip the busy gates)\n"
        "  updater rollback [COMMIT]   Go back to COMMIT (default: the previous one)\n"
        "  updater enable|disable      Turn automatic updates on or off\n"
        "  updater history [-n N]      The update transactions and who asked, newest\n"
        "                              first (the last N, default 100)\n"
        "On a terminal, apply (when it would restart) and rollback say what will\n"
        "happen and ask [y/N] first (--yes: do not ask).\n";

static const char help_config[] =
        "Config commands:\n"
        "  config show                 Show all settings\n"
        "  config list-env             List the names of the env values set\n"
        "  config set-env KEY [VALUE|-] Set an env value (no VALUE or '-': read from\n"
        "                              stdin, or a prompt that does not echo; an empty\n"
        "                              value is refused unless --allow-empty)\n"
        "  config get-env KEY          Print an env value\n"
        "  config remove-env KEY       Remove an env value\n"
        "  config set-vmm-url URL      Set the VMM URL the VM uses (DSTACK_VMM_URL)\n"
        "  config set SETTING VALUE    Set a setting by its name in config show; times\n"
        "                              take us, ms, s, min, h, d; lists a JSON array:\n"
        "                              UpdaterRestartUnits '[\"a.service\"]',\n"
        "                              UpdaterBuildCommands '[[\"make\"],[\"./build.sh\"]]'\n"
        "  config set SETTING --arg A [--arg B ...]\n"
        "                              A list setting from its elements (for a list of\n"
        "                              commands: one command, A B ... its argv)\n"
        "  config reload               Re-read the config file\n"
        "set-env, remove-env and set-vmm-url change what the VM runs with: on a\n"
        "terminal, a change that replaces a VM is shown and asked [y/N] first\n"
        "(--yes: do not ask); then the plan is printed and the VM followed until it\n"
        "is done (--no-block: return at once).\n";

static const char help_options[] =
        "Options (accepted anywhere on the command line):\n"
        "  -h --help                   Show this help (after a command: its help)\n"
        "     --version                Show the version\n"
        "     --json                   Print JSON (monitor: one object per line)\n"
        "     --no-pager               Accepted for compatibility; no pager is used\n"
        "     --no-ask-password        Do not ask for authentication\n"
        "  -H --host=[USER@]HOST[:PORT] Operate on a remote host (over SSH)\n"
        "     --no-block               Do not wait for VM operations to finish\n"
        "  -q --quiet                  Print less (no progress, no monitor banner)\n"
        "  -y --yes                    Do not ask before replacing, restarting or stopping\n"
        "                              (no question either when stdin is not a terminal)\n";

static const char help_exit[] =
        "Exit status: 0 success, 1 failure, 64 usage, 65 invalid argument,\n"
        "66 not found (env value, VM), 69 launcher, host, VMM or API unreachable,\n"
        "75 busy or deferred, 77 access denied, 78 blocked (status: the VM is\n"
        "blocked, failed or stopped by the operator).\n";

void ctl_help(const char *group) {
        if (g_strcmp0(group, "vm") == 0) {
                printf("platformctl [OPTIONS...] vm COMMAND [NAME]\n\n%s\n%s", help_vm, help_options);
                return;
        }
        if (g_strcmp0(group, "config") == 0) {
                printf("platformctl [OPTIONS...] config COMMAND ...\n\n%s\n%s", help_config, help_options);
                return;
        }
        if (g_strcmp0(group, "status") == 0) {
                printf("platformctl [OPTIONS...] status\n\n"
                       "Show the VM and the settings, problems first. Exits 78 when the VM is\n"
                       "blocked, failed or stopped by the operator, as systemctl is-active does.\n\n%s",
                       help_options);
                return;
        }
        if (g_strcmp0(group, "updater") == 0) {
                printf("platformctl [OPTIONS...] updater COMMAND ...\n\n%s\n%s", help_updater, help_options);
                return;
        }
        if (g_strcmp0(group, "monitor") == 0) {
                printf("platformctl [OPTIONS...] monitor\n\n"
                       "Print the launcher's signals and state changes as they happen, one line\n"
                       "each (times as local time), until Ctrl-C.\n\n%s", help_options);
                return;
        }
        printf("platformctl [OPTIONS...] COMMAND ...\n\n"
               "Query or change the Platform Network validator launcher.\n\n"
               "Commands:\n"
               "  status                      Show the VM and the settings, problems first\n"
               "  monitor                     Print the launcher's signals and state changes\n"
               "                              as they happen, one line each, until Ctrl-C\n\n"
               "%s\n%s\n%s\n%s\n"
               "VM operations wait until done, showing each step with its elapsed time and\n"
               "deadline on a terminal (one line per step otherwise); with --no-block, until\n"
               "the launcher has taken the operation up or refused it. Interrupted, the\n"
               "operation goes on: follow it with platformctl monitor.\n\n%s",
               help_vm, help_updater, help_config, help_options, help_exit);
}

/* For a launcher error that came without a message (there should be one). */
static const char *error_text(const sd_bus_error *error, int r) {
        static const struct { const char *name, *text; } texts[] = {
                { LAUNCHER_ERROR_BUSY, "Another operation is running." },
                { LAUNCHER_ERROR_NOT_FOUND, "Not found." },
                { LAUNCHER_ERROR_BLOCKED, "Blocked, see platformctl status." },
                { LAUNCHER_ERROR_VMM_UNAVAILABLE, "The VMM cannot be reached." },
                { LAUNCHER_ERROR_API_UNAVAILABLE, "The Platform API cannot be reached." },
                { LAUNCHER_ERROR_FAILED, "Failed." },
        };
        if (error && !isempty(error->message) && !streq_ptr(error->message, error->name))
                return error->message;
        for (size_t k = 0; error && error->name && k < ELEMENTSOF(texts); k++)
                if (streq(error->name, texts[k].name))
                        return texts[k].text;
        if (error && !isempty(error->message))
                return error->message;
        return strerror(r < 0 ? -r : r);
}

/* The launcher is not on the bus and the bus could not start it: the name
 * has no owner, or activation failed (dbus-daemon running the activation
 * file's Exec=/bin/false says "Process org.platform.Launcher1 exited with
 * status 1"; through systemd, the unit's error). */
static bool launcher_absent(const sd_bus_error *e, bool activation) {
        if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER))
                return true;
        return activation && e && e->name &&
               (g_str_has_prefix(e->name, "org.freedesktop.DBus.Error.Spawn.") ||
                g_str_has_prefix(e->name, "org.freedesktop.systemd1.") ||
                streq(e->name, "org.freedesktop.DBus.Error.TimedOut"));
}

static int launcher_not_running(void) {
        if (arg.host)
                fprintf(stderr, "platform-launcher.service is not running on %s (systemctl -H %s start "
                                "platform-launcher)\n", arg.host, arg.host);
        else
                fprintf(stderr, "platform-launcher.service is not running (systemctl start platform-launcher)\n");
        return EX_UNAVAILABLE;
}

int ctl_bus_error(const char *what, const sd_bus_error *error, int r) {
        if (launcher_absent(error, false))
                return launcher_not_running();
        fprintf(stderr, "%s: %s\n", what, error_text(error, r));
        if (!error || !error->name)
                return EXIT_FAILURE;
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_ACCESS_DENIED, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED))
                return EX_NOPERM;
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_INVALID_ARGS, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                   LAUNCHER_ERROR_INVALID_CONFIG))
                return EX_DATAERR;
        if (sd_bus_error_has_name(error, LAUNCHER_ERROR_NOT_FOUND))
                return EX_NOINPUT;
        if (sd_bus_error_has_names(error, LAUNCHER_ERROR_BUSY, LAUNCHER_ERROR_DEFERRED))
                return EX_TEMPFAIL;
        if (sd_bus_error_has_name(error, LAUNCHER_ERROR_BLOCKED))
                return EX_CONFIG;
        if (sd_bus_error_has_names(error, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                   SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_DISCONNECTED, LAUNCHER_ERROR_VMM_UNAVAILABLE,
                                   LAUNCHER_ERROR_API_UNAVAILABLE))
                return EX_UNAVAILABLE;
        return EXIT_FAILURE;
}

/* sd-bus connects lazily (for -H, ssh runs only now): one property read
 * tells an unreachable host, a bus without the launcher, and a working one
 * apart, and activates the launcher where it is bus-activatable. (Not
 * Peer.Ping: sd-bus answers that itself on some paths, without the launcher.) */
static int check_connection(sd_bus *bus) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = sd_bus_get_property(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, LAUNCHER_CONFIG_INTERFACE,
                                    "ConfigPath", &error, &reply, "s");
        if (r >= 0)
                return 0;
        if (launcher_absent(&error, true))
                return -launcher_not_running();
        /* A local failure (the connection, ssh) comes as "System.Error.E...", not from a peer. */
        bool transport = !error.name || g_str_has_prefix(error.name, "System.Error.") || sd_bus_is_open(bus) <= 0 ||
                         sd_bus_error_has_names(&error, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_DISCONNECTED);
        if (transport && arg.host) {
                fprintf(stderr, "Cannot reach the system bus of %s over SSH: %s\n", arg.host,
                        strerror(sd_bus_error_get_errno(&error) ?: -r));
                return -EX_UNAVAILABLE;
        }
        if (transport) {
                fprintf(stderr, "Cannot connect to the system bus: %s\n",
                        strerror(sd_bus_error_get_errno(&error) ?: -r));
                return -EX_UNAVAILABLE;
        }
        return 0; /* any other answer: the launcher is there; the verb reports its own errors */
}

static int connect_bus(sd_bus **ret, bool needs_launcher) {
        sd_bus *bus = NULL;
        int r = arg.host ? sd_bus_open_system_remote(&bus, arg.host) : sd_bus_open_system(&bus);
        if (r < 0) {
                if (arg.host)
                        fprintf(stderr, "Cannot reach %s: %s\n", arg.host, strerror(-r));
                else
                        fprintf(stderr, "Cannot connect to the system bus: %s\n", strerror(-r));
                return -EX_UNAVAILABLE;
        }
        (void) sd_bus_set_allow_interactive_authorization(bus, arg.ask_password);
        r = needs_launcher ? check_connection(bus) : 0;
        if (r < 0) {
                sd_bus_flush_close_unref(bus);
                return r;
        }
        *ret = bus;
        return 0;
}

int ctl_parse_common_options(int argc, char **argv, int max_args, const char *usage) {
        if (argc - 1 > max_args) {
                fprintf(stderr, "Usage: platformctl %s\n", usage);
                return EX_USAGE;
        }
        return 0;
}

static int parse_lines(const char *s, unsigned *ret) {
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || end == s || *end || s[0] == '-' || v < 1 || v > 10000) {
                fprintf(stderr, "Invalid number of lines '%s': use 1..10000.\n", s);
                return -EX_USAGE;
        }
        *ret = (unsigned) v;
        return 0;
}

/* getopt permutes: options may come anywhere, the positional words stay in
 * order ("set-env KEY -" keeps its '-': a lone dash is not an option; a
 * value starting with '-' goes after "--"). Returns 1 to run a verb, 0 when
 * done (help, version), or minus an exit status. */
static int parse_argv(int argc, char *argv[], bool *ret_help) {
        enum {
                ARG_VERSION = 0x100,
                ARG_JSON,
                ARG_NO_PAGER,
                ARG_NO_ASK_PASSWORD,
                ARG_NO_BLOCK,
                ARG_FORCE,
                ARG_CHANNEL,
                ARG_DRY_RUN,
                ARG_ALLOW_EMPTY,
                ARG_ARG,
                ARG_ENV,
                ARG_STRATEGY,
                ARG_ADOPT_POLICY,
                ARG_NO_AUTOSTART,
                ARG_DESTROY,
        };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "host", required_argument, NULL, 'H' },
                { "json", no_argument, NULL, ARG_JSON },
                { "no-pager", no_argument, NULL, ARG_NO_PAGER },
                { "no-ask-password", no_argument, NULL, ARG_NO_ASK_PASSWORD },
                { "no-block", no_argument, NULL, ARG_NO_BLOCK },
                { "quiet", no_argument, NULL, 'q' },
                { "force", no_argument, NULL, ARG_FORCE },
                { "lines", required_argument, NULL, 'n' },
                { "channel", required_argument, NULL, ARG_CHANNEL },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "follow", no_argument, NULL, 'f' },
                { "all", no_argument, NULL, 'a' },
                { "yes", no_argument, NULL, 'y' },
                { "allow-empty", no_argument, NULL, ARG_ALLOW_EMPTY },
                { "arg", required_argument, NULL, ARG_ARG },
                { "env", required_argument, NULL, ARG_ENV },
                { "strategy", required_argument, NULL, ARG_STRATEGY },
                { "adopt-policy", required_argument, NULL, ARG_ADOPT_POLICY },
                { "no-autostart", no_argument, NULL, ARG_NO_AUTOSTART },
                { "destroy", no_argument, NULL, ARG_DESTROY },
                {}
        };
        int c, r;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":hH:qn:fya", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        *ret_help = true;
                        break;
                case ARG_VERSION:
                        printf("platformctl %s\n", PACKAGE_VERSION);
                        return 0;
                case 'H':
                        arg.host = optarg;
                        break;
                case ARG_JSON:
                        arg.json = true;
                        break;
                case ARG_NO_PAGER:
                        break;
                case ARG_NO_ASK_PASSWORD:
                        arg.ask_password = false;
                        break;
                case ARG_NO_BLOCK:
                        arg.no_block = true;
                        break;
                case 'q':
                        arg.quiet = true;
                        break;
                case ARG_FORCE:
                        arg.force = true;
                        break;
                case ARG_DRY_RUN:
                        arg.dry_run = true;
                        break;
                case 'f':
                        arg.follow = true;
                        break;
                case 'a':
                        arg.all = true;
                        break;
                case 'y':
                        arg.yes = true;
                        break;
                case ARG_ALLOW_EMPTY:
                        arg.allow_empty = true;
                        break;
                case ARG_ARG:
                        if (!arg.args)
                                arg.args = g_ptr_array_new();
                        g_ptr_array_add(arg.args, optarg);
                        break;
                case 'n':
                        if ((r = parse_lines(optarg, &arg.lines)) < 0)
                                return r;
                        break;
                case ARG_CHANNEL:
                        if (!streq(optarg, "serial") && !streq(optarg, "stdout") && !streq(optarg, "stderr")) {
                                fprintf(stderr, "Invalid log channel '%s': use serial, stdout or stderr.\n", optarg);
                                return -EX_USAGE;
                        }
                        arg.channel = optarg;
                        break;
                case ARG_ENV: {
                        size_t n = arg.vm_env_keys ? g_strv_length(arg.vm_env_keys) : 0;
                        arg.vm_env_keys = g_renew(char *, arg.vm_env_keys, n + 2);
                        arg.vm_env_keys[n] = optarg;
                        arg.vm_env_keys[n + 1] = NULL;
                        break;
                }
                case ARG_STRATEGY:
                        arg.vm_strategy = optarg;
                        break;
                case ARG_ADOPT_POLICY:
                        arg.vm_adopt_policy = optarg;
                        break;
                case ARG_NO_AUTOSTART:
                        arg.vm_no_autostart = true;
                        break;
                case ARG_DESTROY:
                        arg.vm_destroy = true;
                        break;
                case ':':
                        fprintf(stderr, "Option '%s' needs an argument. See platformctl --help.\n", argv[optind - 1]);
                        return -EX_USAGE;
                default:
                        if (optopt > 0 && optopt < 0x100)
                                fprintf(stderr, "Unknown option '-%c'. See platformctl --help.\n", optopt);
                        else
                                fprintf(stderr, "Unknown option '%s'. See platformctl --help.\n", argv[optind - 1]);
                        return -EX_USAGE;
                }
        return 1;
}

static bool is_command(int argc, char **argv, const char *group, const char *verb) {
        return argc > 1 && streq(argv[0], group) && streq(argv[1], verb);
}

/* An option given to a command it means nothing to is a mistake worth saying. */
static int check_option_use(int argc, char **argv) {
        bool logs = is_command(argc, argv, "vm", "logs");
        if (arg.force && !is_command(argc, argv, "vm", "update") && !is_command(argc, argv, "updater", "apply")) {
                fprintf(stderr, "--force applies to 'vm update' and 'updater apply' only.\n");
                return EX_USAGE;
        }
        if ((arg.lines && !logs && !is_command(argc, argv, "vm", "history") &&
             !is_command(argc, argv, "updater", "history")) ||
            (arg.channel && !logs)) {
                fprintf(stderr, "--lines applies to 'vm logs', 'vm history' and 'updater history', --channel to 'vm logs' only.\n");
                return EX_USAGE;
        }
        if (arg.follow && !logs) {
                fprintf(stderr, "--follow applies to 'vm logs' only.\n");
                return EX_USAGE;
        }
        if (arg.all && !logs) {
                fprintf(stderr, "--all applies to 'vm logs' only.\n");
                return EX_USAGE;
        }
        if (arg.args && !is_command(argc, argv, "config", "set")) {
                fprintf(stderr, "--arg applies to 'config set' only.\n");
                return EX_USAGE;
        }
        if (arg.allow_empty && !is_command(argc, argv, "config", "set-env")) {
                fprintf(stderr, "--allow-empty applies to 'config set-env' only.\n");
                return EX_USAGE;
        }
        if (((arg.vm_env_keys || arg.vm_strategy || arg.vm_adopt_policy || arg.vm_no_autostart) &&
             !is_command(argc, argv, "vm", "add")) ||
            (arg.vm_destroy && !is_command(argc, argv, "vm", "remove"))) {
                fprintf(stderr, "--env, --strategy, --adopt-policy and --no-autostart apply to 'vm add' only, "
                                "--destroy to 'vm remove' only.\n");
                return EX_USAGE;
        }
        return 0;
}

static const struct {
        const char *name;
        int (*run)(sd_bus *bus, int argc, char **argv);
        bool needs_launcher;  /* monitor also waits for the launcher to come */
} verbs[] = {
        { "status", verb_status, true },
        { "config", verb_config, true },
        { "vm", verb_vm, true },
        { "monitor", verb_monitor, false },
        { "updater", verb_updater, true },
};

/* The Rust launcher's CLI, installed as "platform" (a symlink to platformctl):
 * "platform config show|set-env|get-env|list-env|remove-env|set-vmm-url|
 * set-passphrase", nothing else. Rewrites argv into platformctl's words. */
static const char *const platform_verbs[] = {
        "show", "list-env", "set-env", "get-env", "remove-env", "set-vmm-url", "set-passphrase", NULL,
};

static void platform_help(void) {
        printf("platform [OPTIONS...] config COMMAND ...\n\n"
               "The Rust validator-launcher's commands, answered by platform-launcherd.\n"
               "platformctl has these and all the others (see platformctl --help).\n\n"
               "Commands:\n"
               "  config show                 Show all settings (also: config)\n"
               "  config list-env             List the names of the env values set\n"
               "  config set-env KEY [VALUE]  Set an env value (no VALUE: read from stdin, or a\n"
               "                              prompt that does not echo; empty is refused)\n"
               "  config get-env KEY          Print an env value\n"
               "  config remove-env KEY       Remove an env value\n"
               "  config set-vmm-url URL      Set the VMM URL the VM uses (DSTACK_VMM_URL)\n"
               "  config set-passphrase [PASSPHRASE]\n"
               "                              Set HOTKEY_PASSPHRASE (no value: prompt)\n"
               "A change of a value the VM receives replaces the VM: on a terminal, what\n"
               "will happen is shown and confirmed first.\n\n"
               "Options:\n"
               "  -h --help                   Show this help\n"
               "     --version                Show the version\n"
               "     --json                   Print JSON\n"
               "     --no-ask-password        Do not ask for authentication\n"
               "  -H --host=[USER@]HOST[:PORT] Operate on a remote host (over SSH)\n"
               "     --no-block               Do not wait for the VM to be replaced\n"
               "  -q --quiet                  Print less\n"
               "  -y --yes                    Do not ask before replacing the VM\n"
               "     --allow-empty            Accept an empty value from stdin or the prompt\n\n"
               "See platform(1). The launcher runs as platform-launcher.service.\n");
}

static int platform_usage(void) {
        fprintf(stderr, "Usage: platform config show | set-env KEY [VALUE] | get-env KEY | list-env "
                        "| remove-env KEY | set-vmm-url URL | set-passphrase [PASSPHRASE]\n"
                        "(the Rust launcher's commands; see platform --help, and platformctl --help for all)\n");
        return -EX_USAGE;
}

static int platform_compat(int *argc, char ***argv, char **rewritten) {
        if (*argc < 1 || !streq((*argv)[0], "config")) {
                if (*argc >= 1 && streq((*argv)[0], "run")) {
                        fprintf(stderr, "The launcher now runs as platform-launcher.service: "
                                        "systemctl start platform-launcher.service\n");
                        return -EX_USAGE;
                }
                return platform_usage();
        }
        if (*argc < 2) {
                rewritten[0] = (char *) "config";
                rewritten[1] = (char *) "show";
                *argc = 2;
                *argv = rewritten;
                return 0;
        }
        if (!g_strv_contains(platform_verbs, (*argv)[1]))
                return platform_usage();
        if (streq((*argv)[1], "set-passphrase")) {
                if (*argc > 3) {
                        fprintf(stderr, "Usage: platform config set-passphrase [PASSPHRASE]\n");
                        return -EX_USAGE;
                }
                rewritten[0] = (char *) "config";
                rewritten[1] = (char *) "set-env";
                rewritten[2] = (char *) "HOTKEY_PASSPHRASE";
                rewritten[3] = *argc > 2 ? (*argv)[2] : NULL;
                *argc = *argc > 2 ? 4 : 3;
                *argv = rewritten;
        }
        return 0;
}

static int run(int argc, char *argv[]) {
        const char *self = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
        bool compat = streq(self, "platform");
        bool help_asked = false;
        int r = parse_argv(argc, argv, &help_asked);
        if (r <= 0)
                return -r;

        argc -= optind;
        argv += optind;
        char *rewritten[5] = {};
        if (compat && !help_asked && (r = platform_compat(&argc, &argv, rewritten)) < 0)
                return -r;
        if (help_asked && compat) {
                platform_help();
                return 0;
        }
        if (help_asked) {
                ctl_help(argc > 0 ? argv[0] : NULL);
                return 0;
        }

        (void) launcher_bus_errors_register();

        char *status_argv[] = { (char *) "status", NULL };
        if (argc == 0) {
                argc = 1;
                argv = status_argv;
        }
        for (size_t k = 0; k < ELEMENTSOF(verbs); k++) {
                if (!streq(verbs[k].name, argv[0]))
                        continue;
                if ((r = check_option_use(argc, argv)) != 0)
                        return r;
                _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
                r = connect_bus(&bus, verbs[k].needs_launcher);
                if (r < 0)
                        return -r;
                if (verbs[k].run == verb_config)
                        return verb_config(bus, argc - 1, argv + 1);
                return verbs[k].run(bus, argc, argv);
        }
        fprintf(stderr, "Unknown command '%s'. See platformctl --help.\n", argv[0]);
        return EX_USAGE;
}

int main(int argc, char *argv[]) {
        int r = run(argc, argv);
        ctl_polkit_agent_close();
        g_free(arg.vm_env_keys);
        return r;
}
