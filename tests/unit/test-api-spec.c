/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "shared/api-spec.h"
#include "shared/macro.h"
#include "shared/strv.h"
#include "tests.h"

/* The example of dstack.md §5, as the API sends it (pretty-printed). */
static const char example[] =
        "{ \"vm_type\": \"validator_vm\",\n"
        "  \"compose_content\": \"services:\\n  app:\\n    image: \\\"nginx:latest\\\"\\n\",\n"
        "  \"description\": \"Validator VM\",\n"
        "  \"required_env\": [\"EXTRA_KEY\"],\n"
        "  \"updated_at\": \"2026-08-01T12:00:00Z\",\n"
        "  \"provisioning\": {\n"
        "    \"env_keys\": [\"DSTACK_VMM_URL\", \"HOTKEY_PASSPHRASE\", \"VALIDATOR_BASE_URL\"],\n"
        "    \"manifest_defaults\": { \"manifest_version\": 2, \"name\": \"validator_vm\",\n"
        "        \"runner\": \"docker-compose\", \"kms_enabled\": true, \"gateway_enabled\": true,\n"
        "        \"local_key_provider_enabled\": false, \"key_provider_id\": \"\",\n"
        "        \"public_logs\": true, \"public_sysinfo\": true, \"public_tcbinfo\": true,\n"
        "        \"no_instance_id\": false, \"secure_time\": false },\n"
        "    \"vm_parameters\": { \"name\": \"validator_vm\", \"image\": \"dstack-0.5.2\",\n"
        "        \"vcpu\": 16, \"memory\": 16384, \"disk_size\": 200, \"user_config\": \"\",\n"
        "        \"ports\": [{\"protocol\": \"tcp\", \"host_port\": 0, \"vm_port\": 0,\n"
        "                   \"host_address\": null}],\n"
        "        \"hugepages\": false, \"pin_numa\": false, \"stopped\": false } },\n"
        "  \"unknown_field\": {\"ignored\": [1, 2, 3]} }\n";

static PlatformVmSpec *parse_ok(const char *doc) {
        PlatformVmSpec *spec = NULL;
        _cleanup_free_ char *err = NULL;
        int r = platform_vm_spec_parse(doc, strlen(doc), &spec, &err);
        if (r < 0)
                fprintf(stderr, "unexpected error: %s\n", strempty(err));
        assert_se(r == 0 && spec && !err);
        return spec;
}

static void test_example(void) {
        _cleanup_platform_vm_spec_ PlatformVmSpec *s = parse_ok(example);
        assert_se(streq(s->compose_content, "services:\n  app:\n    image: \"nginx:latest\"\n"));
        assert_se(streq(s->description, "Validator VM"));
        assert_se(strv_length(s->required_env) == 1 && streq(s->required_env[0], "EXTRA_KEY"));
        assert_se(streq(s->updated_at, "2026-08-01T12:00:00Z"));
        assert_se(strv_length(s->env_keys) == 3 && streq(s->env_keys[1], "HOTKEY_PASSPHRASE"));
        assert_se(s->manifest.manifest_version == 2);
        assert_se(streq(s->manifest.name, "validator_vm") && streq(s->manifest.runner, "docker-compose"));
        assert_se(s->manifest.kms_enabled && s->manifest.gateway_enabled && !s->manifest.local_key_provider_enabled);
        assert_se(streq(s->manifest.key_provider_id, ""));
        assert_se(s->manifest.public_logs && s->manifest.public_sysinfo && s->manifest.public_tcbinfo);
        assert_se(!s->manifest.no_instance_id && !s->manifest.secure_time);
        assert_se(streq(s->vm.name, "validator_vm") && streq(s->vm.image, "dstack-0.5.2"));
        assert_se(s->vm.vcpu == 16 && s->vm.memory_mb == 16384 && s->vm.disk_size_gb == 200);
        assert_se(streq(s->vm.user_config, ""));
        assert_se(s->vm.n_ports == 1 && s->vm.ports[0].protocol == PORT_PROTOCOL_TCP);
        assert_se(s->vm.ports[0].host_port == 0 && s->vm.ports[0].vm_port == 0);
        assert_se(streq(s->vm.ports[0].host_address, ""));
        assert_se(!s->vm.hugepages && !s->vm.pin_numa && !s->vm.stopped);
}

static char *replace(const char *doc, const char *from, const char *to) {
        const char *at = strstr(doc, from);
        if (!at) {
                fprintf(stderr, "test bug: \"%s\" not in the example\n", from);
                assert_se(false);
        }
        char *out = NULL;
        assert_se(asprintf(&out, "%.*s%s%s", (int) (at - doc), doc, to, at + strlen(from)) > 0);
        return out;
}

static void test_variants_accepted(void) {
        static const struct { const char *from, *to; } ok[] = {
                { "\"description\": \"Validator VM\"", "\"description\": null" },
                { "\"description\": \"Validator VM\",", "" },
                { "\"vm_type\": \"validator_vm\",", "" },
                { "\"required_env\": [\"EXTRA_KEY\"],", "" },
                { "\"host_address\": null", "\"host_address\": \"127.0.0.1\"" },
                { "\"ports\": [{", "\"ports\": [], \"x\": [{" },
                { "\"protocol\": \"tcp\", \"host_port\": 0", "\"protocol\": \"udp\", \"host_port\": 65535" },
                { "\"vcpu\": 16", "\"vcpu\": 512" },
                { "\"memory\": 16384", "\"memory\": 64" },
                { "\"key_provider_id\": \"\"", "\"key_provider_id\": \"00ABcd\"" },
        };
        for (size_t i = 0; i < ELEMENTSOF(ok); i++) {
                _cleanup_free_ char *doc = replace(example, ok[i].from, ok[i].to);
                platform_vm_spec_free(parse_ok(doc));
        }
}

static const struct {
        const char *from, *to, *error;
} bad[] = {
        { "\"vcpu\": 16", "\"vcpu\": 0", "provisioning.vm_parameters.vcpu: must be an integer between 1 and 512" },
        { "\"vcpu\": 16", "\"vcpu\": 513", "provisioning.vm_parameters.vcpu: must be an integer between 1 and 512" },
        { "\"vcpu\": 16", "\"vcpu\": 16.0", "provisioning.vm_parameters.vcpu: must be an integer" },
        { "\"vcpu\": 16", "\"vcpu\": \"16\"", "provisioning.vm_parameters.vcpu: must be an integer" },
        { "\"vcpu\": 16,", "", "provisioning.vm_parameters.vcpu: is required" },
        { "\"memory\": 16384", "\"memory\": 63", "provisioning.vm_parameters.memory: must be an integer between 64 and 4194304" },
        { "\"memory\": 16384", "\"memory\": 99999999999999999", "provisioning.vm_parameters.memory: must be an integer" },
        { "\"disk_size\": 200", "\"disk_size\": 65537", "provisioning.vm_parameters.disk_size: must be an integer between 1 and 65536" },
        { "\"disk_size\": 200", "\"disk_size\": -1", "provisioning.vm_parameters.disk_size: must be an integer" },
        { "\"name\": \"validator_vm\", \"image\"", "\"name\": \"a/b\", \"image\"", "provisioning.vm_parameters.name: must be a label" },
        { "\"name\": \"validator_vm\", \"image\"", "\"name\": \"\", \"image\"", "provisioning.vm_parameters.name: must be a label" },
        { "\"image\": \"dstack-0.5.2\"", "\"image\": \"../etc\"", "provisioning.vm_parameters.image: must be a label" },
        { "\"image\": \"dstack-0.5.2\"", "\"image\": \"a b\"", "provisioning.vm_parameters.image: must be a label" },
        { "\"image\": \"dstack-0.5.2\",", "", "provisioning.vm_parameters.image: is required" },
        { "\"user_config\": \"\"", "\"user_config\": 5", "provisioning.vm_parameters.user_config: must be a string" },
        { "\"hugepages\": false", "\"hugepages\": 0", "provisioning.vm_parameters.hugepages: must be a boolean" },
        { "\"stopped\": false", "\"stopped\": \"false\"", "provisioning.vm_parameters.stopped: must be a boolean" },
        { "\"ports\": [{", "\"ports\": 5, \"x\": [{", "provisioning.vm_parameters.ports: must be an array" },
        { "\"ports\": [{", "\"ports\": [1, {", "provisioning.vm_parameters.ports[0]: must be an object" },
        { "\"protocol\": \"tcp\"", "\"protocol\": \"sctp\"", "provisioning.vm_parameters.ports[0].protocol: must be \"tcp\" or \"udp\"" },
        { "\"protocol\": \"tcp\",", "", "provisioning.vm_parameters.ports[0].protocol: is required" },
        { "\"host_port\": 0", "\"host_port\": 65536", "provisioning.vm_parameters.ports[0].host_port: must be an integer between 0 and 65535" },
        { "\"vm_port\": 0", "\"vm_port\": -1", "provisioning.vm_parameters.ports[0].vm_port: must be an integer between 0 and 65535" },
        { "\"host_address\": null", "\"host_address\": \"1.2.3.4;rm\"", "provisioning.vm_parameters.ports[0].host_address: must be an address" },
        { "\"host_address\": null", "\"host_address\": 4", "provisioning.vm_parameters.ports[0].host_address: must be a string" },
        { "\"manifest_version\": 2", "\"manifest_version\": 0", "provisioning.manifest_defaults.manifest_version: must be an integer" },
        { "\"manifest_version\": 2,", "", "provisioning.manifest_defaults.manifest_version: is required" },
        { "\"kms_enabled\": true", "\"kms_enabled\": null", "provisioning.manifest_defaults.kms_enabled: must be a boolean" },
        { "\"secure_time\": false", "\"secure_time\": 1", "provisioning.manifest_defaults.secure_time: must be a boolean" },
        { "\"no_instance_id\": false,", "", "provisioning.manifest_defaults.no_instance_id: is required" },
        { "\"key_provider_id\": \"\"", "\"key_provider_id\": \"xyz\"", "provisioning.manifest_defaults.key_provider_id: must be hex" },
        { "\"runner\": \"docker-compose\"", "\"runner\": \"docker compose\"", "provisioning.manifest_defaults.runner: must be a label" },
        { "\"name\": \"validator_vm\",\n", "\"name\": [],\n", "provisioning.manifest_defaults.name: must be a string" },
        { "\"env_keys\": [\"DSTACK_VMM_URL\"", "\"env_keys\": [\"1DSTACK\"", "provisioning.env_keys[0]: must be an environment variable name" },
        { "\"HOTKEY_PASSPHRASE\", \"VALIDATOR", "\"HOTKEY-PASSPHRASE\", \"VALIDATOR", "provisioning.env_keys[1]: must be an environment variable name" },
        { "\"env_keys\": [", "\"env_keys\": \"A\", \"x\": [", "provisioning.env_keys: must be an array" },
        { "[\"EXTRA_KEY\"]", "[\"EXTRA_KEY\", 7]", "required_env[1]: must be an environment variable name" },
        { "[\"EXTRA_KEY\"]", "[\"A=B\"]", "required_env[0]: must be an environment variable name" },
        { "\"compose_content\": \"services", "\"compose_content\": \"\", \"x\": \"services", "compose_content: must not be empty" },
        { "\"compose_content\": \"services", "\"compose_content\": null, \"x\": \"services", "compose_content: must be a string" },
        { "\"compose_content\": \"services", "\"x\": \"services", "compose_content: is required" },
        { "\"description\": \"Validator VM\"", "\"description\": 3", "description: must be a string" },
        { "\"vm_type\": \"validator_vm\"", "\"vm_type\": \"miner_vm\"", "vm_type: must be \"validator_vm\"" },
        { "\"updated_at\": \"2026", "\"updated_at\": \"\\n2026", "updated_at: must be printable ASCII" },
        { "\"provisioning\": {", "\"provisioning\": [], \"x\": {", "provisioning: must be an object" },
        { "\"provisioning\": {", "\"x\": {", "provisioning: is required" },
        { "\"manifest_defaults\": {", "\"manifest_defaults\": 1, \"x\": {", "provisioning.manifest_defaults: must be an object" },
        { "\"vm_parameters\": {", "\"x\": {", "provisioning.vm_parameters: is required" },
        { "{ \"vm_type\"", "[{ \"vm_type\"", "document: not valid JSON" },
        { "\"validator_vm\",\n  \"compose", "\"validator_vm\"\n  \"compose", "document: not valid JSON" },
        { "services:", "a\\u0000b", "document: contains an escaped NUL" },
        { "\"ignored\": [1, 2, 3]", "\"ignored\": [[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]", "document: nested deeper than 16 levels" },
        { "services:", "\\ud800", "compose_content: must be valid UTF-8" },
};

static void test_rejected(void) {
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *doc = replace(example, bad[i].from, bad[i].to), *err = NULL;
                PlatformVmSpec *spec = NULL;
                int r = platform_vm_spec_parse(doc, strlen(doc), &spec, &err);
                if (r != -EINVAL || !err || !g_str_has_prefix(err, bad[i].error)) {
                        fprintf(stderr, "case %zu: want \"%s\", got %d \"%s\"\n", i, bad[i].error, r, strempty(err));
                        assert_se(false);
                }
                assert_se(!spec);
        }
}

static void test_bad_bytes(void) {
        static const struct { const char *doc; size_t len; const char *error; } raw[] = {
                { "", 0, "document: must be a JSON object" },
                { "[]", 2, "document: must be a JSON object" },
                { "null", 4, "document: must be a JSON object" },
                { "{\"a\":\0}", 7, "document: contains a NUL byte" },
                { "{\"compose_content\":\"\xff\"}", 24, "" },
        };
        for (size_t i = 0; i < ELEMENTSOF(raw); i++) {
                _cleanup_free_ char *err = NULL;
                PlatformVmSpec *spec = NULL;
                int r = platform_vm_spec_parse(raw[i].doc, raw[i].len, &spec, &err);
                if (r != -EINVAL || !err || !g_str_has_prefix(err, raw[i].error)) {
                        fprintf(stderr, "raw %zu: want \"%s\", got %d \"%s\"\n", i, raw[i].error, r, strempty(err));
                        assert_se(false);
                }
                assert_se(!spec);
        }

        /* 129 ports */
        GString *ports = g_string_new("\"ports\": [");
        for (int i = 0; i <= API_MAX_PORTS; i++)
                g_string_append_printf(ports, "%s{\"protocol\":\"tcp\",\"host_port\":%d,\"vm_port\":1}", i ? "," : "", i);
        g_string_append(ports, "], \"x\": [{");
        _cleanup_free_ char *doc = replace(example, "\"ports\": [{", ports->str), *err = NULL;
        g_string_free(ports, TRUE);
        PlatformVmSpec *spec = NULL;
        assert_se(platform_vm_spec_parse(doc, strlen(doc), &spec, &err) == -EINVAL);
        assert_se(streq(err, "provisioning.vm_parameters.ports: must have at most 128 elements"));

        /* compose_content just over 1 MiB */
        GString *big = g_string_new("\"compose_content\": \"");
        for (int i = 0; i <= API_COMPOSE_MAX; i++)
                g_string_append_c(big, 'a');
        g_string_append(big, "\", \"x\": \"");
        _cleanup_free_ char *doc2 = replace(example, "\"compose_content\": \"", big->str), *err2 = NULL;
        g_string_free(big, TRUE);
        assert_se(platform_vm_spec_parse(doc2, strlen(doc2), &spec, &err2) == -EINVAL);
        assert_se(streq(err2, "compose_content: must be at most 1048576 bytes"));

        /* The error pointer is optional. */
        assert_se(platform_vm_spec_parse("[]", 2, &spec, NULL) == -EINVAL);
}

int main(void) {
        test_example();
        test_variants_accepted();
        test_rejected();
        test_bad_bytes();
        printf("test-api-spec: ok (%zu rejected documents)\n", ELEMENTSOF(bad));
        return 0;
}
