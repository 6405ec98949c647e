/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "ctl/ctl.h"
#include "shared/bus-errors.h"
#include "shared/macro.h"

CtlOptions arg = { .ask_password = true };

static void help(void) {
        printf("platformctl [OPTIONS...] COMMAND ...\n\n"
               "Query or change the Platform Network validator launcher.\n\n"
               "Commands:\n"
               "  status                      Show the VM and the settings, problems first\n"
               "  monitor                     Print the launcher's signals and state changes\n"
               "                              as they happen, one line each, until Ctrl-C\n\n"
               "VM commands (NAME: needed only when the launcher manages several VMs):\n"
               "  vm status [NAME]            Show the VM's state and properties\n"
               "  vm plan [NAME]              Show what 'vm update' would do\n"
               "  vm update [--force] [NAME]  Fetch the spec now and apply it if it differs\n"
               "                              (--force: replace the VM even if equal)\n"
               "  vm start [NAME]             Start the VM\n"
               "  vm stop [NAME]              Stop the VM gracefully; it stays stopped\n"
               "  vm restart [NAME]           Restart the VM\n"
               "  vm logs [-n N] [--channel serial|stdout|stderr] [NAME]\n"
               "                              Print the last N (default 100) log lines\n\n"
               "Updater commands (the git deployment kept on the release branch):\n"
               "  updater status              Show the updater's state, problems first\n"
               "  updater check               Fetch and say whether an update is available\n"
               "  updater apply [--dry-run] [--force]\n"
               "                              Apply the branch head now (--dry-run: only say\n"
               "                              what would happen; --force: skip the busy gates)\n"
               "  updater rollback [COMMIT]   Go back to COMMIT (default: the previous one)\n"
               "  updater enable|disable      Turn automatic updates on or off\n\n"
               "Config commands:\n"
               "  config show                 Show all settings\n"
               "  config list-env             List the names of the env values set\n"
               "  config set-env KEY [VALUE|-] Set an env value (no VALUE or '-': read from\n"
               "                              stdin, or a prompt that does not echo)\n"
               "  config get-env KEY          Print an env value\n"
               "  config remove-env KEY       Remove an env value\n"
               "  config set-vmm-url URL      Set the VMM URL the VM uses (DSTACK_VMM_URL)\n"
               "  config set SETTING VALUE    Set a setting (ApiUrl, VmmUrl, GuestVmmUrl,\n"
               "                              PollIntervalUSec, StopTimeoutUSec, UpdateStrategy,\n"
               "                              UpdaterRepository, UpdaterRemote, UpdaterBranch,\n"
               "                              UpdaterIntervalUSec); times take us, ms, s, min, h\n"
               "  config reload               Re-read the config file\n\n"
               "Options (also accepted after status, monitor and vm commands):\n"
               "  -h --help                   Show this help\n"
               "     --version                Show the version\n"
               "     --json                   Print JSON (monitor: one object per line)\n"
               "     --no-pager               Accepted for compatibility; no pager is used\n"
               "     --no-ask-password        Do not ask for authentication\n"
               "  -H --host=[USER@]HOST       Operate on a remote host (over SSH)\n"
               "     --no-block               Do not wait for VM operations to finish\n"
               "  -q --quiet                  Print less (no progress, no monitor banner)\n\n"
               "VM operations wait until done (showing the VM's state on stderr when it\n"
               "is a terminal); with --no-block, until the launcher has taken the\n"
               "operation up or refused it. Interrupted, the operation goes on.\n\n"
               "Exit status: 0 success, 1 failure, 64 usage, 65 invalid argument,\n"
               "66 not found (env value, VM), 69 launcher, VMM or API unreachable,\n"
               "75 busy or deferred, 77 access denied, 78 blocked (missing env, invalid\n"
               "spec, VM stopped by the operator).\n");
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

int ctl_bus_error(const char *what, const sd_bus_error *error, int r) {
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

int ctl_connect(sd_bus **ret) {
        sd_bus *bus = NULL;
        int r = arg.host ? sd_bus_open_system_remote(&bus, arg.host) : sd_bus_open_system(&bus);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to the system bus: %s\n", strerror(-r));
                return -EX_UNAVAILABLE;
        }
        (void) sd_bus_set_allow_interactive_authorization(bus, arg.ask_password);
        *ret = bus;
        return 0;
}

bool ctl_common_option(int c) {
        switch (c) {
        case ARG_JSON:
                arg.json = true;
                return true;
        case ARG_NO_PAGER:
                return true;
        case ARG_NO_ASK_PASSWORD:
                arg.ask_password = false;
                return true;
        case ARG_NO_BLOCK:
                arg.no_block = true;
                return true;
        case 'q':
                arg.quiet = true;
                return true;
        }
        return false;
}

/* For getopt run with opterr = 0 and a leading ':' in its optstring. */
int ctl_option_error(int c, char **argv) {
        const char *opt = argv[optind - 1];
        if (c == ':')
                fprintf(stderr, "Option '%s' needs an argument. See platformctl --help.\n", opt);
        else if (optopt > 0 && optopt < 0x100)
                fprintf(stderr, "Unknown option '-%c'. See platformctl --help.\n", optopt);
        else
                fprintf(stderr, "Unknown option '%s'. See platformctl --help.\n", opt);
        return EX_USAGE;
}

int ctl_parse_common_options(int argc, char **argv, int max_args, const char *usage) {
        static const struct option options[] = { CTL_COMMON_OPTIONS, {} };
        int c;
        optind = 0;
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":q", options, NULL)) >= 0)
                if (!ctl_common_option(c))
                        return ctl_option_error(c, argv);
        if (argc - optind > max_args) {
                fprintf(stderr, "Usage: platformctl %s\n", usage);
                return EX_USAGE;
        }
        return 0;
}

static int parse_argv(int argc, char *argv[]) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "host", required_argument, NULL, 'H' },
                CTL_COMMON_OPTIONS,
                {}
        };
        int c;
        /* '+': stop at the first non-option so "set-env KEY -" keeps its '-'. */
        while ((c = getopt_long(argc, argv, "+hH:q", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("platformctl %s\n", PACKAGE_VERSION);
                        return 0;
                case 'H':
                        arg.host = optarg;
                        break;
                default:
                        if (!ctl_common_option(c))
                                return -EX_USAGE;
                }
        return 1;
}

static const struct {
        const char *name;
        int (*run)(sd_bus *bus, int argc, char **argv);
} verbs[] = {
        { "status", verb_status },
        { "config", verb_config },
        { "vm", verb_vm },
        { "monitor", verb_monitor },
        { "updater", verb_updater },
};

int main(int argc, char *argv[]) {
        int r = parse_argv(argc, argv);
        if (r <= 0)
                return -r;

        (void) launcher_bus_errors_register();

        char *status_argv[] = { (char *) "status", NULL };
        if (optind >= argc) {
                argc = 1;
                argv = status_argv;
                optind = 0;
        }
        for (size_t k = 0; k < ELEMENTSOF(verbs); k++) {
                if (!streq(verbs[k].name, argv[optind]))
                        continue;
                _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
                r = ctl_connect(&bus);
                if (r < 0)
                        return -r;
                if (verbs[k].run == verb_config)
                        return verb_config(bus, argc - optind - 1, argv + optind + 1);
                return verbs[k].run(bus, argc - optind, argv + optind);
        }
        fprintf(stderr, "Unknown command '%s'. See platformctl --help.\n", argv[optind]);
        return EX_USAGE;
}
