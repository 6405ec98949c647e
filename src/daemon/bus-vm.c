/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <unistd.h>

#include "daemon/audit.h"
#include "daemon/manager.h"
#include "shared/bus-errors.h"
#include "shared/log.h"

#define VM_PREFIX LAUNCHER_OBJECT_PATH "/vm"
#define VM_INTERFACE "org.platform.Launcher1.Vm"
#define ACTION_MANAGE_VM "org.platform.launcher1.manage-vm"
#define ACTION_READ_LOGS "org.platform.launcher1.read-logs"

static char *vm_path(const Vm *vm) {
        char *p = NULL;
        return sd_bus_path_encode(VM_PREFIX, vm->name, &p) < 0 ? NULL : p;
}

static Vm *vm_by_path(Manager *m, const char *path) {
        _cleanup_free_ char *name = NULL;
        if (sd_bus_path_decode(path, VM_PREFIX, &name) <= 0)
                return NULL;
        return reconciler_find_vm(m->reconciler, name);
}

/* userdata stays the Manager; handlers find their VM from the path. */
static int vm_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                          sd_bus_error *error) {
        if (!vm_by_path(userdata, path))
                return 0;
        *found = userdata;
        return 1;
}

static int vm_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        size_t n = 0;
        for (Vm *const *v = reconciler_vms(m->reconciler); *v; v++)
                n++;
        char **l = calloc(n + 1, sizeof(char *)); /* sd-bus frees it with free() */
        if (!l)
                return -ENOMEM;
        n = 0;
        for (Vm *const *v = reconciler_vms(m->reconciler); *v; v++) {
                char *p = vm_path(*v);
                if (p)
                        l[n++] = p;
        }
        *nodes = l;
        return 0;
}

/* ---- properties ---- */

typedef enum PropKind { P_STR, P_U32, P_U64 } PropKind;

typedef struct VmProp {
        const char *name;
        VmField field;
        PropKind kind;
        size_t offset;
} VmProp;

#define PROP(n, f, k, member) { n, f, k, offsetof(Vm, member) }
static const VmProp vm_props[] = {
        PROP("Id", VM_FIELD_ID, P_STR, id),
        PROP("StateReason", VM_FIELD_STATE_REASON, P_STR, state_reason),
        PROP("VmmStatus", VM_FIELD_VMM_STATUS, P_STR, vmm_status),
        PROP("AppId", VM_FIELD_APP_ID, P_STR, app_id),
        PROP("ComposeHash", VM_FIELD_COMPOSE_HASH, P_STR, compose_hash),
        PROP("TargetComposeHash", VM_FIELD_TARGET_COMPOSE_HASH, P_STR, target_compose_hash),
        PROP("Image", VM_FIELD_IMAGE, P_STR, image),
        PROP("ImageVersion", VM_FIELD_IMAGE_VERSION, P_STR, image_version),
        PROP("Vcpu", VM_FIELD_VCPU, P_U32, vcpu),
        PROP("MemoryMiB", VM_FIELD_MEMORY, P_U32, memory_mib),
        PROP("DiskGiB", VM_FIELD_DISK, P_U32, disk_gib),
        PROP("LastCheckTimestamp", VM_FIELD_LAST_CHECK, P_U64, last_check_usec),
        PROP("LastSuccessfulCheckTimestamp", VM_FIELD_LAST_SUCCESSFUL_CHECK, P_U64, last_successful_check_usec),
        PROP("LastUpdateTimestamp", VM_FIELD_LAST_UPDATE, P_U64, last_update_usec),
        PROP("UpdateCount", VM_FIELD_UPDATE_COUNT, P_U32, update_count),
        PROP("RestartCount", VM_FIELD_RESTART_COUNT, P_U32, restart_count),
        PROP("LastError", VM_FIELD_LAST_ERROR, P_STR, last_error),
        PROP("Operation", VM_FIELD_OPERATION, P_STR, operation),
        PROP("Progress", VM_FIELD_PROGRESS, P_U32, progress),
        PROP("KmsSigner", VM_FIELD_KMS_SIGNER, P_STR, kms_signer),
};

static int property_get(sd_bus *bus, const char *path, const char *interface, const char *property,
                        sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        Vm *vm = vm_by_path(userdata, path);
        if (!vm)
                return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No VM at %s.", path);
        if (streq(property, "Name"))
                return sd_bus_message_append(reply, "s", vm->name);
        if (streq(property, "State"))
                return sd_bus_message_append(reply, "s", vm_state_to_string(vm->state));
        if (streq(property, "AllowedEnv"))
                return sd_bus_message_append_strv(reply, vm->allowed_env);
        for (size_t i = 0; i < ELEMENTSOF(vm_props); i++) {
                const VmProp *p = &vm_props[i];
                if (!streq(p->name, property))
                        continue;
                const void *v = (const uint8_t *) vm + p->offset;
                switch (p->kind) {
                case P_STR:
                        return sd_bus_message_append(reply, "s", *(char *const *) v);
                case P_U32:
                        return sd_bus_message_append(reply, "u", *(const uint32_t *) v);
                default:
                        return sd_bus_message_append(reply, "t", *(const uint64_t *) v);
                }
        }
        return -ENOENT;
}

/* ---- operations: reply when done ---- */

static int reply_error(sd_bus_message *msg, ReconcilerError e, const char *message) {
        static const char *const names[] = {
                [RECONCILER_ERROR_BUSY] = LAUNCHER_ERROR_BUSY,
                [RECONCILER_ERROR_BLOCKED] = LAUNCHER_ERROR_BLOCKED,
                [RECONCILER_ERROR_VMM_UNAVAILABLE] = LAUNCHER_ERROR_VMM_UNAVAILABLE,
                [RECONCILER_ERROR_API_UNAVAILABLE] = LAUNCHER_ERROR_API_UNAVAILABLE,
                [RECONCILER_ERROR_NOT_FOUND] = LAUNCHER_ERROR_NOT_FOUND,
                [RECONCILER_ERROR_FAILED] = LAUNCHER_ERROR_FAILED,
        };
        const char *name = (size_t) e < ELEMENTSOF(names) && names[e] ? names[e] : LAUNCHER_ERROR_FAILED;
        return sd_bus_reply_method_errorf(msg, name, "%s", strempty(message));
}

/* A call waiting for an operation: answered when it ends, or at shutdown.
 * hist records an operator's operation in the history. */
typedef struct PendingOp {
        Manager *m;
        sd_bus_message *msg;
        VmOp *hist;
} PendingOp;

static PendingOp *pending_op_new(Manager *m, sd_bus_message *msg, const Vm *vm, const char *action) {
        PendingOp *op = g_new0(PendingOp, 1);
        op->m = m;
        op->msg = sd_bus_message_ref(msg);
        if (action)
                op->hist = bus_history_op_new(m, msg, vm, action);
        if (!m->pending_ops)
                m->pending_ops = g_hash_table_new(g_direct_hash, g_direct_equal);
        g_hash_table_add(m->pending_ops, op);
        return op;
}

static void pending_op_free(PendingOp *op) {
        g_hash_table_remove(op->m->pending_ops, op);
        bus_history_op_free(op->hist);
        sd_bus_message_unref(op->msg);
        g_free(op);
}

static void on_operation_done(Reconciler *r, ReconcilerError error, const char *message, void *userdata) {
        PendingOp *op = userdata;
        if (op->hist)
                bus_history_op_done(g_steal_pointer(&op->hist), error == RECONCILER_OK, message);
        int q = error == RECONCILER_OK ? sd_bus_reply_method_return(op->msg, NULL) : reply_error(op->msg, error, message);
        if (q < 0)
                log_debug_errno(q, "Cannot reply to %s (caller gone?): %m", sd_bus_message_get_member(op->msg));
        pending_op_free(op);
}

/* Busy names what runs and who asked for it (dbus-api.md, "Busy"). */
static int error_busy(PendingOp *op, const Vm *vm, sd_bus_error *error) {
        const char *action = op->hist ? bus_history_op_action(op->hist) : sd_bus_message_get_member(op->msg);
        g_autofree char *running = bus_history_op_describe(op->m->history, vm, op->hist);
        if (!running)
                return sd_bus_error_setf(error, LAUNCHER_ERROR_BUSY,
                                         "Cannot %s VM %s: another operation on it is running.", action, vm->name);
        return sd_bus_error_setf(error, LAUNCHER_ERROR_BUSY, "Cannot %s VM %s: %s is still in progress.", action,
                                 vm->name, running);
}

static int operation_started(PendingOp *op, int q, const Vm *vm, sd_bus_error *error) {
        if (q >= 0)
                return 1; /* op answers the call */
        if (q == -EBUSY)
                q = error_busy(op, vm, error);
        else if (q == -ENOENT)
                q = sd_bus_error_setf(error, LAUNCHER_ERROR_NOT_FOUND, "VM %s does not exist at the VMM.", vm->name);
        pending_op_free(op);
        return q;
}

void bus_vm_shutdown(Manager *m) {
        /* Log streams end: their readers see EOF. */
        bus_logs_shutdown(m);
        /* The reconciler drops its waiters when freed: answer every caller
         * still waiting (Update, Start, Stop, Restart) and free them. */
        if (!m->pending_ops)
                return;
        GHashTableIter it;
        gpointer key;
        g_hash_table_iter_init(&it, m->pending_ops);
        while (g_hash_table_iter_next(&it, &key, NULL)) {
                PendingOp *op = key;
                int q = sd_bus_reply_method_errorf(op->msg, SD_BUS_ERROR_NO_REPLY,
                                                   "platform-launcherd is stopping; %s did not finish.",
                                                   strempty(sd_bus_message_get_member(op->msg)));
                if (q < 0)
                        log_debug_errno(q, "Cannot answer %s at shutdown: %m", sd_bus_message_get_member(op->msg));
                g_hash_table_iter_remove(&it);
                bus_history_op_free(op->hist);
                sd_bus_message_unref(op->msg);
                g_free(op);
        }
        g_hash_table_destroy(m->pending_ops);
        m->pending_ops = NULL;
}

/* Common head of every gated method: the VM, then polkit. > 0: go on. */
static int vm_authorize(sd_bus_message *msg, Manager *m, const char *action, Vm **ret, sd_bus_error *error) {
        Vm *vm = vm_by_path(m, sd_bus_message_get_path(msg));
        if (!vm)
                return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No such VM.");
        const char *details[] = { "vm_name", vm->name, NULL };
        int q = polkit_check(msg, action, details, m->polkit, error);
        if (q <= 0)
                return q < 0 ? q : 0;
        *ret = vm;
        return 1;
}

static int read_update_options(sd_bus_message *msg, bool *force, sd_bus_error *error) {
        int q = sd_bus_message_enter_container(msg, 'a', "{sv}");
        while (q >= 0 && (q = sd_bus_message_enter_container(msg, 'e', "sv")) > 0) {
                const char *key, *contents;
                q = sd_bus_message_read(msg, "s", &key);
                if (q < 0)
                        return q;
                if (!streq(key, "force"))
                        return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Unknown option '%.64s'.", key);
                q = sd_bus_message_peek_type(msg, NULL, &contents);
                if (q < 0)
                        return q;
                if (!streq(contents, "b"))
                        return sd_bus_error_set(error, SD_BUS_ERROR_INVALID_ARGS, "Option 'force' must be of type 'b'.");
                int b;
                q = sd_bus_message_read(msg, "v", "b", &b);
                if (q < 0)
                        return q;
                *force = b;
                q = sd_bus_message_exit_container(msg);
        }
        return q < 0 ? q : sd_bus_message_exit_container(msg);
}

static int method_update(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        bool force = false;
        Vm *vm;
        int q = read_update_options(msg, &force, error);
        if (q < 0)
                return q;
        q = vm_authorize(msg, m, ACTION_MANAGE_VM, &vm, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        audit_log(msg, "asked to update VM", vm->name);
        PendingOp *op = pending_op_new(m, msg, vm, "update");
        return operation_started(op, reconciler_update(m->reconciler, vm, force, on_operation_done, op), vm, error);
}

typedef int (*operator_fn)(Reconciler *r, Vm *vm, reconciler_done_cb done, void *userdata);

static int operator_method(sd_bus_message *msg, Manager *m, operator_fn fn, const char *action, sd_bus_error *error) {
        Vm *vm;
        int q = vm_authorize(msg, m, ACTION_MANAGE_VM, &vm, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        g_autofree char *what = g_strconcat("asked to ", action, " VM", NULL);
        audit_log(msg, what, vm->name);
        PendingOp *op = pending_op_new(m, msg, vm, action);
        return operation_started(op, fn(m->reconciler, vm, on_operation_done, op), vm, error);
}

static int method_start(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return operator_method(msg, userdata, reconciler_start_vm, "start", error);
}

static int method_stop(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return operator_method(msg, userdata, reconciler_stop_vm, "stop", error);
}

static int method_restart(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        return operator_method(msg, userdata, reconciler_restart_vm, "restart", error);
}

static int method_plan(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        Vm *vm = vm_by_path(m, sd_bus_message_get_path(msg));
        if (!vm)
                return sd_bus_error_setf(error, SD_BUS_ERROR_UNKNOWN_OBJECT, "No such VM.");

        g_autofree char *action = NULL;
        g_auto(GStrv) changes = NULL;
        int q = reconciler_plan(m->reconciler, vm, &action, &changes);
        if (q < 0)
                return q;

        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        q = sd_bus_message_new_method_return(msg, &reply);
        if (q >= 0)
                q = sd_bus_message_append(reply, "s", action);
        if (q >= 0)
                q = sd_bus_message_open_container(reply, 'a', "(sss)");
        for (char **c = changes; q >= 0 && c && c[0] && c[1] && c[2]; c += 3)
                q = sd_bus_message_append(reply, "(sss)", c[0], c[1], c[2]);
        if (q >= 0)
                q = sd_bus_message_close_container(reply);
        if (q < 0)
                return q;
        return sd_bus_send(NULL, reply, NULL);
}

/* GetLogs and FollowLogs take (s channel, u lines): > 0 when valid. */
static int read_logs_args(sd_bus_message *msg, uint32_t min_lines, const char **channel, uint32_t *lines,
                          sd_bus_error *error) {
        int q = sd_bus_message_read(msg, "su", channel, lines);
        if (q < 0)
                return q;
        if (!streq(*channel, "serial") && !streq(*channel, "stdout") && !streq(*channel, "stderr"))
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Invalid channel '%.32s': serial, stdout or stderr.", *channel);
        if (*lines < min_lines || *lines > 10000)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS, "Lines must be between %u and 10000.",
                                         min_lines);
        return 1;
}

/* The caller's uid, for the per-user limits of GetLogs and FollowLogs. */
static int caller_uid(sd_bus_message *msg, uid_t *ret, sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        int q = sd_bus_query_sender_creds(msg, SD_BUS_CREDS_EUID | SD_BUS_CREDS_AUGMENT, &creds);
        if (q >= 0)
                q = sd_bus_creds_get_euid(creds, ret);
        if (q < 0)
                return sd_bus_error_set(error, SD_BUS_ERROR_ACCESS_DENIED, "Cannot tell who is calling.");
        return 1;
}

static int method_get_logs(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *channel;
        uint32_t lines;
        uid_t uid;
        Vm *vm;

        int q = read_logs_args(msg, 1, &channel, &lines, error);
        if (q <= 0)
                return q;
        q = vm_authorize(msg, m, ACTION_READ_LOGS, &vm, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        q = caller_uid(msg, &uid, error);
        if (q < 0)
                return q;
        return bus_logs_get(m, vm, msg, uid, channel, lines, error);
}

static int method_follow_logs(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = userdata;
        const char *channel;
        uint32_t lines;
        uid_t uid;
        Vm *vm;

        int q = read_logs_args(msg, 0, &channel, &lines, error);
        if (q <= 0)
                return q;
        q = vm_authorize(msg, m, ACTION_READ_LOGS, &vm, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        q = caller_uid(msg, &uid, error);
        if (q < 0)
                return q;

        int fd = -1;
        q = bus_logs_follow(m, vm, uid, channel, lines, &fd, error);
        if (q < 0 || fd < 0)
                return q;
        q = sd_bus_reply_method_return(msg, "h", fd); /* sd-bus sends a copy */
        close(fd);
        return q < 0 ? q : 1;
}

static const sd_bus_vtable vm_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_CONST),
        SD_BUS_PROPERTY("Id", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("State", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("StateReason", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("VmmStatus", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("AppId", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ComposeHash", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("TargetComposeHash", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Image", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("ImageVersion", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Vcpu", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("MemoryMiB", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("DiskGiB", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastCheckTimestamp", "t", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastSuccessfulCheckTimestamp", "t", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastUpdateTimestamp", "t", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("UpdateCount", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("RestartCount", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("LastError", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Operation", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("Progress", "u", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("AllowedEnv", "as", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_PROPERTY("KmsSigner", "s", property_get, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        SD_BUS_METHOD_WITH_ARGS("Update", SD_BUS_ARGS("a{sv}", options), SD_BUS_NO_RESULT, method_update,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Plan", SD_BUS_NO_ARGS, SD_BUS_RESULT("s", action, "a(sss)", changes), method_plan,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Start", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_start, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Stop", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_stop, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("Restart", SD_BUS_NO_ARGS, SD_BUS_NO_RESULT, method_restart,
                                SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_METHOD_WITH_ARGS("GetLogs", SD_BUS_ARGS("s", channel, "u", lines), SD_BUS_RESULT("s", text),
                                method_get_logs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("VmUpdated", SD_BUS_ARGS("s", old_compose_hash, "s", new_compose_hash, "s", vm_id), 0),
        SD_BUS_SIGNAL_WITH_ARGS("UpdateFailed", SD_BUS_ARGS("s", target_compose_hash, "s", reason), 0),
        SD_BUS_METHOD_WITH_ARGS("GetHistory", SD_BUS_ARGS("u", limit), SD_BUS_RESULT("a(tssssssst)", entries),
                                bus_history_method_get, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("HistoryAdded",
                                SD_BUS_ARGS("t", timestamp, "s", kind, "s", action, "s", trigger, "s", from, "s", to,
                                            "s", result, "s", reason, "t", duration),
                                0),
        SD_BUS_METHOD_WITH_ARGS("FollowLogs", SD_BUS_ARGS("s", channel, "u", lines), SD_BUS_RESULT("h", fd),
                                method_follow_logs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

/* ---- events from the core ---- */

static void on_vm_added(Reconciler *r, Vm *vm, void *userdata) {
        Manager *m = userdata;
        _cleanup_free_ char *p = vm_path(vm);
        if (p && m->bus)
                (void) sd_bus_emit_interfaces_added(m->bus, p, VM_INTERFACE, NULL);
}

static void on_vm_removed(Reconciler *r, Vm *vm, void *userdata) {
        Manager *m = userdata;
        bus_logs_vm_removed(m, vm->name);
        _cleanup_free_ char *p = vm_path(vm);
        if (p && m->bus)
                (void) sd_bus_emit_interfaces_removed(m->bus, p, VM_INTERFACE, NULL);
}

static void on_vm_changed(Reconciler *r, Vm *vm, uint32_t fields, void *userdata) {
        Manager *m = userdata;
        const char *names[ELEMENTSOF(vm_props) + 3];
        size_t n = 0;
        if (fields & VM_FIELD_STATE)
                names[n++] = "State";
        if (fields & VM_FIELD_ALLOWED_ENV)
                names[n++] = "AllowedEnv";
        for (size_t i = 0; i < ELEMENTSOF(vm_props); i++)
                if (fields & vm_props[i].field)
                        names[n++] = vm_props[i].name;
        names[n] = NULL;
        if (fields & VM_FIELD_ID)
                bus_logs_vm_id_changed(m, vm);
        bus_history_vm_changed(m->history, vm, fields);
        _cleanup_free_ char *p = vm_path(vm);
        if (n > 0 && p) {
                int q = sd_bus_emit_properties_changed_strv(m->bus, p, VM_INTERFACE, (char **) names);
                if (q < 0)
                        log_warning_errno(q, "Cannot emit PropertiesChanged for %s: %m", vm->name);
        }
}

static void on_vm_updated(Reconciler *r, Vm *vm, const char *old_hash, const char *new_hash, const char *id,
                          void *userdata) {
        Manager *m = userdata;
        _cleanup_free_ char *p = vm_path(vm);
        if (p)
                (void) sd_bus_emit_signal(m->bus, p, VM_INTERFACE, "VmUpdated", "sss", old_hash, new_hash, id);
        bus_history_vm_updated(m->history, vm, old_hash, new_hash);
}

static void on_update_failed(Reconciler *r, Vm *vm, const char *target, const char *reason, void *userdata) {
        Manager *m = userdata;
        _cleanup_free_ char *p = vm_path(vm);
        if (p)
                (void) sd_bus_emit_signal(m->bus, p, VM_INTERFACE, "UpdateFailed", "ss", target, reason);
        bus_history_update_failed(m->history, vm, target, reason);
}

static void on_required_env_changed(Reconciler *r, char **required, void *userdata) {
        manager_set_required_env(userdata, required);
}

const ReconcilerEvents bus_vm_events = {
        .vm_added = on_vm_added,
        .vm_removed = on_vm_removed,
        .vm_changed = on_vm_changed,
        .vm_updated = on_vm_updated,
        .update_failed = on_update_failed,
        .required_env_changed = on_required_env_changed,
};

int bus_vm_register(Manager *m) {
        int q = sd_bus_add_fallback_vtable(m->bus, NULL, VM_PREFIX, VM_INTERFACE, vm_vtable, vm_object_find, m);
        if (q >= 0)
                q = sd_bus_add_node_enumerator(m->bus, NULL, VM_PREFIX, vm_node_enumerator, m);
        return q;
}
