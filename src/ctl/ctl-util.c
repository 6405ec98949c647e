/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-login.h>

#include "ctl/ctl.h"
#include "shared/duration.h"
#include "shared/macro.h"

/* As systemd decides (terminal-util.c, get_color_mode()): $SYSTEMD_COLORS as
 * a boolean or a colour mode first; else $NO_COLOR present (whatever its
 * value) turns colour off; else colour when stdout is a terminal that is not
 * "dumb". */
bool ctl_colors_enabled(void) {
        static int cached = -1;
        if (cached >= 0)
                return cached;
        const char *e = getenv("SYSTEMD_COLORS");
        if (e && (streq(e, "0") || !strcasecmp(e, "false") || !strcasecmp(e, "no") || !strcasecmp(e, "off")))
                cached = false;
        else if (e && (streq(e, "1") || !strcasecmp(e, "true") || !strcasecmp(e, "yes") || !strcasecmp(e, "on") ||
                       streq(e, "16") || streq(e, "256") || streq(e, "24bit")))
                cached = true;
        else if (getenv("NO_COLOR"))
                cached = false;
        else
                cached = isatty(STDOUT_FILENO) && g_strcmp0(getenv("TERM"), "dumb") != 0;
        return cached;
}

const char *ctl_color(CtlColor c) {
        static const char *const codes[] = {
                [CTL_COLOR_NORMAL] = "\x1B[0m",
                [CTL_COLOR_RED] = "\x1B[0;1;31m",
                [CTL_COLOR_GREEN] = "\x1B[0;1;32m",
                [CTL_COLOR_YELLOW] = "\x1B[0;1;38;5;185m",
                [CTL_COLOR_BOLD] = "\x1B[0;1;39m",
        };
        return ctl_colors_enabled() ? codes[c] : "";
}

CtlColor ctl_state_color(const char *state) {
        if (g_strcmp0(state, "running") == 0)
                return CTL_COLOR_GREEN;
        if (g_strcmp0(state, "failed") == 0 || g_strcmp0(state, "blocked") == 0)
                return CTL_COLOR_RED;
        if (g_strcmp0(state, "stopped") == 0 || g_strcmp0(state, "pending") == 0)
                return CTL_COLOR_YELLOW;
        return CTL_COLOR_BOLD;
}

/* The polkit text agent, as systemctl runs it (shared/polkit-agent.c): only
 * when we may ask and stdin is a terminal, never for a remote host (the agent
 * would register on our machine, not there). Returns once the agent is
 * registered (it closes the notify fd), so the call that follows finds it. */
static pid_t agent_pid;

/* polkitd gives a person this long to answer (polkit.c's interactive timeout is the daemon's). */
#define CTL_INTERACTIVE_CALL_USEC (5 * 60 * USEC_PER_SEC)

void ctl_polkit_agent_open(sd_bus *bus) {
        if (agent_pid > 0 || !arg.ask_password || arg.host || !isatty(STDIN_FILENO))
                return;
        if (access(PKTTYAGENT, X_OK) < 0)
                return;
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) < 0)
                return;
        /* Like systemctl, "--fallback" (a graphical agent of the session wins)
         * — but only inside a logind session: polkitd consults a fallback agent
         * only after finding the caller's session (polkit 122,
         * polkitbackendinteractiveauthority.c, get_authentication_agent_for_subject),
         * so outside one (a container, su without a login) it would never ask. */
        char *session = NULL;
        bool fallback = sd_pid_get_session(0, &session) >= 0;
        free(session);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                close(fds[0]);
                close(fds[1]);
                return;
        }
        if (pid == 0) {
                char fd[16];
                (void) prctl(PR_SET_PDEATHSIG, SIGTERM);
                if (getppid() != parent)
                        _exit(EXIT_FAILURE);
                if (dup2(fds[1], 3) < 0)
                        _exit(EXIT_FAILURE);
                snprintf(fd, sizeof fd, "%d", 3);
                if (fallback)
                        execl(PKTTYAGENT, PKTTYAGENT, "--notify-fd", fd, "--fallback", (char *) NULL);
                else
                        execl(PKTTYAGENT, PKTTYAGENT, "--notify-fd", fd, (char *) NULL);
                _exit(EXIT_FAILURE);
        }
        close(fds[1]);
        agent_pid = pid;
        (void) sd_bus_set_method_call_timeout(bus, CTL_INTERACTIVE_CALL_USEC);
        /* Bounded: an agent that cannot register must not hang the command. */
        struct pollfd p = { .fd = fds[0], .events = POLLIN };
        char c;
        while (poll(&p, 1, 10 * 1000) > 0 && read(fds[0], &c, 1) > 0)
                ;
        close(fds[0]);
}

void ctl_polkit_agent_close(void) {
        if (agent_pid <= 0)
                return;
        (void) kill(agent_pid, SIGTERM);
        (void) kill(agent_pid, SIGCONT);
        while (waitpid(agent_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        agent_pid = 0;
}

static const struct {
        const char *suffix;
        uint64_t usec;
} time_units[] = {
        { "us", 1 }, { "ms", 1000ULL }, { "s", USEC_PER_SEC }, { "min", 60 * USEC_PER_SEC },
        { "h", 3600 * USEC_PER_SEC }, { "d", 86400 * USEC_PER_SEC },
};

int ctl_parse_usec(const char *s, uint64_t *ret, const char **ret_unit) {
        return duration_parse_usec_unit(s, ret, ret_unit);
}

/* usec in the given unit when it divides evenly ("90s" stays "90s"),
 * else in the largest unit that does. */
char *ctl_format_usec_in(uint64_t usec, const char *unit) {
        for (size_t i = 0; unit && i < ELEMENTSOF(time_units); i++)
                if (streq(unit, time_units[i].suffix) && usec % time_units[i].usec == 0)
                        return g_strdup_printf("%" PRIu64 "%s", usec / time_units[i].usec, unit);
        for (size_t i = ELEMENTSOF(time_units); i > 0; i--)
                if (usec % time_units[i - 1].usec == 0 && usec > 0)
                        return g_strdup_printf("%" PRIu64 "%s", usec / time_units[i - 1].usec,
                                               time_units[i - 1].suffix);
        return g_strdup_printf("%" PRIu64 "us", usec);
}

/* "2025-06-02 10:00:00 CEST" for a CLOCK_REALTIME µs value, "never" for 0. */
char *ctl_format_time(uint64_t usec) {
        if (usec == 0)
                return g_strdup("never");
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char buf[64];
        if (!localtime_r(&sec, &tm) || strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                return g_strdup_printf("@%" PRIu64, usec);
        return g_strdup(buf);
}
