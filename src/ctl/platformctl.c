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
               "  status                      Show the launcher's state, problems first\n"
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
               "Options:\n"
               "  -h --help                   Show this help\n"
               "     --version                Show the version\n"
               "     --json                   Print JSON\n"
               "     --no-pager               Accepted for compatibility; no pager is used\n"
               "     --no-ask-password        Do not ask for authentication\n"
               "  -H --host=[USER@]HOST       Operate on a remote host (over SSH)\n"
               "     --no-block               Do not wait for long operations\n"
               "  -q --quiet                  Print less\n\n"
               "Exit status: 0 success, 1 failure, 64 usage, 65 invalid argument,\n"
               "66 not found, 69 launcher unreachable, 75 busy or deferred, 77 access denied.\n");
}

int ctl_bus_error(const char *what, const sd_bus_error *error, int r) {
        fprintf(stderr, "%s: %s\n", what, error && error->message ? error->message : strerror(r < 0 ? -r : r));
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

static int parse_argv(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_JSON, ARG_NO_PAGER, ARG_NO_ASK_PASSWORD, ARG_NO_BLOCK };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "json", no_argument, NULL, ARG_JSON },
                { "no-pager", no_argument, NULL, ARG_NO_PAGER },
                { "no-ask-password", no_argument, NULL, ARG_NO_ASK_PASSWORD },
                { "host", required_argument, NULL, 'H' },
                { "no-block", no_argument, NULL, ARG_NO_BLOCK },
                { "quiet", no_argument, NULL, 'q' },
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
                case ARG_JSON:
                        arg.json = true;
                        break;
                case ARG_NO_PAGER:
                        break;
                case ARG_NO_ASK_PASSWORD:
                        arg.ask_password = false;
                        break;
                case 'H':
                        arg.host = optarg;
                        break;
                case ARG_NO_BLOCK:
                        arg.no_block = true;
                        break;
                case 'q':
                        arg.quiet = true;
                        break;
                default:
                        return -EX_USAGE;
                }
        return 1;
}

int main(int argc, char *argv[]) {
        int r = parse_argv(argc, argv);
        if (r <= 0)
                return -r;

        (void) launcher_bus_errors_register();

        const char *verb = optind < argc ? argv[optind] : "status";
        if (!streq(verb, "status") && !streq(verb, "config")) {
                fprintf(stderr, "Unknown command '%s'. See platformctl --help.\n", verb);
                return EX_USAGE;
        }

        _cleanup_(sd_bus_flush_close_unrefp) sd_bus *bus = NULL;
        r = ctl_connect(&bus);
        if (r < 0)
                return -r;

        int n = optind < argc ? argc - optind - 1 : 0;
        char **rest = argv + optind + (optind < argc ? 1 : 0);
        return streq(verb, "status") ? verb_status(bus, n, rest) : verb_config(bus, n, rest);
}
