/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-glib/json-glib.h>
#include <openssl/evp.h>

#include "shared/compose.h"
#include "shared/hex.h"
#include "shared/json-load.h"
#include "shared/json-out.h"
#include "shared/macro.h"
#include "shared/strv.h"
#include "shared/validate.h"

#define COMPOSE_MAX_ALLOWED_ENVS 4096

const char *const compose_default_env_keys[] = {
        "DSTACK_VMM_URL",
        "HOTKEY_PASSPHRASE",
        "VALIDATOR_BASE_URL",
        NULL,
};

static int extend_all(char ***l, char *const *add) {
        for (char *const *p = add; p && *p; p++)
                if (strv_extend(l, *p) < 0)
                        return -ENOMEM;
        return 0;
}

int compose_allowed_envs(const PlatformVmSpec *spec, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        if (!l ||
            extend_all(&l, (char *const *) compose_default_env_keys) < 0 ||
            extend_all(&l, spec->required_env) < 0 ||
            extend_all(&l, spec->env_keys) < 0)
                return -ENOMEM;
        strv_sort_uniq(l);
        *ret = TAKE_PTR(l);
        return 0;
}

static void put_bool(JsonOut *j, const char *key, bool v) {
        json_out_key(j, key);
        json_out_bool(j, v);
}

static void put_string(JsonOut *j, const char *key, const char *v) {
        json_out_key(j, key);
        json_out_string(j, v);
}

/* Keys in byte-wise order, as serde_json's BTreeMap writes them; the unit
 * test checks this order against strcmp(). */
int compose_build(const PlatformVmSpec *spec, char **ret, size_t *ret_len) {
        const PlatformManifestDefaults *m = &spec->manifest;
        _cleanup_strv_free_ char **allowed = NULL;
        JsonOut j = JSON_OUT_INIT;

        if (compose_allowed_envs(spec, &allowed) < 0)
                return -ENOMEM;
        json_out_begin_object(&j);
        json_out_key(&j, "allowed_envs");
        json_out_begin_array(&j);
        for (char **p = allowed; *p; p++)
                json_out_string(&j, *p);
        json_out_end_array(&j);
        put_string(&j, "docker_compose_file", spec->compose_content);
        put_bool(&j, "gateway_enabled", m->gateway_enabled);
        put_string(&j, "key_provider_id", m->key_provider_id);
        put_bool(&j, "kms_enabled", m->kms_enabled);
        put_bool(&j, "local_key_provider_enabled", m->local_key_provider_enabled);
        json_out_key(&j, "manifest_version");
        json_out_int(&j, m->manifest_version);
        put_string(&j, "name", m->name);
        put_bool(&j, "no_instance_id", m->no_instance_id);
        put_bool(&j, "public_logs", m->public_logs);
        put_bool(&j, "public_sysinfo", m->public_sysinfo);
        put_bool(&j, "public_tcbinfo", m->public_tcbinfo);
        put_string(&j, "runner", m->runner);
        put_bool(&j, "secure_time", m->secure_time);
        json_out_end_object(&j);
        return json_out_finish(&j, ret, ret_len);
}

int compose_hash(const char *data, size_t len, char ret[COMPOSE_HASH_HEX_LEN + 1]) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != sizeof md)
                return -EIO;
        _cleanup_free_ char *h = hex_encode(md, sizeof md);
        if (!h)
                return -ENOMEM;
        memcpy(ret, h, COMPOSE_HASH_HEX_LEN + 1);
        return 0;
}

void compose_app_id(const char hash[COMPOSE_HASH_HEX_LEN + 1], char ret[APP_ID_HEX_LEN + 1]) {
        memcpy(ret, hash, APP_ID_HEX_LEN);
        ret[APP_ID_HEX_LEN] = '\0';
}

static int allowed_envs_fail(char **ret_error, const char *msg) {
        if (ret_error && !(*ret_error = strdup(msg)))
                return -ENOMEM;
        return -EINVAL;
}

int compose_parse_allowed_envs(const char *data, size_t len, char ***ret, char **ret_error) {
        g_autoptr(JsonParser) parser = NULL;
        JsonObject *obj;
        int r;

        if (ret_error)
                *ret_error = NULL;
        /* Escaped compose content may be several times API_COMPOSE_MAX. */
        r = json_load_object(data, len, API_DOC_MAX, "compose_file", &parser, &obj, ret_error);
        if (r < 0)
                return r;
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        if (!l)
                return -ENOMEM;
        JsonNode *n = json_object_get_member(obj, "allowed_envs");
        if (n && !JSON_NODE_HOLDS_NULL(n)) {
                if (!JSON_NODE_HOLDS_ARRAY(n))
                        return allowed_envs_fail(ret_error, "compose_file.allowed_envs: must be an array");
                JsonArray *a = json_node_get_array(n);
                if (json_array_get_length(a) > COMPOSE_MAX_ALLOWED_ENVS)
                        return allowed_envs_fail(ret_error, "compose_file.allowed_envs: too many elements");
                for (guint i = 0; i < json_array_get_length(a); i++) {
                        JsonNode *e = json_array_get_element(a, i);
                        if (!JSON_NODE_HOLDS_VALUE(e) || json_node_get_value_type(e) != G_TYPE_STRING ||
                            !env_key_is_valid(json_node_get_string(e)))
                                return allowed_envs_fail(ret_error, "compose_file.allowed_envs: "
                                                         "elements must be environment variable names");
                        if (strv_extend(&l, json_node_get_string(e)) < 0)
                                return -ENOMEM;
                }
        }
        strv_sort_uniq(l);
        *ret = TAKE_PTR(l);
        return 0;
}
