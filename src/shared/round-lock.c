/* SPDX-License-Identifier: Apache-2.0 */
#include <stdint.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "shared/json-load.h"
#include "shared/round-lock.h"

pid_t round_lock_parse_pid(const char *data, size_t len) {
        g_autoptr(JsonParser) parser = NULL;
        g_autofree char *why = NULL;
        JsonObject *obj = NULL;

        if (!data || len == 0 || json_load_object(data, len, ROUND_LOCK_FILE_MAX, NULL, &parser, &obj, &why) < 0)
                return 0;
        JsonNode *n = json_object_get_member(obj, "pid");
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return 0;
        gint64 pid = json_node_get_int(n);
        return pid > 0 && pid < INT32_MAX ? (pid_t) pid : 0;
}
