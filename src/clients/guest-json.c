/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "clients/guest-json.h"
#include "shared/capacity.h"
#include "shared/json-load.h"
#include "shared/macro.h"

static int fail(char **err, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static int fail(char **err, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        g_free(*err);
        *err = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        return -EBADMSG;
}

/* Absent or null: 0 (the prpc mapping's default). */
static int get_u64(JsonObject *o, const char *path, const char *name, uint64_t max, uint64_t *ret, char **err) {
        JsonNode *n = json_object_get_member(o, name);
        *ret = 0;
        if (!n || JSON_NODE_HOLDS_NULL(n))
                return 0;
        if (!JSON_NODE_HOLDS_VALUE(n))
                return fail(err, "%s.%s: expected a number", path, name);
        GType t = json_node_get_value_type(n);
        if (t == G_TYPE_INT64) {
                gint64 v = json_node_get_int(n);
                if (v < 0 || (uint64_t) v > max)
                        return fail(err, "%s.%s: out of range", path, name);
                *ret = (uint64_t) v;
                return 0;
        }
        if (t == G_TYPE_DOUBLE) {
                /* json-glib reads an integer above INT64_MAX as a double. */
                double d = json_node_get_double(n);
                /* in range first, then whole: (uint64_t) d is defined only for 0 <= d < 2^64 */
                if (!isfinite(d) || d < 0 || d >= 18446744073709551616.0 || (double) (uint64_t) d != d ||
                    (uint64_t) d > max)
                        return fail(err, "%s.%s: out of range", path, name);
                *ret = (uint64_t) d;
                return 0;
        }
        if (t == G_TYPE_STRING) {
                const char *s = json_node_get_string(n);
                char *end = NULL;
                if (!g_ascii_isdigit(s[0]) || strlen(s) > 20)
                        return fail(err, "%s.%s: expected a number", path, name);
                errno = 0;
                guint64 v = g_ascii_strtoull(s, &end, 10);
                if (errno || *end || v > max)
                        return fail(err, "%s.%s: out of range", path, name);
                *ret = v;
                return 0;
        }
        return fail(err, "%s.%s: expected a number", path, name);
}

static int get_u32(JsonObject *o, const char *path, const char *name, uint32_t *ret, char **err) {
        uint64_t v;
        int r = get_u64(o, path, name, UINT32_MAX, &v, err);
        *ret = (uint32_t) v;
        return r;
}

static int parse_disks(JsonObject *o, VmmGuestSysInfo *s, char **err) {
        JsonNode *n = json_object_get_member(o, "disks");
        if (!n || JSON_NODE_HOLDS_NULL(n))
                return 0;
        if (!JSON_NODE_HOLDS_ARRAY(n))
                return fail(err, "SysInfo.disks: expected an array");
        JsonArray *a = json_node_get_array(n);
        guint len = json_array_get_length(a);
        if (len > GUEST_DISKS_MAX)
                return fail(err, "SysInfo.disks: more than %d", GUEST_DISKS_MAX);
        for (guint i = 0; i < len; i++) {
                JsonNode *e = json_array_get_element(a, i);
                char path[48];
                uint64_t total, free;
                snprintf(path, sizeof path, "SysInfo.disks[%u]", i);
                if (!JSON_NODE_HOLDS_OBJECT(e))
                        return fail(err, "%s: expected an object", path);
                JsonObject *d = json_node_get_object(e);
                int r = get_u64(d, path, "total_size", UINT64_MAX, &total, err);
                if (r >= 0)
                        r = get_u64(d, path, "free_size", UINT64_MAX, &free, err);
                if (r < 0)
                        return r;
                if (free > total)
                        return fail(err, "%s.free_size: larger than total_size", path);
                s->disk_total = capacity_add(s->disk_total, total);
                s->disk_free = capacity_add(s->disk_free, free);
        }
        s->n_disks = len;
        return 0;
}

int vmm_parse_sysinfo_reply(const char *data, size_t len, VmmGuestSysInfo *ret, char **ret_error) {
        g_autoptr(JsonParser) parser = NULL;
        JsonObject *o = NULL;
        VmmGuestSysInfo s = {};
        g_autofree char *why = NULL;
        int r = json_load_object(data, len, GUEST_SYSINFO_MAX, "SysInfo", &parser, &o, &why);
        if (r < 0) {
                *ret_error = g_steal_pointer(&why);
                return r == -ENOMEM ? r : -EBADMSG;
        }
        char *err = NULL;
        if ((r = get_u32(o, "SysInfo", "num_cpus", &s.num_cpus, &err)) < 0 ||
            (r = get_u64(o, "SysInfo", "total_memory", UINT64_MAX, &s.total_memory, &err)) < 0 ||
            (r = get_u64(o, "SysInfo", "available_memory", UINT64_MAX, &s.available_memory, &err)) < 0 ||
            (r = get_u64(o, "SysInfo", "uptime", UINT64_MAX / 1000000, &s.uptime_sec, &err)) < 0 ||
            (r = get_u32(o, "SysInfo", "loadavg_one", &s.loadavg[0], &err)) < 0 ||
            (r = get_u32(o, "SysInfo", "loadavg_five", &s.loadavg[1], &err)) < 0 ||
            (r = get_u32(o, "SysInfo", "loadavg_fifteen", &s.loadavg[2], &err)) < 0 ||
            (r = parse_disks(o, &s, &err)) < 0) {
                *ret_error = err;
                return r;
        }
        if (s.available_memory > s.total_memory) {
                *ret_error = g_strdup("SysInfo.available_memory: larger than total_memory");
                return -EBADMSG;
        }
        *ret = s;
        return 0;
}
