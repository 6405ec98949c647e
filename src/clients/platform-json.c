/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>

#include "clients/platform-api.h"
#include "shared/json-load.h"
#include "shared/macro.h"

_printf_(2, 3) static int bad(char **ret_error, const char *fmt, ...) {
        va_list ap;

        if (ret_error) {
                free(*ret_error);
                *ret_error = NULL;
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return -EBADMSG;
}

/* Printable ASCII only (the text may reach logs and D-Bus properties), cut
 * at PLATFORM_ACTIVE_TEXT_MAX bytes. */
static void copy_text(char *dst, const char *src) {
        size_t i;
        for (i = 0; src[i] && i < PLATFORM_ACTIVE_TEXT_MAX; i++) {
                unsigned char c = (unsigned char) src[i];
                dst[i] = c >= 0x20 && c < 0x7f ? (char) c : '?';
        }
        dst[i] = '\0';
}

static const char *member_string(JsonObject *o, const char *name) {
        JsonNode *n = json_object_get_member(o, name);
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return NULL;
        return json_node_get_string(n);
}

int platform_parse_active_reply(const char *data, size_t len, PlatformActive *ret, char **ret_error) {
        g_autoptr(JsonParser) p = NULL;
        PlatformActive a = {};
        JsonObject *o;
        int r;

        r = json_load_object(data, len, PLATFORM_ACTIVE_MAX, "validate/active", &p, &o, ret_error);
        if (r < 0)
                return r == -EINVAL ? -EBADMSG : r;
        JsonNode *n = json_object_get_member(o, "active");
        if (!n || !JSON_NODE_HOLDS_ARRAY(n))
                return bad(ret_error, "validate/active.active: must be an array of jobs");
        JsonArray *arr = json_node_get_array(n);
        guint len_arr = json_array_get_length(arr);
        for (guint i = 0; i < len_arr; i++) {
                JsonNode *e = json_array_get_element(arr, i);
                if (!JSON_NODE_HOLDS_OBJECT(e))
                        return bad(ret_error, "validate/active.active[%u]: must be an object", i);
                JsonObject *job = json_node_get_object(e);
                const char *id = member_string(job, "job_id");
                const char *status = member_string(job, "status");
                if (!id)
                        return bad(ret_error, "validate/active.active[%u].job_id: must be a string", i);
                if (!status)
                        return bad(ret_error, "validate/active.active[%u].status: must be a string", i);
                JsonNode *lu = json_object_get_member(job, "log_url");
                if (lu && !JSON_NODE_HOLDS_NULL(lu) && !member_string(job, "log_url"))
                        return bad(ret_error, "validate/active.active[%u].log_url: must be a string", i);
                if (a.n_jobs < PLATFORM_ACTIVE_JOBS_KEPT) {
                        copy_text(a.jobs[a.n_jobs].job_id, id);
                        copy_text(a.jobs[a.n_jobs].status, status);
                        a.n_jobs++;
                }
        }
        /* The reply is at most PLATFORM_ACTIVE_MAX bytes: the count fits. */
        a.n_active = (uint32_t) len_arr;
        *ret = a;
        return 0;
}

/* Appends to buf (size > 0), cutting at the end; *k stays < size. */
_printf_(4, 5) static void append(char *buf, size_t size, size_t *k, const char *fmt, ...) {
        va_list ap;
        int w;

        va_start(ap, fmt);
        w = vsnprintf(buf + *k, size - *k, fmt, ap);
        va_end(ap);
        if (w > 0)
                *k = MIN(*k + (size_t) w, size - 1);
}

void platform_active_format(const PlatformActive *a, char *buf, size_t size) {
        size_t k = 0;

        if (size == 0)
                return;
        buf[0] = '\0';
        if (a->n_active == 0) {
                append(buf, size, &k, "no active jobs");
                return;
        }
        append(buf, size, &k, "%" PRIu32 " active job%s", a->n_active, a->n_active == 1 ? "" : "s");
        for (size_t i = 0; i < a->n_jobs; i++)
                append(buf, size, &k, "%s%s (%s)", i == 0 ? ": " : ", ",
                       a->jobs[i].job_id[0] ? a->jobs[i].job_id : "\"\"", a->jobs[i].status);
        if (a->n_active > a->n_jobs)
                append(buf, size, &k, ", and %" PRIu32 " more", a->n_active - (uint32_t) a->n_jobs);
}
