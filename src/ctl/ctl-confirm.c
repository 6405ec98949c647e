/* SPDX-License-Identifier: Apache-2.0 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "shared/macro.h"

/* A command that takes the validator down asks first, as apt does before it
 * removes packages: on a terminal only, so a script (stdin a file, a pipe,
 * /dev/null) is never stopped by a question; --yes answers it. */
bool ctl_confirm_wanted(void) {
        return !arg.yes && isatty(STDIN_FILENO);
}

static bool is_yes(char *answer) {
        char *s = answer;
        while (isspace((unsigned char) *s))
                s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char) s[n - 1]))
                s[--n] = '\0';
        return !strcasecmp(s, "y") || !strcasecmp(s, "yes");
}

int ctl_confirm(const char *what) {
        char answer[64] = "";
        fprintf(stderr, "%s%sContinue? [y/N] ", what, g_str_has_suffix(what, "\n") ? "" : "\n");
        fflush(stderr);
        bool got = fgets(answer, sizeof answer, stdin) != NULL;
        if (!got)
                fputc('\n', stderr); /* Ctrl-D: end the prompt's line */
        if (got && is_yes(answer))
                return 0;
        fprintf(stderr, "Cancelled.\n");
        return EXIT_FAILURE;
}

uint64_t ctl_stop_timeout(sd_bus *bus) {
        uint64_t stop = 0;
        if (sd_bus_get_property_trivial(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, LAUNCHER_CONFIG_INTERFACE,
                                        "StopTimeoutUSec", NULL, 't', &stop) < 0 || stop > 24 * 3600 * USEC_PER_SEC)
                stop = 3600 * USEC_PER_SEC;
        return stop;
}

char *ctl_downtime_text(sd_bus *bus, const char *action) {
        g_autofree char *stop = ctl_format_usec_in(ctl_stop_timeout(bus), NULL);
        if (streq(action, "update-in-place"))
                return g_strdup_printf("it is down from its graceful stop (up to %s) until it has booted again", stop);
        return g_strdup_printf("it is down from its graceful stop (up to %s) until the new VM has booted", stop);
}
