/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "core/fileio.h"
#include "core/state.h"
#include "shared/json-load.h"
#include "shared/log.h"
#include "shared/macro.h"
#include "shared/strv.h"

#define STATE_FILE "vm.json"
#define STATE_MAX (64 * 1024)

VmIntent *vm_intent_new(const char *op, const char *old_vm_id, const char *compose_hash, const char *env_fingerprint,
                        const char *resources) {
        VmIntent *i = g_new0(VmIntent, 1);
        i->op = g_strdup(op);
        i->old_vm_id = g_strdup(strempty(old_vm_id));
        i->target_compose_hash = g_strdup(strempty(compose_hash));
        i->target_env_fingerprint = g_strdup(strempty(env_fingerprint));
        i->target_resources = g_strdup(strempty(resources));
        return i;
}

void vm_intent_free(VmIntent *i) {
        if (!i)
                return;
        g_free(i->op);
        g_free(i->old_vm_id);
        g_free(i->target_compose_hash);
        g_free(i->target_env_fingerprint);
        g_free(i->target_resources);
        g_free(i);
}

VmDeployState *vm_deploy_state_new(const char *name) {
        VmDeployState *s = g_new0(VmDeployState, 1);
        s->name = g_strdup(name);
        s->vm_id = g_strdup("");
        s->compose_hash = g_strdup("");
        s->app_id = g_strdup("");
        s->env_fingerprint = g_strdup("");
        s->resources = g_strdup("");
        s->kms_signer = g_strdup("");
        s->kms_signer_pinned = g_strdup("");
        return s;
}

void vm_deploy_state_free(VmDeployState *s) {
        if (!s)
                return;
        g_free(s->name);
        g_free(s->vm_id);
        g_free(s->compose_hash);
        g_free(s->app_id);
        g_free(s->env_fingerprint);
        g_free(s->resources);
        vm_intent_free(s->intent);
        strv_free(s->retired_ids);
        strv_free(s->retired_names);
        g_free(s->kms_signer);
        g_free(s->kms_signer_pinned);
        g_free(s);
}

static char *get_str(JsonObject *o, const char *key) {
        JsonNode *n = json_object_get_member(o, key);
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
                return g_strdup("");
        return g_strdup(json_node_get_string(n));
}

static uint64_t get_u64(JsonObject *o, const char *key) {
        JsonNode *n = json_object_get_member(o, key);
        if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_INT64 || json_node_get_int(n) < 0)
                return 0;
        return (uint64_t) json_node_get_int(n);
}

static char *state_path(const char *dir) {
        return g_build_filename(dir, STATE_FILE, NULL);
}

int vm_deploy_state_load(const char *dir, const char *name, VmDeployState **ret, char **ret_error) {
        g_autofree char *path = state_path(dir);
        _cleanup_free_ char *data = NULL;
        size_t len;

        int r = read_file_limited(path, STATE_MAX, &data, &len);
        if (r == -ENOENT) {
                *ret = vm_deploy_state_new(name);
                return 0;
        }

        g_autoptr(JsonParser) parser = NULL;
        JsonObject *o = NULL;
        g_autofree char *why = NULL;
        if (r >= 0)
                r = json_load_object(data, len, STATE_MAX, "state", &parser, &o, &why);
        else
                why = g_strdup_printf("cannot be read: %s", strerror(-r));
        if (r < 0) {
                g_autofree char *aside = g_strconcat(path, ".corrupt", NULL);
                (void) rename(path, aside);
                *ret_error = g_strdup_printf("%s: %s (moved to %s; converging from what the VMM reports)", path, why,
                                             aside);
                *ret = vm_deploy_state_new(name);
                return -EINVAL;
        }

        VmDeployState *s = g_new0(VmDeployState, 1);
        s->name = get_str(o, "name");
        if (isempty(s->name)) {
                g_free(s->name);
                s->name = g_strdup(name);
        }
        s->vm_id = get_str(o, "vm_id");
        s->compose_hash = get_str(o, "compose_hash");
        s->app_id = get_str(o, "app_id");
        s->env_fingerprint = get_str(o, "env_fingerprint");
        s->resources = get_str(o, "resources");
        s->kms_signer = get_str(o, "kms_signer");
        s->kms_signer_pinned = get_str(o, "kms_signer_pinned");
        s->last_update_usec = get_u64(o, "last_update_usec");
        s->update_count = (uint32_t) MIN(get_u64(o, "update_count"), UINT32_MAX);
        s->restart_count = (uint32_t) MIN(get_u64(o, "restart_count"), UINT32_MAX);
        JsonNode *stopped = json_object_get_member(o, "operator_stopped");
        s->operator_stopped = stopped && JSON_NODE_HOLDS_VALUE(stopped) &&
                              json_node_get_value_type(stopped) == G_TYPE_BOOLEAN && json_node_get_boolean(stopped);

        JsonNode *in = json_object_get_member(o, "intent");
        if (in && JSON_NODE_HOLDS_OBJECT(in)) {
                JsonObject *io = json_node_get_object(in);
                g_autofree char *op = get_str(io, "op"), *old = get_str(io, "old_vm_id"),
                                *hash = get_str(io, "target_compose_hash"),
                                *fp = get_str(io, "target_env_fingerprint"), *res = get_str(io, "target_resources");
                if (!isempty(op))
                        s->intent = vm_intent_new(op, old, hash, fp, res);
        }
        JsonNode *ret_n = json_object_get_member(o, "retired");
        if (ret_n && JSON_NODE_HOLDS_ARRAY(ret_n)) {
                JsonArray *a = json_node_get_array(ret_n);
                for (guint i = 0; i < json_array_get_length(a) && i < 64; i++) {
                        JsonNode *e = json_array_get_element(a, i);
                        if (!JSON_NODE_HOLDS_OBJECT(e))
                                continue;
                        g_autofree char *id = get_str(json_node_get_object(e), "id"),
                                        *nm = get_str(json_node_get_object(e), "name");
                        if (isempty(id))
                                continue;
                        if (strv_extend(&s->retired_ids, id) < 0 || strv_extend(&s->retired_names, nm) < 0) {
                                vm_deploy_state_free(s);
                                return -ENOMEM;
                        }
                }
        }
        *ret = s;
        return 0;
}

int vm_deploy_state_save(const char *dir, const VmDeployState *s) {
        g_autoptr(JsonBuilder) b = json_builder_new();
        json_builder_begin_object(b);
#define STR(k, v) (json_builder_set_member_name(b, k), json_builder_add_string_value(b, strempty(v)))
#define INT(k, v) (json_builder_set_member_name(b, k), json_builder_add_int_value(b, (gint64) (v)))
        INT("version", 1);
        STR("name", s->name);
        STR("vm_id", s->vm_id);
        STR("compose_hash", s->compose_hash);
        STR("app_id", s->app_id);
        STR("env_fingerprint", s->env_fingerprint);
        STR("resources", s->resources);
        STR("kms_signer", s->kms_signer);
        STR("kms_signer_pinned", s->kms_signer_pinned);
        INT("last_update_usec", s->last_update_usec);
        INT("update_count", s->update_count);
        INT("restart_count", s->restart_count);
        json_builder_set_member_name(b, "operator_stopped");
        json_builder_add_boolean_value(b, s->operator_stopped);
        json_builder_set_member_name(b, "intent");
        if (s->intent) {
                json_builder_begin_object(b);
                STR("op", s->intent->op);
                STR("old_vm_id", s->intent->old_vm_id);
                STR("target_compose_hash", s->intent->target_compose_hash);
                STR("target_env_fingerprint", s->intent->target_env_fingerprint);
                STR("target_resources", s->intent->target_resources);
                json_builder_end_object(b);
        } else
                json_builder_add_null_value(b);
        json_builder_set_member_name(b, "retired");
        json_builder_begin_array(b);
        for (size_t i = 0; s->retired_ids && s->retired_ids[i]; i++) {
                json_builder_begin_object(b);
                STR("id", s->retired_ids[i]);
                STR("name", s->retired_names && i < strv_length(s->retired_names) ? s->retired_names[i] : "");
                json_builder_end_object(b);
        }
        json_builder_end_array(b);
#undef STR
#undef INT
        json_builder_end_object(b);

        g_autoptr(JsonNode) root = json_builder_get_root(b);
        g_autoptr(JsonGenerator) gen = json_generator_new();
        json_generator_set_root(gen, root);
        json_generator_set_pretty(gen, TRUE);
        gsize len;
        g_autofree char *text = json_generator_to_data(gen, &len);
        g_autofree char *path = state_path(dir);
        return write_file_atomic(path, text, len, 0600);
}

int state_spec_save(const char *dir, const char *data, size_t len) {
        g_autofree char *path = g_build_filename(dir, "spec.json", NULL);
        return write_file_atomic(path, data, len, 0600);
}

int state_spec_load(const char *dir, size_t max, char **ret_data, size_t *ret_len) {
        g_autofree char *path = g_build_filename(dir, "spec.json", NULL);
        return read_file_limited(path, max, ret_data, ret_len);
}

int state_fingerprint_key(const char *dir, uint8_t key[32]) {
        g_autofree char *path = g_build_filename(dir, "fingerprint.key", NULL);
        _cleanup_free_ char *data = NULL;
        size_t len;

        int r = read_file_limited(path, 64, &data, &len);
        if (r >= 0 && len == 32) {
                memcpy(key, data, 32);
                explicit_bzero(data, len);
                return 0;
        }
        if (r >= 0 || r != -ENOENT)
                log_warning("Fingerprint key %s is unusable, making a new one (every VM's env will be re-sent once).",
                            path);

        if (getrandom(key, 32, 0) != 32)
                return -errno;
        return write_file_atomic(path, key, 32, 0600);
}
