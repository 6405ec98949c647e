/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <string.h>

#include <glib.h>

#include "daemon/polkit.h"
#include "shared/log.h"
#include "shared/macro.h"

#define POLKIT_TIMEOUT_USEC (25 * USEC_PER_SEC)
#define POLKIT_INTERACTIVE_TIMEOUT_USEC (300 * USEC_PER_SEC)
#define POLKIT_CHECK_ALLOW_USER_INTERACTION 1u

/* Bounds on authorizations in flight. dbus-daemon lets one connection have
 * 128 calls awaiting a reply (max_replies_per_connection): beyond that every
 * call to polkit fails, for everyone. A peer gets a few at once, a uid a few
 * more (one uid may open many connections); the rest is answered
 * LimitsExceeded at once. */
#define POLKIT_PENDING_PER_SENDER 4u
#define POLKIT_PENDING_PER_UID 8u
#define POLKIT_PENDING_MAX 96u
/* Refusals beyond the caps are answered after a delay: a flooding client
 * that is refused at once sends again at once, and the flood then costs the
 * bus and this loop more than the authorizations it was denied. The bus
 * bounds what one connection may have in flight (128), so this bounds the
 * flood's rate; the queue itself is bounded too. */
#define POLKIT_REFUSE_DELAY_USEC (1 * USEC_PER_SEC)
#define POLKIT_REFUSE_QUEUE_MAX 4096u

typedef enum QueryResult {
        QUERY_PENDING,
        QUERY_ALLOWED,
        QUERY_DENIED,
        QUERY_CHALLENGE,   /* polkit would ask, but the caller did not allow interaction */
        QUERY_LIMITS,      /* too many authorizations of this uid in flight */
        QUERY_ERROR,       /* polkit could not decide (error in `error`) */
} QueryResult;

typedef struct Query {
        PolkitRegistry *registry;
        sd_bus_message *request;
        sd_bus_slot *slot;
        char *action;
        char **details;
        char *sender;
        uint32_t uid;
        bool have_uid;
        QueryResult result;
        sd_bus_error error;
        sd_event_source *defer;  /* idle-priority cleanup if the handler never comes back */
} Query;

typedef struct Refusal {
        sd_bus_message *request;
        uint64_t due_usec;
} Refusal;

struct PolkitRegistry {
        GHashTable *queries;    /* sd_bus_message* → Query* */
        GQueue refusals;        /* Refusal*, in due order */
        sd_event_source *refusal_timer;
        GHashTable *by_sender;  /* sender → count of queries */
        GHashTable *by_uid;     /* uid → count of queries asking polkit */
        LogRatelimit log_rl;
};

static void count_add(GHashTable *t, gpointer key, int delta, bool owned_key) {
        unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(t, key)) + (unsigned) delta;
        if (n == 0)
                g_hash_table_remove(t, key);
        else
                g_hash_table_insert(t, owned_key ? g_strdup(key) : key, GUINT_TO_POINTER(n));
}

static unsigned count_get(GHashTable *t, gconstpointer key) {
        return GPOINTER_TO_UINT(g_hash_table_lookup(t, key));
}

static void query_free(Query *q) {
        if (!q)
                return;
        if (q->sender)
                count_add(q->registry->by_sender, q->sender, -1, true);
        if (q->have_uid)
                count_add(q->registry->by_uid, GUINT_TO_POINTER(q->uid), -1, false);
        sd_event_source_disable_unref(q->defer);
        sd_bus_slot_unref(q->slot);
        sd_bus_message_unref(q->request);
        sd_bus_error_free(&q->error);
        g_free(q->action);
        g_free(q->sender);
        g_strfreev(q->details);
        g_free(q);
}

PolkitRegistry *polkit_registry_new(void) {
        PolkitRegistry *r = g_new0(PolkitRegistry, 1);
        r->queries = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, (GDestroyNotify) query_free);
        r->by_sender = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
        r->by_uid = g_hash_table_new(g_direct_hash, g_direct_equal);
        r->log_rl = (LogRatelimit) LOG_RATELIMIT_INIT(10 * USEC_PER_SEC, 10);
        return r;
}

static void refusal_answer(Refusal *f) {
        (void) sd_bus_reply_method_errorf(f->request, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                          "Too many authorizations are in flight; try again.");
        sd_bus_message_unref(f->request);
        g_free(f);
}

void polkit_registry_free(PolkitRegistry *r) {
        if (!r)
                return;
        Refusal *f;
        while ((f = g_queue_pop_head(&r->refusals)))
                refusal_answer(f);
        sd_event_source_disable_unref(r->refusal_timer);
        /* Stopping: every call still waiting for its authorization gets an answer. */
        GHashTableIter it;
        gpointer value;
        g_hash_table_iter_init(&it, r->queries);
        while (g_hash_table_iter_next(&it, NULL, &value)) {
                Query *q = value;
                (void) sd_bus_reply_method_errorf(q->request, SD_BUS_ERROR_NO_REPLY,
                                                  "platform-launcherd is stopping; %s was not run.",
                                                  strempty(sd_bus_message_get_member(q->request)));
        }
        g_hash_table_destroy(r->queries);
        g_hash_table_destroy(r->by_sender);
        g_hash_table_destroy(r->by_uid);
        g_free(r);
}

unsigned polkit_registry_pending(const PolkitRegistry *r) {
        return g_hash_table_size(r->queries);
}

static int on_query_defer(sd_event_source *s, void *userdata) {
        Query *q = userdata;
        /* The re-dispatched call ran at normal priority and did not come back
         * for its verdict (its object went away, or it failed earlier): drop it. */
        g_hash_table_remove(q->registry->queries, q->request);
        return 0;
}

static void query_finish(Query *q, QueryResult result) {
        q->result = result;
        q->slot = sd_bus_slot_unref(q->slot);

        /* Run the handler again from the top; it will find the decision. */
        sd_bus *bus = sd_bus_message_get_bus(q->request);
        int r = sd_bus_enqueue_for_read(bus, q->request);
        if (r >= 0) {
                sd_event *e = sd_bus_get_event(bus);
                if (e)
                        r = sd_event_add_defer(e, &q->defer, on_query_defer, q);
                if (r >= 0 && q->defer)
                        r = sd_event_source_set_priority(q->defer, SD_EVENT_PRIORITY_IDLE);
                if (r >= 0)
                        return;
                q->defer = sd_event_source_disable_unref(q->defer);
        }
        /* No call is ever left without a reply. */
        log_full_ratelimit(&q->registry->log_rl, LOG_ERR, "Cannot re-dispatch %s after authorization: %s",
                           strempty(sd_bus_message_get_member(q->request)), strerror(-r));
        (void) sd_bus_reply_method_errno(q->request, r, NULL);
        g_hash_table_remove(q->registry->queries, q->request);
}

static int on_check_authorization_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Query *q = userdata;
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        if (e) {
                /* NameHasNoOwner comes from polkitd itself when the subject (the caller) has left. */
                if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN, SD_BUS_ERROR_NO_REPLY, SD_BUS_ERROR_TIMEOUT,
                                           SD_BUS_ERROR_DISCONNECTED)) {
                        /* Fail closed: no polkit, no privileged operation. */
                        log_full_ratelimit(&q->registry->log_rl, LOG_WARNING, "polkit is not available (%s), denying %s.",
                                           e->name, q->action);
                        query_finish(q, QUERY_DENIED);
                } else {
                        /* polkit answered, but could not decide: the caller left (the
                         * subject is gone), or the bus refused the call (limits). */
                        log_full_ratelimit(&q->registry->log_rl, LOG_DEBUG, "polkit could not check %s for %s: %s",
                                           q->action, q->sender, e->name);
                        (void) sd_bus_error_copy(&q->error, e);
                        query_finish(q, QUERY_ERROR);
                }
                return 0;
        }

        int authorized = 0, challenge = 0;
        int r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
        if (r >= 0)
                r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
        if (r < 0) {
                log_full_ratelimit(&q->registry->log_rl, LOG_WARNING, "Cannot parse polkit's answer for %s, denying: %s",
                                   q->action, strerror(-r));
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

static int refuse_later(PolkitRegistry *r, sd_bus_message *m);

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
        if (count_get(q->registry->by_uid, GUINT_TO_POINTER(uid)) >= POLKIT_PENDING_PER_UID) {
                PolkitRegistry *reg = q->registry;
                log_full_ratelimit(&reg->log_rl, LOG_NOTICE, "Too many authorizations of uid %u in flight, refusing %s.",
                                   uid, q->action);
                if (refuse_later(reg, q->request) >= 0)
                        g_hash_table_remove(reg->queries, q->request); /* answered by the refusal timer */
                else
                        query_finish(q, QUERY_LIMITS);
                return 0;
        }
        q->uid = uid;
        q->have_uid = true;
        count_add(q->registry->by_uid, GUINT_TO_POINTER(uid), +1, false);

        int r = send_check_authorization(q);
        if (r < 0) {
                log_full_ratelimit(&q->registry->log_rl, LOG_WARNING, "Cannot ask polkit about %s, denying: %s",
                                   q->action, strerror(-r));
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
        if (result == QUERY_ERROR && same_action) {
                /* Fail closed, but say why: the bus's limits are the caller's to retry. */
                int r = sd_bus_error_has_name(&q->error, SD_BUS_ERROR_LIMITS_EXCEEDED)
                                ? sd_bus_error_set(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                                   "Too many authorizations are in flight; try again.")
                                : sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                                    "Access denied: authorization could not be checked (%s).",
                                                    q->error.name);
                g_hash_table_remove(q->registry->queries, q->request);
                return r;
        }
        g_hash_table_remove(q->registry->queries, q->request);

        if (!same_action)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Authorization was asked for another action.");
        switch (result) {
        case QUERY_ALLOWED:
                return 1;
        case QUERY_CHALLENGE:
                return sd_bus_error_set(error, SD_BUS_ERROR_INTERACTIVE_AUTHORIZATION_REQUIRED,
                                        "Interactive authentication required.");
        case QUERY_LIMITS:
                return sd_bus_error_set(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                        "Too many authorizations of this user are in flight; try again.");
        default:
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED, "Access denied: %s is not authorized.", action);
        }
}

static int on_refusal_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        PolkitRegistry *r = userdata;
        Refusal *f;
        while ((f = g_queue_peek_head(&r->refusals)) && f->due_usec <= usec)
                refusal_answer(g_queue_pop_head(&r->refusals));
        if (f)
                return sd_event_source_set_time(s, f->due_usec) < 0 ? 0 : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

/* 0: the call will be answered LimitsExceeded later; < 0: answer it now. */
static int refuse_later(PolkitRegistry *r, sd_bus_message *m) {
        sd_event *e = sd_bus_get_event(sd_bus_message_get_bus(m));
        uint64_t now;
        if (!e || g_queue_get_length(&r->refusals) >= POLKIT_REFUSE_QUEUE_MAX ||
            sd_event_now(e, CLOCK_MONOTONIC, &now) < 0)
                return -EBUSY;

        int q = 0;
        if (!r->refusal_timer)
                q = sd_event_add_time(e, &r->refusal_timer, CLOCK_MONOTONIC, now + POLKIT_REFUSE_DELAY_USEC, 0,
                                      on_refusal_timer, r);
        else if (g_queue_is_empty(&r->refusals)) {
                q = sd_event_source_set_time(r->refusal_timer, now + POLKIT_REFUSE_DELAY_USEC);
                if (q >= 0)
                        q = sd_event_source_set_enabled(r->refusal_timer, SD_EVENT_ONESHOT);
        }
        if (q < 0)
                return q;

        Refusal *f = g_new0(Refusal, 1);
        f->request = sd_bus_message_ref(m);
        f->due_usec = now + POLKIT_REFUSE_DELAY_USEC;
        g_queue_push_tail(&r->refusals, f);
        return 0;
}

int polkit_check(sd_bus_message *m, const char *action, const char *const *details, PolkitRegistry *registry,
                 sd_bus_error *error) {
        Query *q = g_hash_table_lookup(registry->queries, m);
        if (q)
                return q->result == QUERY_PENDING ? 0 : query_verdict(q, action, error);

        const char *sender = sd_bus_message_get_sender(m);
        if (!sender)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Caller has no bus name.");
        if (g_hash_table_size(registry->queries) >= POLKIT_PENDING_MAX ||
            count_get(registry->by_sender, sender) >= POLKIT_PENDING_PER_SENDER) {
                log_full_ratelimit(&registry->log_rl, LOG_NOTICE, "Too many authorizations in flight, refusing %s from %s.",
                                   action, sender);
                if (refuse_later(registry, m) >= 0)
                        return 0; /* the handler returns 1: answered by the refusal timer */
                return sd_bus_error_set(error, SD_BUS_ERROR_LIMITS_EXCEEDED,
                                        "Too many authorizations are in flight; try again.");
        }

        q = g_new0(Query, 1);
        q->registry = registry;
        q->request = sd_bus_message_ref(m);
        q->action = g_strdup(action);
        q->details = g_strdupv((char **) details);
        q->sender = g_strdup(sender);
        q->result = QUERY_PENDING;
        count_add(registry->by_sender, q->sender, +1, true);

        int r = query_start(q);
        if (r < 0) {
                query_free(q);
                log_full_ratelimit(&registry->log_rl, LOG_WARNING, "Cannot start authorization for %s: %s", action,
                                   strerror(-r));
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Authorization could not be checked.");
        }
        g_hash_table_insert(registry->queries, m, q);
        return 0;
}
