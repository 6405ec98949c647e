/* SPDX-License-Identifier: Apache-2.0 */
/* Test driver for the KMS trust policy (core/kms-trust.c) against the dstack
 * SDK's verifier (tests/integration/test_sdk_oracle.py): stdin {"cases":
 * [{"kind": "v1"|"legacy", "public_key", "signature", "app_id", "timestamp"}]},
 * stdout a JSON array of the signer each case is accepted under, or null.
 * No trusted list, nothing pinned, KmsSignatureMaxAgeUSec 300 s (the SDK's
 * default), this process's clock. Not installed. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <glib.h>
#include <json-glib/json-glib.h>

#include "core/kms-trust.h"
#include "shared/kms-signature.h"
#include "shared/hex.h"
#include "shared/macro.h"

static const char *member(JsonObject *o, const char *name) {
        return json_object_has_member(o, name) ? json_object_get_string_member(o, name) : "";
}

static JsonNode *one(JsonObject *c) {
        VmmPubKeyReply k = {};
        bool v1 = streq(member(c, "kind"), "v1");
        const char *sig = member(c, "signature");

        if (hex_decode_exact(member(c, "public_key"), k.public_key, 32) < 0)
                return json_node_new(JSON_NODE_NULL);
        /* What the VMM client makes of the field (clients/vmm-json.c get_signature). */
        bool *has = v1 ? &k.has_signature_v1 : &k.has_signature;
        bool *bad = v1 ? &k.signature_v1_malformed : &k.signature_malformed;
        if (!isempty(sig)) {
                *has = true;
                *bad = kms_signature_parse(sig, v1 ? k.signature_v1 : k.signature, NULL) < 0;
        }
        if (v1) {
                k.timestamp = (uint64_t) json_object_get_int_member(c, "timestamp");
                k.has_timestamp = k.timestamp != 0;
        }
        KmsTrustInput in = { .app_id = member(c, "app_id"), .reply = &k, .max_age_usec = 300 * G_USEC_PER_SEC,
                             .pinned = "", .now_sec = (uint64_t) time(NULL) };
        KmsTrustResult r;
        if (kms_trust_check(&in, &r) < 0)
                return json_node_new(JSON_NODE_NULL);
        JsonNode *n = json_node_new(JSON_NODE_NULL);
        if (!r.blocked && !isempty(r.signer)) /* "" = unsigned: no verified signer */
                json_node_init_string(n, r.signer);
        kms_trust_result_done(&r);
        return n;
}

int main(void) {
        g_autoptr(JsonParser) p = json_parser_new();
        g_autoptr(GError) e = NULL;
        GString *in = g_string_new(NULL);
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, stdin)) > 0)
                g_string_append_len(in, buf, (gssize) n);
        if (!json_parser_load_from_data(p, in->str, (gssize) in->len, &e)) {
                fprintf(stderr, "kms-tool: %s\n", e->message);
                return 2;
        }
        g_string_free(in, TRUE);
        JsonArray *cases = json_object_get_array_member(json_node_get_object(json_parser_get_root(p)), "cases");
        JsonArray *out = json_array_new();
        for (guint i = 0; i < json_array_get_length(cases); i++)
                json_array_add_element(out, one(json_array_get_object_element(cases, i)));
        g_autoptr(JsonNode) root = json_node_init_array(json_node_alloc(), out);
        json_array_unref(out);
        g_autofree char *text = json_to_string(root, FALSE);
        printf("%s\n", text);
        return 0;
}
