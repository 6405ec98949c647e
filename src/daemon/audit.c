/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include <glib.h>

#include "daemon/audit.h"
#include "shared/log.h"
#include "shared/macro.h"

/* The bus daemon gives the effective uid and the pid (GetConnectionCredentials);
 * only the command name comes from /proc (AUGMENT reads /proc/PID/comm for
 * it). Asking for the real uid too would have sd-bus parse /proc/PID/status. */
#define AUDIT_CREDS (SD_BUS_CREDS_EUID | SD_BUS_CREDS_PID | SD_BUS_CREDS_COMM | SD_BUS_CREDS_AUGMENT)

/* One question per call: a handler both logs the audit line and names the
 * caller in the history; the answer for the message being handled is kept. */
typedef struct Caller {
        char *sender;
        uint64_t cookie;
        bool known;
        uid_t uid;
        pid_t pid;
        char *comm;
} Caller;

static Caller last;

/* A synchronous question to the bus daemon (GetConnectionCredentials) plus
 * one /proc read, as systemd's own handlers do: bounded by the local bus
 * daemon, never by the caller. */
static const Caller *caller_of(sd_bus_message *msg) {
        uint64_t cookie = 0;
        const char *sender = sd_bus_message_get_sender(msg);
        (void) sd_bus_message_get_cookie(msg, &cookie);
        if (last.sender && streq_ptr(last.sender, sender) && last.cookie == cookie)
                return &last;
        g_free(last.sender);
        g_free(last.comm);
        last = (Caller) { .sender = g_strdup(sender), .cookie = cookie };

        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *c = NULL;
        const char *comm = NULL;
        if (sd_bus_query_sender_creds(msg, AUDIT_CREDS, &c) < 0 ||
            (sd_bus_creds_get_euid(c, &last.uid) < 0 && sd_bus_creds_get_uid(c, &last.uid) < 0))
                return &last;
        last.known = true;
        if (sd_bus_creds_get_comm(c, &comm) >= 0)
                last.comm = g_strdup(comm);
        if (sd_bus_creds_get_pid(c, &last.pid) < 0)
                last.pid = 0;
        return &last;
}

static char *format_caller(sd_bus_message *msg, bool with_pid) {
        const Caller *c = caller_of(msg);
        if (!c->known)
                return g_strdup_printf("bus name %s", strempty(sd_bus_message_get_sender(msg)));
        if (with_pid && c->pid > 0)
                return g_strdup_printf("uid %u (%s, pid %d)", (unsigned) c->uid, c->comm ?: "?", (int) c->pid);
        return g_strdup_printf("uid %u (%s)", (unsigned) c->uid, c->comm ?: "?");
}

char *audit_caller(sd_bus_message *msg) {
        return format_caller(msg, false);
}

void audit_log(sd_bus_message *msg, const char *what, const char *key) {
        g_autofree char *who = format_caller(msg, true);
        if (key)
                log_notice("Audit: %s %s '%s'.", strempty(who), what, key);
        else
                log_notice("Audit: %s %s.", strempty(who), what);
}
