/* SPDX-License-Identifier: Apache-2.0 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "clients/vmm-json.h"
#include "shared/macro.h"
#include "tests.h"

#define S(x) x, strlen(x)

static char *err;

static void expect_error(int r, const char *msg) {
        if (r != -EBADMSG || !err || !streq(err, msg)) {
                fprintf(stderr, "expected -EBADMSG '%s', got %d '%s'\n", msg, r, strempty(err));
                abort();
        }
        err = mfree(err);
}

static const char good_status[] =
        "{\"vms\":[{\"id\":\"a1\",\"name\":\"validator_vm\",\"status\":\"running\",\"uptime\":\"5m\","
        "\"app_id\":\"0123456789abcdef0123456789abcdef01234567\",\"boot_progress\":\"done\",\"boot_error\":\"\","
        "\"exited_at\":null,\"image_version\":\"0.5.2\",\"future_field\":{\"x\":1},"
        "\"configuration\":{\"name\":\"validator_vm\",\"image\":\"dstack-0.5.2\",\"compose_file\":\"{}\","
        "\"vcpu\":16,\"memory\":16384,\"disk_size\":200,\"encrypted_env\":\"00ff\","
        "\"ports\":[{\"protocol\":\"tcp\",\"host_port\":8080,\"vm_port\":80,\"host_address\":\"127.0.0.1\"},"
        "{\"protocol\":\"udp\",\"host_port\":0,\"vm_port\":53}],\"kms_urls\":[\"https://kms\"],\"stopped\":false}},"
        "{\"id\":\"b2\",\"status\":\"removing\"}],\"port_mapping_enabled\":true,\"total\":2}";

static void test_status(void) {
        VmmStatusReply s;

        assert_se(vmm_parse_status_reply(S(good_status), &s, &err) == 0);
        assert_se(s.n_vms == 2 && s.total == 2 && s.port_mapping_enabled);
        VmInfo *v = &s.vms[0];
        assert_se(streq(v->id, "a1") && streq(v->name, "validator_vm") && v->status == VM_STATUS_RUNNING);
        assert_se(v->exited_at == NULL && streq(v->image_version, "0.5.2") && streq(v->boot_progress, "done"));
        assert_se(v->has_configuration);
        VmConfiguration *c = &v->configuration;
        assert_se(c->vcpu == 16 && c->memory == 16384 && c->disk_size == 200 && streq(c->image, "dstack-0.5.2"));
        assert_se(c->encrypted_env_len == 2 && c->encrypted_env[1] == 0xff);
        assert_se(c->n_ports == 2 && c->ports[0].host_port == 8080 && streq(c->ports[0].host_address, "127.0.0.1"));
        assert_se(streq(c->ports[1].protocol, "udp") && streq(c->ports[1].host_address, ""));
        assert_se(streq(c->kms_urls[0], "https://kms") && !c->kms_urls[1]);
        assert_se(s.vms[1].status == VM_STATUS_REMOVING && !s.vms[1].has_configuration && !s.vms[1].name);
        vmm_status_reply_done(&s);

        assert_se(vmm_parse_status_reply(S("{}"), &s, &err) == 0 && s.n_vms == 0);
        vmm_status_reply_done(&s);

        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"id\":\"a\",\"status\":\"running\"},{\"id\":\"b\",\"status\":\"stopped\"},"
                                              "{\"id\":\"c\",\"status\":\"zombie\"}]}"), &s, &err),
                     "Status.vms[2].status: unknown value 'zombie'");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"id\":\"a\",\"status\":\"killed\"}]}"), &s, &err),
                     "Status.vms[0].status: unknown value 'killed'");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"id\":\"a\"}]}"), &s, &err),
                     "Status.vms[0].status: missing");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"status\":\"running\"}]}"), &s, &err),
                     "Status.vms[0].id: missing");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"id\":7,\"status\":\"running\"}]}"), &s, &err),
                     "Status.vms[0].id: expected a string, got an integer");
        expect_error(vmm_parse_status_reply(S("{\"vms\":{}}"), &s, &err),
                     "Status.vms: expected an array, got an object");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[1]}"), &s, &err),
                     "Status.vms[0]: expected an object, got an integer");
        expect_error(vmm_parse_status_reply(S("{\"total\":-1}"), &s, &err),
                     "Status.total: -1 out of range 0..4294967295");
        expect_error(vmm_parse_status_reply(S("{\"port_mapping_enabled\":\"yes\"}"), &s, &err),
                     "Status.port_mapping_enabled: expected a boolean, got a string");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"id\":\"a\",\"status\":\"running\",\"configuration\":"
                                              "{\"ports\":[{\"protocol\":\"sctp\",\"vm_port\":1}]}}]}"), &s, &err),
                     "Status.vms[0].configuration.ports[0].protocol: unknown value 'sctp'");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"id\":\"a\",\"status\":\"running\",\"configuration\":"
                                              "{\"ports\":[{\"protocol\":\"tcp\",\"vm_port\":65536}]}}]}"), &s, &err),
                     "Status.vms[0].configuration.ports[0].vm_port: 65536 out of range 0..65535");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"id\":\"a\",\"status\":\"running\",\"configuration\":"
                                              "{\"vcpu\":1.5}}]}"), &s, &err),
                     "Status.vms[0].configuration.vcpu: expected an integer, got a number");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"id\":\"a\",\"status\":\"running\",\"configuration\":"
                                              "{\"encrypted_env\":\"0g\"}}]}"), &s, &err),
                     "Status.vms[0].configuration.encrypted_env: not hex");
        expect_error(vmm_parse_status_reply(S("null"), &s, &err), "Status: expected an object, got null");
        expect_error(vmm_parse_status_reply(S(""), &s, &err), "Status: expected an object, got null");
        expect_error(vmm_parse_status_reply(S("[]"), &s, &err), "Status: expected an object, got an array");
        assert_se(vmm_parse_status_reply(S("{\"vms\":["), &s, &err) == -EBADMSG);
        assert_se(strncmp(err, "Status: malformed JSON: ", 24) == 0);
        err = mfree(err);
        assert_se(vmm_parse_status_reply("{}\0x", 4, &s, &err) == -EBADMSG);
        err = mfree(err);

        char deep[200];
        memset(deep, '[', sizeof deep);
        expect_error(vmm_parse_status_reply(deep, sizeof deep, &s, &err), "Status: nested deeper than 32 levels");
        expect_error(vmm_parse_status_reply(S("{\"vms\":[{\"id\":\"a\\u0000b\",\"status\":\"running\"}]}"), &s, &err),
                     "Status: a string contains \\u0000");
        assert_se(vmm_parse_status_reply(S("{\"vms\":[{\"id\":\"a\\\\u0000b\",\"status\":\"running\"}]}"), &s, &err) == 0);
        assert_se(streq(s.vms[0].id, "a\\u0000b"));
        vmm_status_reply_done(&s);
        printf("status: ok\n");
}

static void test_info(void) {
        VmmInfoReply g;

        assert_se(vmm_parse_info_reply(S("{\"found\":false,\"info\":null}"), &g, &err) == 0);
        assert_se(!g.found && !g.info);
        vmm_info_reply_done(&g);
        assert_se(vmm_parse_info_reply(S("{\"found\":true,\"info\":{\"id\":\"x\",\"status\":\"exited\","
                                      "\"exited_at\":\"2026-11-22T00:00:00Z\",\"boot_error\":\"oops\"}}"), &g, &err) == 0);
        assert_se(g.found && g.info->status == VM_STATUS_EXITED && streq(g.info->boot_error, "oops"));
        vmm_info_reply_done(&g);
        expect_error(vmm_parse_info_reply(S("{\"found\":true}"), &g, &err), "GetInfo.info: missing although found is true");
        expect_error(vmm_parse_info_reply(S("{\"found\":true,\"info\":{\"id\":\"x\",\"status\":\"error\"}}"), &g, &err),
                     "GetInfo.info.status: unknown value 'error'");
        printf("info: ok\n");
}

static void test_small_replies(void) {
        char *s = NULL;

        assert_se(vmm_parse_empty_reply("StartVm", S("null"), &err) == 0);
        assert_se(vmm_parse_empty_reply("StartVm", S(""), &err) == 0);
        assert_se(vmm_parse_empty_reply("StartVm", S("{}"), &err) == 0);
        expect_error(vmm_parse_empty_reply("StopVm", S("42"), &err), "StopVm: expected null, got an integer");

        assert_se(vmm_parse_id_reply("CreateVm", S("{\"id\":\"abc\"}"), &s, &err) == 0 && streq(s, "abc"));
        s = mfree(s);
        expect_error(vmm_parse_id_reply("CreateVm", S("{\"id\":\"\"}"), &s, &err), "CreateVm.id: empty");
        expect_error(vmm_parse_id_reply("CreateVm", S("null"), &s, &err), "CreateVm: expected an object, got null");

        /* UpdateVm's id is the app id of the compose sent, or "": never required
         * (issue 7, defect 5). */
        const char *app = "0123456789abcdef0123456789abcdef01234567";
        char u[100];
        snprintf(u, sizeof u, "{\"id\":\"%s\"}", app);
        assert_se(vmm_parse_update_reply("UpdateVm", S(u), &s, &err) == 0 && streq(s, app));
        s = mfree(s);
        static const char *const none[] = { "{\"id\":\"\"}", "{}", "null", "", "{\"id\":null}", "{\"id\":5}" };
        for (size_t i = 0; i < ELEMENTSOF(none); i++) {
                s = (char *) "sentinel";
                assert_se(vmm_parse_update_reply("UpgradeApp", S(none[i]), &s, &err) == 0);
                assert_se(!s);
        }
        expect_error(vmm_parse_update_reply("UpdateVm", S("[1]"), &s, &err),
                     "UpdateVm: expected an object or null, got an array");
        assert_se(vmm_parse_update_reply("UpdateVm", S("{"), &s, &err) == -EBADMSG);
        assert_se(strncmp(err, "UpdateVm: malformed JSON", 24) == 0);
        err = mfree(err);

        char h[100];
        snprintf(h, sizeof h, "{\"hash\":\"%s\"}", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        assert_se(vmm_parse_compose_hash_reply(S(h), &s, &err) == 0 && strlen(s) == 64);
        s = mfree(s);
        expect_error(vmm_parse_compose_hash_reply(S("{\"hash\":\"ABCD\"}"), &s, &err),
                     "GetComposeHash.hash: expected 64 lowercase hex digits");

        VmmPubKeyReply k;
        char pk[400];
        snprintf(pk, sizeof pk, "{\"public_key\":\"%064d\",\"signature\":\"%0130d\",\"timestamp\":1700000000}", 0, 0);
        pk[17] = 'a'; /* high nibble of byte 1 */
        assert_se(vmm_parse_pubkey_reply(S(pk), &k, &err) == 0);
        assert_se(k.public_key[1] == 0xa0 && k.has_signature && !k.has_signature_v1 && k.has_timestamp && k.timestamp == 1700000000);
        expect_error(vmm_parse_pubkey_reply(S("{\"public_key\":\"00\"}"), &k, &err),
                     "GetAppEnvEncryptPubKey.public_key: expected 32 bytes of hex");
        expect_error(vmm_parse_pubkey_reply(S("{}"), &k, &err), "GetAppEnvEncryptPubKey.public_key: missing");

        /* A ≥0.5.6 VMM in front of an older KMS: every field, defaulted (issue 7,
         * defect 4). Empty signatures are absent, not malformed; timestamp 0 too. */
        snprintf(pk, sizeof pk, "{\"public_key\":\"%064d\",\"signature\":\"%0130d\",\"timestamp\":0,"
                 "\"signature_v1\":\"\"}", 0, 0);
        assert_se(vmm_parse_pubkey_reply(S(pk), &k, &err) == 0);
        assert_se(k.has_signature && !k.has_signature_v1 && !k.has_timestamp && k.timestamp == 0);
        snprintf(pk, sizeof pk, "{\"public_key\":\"%064d\",\"signature\":\"\",\"timestamp\":0,"
                 "\"signature_v1\":\"\"}", 0);
        assert_se(vmm_parse_pubkey_reply(S(pk), &k, &err) == 0);
        assert_se(!k.has_signature && !k.has_signature_v1 && !k.has_timestamp);
        snprintf(pk, sizeof pk, "{\"public_key\":\"%064d\",\"signature\":null}", 0);
        assert_se(vmm_parse_pubkey_reply(S(pk), &k, &err) == 0 && !k.has_signature);
        /* a signature that is there but not 65 bytes is there, malformed: the
         * KMS trust policy blocks on it (issue 18) */
        snprintf(pk, sizeof pk, "{\"public_key\":\"%064d\",\"signature_v1\":\"00\"}", 0);
        assert_se(vmm_parse_pubkey_reply(S(pk), &k, &err) == 0);
        assert_se(k.has_signature_v1 && k.signature_v1_malformed && !k.has_signature && !k.signature_malformed);
        snprintf(pk, sizeof pk, "{\"public_key\":\"%064d\",\"signature\":\"0x%0130d\"}", 0, 7);
        assert_se(vmm_parse_pubkey_reply(S(pk), &k, &err) == 0 && k.has_signature && !k.signature_malformed);
        snprintf(pk, sizeof pk, "{\"public_key\":\"%064d\",\"signature\":7}", 0);
        expect_error(vmm_parse_pubkey_reply(S(pk), &k, &err),
                     "GetAppEnvEncryptPubKey.signature: expected a string, got an integer");
        /* the public key itself may not be empty */
        expect_error(vmm_parse_pubkey_reply(S("{\"public_key\":\"\"}"), &k, &err),
                     "GetAppEnvEncryptPubKey.public_key: empty");

        VmmVersionReply v;
        assert_se(vmm_parse_version_reply(S("{\"version\":\"v0.5.6\",\"rev\":\"abc\"}"), &v, &err) == 0);
        assert_se(streq(v.version, "v0.5.6") && streq(v.rev, "abc"));
        vmm_version_reply_done(&v);
        expect_error(vmm_parse_version_reply(S("{\"rev\":\"abc\"}"), &v, &err), "Version.version: missing");

        VmmMetaReply m;
        assert_se(vmm_parse_meta_reply(S("{\"kms\":{\"url\":\"x\"},\"resources\":{\"max_cvm_number\":4,"
                                      "\"max_allocable_vcpu\":64,\"max_allocable_memory_in_mb\":65536}}"), &m, &err) == 0);
        assert_se(m.max_cvm_number == 4 && m.max_allocable_vcpu == 64 && m.max_allocable_memory_in_mb == 65536);
        expect_error(vmm_parse_meta_reply(S("{\"resources\":[]}"), &m, &err),
                     "GetMeta.resources: expected an object, got an array");

        VmmImagesReply l;
        assert_se(vmm_parse_images_reply(S("{\"images\":[{\"name\":\"dstack-0.5.2\",\"version\":\"0.5.2\",\"is_dev\":true}]}"),
                                      &l, &err) == 0);
        assert_se(l.n_images == 1 && streq(l.images[0].name, "dstack-0.5.2") && l.images[0].is_dev);
        vmm_images_reply_done(&l);
        expect_error(vmm_parse_images_reply(S("{\"images\":[{\"version\":\"1\"}]}"), &l, &err),
                     "ListImages.images[0].name: missing");

        assert_se(vmm_parse_error_reply(S("{\n  \"error\": \"VM is running, stop it first\"\n}"), &s) == 0);
        assert_se(streq(s, "VM is running, stop it first"));
        s = mfree(s);
        assert_se(vmm_parse_error_reply(S("Service not found: /prpc/UpdateVm\n"), &s) == 0);
        assert_se(streq(s, "Service not found: /prpc/UpdateVm"));
        s = mfree(s);
        /* What the VMM says reaches the bus and the operator's terminal: valid
         * UTF-8, no control character (C0, DEL, C1), cut at a character. */
        assert_se(vmm_parse_error_reply(S("{\"error\": \"bad image \\u001b[2J\\u009b31m x\"}"), &s) == 0);
        assert_se(streq(s, "bad image ?[2J?31m x"));
        s = mfree(s);
        assert_se(vmm_parse_error_reply(S("proxy: \xff\xfe \xc2\x9b" "2J\n"), &s) == 0);
        assert_se(g_utf8_validate(s, -1, NULL) && !strstr(s, "\xc2\x9b") && strstr(s, "?2J"));
        s = mfree(s);
        GString *long_msg = g_string_new("{\"error\": \"");
        for (int i = 0; i < 600; i++)
                g_string_append(long_msg, "\xc3\xa9");
        g_string_append(long_msg, "\"}");
        assert_se(vmm_parse_error_reply(long_msg->str, long_msg->len, &s) == 0);
        assert_se(g_utf8_validate(s, -1, NULL) && strlen(s) <= 1024);
        s = mfree(s);
        g_string_free(long_msg, TRUE);
        printf("small replies: ok\n");
}

static void test_versions(void) {
        VmmVersion v;

        assert_se(vmm_version_parse("v0.5.6", &v) == 0 && v.major == 0 && v.minor == 5 && v.patch == 6);
        assert_se(vmm_version_has_update_vm(&v) && !vmm_version_remove_is_async(&v));
        assert_se(vmm_version_parse("0.5.7", &v) == 0 && vmm_version_remove_is_async(&v));
        assert_se(vmm_version_parse("0.5.5-rc1", &v) == 0 && v.patch == 5 && !vmm_version_has_update_vm(&v));
        assert_se(vmm_version_parse("1.0", &v) == 0 && v.major == 1 && vmm_version_remove_is_async(&v));
        assert_se(vmm_version_parse("", &v) == -EINVAL);
        assert_se(vmm_version_parse("v", &v) == -EINVAL);
        assert_se(vmm_version_parse("0.x", &v) == -EINVAL);
        assert_se(vmm_version_parse("0.5.6x", &v) == -EINVAL);
        assert_se(vmm_version_parse("99999999.1", &v) == -EINVAL);
        printf("versions: ok\n");
}

static void test_requests(void) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL, *d = NULL, *e = NULL;
        VmPort ports[] = { { .protocol = (char *) "tcp", .host_port = 1, .vm_port = 2 } };
        uint8_t env[] = { 0xde, 0xad };
        VmConfiguration conf = {
                .name = (char *) "vm", .image = (char *) "img", .compose_file = (char *) "{\"a\":1}",
                .vcpu = 2, .memory = 1024, .disk_size = 10, .ports = ports, .n_ports = 1,
                .encrypted_env = env, .encrypted_env_len = 2,
        };

        assert_se(vmm_build_id_request("x", &a) == 0 && streq(a, "{\"id\":\"x\"}"));
        assert_se(vmm_build_id_request("", &a) == -EINVAL);
        assert_se(vmm_build_vm_configuration(&conf, &b) == 0);
        assert_se(streq(b, "{\"name\":\"vm\",\"image\":\"img\",\"compose_file\":\"{\\\"a\\\":1}\",\"encrypted_env\":\"dead\","
                        "\"vcpu\":2,\"memory\":1024,\"disk_size\":10,\"ports\":[{\"protocol\":\"tcp\",\"host_port\":1,"
                        "\"vm_port\":2,\"host_address\":\"\"}],\"hugepages\":false,\"pin_numa\":false,\"stopped\":false}"));
        assert_se(!strstr(b, "null") && !strstr(b, "app_id"));
        conf.app_id = (char *) "";
        free(b);
        assert_se(vmm_build_vm_configuration(&conf, &b) == 0 && !strstr(b, "app_id"));
        ports[0].protocol = (char *) "sctp";
        assert_se(vmm_build_vm_configuration(&conf, &c) == -EINVAL);
        ports[0].protocol = (char *) "udp";

        VmmUpdateRequest u = { .id = "x", .compose_file = "c", .update_ports = true, .ports = ports, .n_ports = 1 };
        assert_se(vmm_build_update_request(&u, &c) == 0);
        assert_se(streq(c, "{\"id\":\"x\",\"compose_file\":\"c\",\"update_ports\":true,\"ports\":[{\"protocol\":\"udp\","
                        "\"host_port\":1,\"vm_port\":2,\"host_address\":\"\"}]}"));
        const char *ids[] = { "a", "b", NULL };
        assert_se(vmm_build_status_request(ids, NULL, true, &d) == 0 && streq(d, "{\"ids\":[\"a\",\"b\"],\"brief\":true}"));
        assert_se(vmm_build_pubkey_request("0123", &e) == 0 && streq(e, "{\"app_id\":\"0123\"}"));
        printf("requests: ok\n");
}

static bool same(const char *a, const char *b) {
        return vmm_status_bodies_same(a, strlen(a), b, strlen(b));
}

/* Status answers that differ only in the humantime texts are the same answer. */
static void test_status_bodies_same(void) {
        const char *base = "{\"vms\":[{\"id\":\"a\",\"status\":\"running\",\"uptime\":\"1m 5s\","
                           "\"exited_at\":\"never\",\"configuration\":{\"compose_file\":\"{\\\"uptime\\\":\\\"x\\\"}\"}}]}";
        assert_se(same(base, base));
        assert_se(same(base, "{\"vms\":[{\"id\":\"a\",\"status\":\"running\",\"uptime\":\"2h 3m 1s 5ms\","
                             "\"exited_at\":\"3s\",\"configuration\":{\"compose_file\":\"{\\\"uptime\\\":\\\"x\\\"}\"}}]}"));
        /* anything else differs */
        assert_se(!same(base, "{\"vms\":[{\"id\":\"a\",\"status\":\"exited\",\"uptime\":\"1m 5s\","
                              "\"exited_at\":\"never\",\"configuration\":{\"compose_file\":\"{\\\"uptime\\\":\\\"x\\\"}\"}}]}"));
        /* an escaped "uptime" inside a string value is content, compared as such */
        assert_se(!same(base, "{\"vms\":[{\"id\":\"a\",\"status\":\"running\",\"uptime\":\"1m 5s\","
                              "\"exited_at\":\"never\",\"configuration\":{\"compose_file\":\"{\\\"uptime\\\":\\\"y\\\"}\"}}]}"));
        /* a VM named "uptime" is a value, not the member */
        assert_se(!same("{\"name\":\"uptime\",\"x\":1}", "{\"name\":\"uptime\",\"x\":2}"));
        assert_se(!same(base, "{\"vms\":[]}"));
        assert_se(!same("{\"uptime\":\"1s\"}", "{\"uptime\":\"1s\"} "));
        assert_se(!same("{\"uptime\":\"1s\",\"a\":1}", "{\"exited_at\":\"1s\",\"a\":1}"));
        assert_se(same("", ""));
}

/* The plain byte-by-byte walk the function must agree with. */
static size_t ref_member_value(const char *a, size_t n, size_t i) {
        static const char *const names[] = { "\"uptime\":\"", "\"exited_at\":\"" };
        for (size_t k = 0; k < ELEMENTSOF(names); k++) {
                size_t l = strlen(names[k]);
                if (n - i >= l && memcmp(a + i, names[k], l) == 0)
                        return i + l;
        }
        return 0;
}

static size_t ref_string_end(const char *a, size_t n, size_t i) {
        for (; i < n; i++) {
                if (a[i] == '\\')
                        i++;
                else if (a[i] == '"')
                        return i;
        }
        return n;
}

static bool ref_same(const char *a, size_t na, const char *b, size_t nb) {
        size_t i = 0, j = 0;
        while (i < na && j < nb) {
                if (a[i] != b[j])
                        return false;
                size_t vi = a[i] == '"' ? ref_member_value(a, na, i) : 0;
                size_t vj = vi ? ref_member_value(b, nb, j) : 0;
                if (vi && vj && vi - i == vj - j) {
                        i = ref_string_end(a, na, vi);
                        j = ref_string_end(b, nb, vj);
                        continue;
                }
                i++, j++;
        }
        return i == na && j == nb;
}

static size_t random_body(char *buf, size_t size, unsigned *seed) {
        static const char *const tokens[] = { "\"uptime\":\"", "\"exited_at\":\"", "\"", "\\", "a", "1s",
                                              ",", "{", "}", ":", "\"u", "\"e", "uptime" };
        size_t n = 0, k = (size_t) rand_r(seed) % 12;
        buf[0] = 0;
        for (size_t t = 0; t < k; t++) {
                const char *tok = tokens[(size_t) rand_r(seed) % ELEMENTSOF(tokens)];
                size_t l = strlen(tok);
                if (n + l + 1 > size)
                        break;
                memcpy(buf + n, tok, l + 1);
                n += l;
        }
        return n;
}

/* Random bodies built from the tokens that matter: the same verdict as the
 * plain walk, and equal bodies are always the same. */
static void test_status_bodies_same_random(void) {
        unsigned seed = 17;
        char a[128], b[128];
        for (unsigned t = 0; t < 200000; t++) {
                size_t na = random_body(a, sizeof a, &seed), nb;
                if (t % 3 == 0) {
                        memcpy(b, a, na + 1);
                        nb = na;
                } else
                        nb = random_body(b, sizeof b, &seed);
                bool got = vmm_status_bodies_same(a, na, b, nb), want = ref_same(a, na, b, nb);
                if (got != want)
                        fprintf(stderr, "bodies \"%s\" and \"%s\": %d, the plain walk %d\n", a, b, got, want);
                assert_se(got == want);
                assert_se(vmm_status_bodies_same(a, na, a, na));
        }
        printf("status bodies, random: ok\n");
}

int main(void) {
        test_status();
        test_info();
        test_small_replies();
        test_versions();
        test_requests();
        test_status_bodies_same();
        test_status_bodies_same_random();
        printf("test-vmm-json: ok\n");
        return 0;
}
