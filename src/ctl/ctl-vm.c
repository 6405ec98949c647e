/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "shared/macro.h"
#include "shared/term-escape.h"

void vm_info_list_free(VmInfo *list) {
        for (VmInfo *v = list; v && v->path; v++) {
                g_free(v->path);
                g_free(v->name);
                json_object_unref(v->props);
        }
        g_free(list);
}

static gint vm_info_compare(gconstpointer a, gconstpointer b) {
        return strcmp(((const VmInfo *) a)->name, ((const VmInfo *) b)->name);
}

static char *vm_name_of(const char *path, JsonObject *props) {
        const char *name = ctl_json_str(props, "Name");
        if (!isempty(name))
                return g_strdup(name);
        char *label = NULL;
        if (sd_bus_path_decode(path, LAUNCHER_VM_PATH_PREFIX, &label) > 0) {
                g_autofree char *copy = g_strdup(label);
                free(label);
                return TAKE_PTR(copy);
        }
        return g_strdup(path);
}

/* One GetManagedObjects instead of a GetAll per VM: the paths are the
 * daemon's business (escaped labels), so they are never built here. */
int vm_info_list(sd_bus *bus, VmInfo **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(JsonNode) root = NULL;

        int r = sd_bus_call_method(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, "org.freedesktop.DBus.ObjectManager",
                                   "GetManagedObjects", &error, &reply, NULL);
        if (r < 0)
                return -ctl_bus_error("Failed to list the launcher's VMs", &error, r);
        r = ctl_json_read(reply, &root);
        if (r < 0 || !JSON_NODE_HOLDS_OBJECT(root)) {
                fprintf(stderr, "Failed to parse the launcher's list of VMs: %s\n", strerror(r < 0 ? -r : EBADMSG));
                return -EXIT_FAILURE;
        }

        GArray *a = g_array_new(TRUE, TRUE, sizeof(VmInfo));
        JsonObjectIter it;
        const char *path;
        JsonNode *ifaces;
        json_object_iter_init(&it, json_node_get_object(root));
        while (json_object_iter_next(&it, &path, &ifaces)) {
                JsonNode *props = JSON_NODE_HOLDS_OBJECT(ifaces)
                        ? json_object_get_member(json_node_get_object(ifaces), LAUNCHER_VM_INTERFACE) : NULL;
                if (!props || !JSON_NODE_HOLDS_OBJECT(props))
                        continue;
                VmInfo v = {
                        .path = g_strdup(path),
                        .props = json_object_ref(json_node_get_object(props)),
                };
                v.name = vm_name_of(path, v.props);
                g_array_append_val(a, v);
        }
        g_array_sort(a, vm_info_compare);
        *ret = (VmInfo *) (void *) g_array_free(a, FALSE);
        return 0;
}

static char *format_relative(uint64_t now, uint64_t t) {
        bool past = now >= t;
        uint64_t d = (past ? now - t : t - now) / USEC_PER_SEC;
        g_autofree char *span = NULL;
        if (d < 60)
                span = g_strdup_printf("%us", (unsigned) d);
        else if (d < 3600)
                span = g_strdup_printf("%umin", (unsigned) (d / 60));
        else if (d < 86400)
                span = g_strdup_printf("%uh %umin", (unsigned) (d / 3600), (unsigned) (d % 3600 / 60));
        else
                span = g_strdup_printf("%" PRIu64 "d %uh", d / 86400, (unsigned) (d % 86400 / 3600));
        return past ? g_strdup_printf("%s ago", span) : g_strdup_printf("in %s", span);
}

/* "Mon 2025-06-02 10:00:00 CEST; 3min ago", or "never" for 0. */
char *ctl_format_timestamp(uint64_t usec) {
        if (usec == 0)
                return g_strdup("never");
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;
        char buf[64];
        if (!localtime_r(&sec, &tm) || strftime(buf, sizeof buf, "%a %Y-%m-%d %H:%M:%S %Z", &tm) == 0)
                return g_strdup_printf("@%" PRIu64, usec);
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t now = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        g_autofree char *rel = format_relative(now, usec);
        return g_strdup_printf("%s; %s", buf, rel);
}

static const char *or_none(const char *s) {
        return isempty(s) ? "(none)" : s;
}

static void print_field(const char *label, const char *value) {
        printf("%16s: %s\n", label, value);
}

static void print_state(JsonObject *p) {
        const char *state = ctl_json_str(p, "State"), *reason = ctl_json_str(p, "StateReason");
        const char *on = ctl_color(ctl_state_color(state)), *off = ctl_color(CTL_COLOR_NORMAL);
        g_autofree char *s = isempty(reason) ? g_strdup_printf("%s%s%s", on, or_none(state), off)
                                             : g_strdup_printf("%s%s%s (%s)", on, state, off, reason);
        print_field("State", s);
}

static void print_timestamps(JsonObject *p) {
        g_autofree char *check = ctl_format_timestamp(ctl_json_uint(p, "LastCheckTimestamp"));
        g_autofree char *update = ctl_format_timestamp(ctl_json_uint(p, "LastUpdateTimestamp"));
        print_field("Last check", check);
        print_field("Last update", update);
}

static char *format_image(JsonObject *p) {
        const char *image = ctl_json_str(p, "Image"), *version = ctl_json_str(p, "ImageVersion");
        if (isempty(version) || streq(image, version))
                return g_strdup(or_none(image));
        return g_strdup_printf("%s (%s)", or_none(image), version);
}

void vm_info_print_problems(const VmInfo *vm) {
        const char *state = ctl_json_str(vm->props, "State");
        const char *reason = ctl_json_str(vm->props, "StateReason");
        const char *last_error = ctl_json_str(vm->props, "LastError");
        const char *on = ctl_color(CTL_COLOR_RED), *off = ctl_color(CTL_COLOR_NORMAL);
        if (streq(state, "blocked") || streq(state, "failed"))
                printf("         %sProblem:%s VM %s %s: %s\n", on, off, vm->name, state, or_none(reason));
        else if (streq(state, "stopped"))
                printf("         %sProblem:%s VM %s stopped; it stays stopped until platformctl vm start\n", on, off,
                       vm->name);
        if (!isempty(last_error) && !streq(last_error, reason))
                printf("         %sProblem:%s last error: %s\n", on, off, last_error);
}

/* The part of "platformctl status" about one VM. */
void vm_info_print_summary(const VmInfo *vm) {
        JsonObject *p = vm->props;
        const char *hash = ctl_json_str(p, "ComposeHash"), *target = ctl_json_str(p, "TargetComposeHash");
        g_autofree char *image = format_image(p);
        g_autofree char *hashes = isempty(target) || streq(hash, target)
                ? g_strdup(or_none(hash)) : g_strdup_printf("%s (target %s)", or_none(hash), target);

        print_field("VM", vm->name);
        print_state(p);
        print_field("Id", or_none(ctl_json_str(p, "Id")));
        print_field("Compose hash", hashes);
        print_field("Image", image);
        print_timestamps(p);
}

static void vm_info_print(const VmInfo *vm) {
        JsonObject *p = vm->props;
        g_autofree char *image = format_image(p);
        g_autofree char *res = g_strdup_printf("%" PRIu64 " vCPU, %" PRIu64 " MiB memory, %" PRIu64 " GiB disk",
                                               ctl_json_uint(p, "Vcpu"), ctl_json_uint(p, "MemoryMiB"),
                                               ctl_json_uint(p, "DiskGiB"));
        g_autofree char *counts = g_strdup_printf("%" PRIu64 " updates, %" PRIu64 " restarts",
                                                  ctl_json_uint(p, "UpdateCount"), ctl_json_uint(p, "RestartCount"));

        vm_info_print_problems(vm);
        print_field("Name", vm->name);
        print_state(p);
        print_field("VMM status", or_none(ctl_json_str(p, "VmmStatus")));
        print_field("Id", or_none(ctl_json_str(p, "Id")));
        print_field("App id", or_none(ctl_json_str(p, "AppId")));
        print_field("Compose hash", or_none(ctl_json_str(p, "ComposeHash")));
        print_field("Target hash", or_none(ctl_json_str(p, "TargetComposeHash")));
        print_field("Image", image);
        print_field("Resources", res);
        print_timestamps(p);
        print_field("Count", counts);
        print_field("Last error", or_none(ctl_json_str(p, "LastError")));
        print_field("Object", vm->path);
}

typedef struct VmArgs {
        const char *name;
        bool force;
        unsigned lines;
        const char *channel;
        bool follow;
} VmArgs;

static int vm_pick(const VmInfo *list, const char *name, const VmInfo **ret) {
        size_t n = 0;
        for (const VmInfo *v = list; v->path; v++, n++)
                if (name && streq(v->name, name)) {
                        *ret = v;
                        return 0;
                }
        if (name) {
                fprintf(stderr, "No VM named '%s' is managed by the launcher.\n", name);
                return EX_NOINPUT;
        }
        if (n == 0) {
                fprintf(stderr, "The launcher manages no VM.\n");
                return EX_NOINPUT;
        }
        if (n > 1) {
                fprintf(stderr, "The launcher manages %zu VMs: name one (see platformctl status).\n", n);
                return EX_USAGE;
        }
        *ret = list;
        return 0;
}

static int vm_status(sd_bus *bus, const VmInfo *vm, const VmArgs *a) {
        if (arg.json) {
                g_autoptr(JsonNode) n = json_node_init_object(json_node_alloc(), vm->props);
                ctl_json_print(n, true);
        } else
                vm_info_print(vm);
        return 0;
}

static void print_plan(const char *action, JsonArray *changes) {
        size_t w[2] = { strlen("FIELD"), strlen("CURRENT") };
        guint n = json_array_get_length(changes), rows = 0;
        const char *reason = NULL;
        for (guint k = 0; k < n; k++) {
                JsonArray *c = json_array_get_array_element(changes, k);
                if (streq(json_array_get_string_element(c, 0), "reason")) {
                        reason = json_array_get_string_element(c, 2); /* "adopt": why, not a change */
                        continue;
                }
                rows++;
                for (guint col = 0; col < 2; col++)
                        w[col] = MAX(w[col], strlen(json_array_get_string_element(c, col)));
        }
        printf("Action: %s\n", action);
        if (reason)
                printf("Reason: %s\n", reason);
        if (rows == 0) {
                if (!arg.quiet)
                        printf("No changes.\n");
                return;
        }
        printf("%-*s  %-*s  %s\n", (int) w[0], "FIELD", (int) w[1], "CURRENT", "TARGET");
        for (guint k = 0; k < n; k++) {
                JsonArray *c = json_array_get_array_element(changes, k);
                if (streq(json_array_get_string_element(c, 0), "reason"))
                        continue;
                printf("%-*s  %-*s  %s\n", (int) w[0], json_array_get_string_element(c, 0), (int) w[1],
                       json_array_get_string_element(c, 1), json_array_get_string_element(c, 2));
        }
}

static void print_plan_json(const char *action, JsonArray *changes) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
        json_builder_set_member_name(b, "Action");
        json_builder_add_string_value(b, action);
        json_builder_set_member_name(b, "Changes");
        json_builder_begin_array(b);
        for (guint k = 0; k < json_array_get_length(changes); k++) {
                JsonArray *c = json_array_get_array_element(changes, k);
                static const char *const names[] = { "Field", "Current", "Target" };
                json_builder_begin_object(b);
                for (guint col = 0; col < 3; col++) {
                        json_builder_set_member_name(b, names[col]);
                        json_builder_add_string_value(b, json_array_get_string_element(c, col));
                }
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        json_builder_end_object(b);
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        ctl_json_print(root, true);
}

/* Vm.Plan: the action and the changes as an array of [field, current, target].
 * Returns 0, or the exit status after printing why. */
static int plan_get(sd_bus *bus, const VmInfo *vm, char **ret_action, JsonNode **ret_changes) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(JsonNode) changes = NULL;
        const char *action;

        int r = sd_bus_call_method(bus, LAUNCHER_BUS_NAME, vm->path, LAUNCHER_VM_INTERFACE, "Plan", &error, &reply,
                                   NULL);
        if (r < 0)
                return ctl_bus_error("Failed to plan", &error, r);
        r = sd_bus_message_read(reply, "s", &action);
        if (r >= 0 && (r = sd_bus_message_verify_type(reply, 'a', "(sss)")) == 0)
                r = -EBADMSG;
        if (r >= 0)
                r = ctl_json_read(reply, &changes);
        if (r < 0) {
                fprintf(stderr, "Failed to parse the plan: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        *ret_action = g_strdup(action);
        *ret_changes = g_steal_pointer(&changes);
        return 0;
}

static int vm_plan(sd_bus *bus, const VmInfo *vm, const VmArgs *a) {
        g_autofree char *action = NULL;
        g_autoptr(JsonNode) changes = NULL;
        int r = plan_get(bus, vm, &action, &changes);
        if (r)
                return r;
        if (arg.json)
                print_plan_json(action, json_node_get_array(changes));
        else
                print_plan(action, json_node_get_array(changes));
        return 0;
}

/* "compose_hash, env" from the plan's changes (not its "reason" and "data" notes). */
static char *changed_fields(JsonArray *changes) {
        GString *s = g_string_new(NULL);
        for (guint k = 0; k < json_array_get_length(changes); k++) {
                JsonArray *c = json_array_get_array_element(changes, k);
                const char *field = c && json_array_get_length(c) == 3 ? json_array_get_string_element(c, 0) : NULL;
                if (isempty(field) || streq(field, "reason") || streq(field, "data"))
                        continue;
                g_string_append_printf(s, "%s%s", s->len ? ", " : "", field);
        }
        return g_string_free(s, FALSE);
}

/* What vm update will do to a VM that exists, in the words of the plan; NULL
 * when it neither replaces nor restarts it. */
static char *update_consequence(sd_bus *bus, const VmInfo *vm, bool force) {
        g_autofree char *action = NULL, *why = NULL;
        g_autoptr(JsonNode) changes = NULL;
        if (isempty(ctl_json_str(vm->props, "Id")) || plan_get(bus, vm, &action, &changes) != 0)
                return NULL;
        g_autofree char *fields = changed_fields(json_node_get_array(changes));
        bool in_place = streq(action, "update-in-place");
        if (streq(action, "recreate") || in_place)
                why = isempty(fields) ? g_strdup("the spec differs")
                                      : g_strdup_printf("%s %s", fields, strchr(fields, ',') ? "differ" : "differs");
        else if (streq(action, "adopt"))
                why = g_strdup("it was not deployed by this launcher and is redeployed once");
        else if (force && (streq(action, "none") || streq(action, "start") || streq(action, "wait"))) {
                g_autofree char *strategy = NULL;
                (void) sd_bus_get_property_string(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH,
                                                  LAUNCHER_CONFIG_INTERFACE, "UpdateStrategy", NULL, &strategy);
                in_place = g_strcmp0(strategy, "in-place") == 0;
                why = g_strdup("nothing differs, --force");
        } else
                return NULL;
        g_autofree char *down = ctl_downtime_text(bus, in_place ? "update-in-place" : "recreate");
        if (in_place)
                return g_strdup_printf("This updates VM %s in place and restarts it (%s): %s.\n", vm->name, why,
                                       down);
        return g_strdup_printf("This replaces VM %s (recreate: %s): %s.\n", vm->name, why, down);
}

static int vm_operation(sd_bus *bus, const VmInfo *vm, const char *method, bool force, const char *verb,
                        const char *what) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(bus, &m, LAUNCHER_BUS_NAME, vm->path, LAUNCHER_VM_INTERFACE, method);
        if (r >= 0 && streq(method, "Update"))
                r = force ? sd_bus_message_append(m, "a{sv}", 1, "force", "b", 1) : sd_bus_message_append(m, "a{sv}", 0);
        if (r < 0) {
                fprintf(stderr, "%s: %s\n", what, strerror(-r));
                return EXIT_FAILURE;
        }
        g_autofree char *name = g_strdup_printf("%s %s", verb, vm->name);
        g_autofree char *msg = g_strdup_printf("%s %s", what, vm->name);
        return ctl_long_call(bus, m, vm->path, name, msg);
}

static int vm_update(sd_bus *bus, const VmInfo *vm, const VmArgs *a) {
        if (ctl_confirm_wanted()) {
                g_autofree char *what = update_consequence(bus, vm, a->force);
                if (what && ctl_confirm(what) != 0)
                        return EXIT_FAILURE;
        }
        return vm_operation(bus, vm, "Update", a->force, "update", "Failed to update");
}

static int vm_start(sd_bus *bus, const VmInfo *vm, const VmArgs *a) {
        return vm_operation(bus, vm, "Start", false, "start", "Failed to start");
}

static bool vm_is_down(const VmInfo *vm) {
        const char *state = ctl_json_str(vm->props, "State");
        return isempty(ctl_json_str(vm->props, "Id")) || streq(state, "stopped");
}

static int vm_stop(sd_bus *bus, const VmInfo *vm, const VmArgs *a) {
        if (ctl_confirm_wanted() && !vm_is_down(vm)) {
                g_autofree char *stop = ctl_format_usec_in(ctl_stop_timeout(bus), NULL);
                g_autofree char *what = g_strdup_printf(
                        "This stops VM %s (a graceful stop, up to %s). It stays stopped until platformctl vm start.\n",
                        vm->name, stop);
                if (ctl_confirm(what) != 0)
                        return EXIT_FAILURE;
        }
        return vm_operation(bus, vm, "Stop", false, "stop", "Failed to stop");
}

static int vm_restart(sd_bus *bus, const VmInfo *vm, const VmArgs *a) {
        if (ctl_confirm_wanted() && !isempty(ctl_json_str(vm->props, "Id"))) {
                g_autofree char *down = ctl_downtime_text(bus, "update-in-place");
                g_autofree char *what = g_strdup_printf("This restarts VM %s: %s.\n", vm->name, down);
                if (ctl_confirm(what) != 0)
                        return EXIT_FAILURE;
        }
        return vm_operation(bus, vm, "Restart", false, "restart", "Failed to restart");
}

/* On a terminal a VM's log may not drive it (escape sequences, a '\r' that
 * overwrites a line): control characters are shown escaped unless --all. A
 * pipe gets the bytes as they are. */
static bool escape_log(void) {
        return !arg.all && isatty(STDOUT_FILENO);
}

/* Writes a piece of the log as it may be shown; false when stdout is gone. */
static bool put_log(TermEscape *esc, const char *data, size_t n, bool last) {
        if (!esc) {
                if (n > 0 && fwrite(data, 1, n, stdout) != n)
                        return false;
                return fflush(stdout) == 0;
        }
        g_autoptr(GString) out = g_string_sized_new(n + 16);
        term_escape_feed(esc, data, n, out);
        if (last)
                term_escape_finish(esc, out);
        if (out->len > 0 && fwrite(out->str, 1, out->len, stdout) != out->len)
                return false;
        return fflush(stdout) == 0;
}

/* Copies the stream to stdout until EOF (the daemon ended it), or Ctrl-C or
 * SIGTERM (then quietly, like journalctl -f): 0 either way. */
static int copy_log_stream(int fd) {
        TermEscape esc_state = {}, *esc = escape_log() ? &esc_state : NULL;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGTERM);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                return -errno;
        int sfd = signalfd(-1, &mask, SFD_CLOEXEC);
        if (sfd < 0)
                return -errno;
        signal(SIGPIPE, SIG_IGN);

        char buf[16384];
        int r = 0;
        for (;;) {
                struct pollfd p[2] = { { .fd = fd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
                if (poll(p, 2, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        r = -errno;
                        break;
                }
                if (p[1].revents)
                        break; /* Ctrl-C */
                if (!p[0].revents)
                        continue;
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0 && (errno == EINTR || errno == EAGAIN))
                        continue;
                if (n < 0) {
                        r = -errno;
                        break;
                }
                if (n == 0) {
                        (void) put_log(esc, NULL, 0, true);
                        break; /* the daemon ended the stream */
                }
                if (!put_log(esc, buf, (size_t) n, false))
                        break; /* stdout closed (| head): done */
        }
        close(sfd);
        return r;
}

static int vm_logs_follow(sd_bus *bus, const VmInfo *vm, const VmArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int fd;

        if (arg.json) {
                fprintf(stderr, "--json is not available with --follow.\n");
                return EX_USAGE;
        }
        if (sd_bus_can_send(bus, SD_BUS_TYPE_UNIX_FD) <= 0) {
                fprintf(stderr, "Following logs needs file descriptor passing, which this connection "
                                "(-H) does not offer; use 'vm logs' without -f.\n");
                return EX_UNAVAILABLE;
        }
        ctl_polkit_agent_open(bus);
        int r = sd_bus_call_method(bus, LAUNCHER_BUS_NAME, vm->path, LAUNCHER_VM_INTERFACE, "FollowLogs", &error,
                                   &reply, "su", a->channel, a->lines);
        if (r < 0)
                return ctl_bus_error("Failed to follow the VM's logs", &error, r);
        r = sd_bus_message_read(reply, "h", &fd);
        if (r < 0) {
                fprintf(stderr, "Failed to read the log stream: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        ctl_polkit_agent_close();
        r = copy_log_stream(fd); /* fd belongs to reply */
        if (r < 0) {
                fprintf(stderr, "Failed to read the log stream: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        return 0;
}

static int vm_logs(sd_bus *bus, const VmInfo *vm, const VmArgs *a) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        const char *text;

        if (a->follow)
                return vm_logs_follow(bus, vm, a);
        ctl_polkit_agent_open(bus);
        int r = sd_bus_call_method(bus, LAUNCHER_BUS_NAME, vm->path, LAUNCHER_VM_INTERFACE, "GetLogs", &error, &reply,
                                   "su", a->channel, a->lines);
        if (r < 0)
                return ctl_bus_error("Failed to get the VM's logs", &error, r);
        r = sd_bus_message_read(reply, "s", &text);
        if (r < 0) {
                fprintf(stderr, "Failed to parse the VM's logs: %s\n", strerror(-r));
                return EXIT_FAILURE;
        }
        if (arg.json) {
                g_autoptr(JsonBuilder) b = json_builder_new();
                json_builder_begin_object(b);
                json_builder_set_member_name(b, "Channel");
                json_builder_add_string_value(b, a->channel);
                json_builder_set_member_name(b, "Text");
                json_builder_add_string_value(b, text);
                json_builder_end_object(b);
                g_autoptr(JsonNode) root = json_builder_get_root(b);
                ctl_json_print(root, true);
        } else {
                TermEscape esc = {};
                (void) put_log(escape_log() ? &esc : NULL, text, strlen(text), true);
        }
        if (!arg.json && !isempty(text) && text[strlen(text) - 1] != '\n')
                fputc('\n', stdout);
        return 0;
}

static int vm_history(sd_bus *bus, const VmInfo *vm, const VmArgs *a) {
        return ctl_vm_history(bus, vm->path, a->lines);
}

static const struct {
        const char *verb;
        int (*run)(sd_bus *bus, const VmInfo *vm, const VmArgs *a);
        const char *usage;
} vm_verbs[] = {
        { "status", vm_status, "status [NAME]" },
        { "plan", vm_plan, "plan [NAME]" },
        { "update", vm_update, "update [--force] [NAME]" },
        { "start", vm_start, "start [NAME]" },
        { "stop", vm_stop, "stop [NAME]" },
        { "restart", vm_restart, "restart [NAME]" },
        { "logs", vm_logs, "logs [-f] [-n N] [--channel serial|stdout|stderr] [NAME]" },
        { "history", vm_history, "history [-n N] [NAME]" },
};

static int parse_vm_args(int argc, char **argv, const char *usage, VmArgs *a) {
        if (argc > 2) {
                fprintf(stderr, "Usage: platformctl vm %s\n", usage);
                return EX_USAGE;
        }
        a->name = argc > 1 ? argv[1] : NULL;
        a->force = arg.force;
        if (arg.lines)
                a->lines = arg.lines;
        if (arg.channel)
                a->channel = arg.channel;
        a->follow = arg.follow;
        if (a->follow && !arg.lines)
                a->lines = 10; /* as journalctl -f */
        return 0;
}

/* ---- the set of VMs: list, add, remove ---- */

/* Config.Vms: (name, source) of every managed VM, the API's first. */
static int vms_get(sd_bus *bus, GPtrArray **ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        int r = sd_bus_get_property(bus, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH, LAUNCHER_CONFIG_INTERFACE, "Vms",
                                    &error, &reply, "a(ss)");
        if (r < 0)
                return -ctl_bus_error("Failed to list the VMs", &error, r);
        g_autoptr(GPtrArray) pairs = g_ptr_array_new_with_free_func(g_free);
        const char *name, *source;
        r = sd_bus_message_enter_container(reply, 'a', "(ss)");
        while (r >= 0 && (r = sd_bus_message_read(reply, "(ss)", &name, &source)) > 0) {
                g_ptr_array_add(pairs, g_strdup(name));
                g_ptr_array_add(pairs, g_strdup(source));
        }
        if (r < 0) {
                fprintf(stderr, "Failed to parse the list of VMs: %s\n", strerror(-r));
                return -EXIT_FAILURE;
        }
        *ret = g_steal_pointer(&pairs);
        return 0;
}

static const VmInfo *vm_info_find(const VmInfo *list, const char *name) {
        for (const VmInfo *v = list; v->path; v++)
                if (streq(v->name, name))
                        return v;
        return NULL;
}

static int vm_list(sd_bus *bus) {
        g_autoptr(GPtrArray) pairs = NULL;
        g_autoptr(VmInfo) list = NULL;
        int r = vms_get(bus, &pairs);
        if (r >= 0)
                r = vm_info_list(bus, &list);
        if (r < 0)
                return -r;
        if (arg.json) {
                g_autoptr(JsonBuilder) b = json_builder_new();
                json_builder_begin_array(b);
                for (guint i = 0; i + 1 < pairs->len; i += 2) {
                        const VmInfo *v = vm_info_find(list, pairs->pdata[i]);
                        json_builder_begin_object(b);
                        json_builder_set_member_name(b, "Name");
                        json_builder_add_string_value(b, pairs->pdata[i]);
                        json_builder_set_member_name(b, "Source");
                        json_builder_add_string_value(b, pairs->pdata[i + 1]);
                        json_builder_set_member_name(b, "State");
                        json_builder_add_string_value(b, v ? ctl_json_str(v->props, "State") : "");
                        json_builder_set_member_name(b, "Id");
                        json_builder_add_string_value(b, v ? ctl_json_str(v->props, "Id") : "");
                        json_builder_end_object(b);
                }
                json_builder_end_array(b);
                g_autoptr(JsonNode) root = json_builder_get_root(b);
                ctl_json_print(root, true);
                return 0;
        }
        int w = (int) strlen("NAME");
        for (guint i = 0; i + 1 < pairs->len; i += 2)
                w = MAX(w, (int) strlen(pairs->pdata[i]));
        printf("%-*s  %-9s %-9s %s\n", w, "NAME", "STATE", "VMM", "SOURCE");
        for (guint i = 0; i + 1 < pairs->len; i += 2) {
                const VmInfo *v = vm_info_find(list, pairs->pdata[i]);
                const char *state = v ? ctl_json_str(v->props, "State") : "";
                printf("%-*s  %s%-9s%s %-9s %s\n", w, (char *) pairs->pdata[i], ctl_color(ctl_state_color(state)),
                       or_none(state), ctl_color(CTL_COLOR_NORMAL),
                       or_none(v ? ctl_json_str(v->props, "VmmStatus") : ""), (char *) pairs->pdata[i + 1]);
        }
        if (!arg.quiet)
                printf("\n%u VMs managed.\n", pairs->len / 2);
        return 0;
}

static int vm_add(sd_bus *bus, const char *name, const char *source) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(bus, &m, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH,
                                               LAUNCHER_CONFIG_INTERFACE, "AddVm");
        if (r >= 0)
                r = sd_bus_message_append(m, "ss", name, source);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0 && arg.vm_strategy)
                r = sd_bus_message_append(m, "{sv}", "UpdateStrategy", "s", arg.vm_strategy);
        if (r >= 0 && arg.vm_adopt_policy)
                r = sd_bus_message_append(m, "{sv}", "AdoptPolicy", "s", arg.vm_adopt_policy);
        if (r >= 0 && arg.vm_no_autostart)
                r = sd_bus_message_append(m, "{sv}", "Autostart", "b", 0);
        if (r >= 0 && arg.vm_env_keys) {
                r = sd_bus_message_open_container(m, 'e', "sv");
                if (r >= 0)
                        r = sd_bus_message_append(m, "s", "EnvKeys");
                if (r >= 0)
                        r = sd_bus_message_open_container(m, 'v', "as");
                if (r >= 0)
                        r = sd_bus_message_append_strv(m, arg.vm_env_keys);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
                if (r >= 0)
                        r = sd_bus_message_close_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r < 0) {
                fprintf(stderr, "Failed to add VM %s: %s\n", name, strerror(-r));
                return EXIT_FAILURE;
        }
        ctl_polkit_agent_open(bus);
        r = sd_bus_call(bus, m, 0, &error, NULL);
        ctl_polkit_agent_close();
        if (r < 0)
                return ctl_bus_error("Failed to add the VM", &error, r);
        return 0;
}

static int vm_remove(sd_bus *bus, const char *name) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        int r = sd_bus_message_new_method_call(bus, &m, LAUNCHER_BUS_NAME, LAUNCHER_OBJECT_PATH,
                                               LAUNCHER_CONFIG_INTERFACE, "RemoveVm");
        if (r >= 0)
                r = arg.vm_destroy ? sd_bus_message_append(m, "sa{sv}", name, 1, "destroy", "b", 1)
                                   : sd_bus_message_append(m, "sa{sv}", name, 0);
        if (r < 0) {
                fprintf(stderr, "Failed to remove VM %s: %s\n", name, strerror(-r));
                return EXIT_FAILURE;
        }
        if (!arg.vm_destroy) {
                ctl_polkit_agent_open(bus);
                r = sd_bus_call(bus, m, 0, &error, NULL);
                ctl_polkit_agent_close();
                return r < 0 ? ctl_bus_error("Failed to remove the VM", &error, r) : 0;
        }
        /* Stopping and removing at the VMM takes a while: follow it as an operation. */
        g_autofree char *op = g_strdup_printf("remove %s", name);
        _cleanup_free_ char *path = NULL;
        if (sd_bus_path_encode(LAUNCHER_VM_PATH_PREFIX, name, &path) < 0)
                return EXIT_FAILURE;
        return ctl_long_call(bus, m, path, op, "Failed to remove the VM");
}

static int vm_set_verbs(sd_bus *bus, int argc, char **argv) {
        if (streq(argv[0], "list")) {
                if (argc != 1) {
                        fprintf(stderr, "Usage: platformctl vm list\n");
                        return EX_USAGE;
                }
                return vm_list(bus);
        }
        if (streq(argv[0], "add")) {
                if (argc != 3) {
                        fprintf(stderr, "Usage: platformctl vm add NAME SOURCE [--env KEY...] [--strategy S] "
                                        "[--adopt-policy P] [--no-autostart]\n");
                        return EX_USAGE;
                }
                return vm_add(bus, argv[1], argv[2]);
        }
        if (argc != 2) {
                fprintf(stderr, "Usage: platformctl vm remove NAME [--destroy]\n");
                return EX_USAGE;
        }
        return vm_remove(bus, argv[1]);
}

int verb_vm(sd_bus *bus, int argc, char **argv) {
        char *status_argv[] = { (char *) "status", NULL };
        argc--, argv++;
        if (argc == 0) {
                argc = 1;
                argv = status_argv;
        }
        if (streq(argv[0], "list") || streq(argv[0], "add") || streq(argv[0], "remove"))
                return vm_set_verbs(bus, argc, argv);
        for (size_t k = 0; k < ELEMENTSOF(vm_verbs); k++) {
                if (!streq(vm_verbs[k].verb, argv[0]))
                        continue;
                VmArgs a = { .lines = 100, .channel = "serial" };
                int r = parse_vm_args(argc, argv, vm_verbs[k].usage, &a);
                if (r)
                        return r;

                g_autoptr(VmInfo) list = NULL;
                const VmInfo *vm;
                r = vm_info_list(bus, &list);
                if (r < 0)
                        return -r;
                r = vm_pick(list, a.name, &vm);
                if (r)
                        return r;
                return vm_verbs[k].run(bus, vm, &a);
        }
        fprintf(stderr, "Unknown vm command '%s'. See platformctl --help.\n", argv[0]);
        return EX_USAGE;
}
