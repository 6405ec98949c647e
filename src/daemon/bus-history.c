/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <time.h>

#include "daemon/audit.h"
#include "daemon/bus-history.h"
#include "daemon/manager.h"
#include "shared/log.h"

#define VM_PREFIX LAUNCHER_OBJECT_PATH "/vm"
#define VM_INTERFACE "org.platform.Launcher1.Vm"
#define TRIGGER_POLL "poll"
#define TRIGGER_AUTO_UPDATE "auto-update"
#define TRIGGER_RESUME "resume"

/* An operator's Update/Start/Stop/Restart from its call to its reply. */
struct VmOp {
        BusHistory *bh;
        sd_bus_message *msg;  /* not a reference: the caller of bus_history_op_new holds one */
        char *vm_name;
        char *action;
        char *trigger;
        char *from;
        uint64_t start_usec;
        bool recorded;  /* a deploy entry already says how it ended */
};

/* What a deploy entry needs that the reconciler's events do not carry. */
typedef struct VmTrack {
        VmState state;
        uint64_t deploy_start_usec;  /* when it entered creating/updating, 0 = not deploying */
} VmTrack;

struct BusHistory {
        Manager *m;
        History *history;
        GList *ops;          /* VmOp *, running operator operations */
        GHashTable *tracks;  /* VM name → VmTrack */
        char *updater_trigger;  /* who asked for the running Updater transaction, NULL = nobody */
};

static uint64_t now_usec(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

static const char *result_word(const HistoryEntry *e) {
        return e->ok ? "ok" : "failed";
}

static void on_appended(History *h, const HistoryEntry *e, void *userdata) {
        BusHistory *bh = userdata;
        if (!bh->m->bus)
                return;
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
        bh->tracks = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
        int q = history_new(path, HISTORY_MAX_DEFAULT, &bh->history);
        if (q < 0) {
                bus_history_free(bh);
                return q;
        }
        history_set_callback(bh->history, on_appended, bh);
        *ret = bh;
        return 0;
}

static void vm_op_free(VmOp *op) {
        if (!op)
                return;
        g_free(op->vm_name);
        g_free(op->action);
        g_free(op->trigger);
        g_free(op->from);
        g_free(op);
}

void bus_history_free(BusHistory *bh) {
        if (!bh)
                return;
        g_list_free_full(bh->ops, (GDestroyNotify) vm_op_free);
        g_hash_table_unref(bh->tracks);
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

/* ---- operator operations ---- */

VmOp *bus_history_op_new(Manager *m, sd_bus_message *msg, const Vm *vm, const char *action) {
        VmOp *op = g_new0(VmOp, 1);
        op->bh = m->history;
        op->msg = msg;
        op->vm_name = g_strdup(vm->name);
        op->action = g_strdup(action);
        op->trigger = audit_caller(msg); /* now, while the caller is surely connected */
        op->from = g_strdup(vm->compose_hash);
        op->start_usec = now_usec();
        op->bh->ops = g_list_prepend(op->bh->ops, op);
        return op;
}

sd_bus_message *bus_history_op_msg(VmOp *op) {
        return op->msg;
}

const char *bus_history_op_action(const VmOp *op) {
        return op->action;
}

char *bus_history_op_describe(BusHistory *bh, const Vm *vm, const VmOp *except) {
        const VmOp *oldest = NULL;
        for (GList *l = bh->ops; l; l = l->next) {
                const VmOp *op = l->data;
                if (op != except && streq(op->vm_name, vm->name) && (!oldest || op->start_usec < oldest->start_usec))
                        oldest = op;
        }
        if (!oldest)
                return NULL;
        uint64_t now = now_usec();
        return g_strdup_printf("the %s asked by %s %" PRIu64 " s ago", oldest->action, oldest->trigger,
                               (uint64_t) (now > oldest->start_usec ? (now - oldest->start_usec) / USEC_PER_SEC : 0));
}

void bus_history_op_free(VmOp *op) {
        if (!op)
                return;
        op->bh->ops = g_list_remove(op->bh->ops, op);
        vm_op_free(op);
}

void bus_history_op_done(VmOp *op, bool ok, const char *message) {
        BusHistory *bh = op->bh;
        Vm *vm = reconciler_find_vm(bh->m->reconciler, op->vm_name);
        /* An Update that deployed is recorded as the deploy; one that found
         * nothing to do changed nothing, and the history is of changes. */
        bool nothing_done = ok && streq(op->action, "update");
        if (!op->recorded && !nothing_done) {
                HistoryEntry e = {
                        .kind = HISTORY_KIND_VM,
                        .subject = op->vm_name,
                        .action = op->action,
                        .trigger = op->trigger,
                        .from = op->from,
                        .to = vm ? vm->compose_hash : "",
                        .ok = ok,
                        .reason = message,
                        .duration_usec = now_usec() - op->start_usec,
                };
                (void) bus_history_append(bh, &e);
        }
        bus_history_op_free(op);
}

/* The operator's operation on this VM that an automatic event belongs to. */
static VmOp *running_op(BusHistory *bh, const Vm *vm) {
        for (GList *l = bh->ops; l; l = l->next) {
                VmOp *op = l->data;
                if (streq(op->vm_name, vm->name))
                        return op;
        }
        return NULL;
}

/* ---- events from the core ---- */

static VmTrack *track(BusHistory *bh, const Vm *vm) {
        VmTrack *t = g_hash_table_lookup(bh->tracks, vm->name);
        if (!t) {
                t = g_new0(VmTrack, 1);
                t->state = vm->state;
                g_hash_table_insert(bh->tracks, g_strdup(vm->name), t);
        }
        return t;
}

static bool deploying(VmState s) {
        return s == VM_STATE_CREATING || s == VM_STATE_UPDATING;
}

void bus_history_vm_changed(BusHistory *bh, const Vm *vm, uint32_t fields) {
        if (!bh || !(fields & VM_FIELD_STATE))
                return;
        bool fresh = !g_hash_table_contains(bh->tracks, vm->name);
        VmTrack *t = track(bh, vm);
        if (deploying(vm->state) && (fresh || !deploying(t->state)))
                t->deploy_start_usec = now_usec();
        t->state = vm->state;
}

static void deploy_entry(BusHistory *bh, const Vm *vm, const char *from, const char *to, bool ok, const char *reason) {
        VmTrack *t = track(bh, vm);
        /* An operator's call may wait while the launcher's own deploy runs:
         * that one is not theirs; it is the poll's, or the settings change's
         * (SetEnv...) that caused it. */
        const char *change = NULL;
        VmOp *op = reconciler_running_operator_call(bh->m->reconciler, vm, &change) ? running_op(bh, vm) : NULL;
        const char *trigger = op ? op->trigger : change ?: TRIGGER_POLL;
        uint64_t start = op ? op->start_usec : t->deploy_start_usec;
        HistoryEntry e = {
                .kind = HISTORY_KIND_VM,
                .subject = vm->name,
                .action = "deploy",
                .trigger = trigger,
                .from = from,
                .to = to,
                .ok = ok,
                .reason = reason,
                .duration_usec = start > 0 ? now_usec() - start : 0,
        };
        t->deploy_start_usec = 0;

        /* A failure the poll meets again after its backoff is not news. */
        for (size_t i = history_size(bh->history); streq(trigger, TRIGGER_POLL) && !ok && i > 0; i--) {
                const HistoryEntry *last = history_get(bh->history, i - 1);
                if (last->kind != HISTORY_KIND_VM || !streq(last->subject, vm->name))
                        continue;
                if (!last->ok && streq(last->action, "deploy") && streq(last->trigger, TRIGGER_POLL) &&
                    streq(last->to, strempty(to)) && streq(last->reason, strempty(reason)))
                        return;
                break;
        }
        if (op && streq(op->action, "update"))
                op->recorded = true;
        (void) bus_history_append(bh, &e);
}

void bus_history_vm_updated(BusHistory *bh, const Vm *vm, const char *old_hash, const char *new_hash) {
        if (bh)
                deploy_entry(bh, vm, old_hash, new_hash, true, NULL);
}

void bus_history_update_failed(BusHistory *bh, const Vm *vm, const char *target, const char *reason) {
        if (bh)
                deploy_entry(bh, vm, vm->compose_hash, target, false, reason);
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

int bus_history_method_get(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        _cleanup_free_ char *name = NULL;
        uint32_t limit;

        int q = sd_bus_message_read(msg, "u", &limit);
        if (q < 0)
                return q;
        if (sd_bus_path_decode(sd_bus_message_get_path(msg), VM_PREFIX, &name) <= 0 ||
            !reconciler_find_vm(m->reconciler, name))
                return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No such VM.");
        return bus_history_reply(msg, m->history, HISTORY_KIND_VM, name, limit);
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
