/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>

#include "clients/platform-api.h"
#include "shared/json-load.h"
#include "shared/macro.h"

int platform_parse_active_reply(const char *data, size_t len, uint32_t *ret_active_jobs, char **ret_error) {
        g_autoptr(JsonParser) p = NULL;
        JsonObject *o;
        int r;

        r = json_load_object(data, len, PLATFORM_ACTIVE_MAX, "validate/active", &p, &o, ret_error);
        if (r < 0)
                return r == -EINVAL ? -EBADMSG : r;
        JsonNode *n = json_object_get_member(o, "active_jobs");
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 ||
            json_node_get_int(n) < 0 || json_node_get_int(n) > UINT32_MAX) {
                if (ret_error) {
                        free(*ret_error);
                        *ret_error = strdup("validate/active.active_jobs: must be an integer between 0 and 4294967295");
                }
                return -EBADMSG;
        }
        *ret_active_jobs = (uint32_t) json_node_get_int(n);
        return 0;
}
