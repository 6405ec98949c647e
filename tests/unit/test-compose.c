/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "shared/api-spec.h"
#include "shared/compose.h"
#include "shared/json-out.h"
#include "shared/macro.h"
#include "shared/strv.h"
#include "tests.h"

/* dstack.md §5 with the inputs of vectors/compose-hash.txt; %s = required_env. */
#define DOC_FMT \
        "{\"vm_type\":\"validator_vm\"," \
        "\"compose_content\":%s," \
        "\"description\":null,\"required_env\":[%s],\"updated_at\":\"2026-01-01T00:00:00Z\"," \
        "\"provisioning\":{\"env_keys\":[%s]," \
        "\"manifest_defaults\":{\"manifest_version\":2,\"name\":\"validator_vm\"," \
        "\"runner\":\"docker-compose\",\"kms_enabled\":true,\"gateway_enabled\":true," \
        "\"local_key_provider_enabled\":false,\"key_provider_id\":\"\",\"public_logs\":true," \
        "\"public_sysinfo\":true,\"public_tcbinfo\":true,\"no_instance_id\":false,\"secure_time\":false}," \
        "\"vm_parameters\":{\"name\":\"validator_vm\",\"image\":\"dstack-0.5.2\",\"vcpu\":16," \
        "\"memory\":16384,\"disk_size\":200,\"user_config\":\"\",\"ports\":[{\"protocol\":\"tcp\"," \
        "\"host_port\":0,\"vm_port\":0,\"host_address\":null}],\"hugepages\":false," \
        "\"pin_numa\":false,\"stopped\":false}}}"

#define DEFAULT_KEYS "\"DSTACK_VMM_URL\",\"HOTKEY_PASSPHRASE\",\"VALIDATOR_BASE_URL\""
#define VECTOR_COMPOSE "\"services:\\n  app:\\n    image: \\\"nginx:latest\\\"\\n\""

static const char vector_app_compose[] =
        "{\"allowed_envs\":[\"DSTACK_VMM_URL\",\"HOTKEY_PASSPHRASE\",\"VALIDATOR_BASE_URL\"],"
        "\"docker_compose_file\":\"services:\\n  app:\\n    image: \\\"nginx:latest\\\"\\n\","
        "\"gateway_enabled\":true,\"key_provider_id\":\"\",\"kms_enabled\":true,"
        "\"local_key_provider_enabled\":false,\"manifest_version\":2,\"name\":\"validator_vm\","
        "\"no_instance_id\":false,\"public_logs\":true,\"public_sysinfo\":true,\"public_tcbinfo\":true,"
        "\"runner\":\"docker-compose\",\"secure_time\":false}";

static PlatformVmSpec *spec_from(const char *compose_json, const char *required, const char *env_keys) {
        _cleanup_free_ char *doc = NULL, *err = NULL;
        PlatformVmSpec *spec = NULL;
        assert_se(asprintf(&doc, DOC_FMT, compose_json, required, env_keys) > 0);
        int r = platform_vm_spec_parse(doc, strlen(doc), &spec, &err);
        if (r < 0)
                fprintf(stderr, "parse: %s\n", strempty(err));
        assert_se(r == 0 && spec);
        return spec;
}

static void test_vector(void) {
        _cleanup_platform_vm_spec_ PlatformVmSpec *spec = spec_from(VECTOR_COMPOSE, "", DEFAULT_KEYS);
        _cleanup_free_ char *out = NULL;
        size_t n = 0;
        char hash[COMPOSE_HASH_HEX_LEN + 1], app_id[APP_ID_HEX_LEN + 1];

        assert_se(compose_build(spec, &out, &n) == 0);
        assert_se(n == strlen(vector_app_compose));
        assert_se(streq(out, vector_app_compose));
        assert_se(compose_hash(out, n, hash) == 0);
        assert_se(streq(hash, "70cfd2f4b998b97f124bdeb743a964a8fac44151ca8183dd8f0a4df1177cb4db"));
        compose_app_id(hash, app_id);
        assert_se(streq(app_id, "70cfd2f4b998b97f124bdeb743a964a8fac44151"));
}

/* serde_json writes struct fields of a BTreeMap in byte-wise order. */
static void test_keys_sorted(void) {
        _cleanup_platform_vm_spec_ PlatformVmSpec *spec = spec_from(VECTOR_COMPOSE, "", "");
        _cleanup_free_ char *out = NULL;
        size_t n;
        assert_se(compose_build(spec, &out, &n) == 0);
        g_autoptr(JsonParser) p = json_parser_new();
        assert_se(json_parser_load_from_data(p, out, (gssize) n, NULL));
        GList *keys = json_object_get_members(json_node_get_object(json_parser_get_root(p)));
        assert_se(g_list_length(keys) == 14);
        for (GList *k = keys; k && k->next; k = k->next)
                assert_se(strcmp(k->data, k->next->data) < 0);
        g_list_free(keys);
}

static void test_union(void) {
        _cleanup_platform_vm_spec_ PlatformVmSpec *spec =
                spec_from("\"x\"", "\"ZED\",\"a_lower\",\"HOTKEY_PASSPHRASE\",\"_X\",\"Z_UP\"",
                          "\"Z_UP\",\"B\",\"A_KEY\",\"ZED\"");
        _cleanup_strv_free_ char **l = NULL;
        const char *want[] = { "A_KEY", "B", "DSTACK_VMM_URL", "HOTKEY_PASSPHRASE",
                               "VALIDATOR_BASE_URL", "ZED", "Z_UP", "_X", "a_lower" };
        assert_se(compose_allowed_envs(spec, &l) == 0);
        assert_se(strv_length(l) == ELEMENTSOF(want));
        for (size_t i = 0; i < ELEMENTSOF(want); i++)
                assert_se(streq(l[i], want[i]));

        _cleanup_free_ char *out = NULL;
        assert_se(compose_build(spec, &out, NULL) == 0);
        assert_se(g_str_has_prefix(out, "{\"allowed_envs\":[\"A_KEY\",\"B\",\"DSTACK_VMM_URL\",\"HOTKEY_PASSPHRASE\","
                                "\"VALIDATOR_BASE_URL\",\"ZED\",\"Z_UP\",\"_X\",\"a_lower\"],"
                                "\"docker_compose_file\":\"x\","));
}

static char *json_of(const char *s, size_t n) {
        JsonOut j = JSON_OUT_INIT;
        char *out = NULL;
        json_out_string_len(&j, s, n);
        return json_out_finish(&j, &out, NULL) < 0 ? NULL : out;
}

static void check_escape(const char *in, size_t n, const char *want) {
        _cleanup_free_ char *got = json_of(in, n);
        if (!got || !streq(got, want)) {
                fprintf(stderr, "escape: got %s want %s\n", strempty(got), want);
                assert_se(false);
        }
}

static void test_escaping(void) {
        check_escape("a\"b", 3, "\"a\\\"b\"");
        check_escape("a\\b", 3, "\"a\\\\b\"");
        check_escape("\b\t\n\f\r", 5, "\"\\b\\t\\n\\f\\r\"");
        check_escape("\x01\x1f\x0b", 3, "\"\\u0001\\u001f\\u000b\"");
        check_escape("\0x", 2, "\"\\u0000x\"");
        check_escape("\x7f/", 2, "\"\x7f/\"");
        check_escape("caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x80\xa8", 14, "\"caf\xc3\xa9 \xf0\x9f\x98\x80 \xe2\x80\xa8\"");
        check_escape("", 0, "\"\"");

        _cleanup_free_ char *bad = json_of("\xc3", 1);
        assert_se(!bad);
        _cleanup_free_ char *surrogate = json_of("\xed\xa0\x80", 3);
        assert_se(!surrogate);
}

static void test_escaping_in_compose(void) {
        _cleanup_platform_vm_spec_ PlatformVmSpec *spec =
                spec_from("\"q\\\" b\\\\ c\\u0001 d\\u007f e\\u00e9 f\\/ g\\ud83d\\ude00\"", "", "");
        _cleanup_free_ char *out = NULL;
        assert_se(compose_build(spec, &out, NULL) == 0);
        assert_se(strstr(out, "\"docker_compose_file\":\"q\\\" b\\\\ c\\u0001 d\x7f e\xc3\xa9 f/ g\xf0\x9f\x98\x80\","));
}

/* A spec built in code (not parsed) can still carry bad bytes: refuse them. */
static void test_build_refuses_invalid_utf8(void) {
        _cleanup_platform_vm_spec_ PlatformVmSpec *spec = spec_from(VECTOR_COMPOSE, "", "");
        _cleanup_free_ char *out = NULL;
        free(spec->compose_content);
        assert_se((spec->compose_content = strdup("a\xff")));
        assert_se(compose_build(spec, &out, NULL) == -EINVAL);
        assert_se(!out);
}

static void test_writer(void) {
        JsonOut j = JSON_OUT_INIT;
        _cleanup_free_ char *out = NULL;
        json_out_begin_object(&j);
        json_out_key(&j, "a");
        json_out_begin_array(&j);
        json_out_int(&j, -5);
        json_out_uint(&j, UINT64_MAX);
        json_out_begin_object(&j);
        json_out_end_object(&j);
        json_out_begin_array(&j);
        json_out_end_array(&j);
        json_out_bool(&j, false);
        json_out_end_array(&j);
        json_out_key(&j, "b");
        json_out_bool(&j, true);
        json_out_end_object(&j);
        assert_se(json_out_finish(&j, &out, NULL) == 0);
        assert_se(streq(out, "{\"a\":[-5,18446744073709551615,{},[],false],\"b\":true}"));
}

static void check_allowed(const char *compose, int want_r, const char *want_joined) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *err = NULL;
        int r = compose_parse_allowed_envs(compose, strlen(compose), &l, &err);
        assert_se(r == want_r);
        if (r < 0) {
                assert_se(err && g_str_has_prefix(err, "compose_file"));
                return;
        }
        g_autofree char *joined = g_strjoinv(",", l);
        assert_se(streq(joined, want_joined));
}

static void test_parse_allowed_envs(void) {
        check_allowed(vector_app_compose, 0, "DSTACK_VMM_URL,HOTKEY_PASSPHRASE,VALIDATOR_BASE_URL");
        check_allowed("{\"allowed_envs\":[\"B\",\"A\",\"B\"],\"x\":1}", 0, "A,B");
        check_allowed("{\"runner\":\"docker-compose\"}", 0, "");
        check_allowed("{\"allowed_envs\":null}", 0, "");
        check_allowed("{\"allowed_envs\":\"A\"}", -EINVAL, NULL);
        check_allowed("{\"allowed_envs\":[1]}", -EINVAL, NULL);
        check_allowed("{\"allowed_envs\":[\"1BAD\"]}", -EINVAL, NULL);
        check_allowed("[\"A\"]", -EINVAL, NULL);
        check_allowed("{\"allowed_envs\":[\"A\"", -EINVAL, NULL);
        check_allowed("", -EINVAL, NULL);
}

int main(void) {
        test_vector();
        test_keys_sorted();
        test_union();
        test_escaping();
        test_escaping_in_compose();
        test_build_refuses_invalid_utf8();
        test_writer();
        test_parse_allowed_envs();
        printf("test-compose: ok\n");
        return 0;
}
