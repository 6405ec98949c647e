/* SPDX-License-Identifier: Apache-2.0 */
/* org.platform.Launcher1.Vm, one object per managed VM (machined's way): the
 * object-find callback returns the core's Vm, sd-bus serves its fields from
 * their offsets, and what changed is found by comparing the fields with what
 * was last sent, so a property is a struct field, a row below and an XML
 * element. Changes are sent once per object per loop iteration, and always
 * before a signal or a reply that follows from them. */
#include <errno.h>
#include <unistd.h>

#include "daemon/audit.h"
#include "daemon/bus-diff.h"
#include "daemon/bus-options.h"
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

static int vm_object_find(sd_bus *bus, const char *path, const char *interface, void *userdata, void **found,
                          sd_bus_error *error) {
        Vm *vm = vm_by_path(userdata, path);
        if (!vm)
                return 0;
        *found = vm;
        return 1;
}

static int vm_node_enumerator(sd_bus *bus, const char *path, void *userdata, char ***nodes, sd_bus_error *error) {
        Manager *m = userdata;
        Vm *const *vms = reconciler_vms(m->reconciler);
        size_t n = 0;
        while (vms[n])
                n++;
        char **l = calloc(n + 1, sizeof(char *)); /* sd-bus frees it with free() */
        if (!l)
                return -ENOMEM;
        n = 0;
        for (Vm *const *v = vms; *v; v++) {
                char *p = vm_path(*v);
                if (p)
                        l[n++] = p;
        }
        *nodes = l;
        return 0;
}

/* The handlers get the Vm; the Manager is what the vtable was registered with. */
static Manager *manager_of(sd_bus_message *msg) {
        return sd_bus_slot_get_userdata(sd_bus_get_current_slot(sd_bus_message_get_bus(msg)));
}

static int property_get_state(sd_bus *bus, const char *path, const char *interface, const char *property,
                              sd_bus_message *reply, void *userdata, sd_bus_error *error) {
        const VmState *state = userdata;
        return sd_bus_message_append(reply, "s", vm_state_to_string(*state));
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
        if (e == RECONCILER_ERROR_SHUTDOWN)
                return sd_bus_reply_method_errorf(msg, SD_BUS_ERROR_NO_REPLY,
                                                  "platform-launcherd is stopping; %s did not finish.",
                                                  strempty(sd_bus_message_get_member(msg)));
        const char *name = (size_t) e < ELEMENTSOF(names) && names[e] ? names[e] : LAUNCHER_ERROR_FAILED;
        return sd_bus_reply_method_errorf(msg, name, "%s", strempty(message));
}

/* A call the reconciler answers: told once when its operation ends, at
 * shutdown too. */
typedef struct Call {
        Manager *m;
        sd_bus_message *msg;
} Call;

static Call *call_new(Manager *m, sd_bus_message *msg) {
        Call *c = g_new0(Call, 1);
        *c = (Call) { m, sd_bus_message_ref(msg) };
        return c;
}

static void call_free(Call *c) {
        sd_bus_message_unref(c->msg);
        g_free(c);
}

static void on_operation_done(ReconcilerError error, const char *message, void *userdata) {
        Call *c = userdata;
        bus_vm_flush(c->m);
        int q = error == RECONCILER_OK ? sd_bus_reply_method_return(c->msg, NULL)
                                       : reply_error(c->msg, error, message);
        if (q < 0)
                log_debug_errno(q, "Cannot reply to %s (caller gone?): %m", sd_bus_message_get_member(c->msg));
        call_free(c);
}

/* Busy names what runs and who asked for it (dbus-api.md, "Busy"). */
static int error_busy(Call *c, const Vm *vm, sd_bus_error *error) {
        g_autofree char *action = g_ascii_strdown(strempty(sd_bus_message_get_member(c->msg)), -1);
        g_autofree char *running = reconciler_describe_pending(c->m->reconciler, vm);
        if (!running)
                return sd_bus_error_setf(error, LAUNCHER_ERROR_BUSY, "Cannot %s VM %s: another operation on it is running.",
                                         action, vm->name);
        return sd_bus_error_setf(error, LAUNCHER_ERROR_BUSY, "Cannot %s VM %s: %s is still in progress.", action,
                                 vm->name, running);
}

static int operation_started(Call *c, int q, const Vm *vm, sd_bus_error *error) {
        if (q >= 0)
                return 1; /* the reconciler answers the call */
        if (q == -EBUSY)
                q = error_busy(c, vm, error);
        else if (q == -ENOENT)
                q = sd_bus_error_setf(error, LAUNCHER_ERROR_NOT_FOUND, "VM %s does not exist at the VMM.", vm->name);
        call_free(c);
        return q;
}

void bus_vm_shutdown(Manager *m) {
        /* Log streams end: their readers see EOF. */
        bus_logs_shutdown(m);
        /* Every caller still waiting (Update, Start, Stop, Restart, RemoveVm) is answered. */
        if (m->reconciler)
                reconciler_shutdown(m->reconciler);
}

/* Common head of every gated method: polkit with the VM's name. > 0: go on. */
static int vm_authorize(sd_bus_message *msg, Manager *m, Vm *vm, const char *action, sd_bus_error *error) {
        const char *details[] = { "vm", vm->name, "vm_name", vm->name, NULL };
        return polkit_check(msg, action, details, m->polkit, error);
}

/* Who asked, for the history; the message is kept until the answer. */
static ReconcilerCaller caller_of(Manager *m, sd_bus_message *msg, char *trigger) {
        return (ReconcilerCaller) {
                .trigger = trigger,
                .done = on_operation_done,
                .userdata = call_new(m, msg),
        };
}

static int method_update(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = manager_of(msg);
        Vm *vm = userdata;
        bool force = false;
        const BusOption options[] = { { "force", BUS_OPTION_BOOL, &force }, {} };
        int q = bus_read_options(msg, options, error);
        if (q < 0)
                return q;
        q = vm_authorize(msg, m, vm, ACTION_MANAGE_VM, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        audit_log(msg, "asked to update VM", vm->name);
        g_autofree char *trigger = audit_caller(msg);
        ReconcilerCaller c = caller_of(m, msg, trigger);
        return operation_started(c.userdata, reconciler_update(m->reconciler, vm, force, &c), vm, error);
}

typedef int (*operator_fn)(Reconciler *r, Vm *vm, const ReconcilerCaller *caller);

static int operator_method(sd_bus_message *msg, Vm *vm, operator_fn fn, const char *action, sd_bus_error *error) {
        Manager *m = manager_of(msg);
        int q = vm_authorize(msg, m, vm, ACTION_MANAGE_VM, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        g_autofree char *what = g_strconcat("asked to ", action, " VM", NULL);
        audit_log(msg, what, vm->name);
        g_autofree char *trigger = audit_caller(msg);
        ReconcilerCaller c = caller_of(m, msg, trigger);
        return operation_started(c.userdata, fn(m->reconciler, vm, &c), vm, error);
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
        Manager *m = manager_of(msg);
        g_autofree char *action = NULL;
        g_auto(GStrv) changes = NULL;
        int q = reconciler_plan(m->reconciler, userdata, &action, &changes);
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
        Manager *m = manager_of(msg);
        Vm *vm = userdata;
        const char *channel;
        uint32_t lines;
        uid_t uid;

        int q = read_logs_args(msg, 1, &channel, &lines, error);
        if (q <= 0)
                return q;
        q = vm_authorize(msg, m, vm, ACTION_READ_LOGS, error);
        if (q <= 0)
                return q < 0 ? q : 1;
        q = caller_uid(msg, &uid, error);
        if (q < 0)
                return q;
        return bus_logs_get(m, vm, msg, uid, channel, lines, error);
}

static int method_follow_logs(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = manager_of(msg);
        Vm *vm = userdata;
        const char *channel;
        uint32_t lines;

        int q = read_logs_args(msg, 0, &channel, &lines, error);
        if (q <= 0)
                return q;
        q = vm_authorize(msg, m, vm, ACTION_READ_LOGS, error);
        if (q <= 0)
                return q < 0 ? q : 1;

        uid_t uid;
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

static int method_get_history(sd_bus_message *msg, void *userdata, sd_bus_error *error) {
        Manager *m = manager_of(msg);
        Vm *vm = userdata;
        uint32_t limit;
        int q = sd_bus_message_read(msg, "u", &limit);
        if (q < 0)
                return q;
        return bus_history_reply(msg, m->history, HISTORY_KIND_VM, vm->name, limit);
}

#define VM_PROPERTY(name, sig, member) \
        SD_BUS_PROPERTY(name, sig, NULL, offsetof(Vm, member), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)
#define VM_STRV_PROPERTY(name, member) \
        SD_BUS_PROPERTY(name, "as", bus_property_get_strv, offsetof(Vm, member), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)
#define VM_DDD_PROPERTY(name, member) \
        SD_BUS_PROPERTY(name, "(ddd)", bus_property_get_ddd, offsetof(Vm, member), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE)

static const sd_bus_vtable vm_vtable[] = {
        SD_BUS_VTABLE_START(0),
        SD_BUS_PROPERTY("Name", "s", NULL, offsetof(Vm, name), SD_BUS_VTABLE_PROPERTY_CONST),
        VM_PROPERTY("Id", "s", id),
        SD_BUS_PROPERTY("State", "s", property_get_state, offsetof(Vm, state), SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
        VM_PROPERTY("StateReason", "s", state_reason),
        VM_PROPERTY("VmmStatus", "s", vmm_status),
        VM_PROPERTY("AppId", "s", app_id),
        VM_PROPERTY("ComposeHash", "s", compose_hash),
        VM_PROPERTY("TargetComposeHash", "s", target_compose_hash),
        VM_PROPERTY("Image", "s", image),
        VM_PROPERTY("ImageVersion", "s", image_version),
        VM_PROPERTY("Vcpu", "u", vcpu),
        VM_PROPERTY("MemoryMiB", "u", memory_mib),
        VM_PROPERTY("DiskGiB", "u", disk_gib),
        VM_PROPERTY("LastCheckTimestamp", "t", last_check_usec),
        VM_PROPERTY("LastSuccessfulCheckTimestamp", "t", last_successful_check_usec),
        VM_PROPERTY("LastUpdateTimestamp", "t", last_update_usec),
        VM_PROPERTY("UpdateCount", "u", update_count),
        VM_PROPERTY("RestartCount", "u", restart_count),
        VM_PROPERTY("LastError", "s", last_error),
        VM_PROPERTY("Operation", "s", operation),
        VM_PROPERTY("Progress", "u", progress),
        VM_STRV_PROPERTY("AllowedEnv", allowed_env),
        VM_PROPERTY("KmsSigner", "s", kms_signer),
        VM_STRV_PROPERTY("RequiredEnv", required_env),
        VM_STRV_PROPERTY("MissingEnv", missing_env),
        VM_PROPERTY("ResourcesTimestamp", "t", resources_timestamp),
        VM_PROPERTY("GuestUptimeUSec", "t", guest_uptime_usec),
        VM_DDD_PROPERTY("GuestLoadAverage", guest_load_average),
        VM_PROPERTY("GuestMemoryTotalBytes", "t", guest_memory_total_bytes),
        VM_PROPERTY("GuestMemoryAvailableBytes", "t", guest_memory_available_bytes),
        VM_PROPERTY("GuestDiskTotalBytes", "t", guest_disk_total_bytes),
        VM_PROPERTY("GuestDiskFreeBytes", "t", guest_disk_free_bytes),
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
                                method_get_history, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_SIGNAL_WITH_ARGS("HistoryAdded",
                                SD_BUS_ARGS("t", timestamp, "s", kind, "s", action, "s", trigger, "s", from, "s", to,
                                            "s", result, "s", reason, "t", duration),
                                0),
        SD_BUS_METHOD_WITH_ARGS("FollowLogs", SD_BUS_ARGS("s", channel, "u", lines), SD_BUS_RESULT("h", fd),
                                method_follow_logs, SD_BUS_VTABLE_UNPRIVILEGED),
        SD_BUS_VTABLE_END,
};

/* ---- what changed: the fields against what was last sent ---- */

typedef struct Sent {
        BusSent *copy;
        bool dirty;
} Sent;

static Sent *sent_new(const Vm *vm) {
        Sent *s = g_new0(Sent, 1);
        s->copy = bus_sent_new(vm_vtable, vm, sizeof(Vm));
        return s;
}

static void sent_free(Sent *s) {
        bus_sent_free(s->copy);
        g_free(s);
}

static void flush_one(Manager *m, Vm *vm, Sent *s) {
        const char *names[64];
        s->dirty = false;
        size_t n = bus_sent_take(s->copy, vm, names, ELEMENTSOF(names));
        if (n == 0)
                return;
        for (size_t i = 0; i < n; i++)
                if (streq(names[i], "Id"))
                        bus_logs_vm_id_changed(m, vm);
        _cleanup_free_ char *p = vm_path(vm);
        int q = p ? sd_bus_emit_properties_changed_strv(m->bus, p, VM_INTERFACE, (char **) names) : -ENOMEM;
        if (q < 0)
                log_warning_errno(q, "Cannot emit PropertiesChanged for %s: %m", vm->name);
}

void bus_vm_flush(Manager *m) {
        if (!m || !m->vms_sent)
                return;
        GHashTableIter it;
        gpointer vm, s;
        g_hash_table_iter_init(&it, m->vms_sent);
        while (g_hash_table_iter_next(&it, &vm, &s))
                if (((Sent *) s)->dirty)
                        flush_one(m, vm, s);
}

static int on_flush(sd_event_source *src, void *userdata) {
        bus_vm_flush(userdata);
        return 0;
}

/* ---- events from the core ---- */

static void on_vm_added(Vm *vm, void *userdata) {
        Manager *m = userdata;
        g_hash_table_replace(m->vms_sent, vm, sent_new(vm));
        _cleanup_free_ char *p = vm_path(vm);
        if (p && m->bus)
                (void) sd_bus_emit_interfaces_added(m->bus, p, VM_INTERFACE, NULL);
        if (m->bus)
                bus_config_vms_changed(m);
}

static void on_vm_removed(Vm *vm, void *userdata) {
        Manager *m = userdata;
        bus_vm_flush(m);
        g_hash_table_remove(m->vms_sent, vm);
        bus_logs_vm_removed(m, vm->name);
        _cleanup_free_ char *p = vm_path(vm);
        if (p && m->bus)
                (void) sd_bus_emit_interfaces_removed(m->bus, p, VM_INTERFACE, NULL);
        if (m->bus)
                bus_config_vms_changed(m);
}

static void on_vm_changed(Vm *vm, void *userdata) {
        Manager *m = userdata;
        Sent *s = g_hash_table_lookup(m->vms_sent, vm);
        if (!s)
                return;
        s->dirty = true;
        (void) sd_event_source_set_enabled(m->vms_flush, SD_EVENT_ONESHOT);
}

static void on_vm_updated(Vm *vm, const char *old_hash, const char *new_hash, const char *id,
                          void *userdata) {
        Manager *m = userdata;
        bus_vm_flush(m);
        _cleanup_free_ char *p = vm_path(vm);
        if (p)
                (void) sd_bus_emit_signal(m->bus, p, VM_INTERFACE, "VmUpdated", "sss", old_hash, new_hash, id);
}

static void on_update_failed(Vm *vm, const char *target, const char *reason, void *userdata) {
        Manager *m = userdata;
        bus_vm_flush(m);
        _cleanup_free_ char *p = vm_path(vm);
        if (p)
                (void) sd_bus_emit_signal(m->bus, p, VM_INTERFACE, "UpdateFailed", "ss", target, reason);
}

static void on_required_env_changed(void *userdata) {
        Manager *m = userdata;
        if (!m->reconciler)
                return; /* reconciler_start() tells again */
        g_auto(GStrv) required = reconciler_required_env(m->reconciler);
        manager_set_required_env(m, required);
}

static void on_host_changed(void *userdata) {
        bus_host_changed(userdata);
}

const ReconcilerEvents bus_vm_events = {
        .vm_added = on_vm_added,
        .vm_removed = on_vm_removed,
        .vm_changed = on_vm_changed,
        .vm_updated = on_vm_updated,
        .update_failed = on_update_failed,
        .required_env_changed = on_required_env_changed,
        .host_changed = on_host_changed,
};

int bus_vm_register(Manager *m) {
        m->vms_sent = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, (GDestroyNotify) sent_free);
        int q = sd_event_add_defer(m->event, &m->vms_flush, on_flush, m);
        if (q >= 0)
                q = sd_event_source_set_enabled(m->vms_flush, SD_EVENT_OFF);
        if (q >= 0)
                q = sd_bus_add_fallback_vtable(m->bus, NULL, VM_PREFIX, VM_INTERFACE, vm_vtable, vm_object_find, m);
        if (q >= 0)
                q = sd_bus_add_node_enumerator(m->bus, NULL, VM_PREFIX, vm_node_enumerator, m);
        return q;
}

void bus_vm_free(Manager *m) {
        m->vms_flush = sd_event_source_disable_unref(m->vms_flush);
        g_clear_pointer(&m->vms_sent, g_hash_table_unref);
}
