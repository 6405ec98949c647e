/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include <glib.h>

#include "daemon/audit.h"
#include "shared/log.h"
#include "shared/macro.h"

#define AUDIT_CREDS (SD_BUS_CREDS_EUID | SD_BUS_CREDS_UID | SD_BUS_CREDS_COMM | SD_BUS_CREDS_PID | SD_BUS_CREDS_AUGMENT)

/* A synchronous question to the bus daemon (GetConnectionCredentials) plus
 * /proc reads, as systemd's own handlers do: bounded by the local bus daemon,
 * never by the caller. */
static int caller_creds(sd_bus_message *msg, uid_t *uid, const char **comm, pid_t *pid, sd_bus_creds **ret) {
        sd_bus_creds *c = NULL;
        int r = sd_bus_query_sender_creds(msg, AUDIT_CREDS, &c);
        if (r < 0)
                return r;
        if (sd_bus_creds_get_euid(c, uid) < 0 && sd_bus_creds_get_uid(c, uid) < 0) {
                sd_bus_creds_unref(c);
                return -ENODATA;
        }
        if (sd_bus_creds_get_comm(c, comm) < 0)
                *comm = NULL;
        if (sd_bus_creds_get_pid(c, pid) < 0)
                *pid = 0;
        *ret = c;
        return 0;
}

static char *format_caller(sd_bus_message *msg, bool with_pid) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *c = NULL;
        uid_t uid;
        const char *comm = NULL;
        pid_t pid = 0;

        if (caller_creds(msg, &uid, &comm, &pid, &c) < 0)
                return g_strdup_printf("bus name %s", strempty(sd_bus_message_get_sender(msg)));
        if (with_pid && pid > 0)
                return g_strdup_printf("uid %u (%s, pid %d)", (unsigned) uid, comm ?: "?", (int) pid);
        return g_strdup_printf("uid %u (%s)", (unsigned) uid, comm ?: "?");
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
