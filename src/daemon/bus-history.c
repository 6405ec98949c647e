/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <time.h>

#include "daemon/audit.h"
#include "daemon/bus-history.h"
#include "daemon/manager.h"
#include "shared/log.h"

#define VM_PREFIX LAUNCHER_OBJECT_PATH "/vm"
#define VM_INTERFACE "org.platform.Launcher1.Vm"
#define TRIGGER_AUTO_UPDATE "auto-update"
#define TRIGGER_RESUME "resume"

struct BusHistory {
        Manager *m;
        History *history;
        char *updater_trigger;  /* who asked for the running Updater transaction, NULL = nobody */
};

static const char *result_word(const HistoryEntry *e) {
        return e->ok ? "ok" : "failed";
}

static void on_appended(History *h, const HistoryEntry *e, void *userdata) {
        BusHistory *bh = userdata;
        if (!bh->m->bus)
                return;
        bus_vm_flush(bh->m); /* what led to the entry is told first */
        _cleanup_free_ char *p = NULL;
        const char *interface = LAUNCHER_UPDATER_INTERFACE;
        if (e->kind == HISTORY_KIND_UPDATER)
                p = strdup(LAUNCHER_OBJECT_PATH);
        else {
                interface = VM_INTERFACE;
                if (sd_bus_path_encode(VM_PREFIX, e->subject, &p) < 0)
                        return;
        }
        if (!p)
                return;
        int q = sd_bus_emit_signal(bh->m->bus, p, interface, "HistoryAdded", "tssssssst", e->timestamp_usec,
                                   history_kind_to_string(e->kind), e->action, e->trigger, e->from, e->to,
                                   result_word(e), e->reason, e->duration_usec);
        if (q < 0)
                log_warning_errno(q, "Cannot emit HistoryAdded: %m");
}

int bus_history_new(Manager *m, BusHistory **ret) {
        g_autofree char *path = g_build_filename(m->state_dir, HISTORY_FILE, NULL);
        BusHistory *bh = g_new0(BusHistory, 1);
        bh->m = m;
        int q = history_new(path, HISTORY_MAX_DEFAULT, &bh->history);
        if (q < 0) {
                bus_history_free(bh);
                return q;
        }
        history_set_callback(bh->history, on_appended, bh);
        *ret = bh;
        return 0;
}

void bus_history_free(BusHistory *bh) {
        if (!bh)
                return;
        g_free(bh->updater_trigger);
        history_free(bh->history);
        g_free(bh);
}

History *bus_history_get(BusHistory *bh) {
        return bh->history;
}

int bus_history_append(BusHistory *bh, const HistoryEntry *e) {
        int q = history_append(bh->history, e);
        if (q < 0)
                log_warning_errno(q, "Cannot write the history file: %m");
        return q;
}

/* ---- Updater transactions ---- */

void bus_history_updater_started(BusHistory *bh, sd_bus_message *msg) {
        if (!bh)
                return;
        g_free(bh->updater_trigger);
        bh->updater_trigger = audit_caller(msg);
}

void bus_history_updater_ended(BusHistory *bh) {
        if (bh)
                g_clear_pointer(&bh->updater_trigger, g_free);
}

void bus_history_updater_finished(BusHistory *bh, const char *repository, const UpdaterTransaction *t) {
        if (!bh)
                return;
        const char *trigger = t->automatic  ? TRIGGER_AUTO_UPDATE
                              : t->resumed  ? TRIGGER_RESUME
                              : bh->updater_trigger ?: "unknown";
        g_autofree char *reason = NULL;
        if (!t->ok)
                reason = g_strdup_printf("%s%s", strempty(t->reason),
                                         t->rolled_back ? "; rolled back" : "; not rolled back");
        /* A failed rollback is retried at every interval: a retry that fails the
         * same way is not news. */
        for (size_t i = history_size(bh->history); !t->ok && (t->automatic || t->resumed) && i > 0; i--) {
                const HistoryEntry *last = history_get(bh->history, i - 1);
                if (last->kind != HISTORY_KIND_UPDATER)
                        continue;
                if (!last->ok && streq(last->action, t->action) && streq(last->trigger, trigger) &&
                    streq(last->to, strempty(t->to)) && streq(last->reason, reason))
                        return;
                break;
        }
        HistoryEntry e = {
                .kind = HISTORY_KIND_UPDATER,
                .subject = repository,
                .action = t->action,
                .trigger = trigger,
                .from = t->from,
                .to = t->to,
                .ok = t->ok,
                .reason = reason,
                .duration_usec = t->duration_usec,
        };
        (void) bus_history_append(bh, &e);
}

/* ---- GetHistory ---- */

int bus_history_reply(sd_bus_message *msg, BusHistory *bh, HistoryKind kind, const char *subject, uint32_t limit) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int q = sd_bus_message_new_method_return(msg, &reply);
        if (q >= 0)
                q = sd_bus_message_open_container(reply, 'a', "(tssssssst)");
        uint32_t n = 0;
        for (size_t i = history_size(bh->history); q >= 0 && i > 0 && (limit == 0 || n < limit); i--) {
                const HistoryEntry *e = history_get(bh->history, i - 1);
                if (e->kind != kind || (subject && !streq(e->subject, subject)))
                        continue;
                q = sd_bus_message_append(reply, "(tssssssst)", e->timestamp_usec, history_kind_to_string(e->kind),
                                          e->action, e->trigger, e->from, e->to, result_word(e), e->reason,
                                          e->duration_usec);
                n++;
        }
        if (q >= 0)
                q = sd_bus_message_close_container(reply);
        if (q < 0)
                return q;
        return sd_bus_send(NULL, reply, NULL);
}

int bus_history_method_get_updater(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        uint32_t limit;
        int q = sd_bus_message_read(msg, "u", &limit);
        if (q < 0)
                return q;
        /* Every repository the updater kept: the subject is the repository at the time. */
        return bus_history_reply(msg, m->history, HISTORY_KIND_UPDATER, NULL, limit);
}
