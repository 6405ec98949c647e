/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "ctl/ctl.h"
#include "shared/macro.h"

/* How long a config change may take to set the VM in motion. */
#define CTL_START_USEC (30 * USEC_PER_SEC)

/* Exit status after Ctrl-C: the operation goes on in the launcher. */
#define CTL_EXIT_INTERRUPTED 130

typedef struct Operation {
        sd_event *event;
        sd_event_source *tick;
        sd_event_source *start_deadline; /* until_done: the launcher must begin within this */
        sd_bus_slot *slots[4];           /* the matches; op must not be called after it is gone */
        bool progress;       /* print one line per step on stderr */
        bool tty;            /* stderr is a terminal: redraw the step's line with its elapsed time */
        bool until_started;  /* --no-block: return at the first sign the launcher took the call up */
        bool until_done;     /* no call: follow until VmUpdated/UpdateFailed (a config change) */
        bool line_open;      /* a step line without its newline yet (tty) */
        char *name;          /* the operation, as each line starts: "restart validator_vm" */
        char *state, *reason, *operation;
        uint32_t percent;
        uint64_t step_started; /* CLOCK_MONOTONIC */
        sd_bus_error error;
        char *failure;       /* UpdateFailed's reason */
        int r;
        int exit_status;
} Operation;

static uint64_t now_usec(clockid_t clock) {
        struct timespec ts;
        clock_gettime(clock, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* "stopping the old VM: 12 s of 60 s" and "stopping the old VM: 13 s of 60 s"
 * are one step: compare without the launcher's own counter. */
static size_t reason_stem_len(const char *reason) {
        const char *colon = reason ? strrchr(reason, ':') : NULL;
        unsigned a, b;
        char tail[4];
        if (colon && sscanf(colon, ": %u s of %u %1s", &a, &b, tail) == 3 && streq(tail, "s"))
                return (size_t) (colon - reason);
        return reason ? strlen(reason) : 0;
}

static bool has_own_counter(const char *reason) {
        return reason && reason_stem_len(reason) != strlen(reason);
}

static bool same_step(const char *a, const char *b) {
        size_t la = reason_stem_len(a), lb = reason_stem_len(b);
        return la == lb && (la == 0 || strncmp(a, b, la) == 0);
}

static void end_line(Operation *op) {
        if (op->line_open)
                fputc('\n', stderr);
        op->line_open = false;
}

/* "restart validator_vm: stopping: stopping the VM": the operation's name,
 * the state and why; NULL before the launcher has said anything of the VM. */
static GString *step_text(const Operation *op) {
        if (isempty(op->state))
                return NULL;
        GString *s = g_string_new(NULL);
        if (!isempty(op->name))
                g_string_append_printf(s, "%s: ", op->name);
        g_string_append(s, op->state);
        if (!isempty(op->reason))
                g_string_append_printf(s, ": %s", op->reason);
        return s;
}

static void draw(Operation *op) {
        if (!op->progress)
                return;
        g_autoptr(GString) s = step_text(op);
        if (!s)
                return;
        if (op->tty) {
                uint64_t elapsed = (now_usec(CLOCK_MONOTONIC) - op->step_started + USEC_PER_SEC / 2) / USEC_PER_SEC;
                if (op->percent > 0 && op->percent < 100)
                        g_string_append_printf(s, " [%" PRIu32 "%%]", op->percent);
                if (!has_own_counter(op->reason) && elapsed > 0)
                        g_string_append_printf(s, " (%" PRIu64 " s)", elapsed);
                fprintf(stderr, "\r%s\x1B[K", s->str);
                op->line_open = true;
        } else
                fprintf(stderr, "%s\n", s->str);
        fflush(stderr);
}

static void set_str(char **p, const char *v) {
        char *copy = g_strdup(v);
        g_free(*p);
        *p = copy;
}

static void show_state(Operation *op, JsonObject *changed) {
        bool has_state = json_object_has_member(changed, "State");
        bool has_reason = json_object_has_member(changed, "StateReason");
        bool has_op = json_object_has_member(changed, "Operation");
        bool has_progress = json_object_has_member(changed, "Progress");
        if (!has_state && !has_reason && !has_op && !has_progress)
                return;
        const char *state = has_state ? ctl_json_str(changed, "State") : op->state;
        const char *reason = has_reason ? ctl_json_str(changed, "StateReason") : op->reason;
        const char *operation = has_op ? ctl_json_str(changed, "Operation") : op->operation;
        /* A step is what the operator reads (state and why), shown once: the
         * launcher's own step id (Operation) and counters do not make a new one. */
        bool new_step = !streq_ptr(state, op->state) || !same_step(reason, op->reason);
        bool changed_text = !streq_ptr(reason, op->reason) || has_progress;
        set_str(&op->state, state);
        set_str(&op->reason, reason);
        set_str(&op->operation, operation);
        if (new_step) {
                end_line(op);
                op->step_started = now_usec(CLOCK_MONOTONIC);
                /* Redrawn on the step's own second boundaries. */
                if (op->tick)
                        (void) sd_event_source_set_time(op->tick, op->step_started + USEC_PER_SEC);
                op->percent = has_progress ? (uint32_t) ctl_json_uint(changed, "Progress") : 0;
                draw(op);
                return;
        }
        if (has_progress)
                op->percent = (uint32_t) ctl_json_uint(changed, "Progress");
        if (changed_text && op->tty)
                draw(op);
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Operation *op = userdata;
        if (op->line_open)
                draw(op);
        int r = sd_event_source_set_time(s, usec + USEC_PER_SEC);
        return r < 0 ? r : sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Operation *op = userdata;
        g_autoptr(JsonNode) changed = NULL;
        const char *iface;

        if (sd_bus_message_read(m, "s", &iface) <= 0 || !streq(iface, LAUNCHER_VM_INTERFACE))
                return 0;
        if (ctl_json_read(m, &changed) < 0 || !JSON_NODE_HOLDS_OBJECT(changed))
                return 0;
        show_state(op, json_node_get_object(changed));
        op->start_deadline = sd_event_source_disable_unref(op->start_deadline);
        /* Nothing changes before the call is authorized: a change is the launcher at work on it. */
        if (op->until_started)
                return sd_event_exit(op->event, 0);
        if (op->until_done) {
                const char *state = op->state;
                if (g_strcmp0(state, "blocked") == 0 || g_strcmp0(state, "failed") == 0) {
                        op->exit_status = streq(state, "blocked") ? EX_CONFIG : EXIT_FAILURE;
                        return op->event ? sd_event_exit(op->event, 0) : 0;
                }
        }
        return 0;
}

static int on_vm_updated(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Operation *op = userdata;
        const char *old_hash, *new_hash, *id;
        if (sd_bus_message_read(m, "sss", &old_hash, &new_hash, &id) < 0)
                return 0;
        end_line(op);
        if (op->progress)
                fprintf(stderr, "%s%scompose hash %s -> %s, VM id %s\n", strempty(op->name), isempty(op->name) ? "" : ": ",
                        isempty(old_hash) ? "(none)" : old_hash, new_hash, id);
        if (op->until_done && op->event)
                return sd_event_exit(op->event, 0);
        return 0;
}

static int on_update_failed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        Operation *op = userdata;
        const char *target, *reason;
        if (!op->until_done || sd_bus_message_read(m, "ss", &target, &reason) < 0)
                return 0;
        set_str(&op->failure, reason);
        op->exit_status = EXIT_FAILURE;
        return op->event ? sd_event_exit(op->event, 0) : 0;
}

static int on_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Operation *op = userdata;
        if (sd_bus_message_is_method_error(reply, NULL)) {
                op->r = -sd_bus_message_get_errno(reply);
                (void) sd_bus_error_copy(&op->error, sd_bus_message_get_error(reply));
                if (op->r == 0)
                        op->r = -EIO;
        }
        return sd_event_exit(op->event, 0);
}

static int on_interrupt(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Operation *op = userdata;
        end_line(op);
        fprintf(stderr, "The operation continues; follow it with platformctl monitor.\n");
        op->exit_status = CTL_EXIT_INTERRUPTED;
        return sd_event_exit(op->event, 0);
}

/* Subscribed before the call goes out (or the change is made), so no change is missed. */
static int subscribe(sd_bus *bus, const char *vm_path, Operation *op) {
        int r = sd_bus_match_signal(bus, &op->slots[0], LAUNCHER_BUS_NAME, vm_path, "org.freedesktop.DBus.Properties",
                                    "PropertiesChanged", on_properties_changed, op);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &op->slots[1], LAUNCHER_BUS_NAME, vm_path, LAUNCHER_VM_INTERFACE,
                                        "VmUpdated", on_vm_updated, op);
        if (r >= 0)
                r = sd_bus_match_signal(bus, &op->slots[2], LAUNCHER_BUS_NAME, vm_path, LAUNCHER_VM_INTERFACE,
                                        "UpdateFailed", on_update_failed, op);
        return r;
}

/* Runs the loop until the reply (or what op waits for), a deadline, or Ctrl-C. */
static int follow(sd_bus *bus, sd_bus_message *m, uint64_t timeout, Operation *op) {
        _cleanup_(sd_event_unrefp) sd_event *event = NULL;
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGINT);
        int r = sigprocmask(SIG_BLOCK, &mask, NULL) < 0 ? -errno : 0;
        if (r >= 0)
                r = sd_event_new(&event);
        if (r >= 0)
                r = sd_event_add_signal(event, NULL, SIGINT, on_interrupt, op);
        if (r >= 0 && op->tty)
                r = sd_event_add_time_relative(event, &op->tick, CLOCK_MONOTONIC, USEC_PER_SEC, 10 * 1000, on_tick, op);
        /* Without a call, the launcher's own deadline applies; ours is a backstop. And
         * a launcher that has not begun within CTL_START_USEC will not (busy elsewhere,
         * or the plan changed meanwhile): stop following rather than wait for nothing. */
        if (r >= 0 && !m)
                r = sd_event_add_time_relative(event, NULL, CLOCK_MONOTONIC, timeout, 0, NULL,
                                               (void *) (intptr_t) ETIMEDOUT);
        if (r >= 0 && !m && op->until_done && !op->state)
                r = sd_event_add_time_relative(event, &op->start_deadline, CLOCK_MONOTONIC, CTL_START_USEC, 0, NULL,
                                               (void *) (intptr_t) ETIME);
        if (r >= 0)
                r = sd_bus_attach_event(bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        op->event = event;
        op->step_started = now_usec(CLOCK_MONOTONIC);
        if (m)
                r = sd_bus_call_async(bus, NULL, m, on_reply, op, timeout);
        if (r >= 0)
                r = sd_event_loop(event);
        end_line(op);
        op->tick = sd_event_source_unref(op->tick);
        op->start_deadline = sd_event_source_disable_unref(op->start_deadline);
        (void) sd_bus_detach_event(bus);
        if (r == ETIME) {
                fprintf(stderr, "The launcher has not begun on the VM; see platformctl vm plan and platformctl monitor.\n");
                op->exit_status = EX_TEMPFAIL;
                r = 0;
        }
        if (r == ETIMEDOUT) {
                fprintf(stderr, "The VM's operation did not end in time; follow it with platformctl monitor.\n");
                op->exit_status = EX_TEMPFAIL;
                r = 0;
        }
        return r;
}

/* Stop alone may take StopTimeoutUSec (up to 1 h), Update and Restart include a stop. */
static uint64_t operation_timeout(sd_bus *bus) {
        return CTL_LONG_CALL_USEC + ctl_stop_timeout(bus);
}

static void operation_done(Operation *op) {
        for (size_t k = 0; k < ELEMENTSOF(op->slots); k++)
                op->slots[k] = sd_bus_slot_unref(op->slots[k]);
        g_free(op->name);
        g_free(op->state);
        g_free(op->reason);
        g_free(op->operation);
        g_free(op->failure);
        sd_bus_error_free(&op->error);
}

static Operation operation_init(void) {
        return (Operation) {
                .error = SD_BUS_ERROR_NULL,
                .progress = !arg.quiet,
                .tty = !arg.quiet && isatty(STDERR_FILENO),
        };
}

/* --no-block still expects the reply: the launcher authorizes a call by
 * asking the bus who sent it, and denies it once the sender is gone, so
 * a caller that hung up at once would have its call dropped unseen. It
 * returns on the reply (an error such as Busy or AccessDenied shows) or at
 * the VM's first property change, whichever comes first. */
int ctl_long_call(sd_bus *bus, sd_bus_message *m, const char *vm_path, const char *name, const char *what) {
        Operation op = operation_init();
        op.name = g_strdup(name);
        op.until_started = arg.no_block;
        if (op.until_started)
                op.progress = op.tty = false;
        uint64_t timeout = operation_timeout(bus);
        ctl_polkit_agent_open(bus);
        int r = subscribe(bus, vm_path, &op);
        if (r >= 0)
                r = follow(bus, m, timeout, &op);
        if (r >= 0 && op.r < 0)
                r = op.r;
        int ret = r < 0 ? ctl_bus_error(what, &op.error, r) : op.exit_status;
        operation_done(&op);
        return ret;
}

/* A change of env or of the guest VMM URL may replace the VM. Subscribed
 * before the change is made (ctl_config_change_begin), so nothing the launcher
 * does in between is missed: what arrived by the time the change is answered
 * is taken in quietly, then Plan tells what follows, which is followed to its
 * end unless --no-block. */
struct CtlFollow {
        Operation op;
        bool updated;   /* VmUpdated already seen */
};

static int on_vm_updated_seen(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        CtlFollow *f = userdata;
        f->updated = true;
        return 0;
}

CtlFollow *ctl_config_change_begin(sd_bus *bus) {
        CtlFollow *f = g_new0(CtlFollow, 1);
        f->op = operation_init();
        f->op.until_done = true;
        /* Any VM: which one is found out later, and the launcher manages one. */
        if (subscribe(bus, NULL, &f->op) < 0 ||
            sd_bus_match_signal(bus, &f->op.slots[3], LAUNCHER_BUS_NAME, NULL, LAUNCHER_VM_INTERFACE, "VmUpdated",
                                on_vm_updated_seen, f) < 0) {
                operation_done(&f->op);
                g_free(f);
                return NULL;
        }
        return f;
}

static void follow_free(CtlFollow *f) {
        if (!f)
                return;
        operation_done(&f->op);
        g_free(f);
}

static bool state_is_busy(const char *state) {
        return g_strcmp0(state, "creating") == 0 || g_strcmp0(state, "starting") == 0 ||
               g_strcmp0(state, "updating") == 0 || g_strcmp0(state, "stopping") == 0;
}

static void print_plan_line(const char *what, const VmInfo *vm, const char *action, const char *stop) {
        if (streq(action, "recreate"))
                printf("%s. This replaces VM %s (recreate): it is down from its graceful stop (up to %s) "
                       "until the new VM has booted.\n", what, vm->name, stop);
        else if (streq(action, "update-in-place"))
                printf("%s. This updates VM %s in place and restarts it: it is down from its graceful "
                       "stop (up to %s) until it has booted again.\n", what, vm->name, stop);
        else if (streq(action, "create"))
                printf("%s. This creates VM %s.\n", what, vm->name);
        else if (streq(action, "blocked"))
                printf("%s. VM %s stays as it is: %s\n", what, vm->name,
                       strempty(ctl_json_str(vm->props, "StateReason")));
        else
                printf("%s. VM %s is not changed (plan: %s).\n", what, vm->name, action);
}

int ctl_config_change_end(sd_bus *bus, CtlFollow *f, int call_result, const char *what) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        g_autoptr(VmInfo) list = NULL;
        const char *action = NULL;
        int r;

        if (!f || call_result != 0) {
                follow_free(f);
                return call_result;
        }
        Operation *op = &f->op;
        bool progress = op->progress, tty = op->tty;

        /* What came while the change was made: taken in, not printed. */
        op->progress = op->tty = false;
        while ((r = sd_bus_process(bus, NULL)) > 0)
                ;
        op->progress = progress;
        op->tty = tty;
        op->line_open = false;

        if (r < 0 || vm_info_list(bus, &list) < 0 || !list[0].path || list[1].path) {
                follow_free(f);
                return 0; /* no VM, or several: nothing single to follow */
        }
        const VmInfo *vm = list;
        bool quiet = arg.quiet || arg.json;
        if (f->updated || op->failure) {
                /* All of it happened already. */
                if (!quiet)
                        printf("%s. VM %s was %s.\n", what, vm->name,
                               op->failure ? "not replaced" : "replaced");
                int ret = op->failure ? EXIT_FAILURE : 0;
                if (op->failure)
                        fprintf(stderr, "Updating VM %s failed: %s\n", vm->name, op->failure);
                follow_free(f);
                return ret;
        }

        r = sd_bus_call_method(bus, LAUNCHER_BUS_NAME, vm->path, LAUNCHER_VM_INTERFACE, "Plan", &error, &reply,
                               NULL);
        if (r >= 0)
                r = sd_bus_message_read(reply, "s", &action);
        if (r < 0) {
                follow_free(f);
                return 0; /* the change itself succeeded; the plan is advice */
        }
        const char *state = op->state ?: ctl_json_str(vm->props, "State");
        bool busy = state_is_busy(state);
        bool replaces = busy || streq(action, "create") || streq(action, "recreate") ||
                        streq(action, "update-in-place");
        g_autofree char *stop = ctl_format_usec_in(ctl_stop_timeout(bus), NULL);
        if (busy)
                set_str(&op->state, state); /* under way: no start deadline */
        bool planned = streq(action, "create") || streq(action, "recreate") || streq(action, "update-in-place");
        g_free(op->name);
        op->name = g_strdup_printf("%s %s", planned ? action : "update", vm->name);

        if (!quiet) {
                if (busy)
                        printf("%s. The launcher is updating VM %s now (%s).\n", what, vm->name, state);
                else
                        print_plan_line(what, vm, action, stop);
                if (replaces && arg.no_block)
                        printf("Follow it with platformctl monitor or platformctl vm status.\n");
                fflush(stdout);
        }
        if (!replaces || arg.no_block) {
                follow_free(f);
                return 0;
        }
        r = follow(bus, NULL, operation_timeout(bus), op);
        int ret = op->exit_status;
        if (r < 0) {
                fprintf(stderr, "Failed to follow VM %s: %s\n", vm->name, strerror(-r));
                ret = EXIT_FAILURE;
        } else if (op->failure)
                fprintf(stderr, "Updating VM %s failed: %s\n", vm->name, op->failure);
        follow_free(f);
        return ret;
}
