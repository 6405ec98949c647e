/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>

#include <glib.h>
#include <systemd/sd-event.h>

#include "clients/systemd.h"
#include "shared/log.h"
#include "shared/macro.h"

#define SYSTEMD_NAME "org.freedesktop.systemd1"
#define SYSTEMD_PATH "/org/freedesktop/systemd1"
#define SYSTEMD_MANAGER "org.freedesktop.systemd1.Manager"

struct SystemdClient {
        sd_bus *bus;
        GList *calls;
};

struct SystemdCall {
        SystemdClient *client;
        char *unit;
        char *job;               /* the job path from RestartUnit's reply */
        char *early_result;      /* a JobRemoved for this unit that came before the reply */
        char *early_job;
        sd_bus_slot *match;
        sd_bus_slot *call;
        sd_event_source *timer;
        uint64_t timeout_usec;
        systemd_done_cb cb;
        void *userdata;
};

int systemd_client_new(sd_bus *bus, SystemdClient **ret) {
        SystemdClient *c = g_new0(SystemdClient, 1);
        c->bus = sd_bus_ref(bus);
        *ret = c;
        return 0;
}

static void call_free(SystemdCall *call) {
        call->client->calls = g_list_remove(call->client->calls, call);
        sd_bus_slot_unref(call->match);
        sd_bus_slot_unref(call->call);
        sd_event_source_disable_unref(call->timer);
        g_free(call->unit);
        g_free(call->job);
        g_free(call->early_result);
        g_free(call->early_job);
        g_free(call);
}

void systemd_client_free(SystemdClient *c) {
        if (!c)
                return;
        while (c->calls)
                call_free(c->calls->data);
        sd_bus_unref(c->bus);
        g_free(c);
}

void systemd_call_cancel(SystemdCall *call) {
        if (call && call->cb) /* cb NULL: its own callback runs, finish() frees it */
                call_free(call);
}

static void finish(SystemdCall *call, int error, const char *message) {
        systemd_done_cb cb = call->cb;
        call->cb = NULL;
        call->match = sd_bus_slot_unref(call->match);
        call->call = sd_bus_slot_unref(call->call);
        call->timer = sd_event_source_disable_unref(call->timer);
        cb(call, error, message, call->userdata);
        call_free(call);
}

static void job_ended(SystemdCall *call, const char *result) {
        if (streq(result, "done")) {
                log_info("Unit %s restarted.", call->unit);
                finish(call, 0, NULL);
                return;
        }
        g_autofree char *msg = g_strdup_printf("restart of %s ended with job result \"%s\"", call->unit, result);
        log_warning("%s.", msg);
        finish(call, -EIO, msg);
}

static int on_job_removed(sd_bus_message *m, void *userdata, sd_bus_error *ret_error) {
        SystemdCall *call = userdata;
        uint32_t id;
        const char *job, *unit, *result;
        if (sd_bus_message_read(m, "uoss", &id, &job, &unit, &result) < 0)
                return 0;
        if (!call->job) {
                if (streq(unit, call->unit)) {
                        g_free(call->early_job);
                        g_free(call->early_result);
                        call->early_job = g_strdup(job);
                        call->early_result = g_strdup(result);
                }
                return 0;
        }
        if (streq(job, call->job))
                job_ended(call, result);
        return 0;
}

static int on_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        SystemdCall *call = userdata;
        g_autofree char *msg = g_strdup_printf("restart of %s did not finish within %llu s", call->unit,
                                               (unsigned long long) (call->timeout_usec / USEC_PER_SEC));
        log_warning("%s.", msg);
        finish(call, -ETIMEDOUT, msg);
        return 0;
}

static int bus_fail(SystemdCall *call, sd_bus_message *reply, const char *what) {
        const sd_bus_error *e = sd_bus_message_get_error(reply);
        int r = sd_bus_message_get_errno(reply);
        g_autofree char *msg = g_strdup_printf("%s %s: %s", what, call->unit, e && e->message ? e->message : e->name);
        log_warning("%s.", msg);
        finish(call, r > 0 ? -r : -EIO, msg);
        return 0;
}

static int on_restart_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        SystemdCall *call = userdata;
        call->call = sd_bus_slot_unref(call->call);
        if (sd_bus_message_is_method_error(reply, NULL))
                return bus_fail(call, reply, "cannot restart");
        const char *job;
        if (sd_bus_message_read(reply, "o", &job) < 0) {
                g_autofree char *msg = g_strdup_printf("RestartUnit(%s): bad reply", call->unit);
                finish(call, -EBADMSG, msg);
                return 0;
        }
        call->job = g_strdup(job);
        log_debug("Unit %s: restart job %s.", call->unit, job);
        if (call->early_job && streq(call->early_job, job))
                job_ended(call, call->early_result);
        return 0;
}

static int on_subscribed(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        SystemdCall *call = userdata;
        call->call = sd_bus_slot_unref(call->call);
        /* Subscribe fails harmlessly when another client of ours subscribed already. */
        if (sd_bus_message_is_method_error(reply, NULL) &&
            !sd_bus_message_is_method_error(reply, "org.freedesktop.systemd1.AlreadySubscribed"))
                return bus_fail(call, reply, "cannot subscribe to systemd for");
        int r = sd_bus_call_method_async(call->client->bus, &call->call, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                         "RestartUnit", on_restart_reply, call, "ss", call->unit, "replace");
        if (r < 0) {
                g_autofree char *msg = g_strdup_printf("cannot send RestartUnit(%s)", call->unit);
                finish(call, r, msg);
        }
        return 0;
}

static int on_match_installed(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        SystemdCall *call = userdata;
        if (sd_bus_message_is_method_error(reply, NULL))
                return bus_fail(call, reply, "cannot watch the job of");
        int r = sd_bus_call_method_async(call->client->bus, &call->call, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                         "Subscribe", on_subscribed, call, NULL);
        if (r < 0) {
                g_autofree char *msg = g_strdup_printf("cannot subscribe to systemd for %s", call->unit);
                finish(call, r, msg);
        }
        return 0;
}

/* As systemctl does (unit_name_mangle): the manager itself takes only full
 * names ("Unit name validator is not valid"), so "validator" means
 * "validator.service". */
char *systemd_unit_name_mangle(const char *unit) {
        static const char *const suffixes[] = { ".service", ".socket", ".target", ".device", ".mount",
                                                ".automount", ".swap", ".timer", ".path", ".slice", ".scope" };
        for (size_t i = 0; i < ELEMENTSOF(suffixes); i++)
                if (g_str_has_suffix(unit, suffixes[i]) && strlen(unit) > strlen(suffixes[i]))
                        return g_strdup(unit);
        return g_strdup_printf("%s.service", unit);
}

int systemd_restart_unit(SystemdClient *c, const char *unit, uint64_t timeout_usec, systemd_done_cb cb, void *userdata,
                         SystemdCall **ret) {
        if (isempty(unit) || !cb)
                return -EINVAL;
        SystemdCall *call = g_new0(SystemdCall, 1);
        call->client = c;
        call->unit = systemd_unit_name_mangle(unit);
        call->timeout_usec = timeout_usec;
        call->cb = cb;
        call->userdata = userdata;
        c->calls = g_list_prepend(c->calls, call);

        int r = sd_bus_match_signal_async(c->bus, &call->match, SYSTEMD_NAME, SYSTEMD_PATH, SYSTEMD_MANAGER,
                                          "JobRemoved", on_job_removed, on_match_installed, call);
        if (r >= 0 && timeout_usec > 0)
                r = sd_event_add_time_relative(sd_bus_get_event(c->bus), &call->timer, CLOCK_MONOTONIC, timeout_usec,
                                               10 * USEC_PER_MSEC, on_timeout, call);
        if (r < 0) {
                call_free(call);
                return r;
        }
        log_info("Restarting unit %s.", call->unit);
        if (ret)
                *ret = call;
        return 0;
}
