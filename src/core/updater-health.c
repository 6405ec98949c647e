/* SPDX-License-Identifier: Apache-2.0 */
/* The Updater's health wait (updater.md): after the restarts, the health
 * command or URL is tried, one attempt per check of the row, every
 * UPDATER_HEALTH_RETRY_USEC, until it passes or the health timeout ends it
 * with the last attempt's reason. */
#include <errno.h>

#include <glib.h>

#include "core/updater-internal.h"
#include "shared/log.h"
#include "shared/macro.h"

#define HEALTH_HTTP_TIMEOUT_USEC (5 * USEC_PER_SEC)

static void health_unhealthy(Updater *u, const char *why) {
        uint64_t now = (uint64_t) g_get_monotonic_time();
        if (now + UPDATER_HEALTH_RETRY_USEC >= u->health_deadline) {
                /* Fail with the reason of the last attempt, not just "timed out". */
                g_autofree char *msg = g_strdup_printf("unhealthy for %.1f s: %s",
                                                       (double) u->tx.cfg->updater_health_timeout_usec / USEC_PER_SEC,
                                                       why);
                return step_driver_fail(u->driver, -ETIMEDOUT, msg);
        }
        /* Retried every UPDATER_HEALTH_RETRY_USEC: a reason is logged when it changes,
         * not at every attempt. */
        if (!streq_ptr(u->health_last_why, why)) {
                log_info("Health check: %s; retrying until the deadline.", why);
                g_free(u->health_last_why);
                u->health_last_why = g_strdup(why);
        } else
                log_debug("Health check: %s; retrying.", why);
        step_driver_again(u->driver); /* the row's check_interval_usec later */
}

static void after_health_command(Updater *u, const StepResult *res) {
        if (step_result_ok(res))
                return step_driver_done(u->driver);
        g_autofree char *why = updater_proc_failure("health command", res, u->proc_timeout);
        health_unhealthy(u, why);
}

static void on_health_http(HttpCall *call, const HttpResponse *resp, void *userdata) {
        Updater *u = userdata;
        u->http_call = NULL;
        if (resp->error == 0 && resp->status >= 200 && resp->status < 300)
                return step_driver_done(u->driver);
        g_autofree char *why = resp->error < 0 ? g_strdup_printf("%s: %s", u->tx.cfg->updater_health_url,
                                                                 strempty(resp->error_message))
                                               : g_strdup_printf("%s answered HTTP %ld", u->tx.cfg->updater_health_url,
                                                                 resp->status);
        health_unhealthy(u, why);
}

static void health_attempt(Updater *u) {
        LauncherConfig *c = u->tx.cfg;
        int r;
        if (c->updater_health_command[0]) {
                uint64_t now = (uint64_t) g_get_monotonic_time();
                uint64_t timeout = c->updater_command_timeout_usec;
                if (u->health_deadline > now && u->health_deadline - now < timeout)
                        timeout = u->health_deadline - now;
                r = updater_spawn_command(u, "health", c->updater_health_command, MAX(timeout, 100 * USEC_PER_MSEC),
                                  after_health_command);
        } else {
                if (!u->http && (r = http_context_new(u->event, &u->http)) < 0)
                        return step_driver_fail(u->driver, r, "cannot set up HTTP");
                uint64_t now = (uint64_t) g_get_monotonic_time();
                uint64_t timeout = HEALTH_HTTP_TIMEOUT_USEC;
                if (u->health_deadline > now && u->health_deadline - now < timeout)
                        timeout = MAX(u->health_deadline - now, 100 * USEC_PER_MSEC);
                HttpRequest req = { .method = HTTP_GET, .endpoint = c->updater_health_url, .timeout_usec = timeout,
                                    .max_response_bytes = 64 * 1024 };
                r = http_request_start(u->http, &req, on_health_http, u, &u->http_call);
        }
        if (r < 0)
                updater_fail_spawn(u, "the health check", r);
}

void updater_health_start(StepDriver *d, void *ud) {
        Updater *u = ud;
        if (!u->tx.reverse)
                updater_record_phase(u, "health");
        updater_set_state(u, u->tx.reverse ? UPDATER_STATE_ROLLING_BACK : UPDATER_STATE_VERIFYING);
        if (!u->tx.cfg->updater_health_command[0] && isempty(u->tx.cfg->updater_health_url))
                return step_driver_done(d);
        u->health_deadline = (uint64_t) g_get_monotonic_time() + u->tx.cfg->updater_health_timeout_usec;
        g_clear_pointer(&u->health_last_why, g_free);
        health_attempt(u);
}

void updater_health_check(StepDriver *d, void *ud) {
        health_attempt(ud);
}

/* A backstop: the attempts themselves end at health_deadline. */
uint64_t updater_health_timeout(void *ud) {
        Updater *u = ud;
        return u->tx.cfg->updater_health_timeout_usec + HEALTH_HTTP_TIMEOUT_USEC;
}

void updater_health_cancel(void *ud) {
        Updater *u = ud;
        updater_cancel_proc(u);
        http_call_cancel(u->http_call);
        u->http_call = NULL;
}

