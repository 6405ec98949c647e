/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include <glib.h>

#include "daemon/polkit.h"
#include "shared/log.h"
#include "shared/macro.h"

#define POLKIT_TIMEOUT_USEC (25 * USEC_PER_SEC)
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (300 * USEC_PER_SEC)
#define POLKIT_CHECK_ALLOW_USER_INTERACTION 1u

typedef enum QueryResult {
        QUERY_PENDING,
        QUERY_ALLOWED,
        QUERY_DENIED,
        QUERY_CHALLENGE,   /* polkit would ask, but the caller did not allow interaction */
} QueryResult;

typedef struct Query {
        PolkitRegistry *registry;
        sd_bus_message *request;
        sd_bus_slot *slot;
        char *action;
        char **details;
        QueryResult result;
} Query;

struct PolkitRegistry {
        GHashTable *queries; /* sd_bus_message* → Query* */
};

static void query_free(Query *q) {
        if (!q)
                return;
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->request);
        g_free(q->action);
        g_strfreev(q->details);
        g_free(q);
}

PolkitRegistry *polkit_registry_new(void) {
        PolkitRegistry *r = g_new0(PolkitRegistry, 1);
        r->queries = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, (GDestroyNotify) query_free);
        return r;
}

void polkit_registry_free(PolkitRegistry *r) {
        if (!r)
                return;
        g_hash_table_destroy(r->queries);
        g_free(r);
}

static void query_finish(Query *q, QueryResult result) {
        q->result = result;
        q->slot = sd_bus_slot_unref(q->slot);

        /* Run the handler again from the top; it will find the decision. */
        sd_bus *bus = sd_bus_message_get_bus(q->request);
        int r = sd_bus_enqueue_for_read(bus, q->request);
        if (r < 0) {
                log_error_errno(r, "Cannot re-dispatch %s after authorization: %m", sd_bus_message_get_member(q->request));
                g_hash_table_remove(q->registry->queries, q->request);
        }
}

static int on_check_authorization_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Query *q = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        if (e) {
                /* Fail closed: no polkit, no privileged operation. */
                log_warning("polkit is not available (%s), denying %s.", e->name, q->action);
                query_finish(q, QUERY_DENIED);
                return 0;
        }

        int authorized = 0, challenge = 0;
        int r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0) {
                log_warning_errno(r, "Cannot parse polkit's answer for %s, denying: %m", q->action);
                query_finish(q, QUERY_DENIED);
                return 0;
        }

        query_finish(q, authorized ? QUERY_ALLOWED : challenge ? QUERY_CHALLENGE : QUERY_DENIED);
        return 0;
}

static int send_check_authorization(Query *q) {
        sd_bus *bus = sd_bus_message_get_bus(q->request);
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *call = NULL;
        int interactive = sd_bus_message_get_allow_interactive_authorization(q->request);

        int r = sd_bus_message_new_method_call(bus, &call, "org.freedesktop.PolicyKit1",
                                               "/org/freedesktop/PolicyKit1/Authority",
                                               "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization");
        if (r >= 0)
                r = sd_bus_message_append(call, "(sa{sv})s", "system-bus-name", 1, "name", "s",
                                          sd_bus_message_get_sender(q->request), q->action);
        if (r >= 0)
                r = sd_bus_message_open_container(call, 'a', "{ss}");
        for (char **d = q->details; r >= 0 && d && d[0] && d[1]; d += 2)
                r = sd_bus_message_append(call, "{ss}", d[0], d[1]);
        if (r >= 0)
                r = sd_bus_message_close_container(call);
        if (r >= 0)
                r = sd_bus_message_append(call, "us", interactive > 0 ? POLKIT_CHECK_ALLOW_USER_INTERACTION : 0u, "");
        if (r < 0)
                return r;

        return sd_bus_call_async(bus, &q->slot, call, on_check_authorization_reply, q,
                                 interactive > 0 ? POLKIT_INTERACTIVE_TIMEOUT_USEC : POLKIT_TIMEOUT_USEC);
}

static int on_unix_user_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Query *q = userdata;
        uint32_t uid;

        q->slot = sd_bus_slot_unref(q->slot);
        if (sd_bus_message_is_method_error(reply, NULL) || sd_bus_message_read(reply, "u", &uid) < 0) {
                /* The caller is gone or the bus would not say who it is. */
                query_finish(q, QUERY_DENIED);
                return 0;
        }
        if (uid == 0) {
                query_finish(q, QUERY_ALLOWED);
                return 0;
        }

        int r = send_check_authorization(q);
        if (r < 0) {
                log_warning_errno(r, "Cannot ask polkit about %s, denying: %m", q->action);
                query_finish(q, QUERY_DENIED);
        }
        return 0;
}

static int query_start(Query *q) {
        /* Asked asynchronously: even a round trip to the bus daemon must not block the loop. */
        return sd_bus_call_method_async(sd_bus_message_get_bus(q->request), &q->slot, "org.freedesktop.DBus",
                                        "/org/freedesktop/DBus", "org.freedesktop.DBus", "GetConnectionUnixUser",
                                        on_unix_user_reply, q, "s", sd_bus_message_get_sender(q->request));
}

static int query_verdict(Query *q, const char *action, sd_bus_error *error) {
        QueryResult result = q->result;
        bool same_action = streq(q->action, action);
        g_hash_table_remove(q->registry->queries, q->request);

        if (!same_action)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Authorization was asked for another action.");
        switch (result) {
        case QUERY_ALLOWED:
                return 1;
        case QUERY_CHALLENGE:
                return sd_bus_error_set(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                        "Interactive authentication required.");
        default:
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Access denied: %s is not authorized.", action);
        }
}

int polkit_check(sd_bus_message *m, const char *action, const char *const *details, PolkitRegistry *registry,
                 sd_bus_error *error) {
        Query *q = g_hash_table_lookup(registry->queries, m);
        if (q)
                return q->result == QUERY_PENDING ? 0 : query_verdict(q, action, error);

        if (!sd_bus_message_get_sender(m))
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Caller has no bus name.");

        q = g_new0(Query, 1);
        q->registry = registry;
        q->request = sd_bus_message_ref(m);
        q->action = g_strdup(action);
        q->details = g_strdupv((char **) details);
        q->result = QUERY_PENDING;

        int r = query_start(q);
        if (r < 0) {
                query_free(q);
                log_warning_errno(r, "Cannot start authorization for %s: %m", action);
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Authorization could not be checked.");
        }
        g_hash_table_insert(registry->queries, m, q);
        return 0;
}
