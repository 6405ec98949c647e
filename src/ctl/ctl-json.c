/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctl.h"
#include "shared/macro.h"

static int read_basic(sd_bus_message *m, char type, JsonNode **ret) {
        union {
                uint8_t u8;
                int16_t s16;
                uint16_t u16;
                int32_t s32;
                uint32_t u32;
                int64_t s64;
                uint64_t u64;
                double d;
                int b;
                const char *s;
        } v;
        int r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;
        JsonNode *n = json_node_new(JSON_NODE_VALUE);
        switch (type) {
        case 'y': json_node_set_int(n, v.u8); break;
        case 'n': json_node_set_int(n, v.s16); break;
        case 'q': json_node_set_int(n, v.u16); break;
        case 'i': case 'h': json_node_set_int(n, v.s32); break;
        case 'u': json_node_set_int(n, v.u32); break;
        case 'x': json_node_set_int(n, v.s64); break;
        case 't': json_node_set_int(n, (gint64) v.u64); break;
        case 'd': json_node_set_double(n, v.d); break;
        case 'b': json_node_set_boolean(n, v.b); break;
        default: json_node_set_string(n, v.s); break; /* s o g */
        }
        *ret = n;
        return 0;
}

static char *key_text(JsonNode *k) {
        if (json_node_get_value_type(k) == G_TYPE_STRING)
                return g_strdup(json_node_get_string(k));
        return ctl_json_to_text(k);
}

static int read_dict(sd_bus_message *m, const char *contents, JsonNode **ret) {
        g_autoptr(JsonObject) o = json_object_new();
        g_autofree char *entry = g_strndup(contents + 1, strlen(contents) - 2);
        int r = sd_bus_message_enter_container(m, 'a', contents);
        while (r >= 0 && (r = sd_bus_message_enter_container(m, 'e', entry)) > 0) {
                g_autoptr(JsonNode) k = NULL;
                JsonNode *v = NULL;
                r = ctl_json_read(m, &k);
                if (r >= 0)
                        r = ctl_json_read(m, &v);
                if (r < 0)
                        break;
                g_autofree char *name = key_text(k);
                json_object_set_member(o, name, v);
                r = sd_bus_message_exit_container(m);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        *ret = json_node_init_object(json_node_alloc(), o);
        return 0;
}

/* Arrays, structs and variants: the members in order. */
static int read_container(sd_bus_message *m, char type, const char *contents, JsonNode **ret) {
        g_autoptr(JsonArray) a = json_array_new();
        int r = sd_bus_message_enter_container(m, type, contents);
        while (r >= 0 && (r = sd_bus_message_at_end(m, false)) == 0) {
                JsonNode *v;
                r = ctl_json_read(m, &v);
                if (r >= 0)
                        json_array_add_element(a, v);
        }
        if (r >= 0)
                r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;
        if (type == 'v') {
                if (json_array_get_length(a) != 1)
                        return -EBADMSG;
                *ret = json_array_dup_element(a, 0);
                return 0;
        }
        *ret = json_node_init_array(json_node_alloc(), a);
        return 0;
}

int ctl_json_read(sd_bus_message *m, JsonNode **ret) {
        const char *contents;
        char type;
        int r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -ENXIO;
        if (type == 'a' && contents[0] == '{')
                return read_dict(m, contents, ret);
        if (type == 'a' || type == 'v' || type == 'r')
                return read_container(m, type, contents, ret);
        return read_basic(m, type, ret);
}

char *ctl_json_to_text(JsonNode *node) {
        g_autoptr(JsonGenerator) gen = json_generator_new();
        json_generator_set_root(gen, node);
        return json_generator_to_data(gen, NULL);
}

void ctl_json_print(JsonNode *node, bool pretty) {
        g_autoptr(JsonGenerator) gen = json_generator_new();
        json_generator_set_root(gen, node);
        json_generator_set_pretty(gen, pretty);
        g_autofree char *text = json_generator_to_data(gen, NULL);
        printf("%s\n", text);
        fflush(stdout);
}

/* Members of the wrong type read as absent: the bus is an edge like any other. */
const char *ctl_json_str(JsonObject *o, const char *name) {
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return "";
        return json_node_get_string(n);
}

uint64_t ctl_json_uint(JsonObject *o, const char *name) {
        JsonNode *n = o ? json_object_get_member(o, name) : NULL;
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64)
                return 0;
        return (uint64_t) json_node_get_int(n);
}
