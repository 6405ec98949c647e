/* SPDX-License-Identifier: Apache-2.0 */
/* Request bodies for the dstack VMM's prpc JSON mapping (dstack.md §1–2). */
#include <errno.h>

#include <json-glib/json-glib.h>

#include "clients/vmm-json.h"
#include "shared/hex.h"
#include "shared/macro.h"

static int builder_finish(JsonBuilder *b, char **ret) {
        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autoptr(JsonGenerator) g = json_generator_new();
        g_autofree char *s = NULL;

        json_generator_set_root(g, root);
        s = json_generator_to_data(g, NULL);
        *ret = s ? strdup(s) : NULL;
        return *ret ? 0 : -ENOMEM;
}

/* NULL strings are omitted: serde rejects null for a non-optional string. */
static void add_str(JsonBuilder *b, const char *name, const char *value) {
        if (!value)
                return;
        json_builder_set_member_name(b, name);
        json_builder_add_string_value(b, value);
}

static void add_int(JsonBuilder *b, const char *name, int64_t value) {
        json_builder_set_member_name(b, name);
        json_builder_add_int_value(b, value);
}

static void add_bool(JsonBuilder *b, const char *name, bool value) {
        json_builder_set_member_name(b, name);
        json_builder_add_boolean_value(b, value);
}

static int add_hex(JsonBuilder *b, const char *name, const uint8_t *data, size_t n) {
        _cleanup_free_ char *h = NULL;
        if (!data)
                return 0;
        h = hex_encode(data, n);
        if (!h)
                return -ENOMEM;
        add_str(b, name, h);
        return 0;
}

static void add_strv(JsonBuilder *b, const char *name, char *const *l) {
        if (!l)
                return;
        json_builder_set_member_name(b, name);
        json_builder_begin_array(b);
        for (; *l; l++)
                json_builder_add_string_value(b, *l);
        json_builder_end_array(b);
}

static int add_ports(JsonBuilder *b, const VmPort *ports, size_t n) {
        json_builder_set_member_name(b, "ports");
        json_builder_begin_array(b);
        for (size_t i = 0; i < n; i++) {
                const VmPort *p = &ports[i];
                if (!p->protocol || (!streq(p->protocol, "tcp") && !streq(p->protocol, "udp")))
                        return -EINVAL;
                if (p->host_port > 65535 || p->vm_port > 65535)
                        return -EINVAL;
                json_builder_begin_object(b);
                add_str(b, "protocol", p->protocol);
                add_int(b, "host_port", p->host_port);
                add_int(b, "vm_port", p->vm_port);
                add_str(b, "host_address", strempty(p->host_address));
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
        return 0;
}

int vmm_build_id_request(const char *id, char **ret) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        if (isempty(id))
                return -EINVAL;
        json_builder_begin_object(b);
        add_str(b, "id", id);
        json_builder_end_object(b);
        return builder_finish(b, ret);
}

int vmm_build_status_request(const char *const *ids, const char *keyword, bool brief, char **ret) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        json_builder_begin_object(b);
        if (ids) {
                json_builder_set_member_name(b, "ids");
                json_builder_begin_array(b);
                for (; *ids; ids++)
                        json_builder_add_string_value(b, *ids);
                json_builder_end_array(b);
        }
        add_bool(b, "brief", brief);
        add_str(b, "keyword", keyword);
        json_builder_end_object(b);
        return builder_finish(b, ret);
}

int vmm_build_vm_configuration(const VmConfiguration *c, char **ret) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        int r;

        json_builder_begin_object(b);
        add_str(b, "name", strempty(c->name));
        add_str(b, "image", strempty(c->image));
        add_str(b, "compose_file", strempty(c->compose_file));
        if (!isempty(c->app_id))
                add_str(b, "app_id", c->app_id);
        add_str(b, "user_config", c->user_config);
        r = add_hex(b, "encrypted_env", c->encrypted_env, c->encrypted_env_len);
        if (r < 0)
                return r;
        add_int(b, "vcpu", c->vcpu);
        add_int(b, "memory", c->memory);
        add_int(b, "disk_size", c->disk_size);
        r = add_ports(b, c->ports, c->n_ports);
        if (r < 0)
                return r;
        add_bool(b, "hugepages", c->hugepages);
        add_bool(b, "pin_numa", c->pin_numa);
        add_bool(b, "stopped", c->stopped);
        add_strv(b, "kms_urls", c->kms_urls);
        add_strv(b, "gateway_urls", c->gateway_urls);
        json_builder_end_object(b);
        return builder_finish(b, ret);
}

int vmm_build_update_request(const VmmUpdateRequest *u, char **ret) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        int r;

        if (isempty(u->id))
                return -EINVAL;
        json_builder_begin_object(b);
        add_str(b, "id", u->id);
        add_str(b, "compose_file", u->compose_file);
        r = add_hex(b, "encrypted_env", u->encrypted_env, u->encrypted_env_len);
        if (r < 0)
                return r;
        add_str(b, "user_config", u->user_config);
        add_bool(b, "update_ports", u->update_ports);
        if (u->update_ports) {
                r = add_ports(b, u->ports, u->n_ports);
                if (r < 0)
                        return r;
        }
        json_builder_end_object(b);
        return builder_finish(b, ret);
}

int vmm_build_pubkey_request(const char *app_id, char **ret) {
        g_autoptr(JsonBuilder) b = json_builder_new();

        if (isempty(app_id))
                return -EINVAL;
        json_builder_begin_object(b);
        add_str(b, "app_id", app_id);
        json_builder_end_object(b);
        return builder_finish(b, ret);
}
