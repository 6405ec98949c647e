/* SPDX-License-Identifier: Apache-2.0 */
/* The KMS trust policy (src/core/kms-trust.c): which signature, which signer,
 * pinning, freshness. Keys are signed here with libsecp256k1 as dstack's KMS
 * signs them (kms/src/crypto.rs). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include "core/kms-trust.h"
#include "shared/hex.h"
#include "shared/kms-signature.h"
#include "shared/macro.h"
#include "tests.h"

#define APP "70cfd2f4b998b97f124bdeb743a964a8fac44151"
#define NOW 1767225600ULL

static secp256k1_context *ctx;
static uint8_t kms_sk[32], other_sk[32];
static char kms_hex[67], other_hex[67];

static void signer_of(const uint8_t sk[32], char out[67]) {
        secp256k1_pubkey pk;
        uint8_t c[33];
        size_t n = sizeof c;
        assert_se(secp256k1_ec_pubkey_create(ctx, &pk, sk) == 1);
        assert_se(secp256k1_ec_pubkey_serialize(ctx, c, &n, &pk, SECP256K1_EC_COMPRESSED) == 1);
        kms_signer_to_hex(c, out);
}

static void sign(const uint8_t sk[32], const VmmPubKeyReply *k, bool v1, uint64_t ts, uint8_t out[65]) {
        uint8_t app[20], digest[32];
        secp256k1_ecdsa_recoverable_signature s;
        int recid;
        assert_se(hex_decode_exact(APP, app, 20) == 0);
        kms_pubkey_digest(app, k->public_key, v1, ts, digest);
        assert_se(secp256k1_ecdsa_sign_recoverable(ctx, &s, digest, sk, NULL, NULL) == 1);
        assert_se(secp256k1_ecdsa_recoverable_signature_serialize_compact(ctx, out, &recid, &s) == 1);
        out[64] = (uint8_t) recid;
}

/* A reply as the KMS behind the VMM makes it: v1 with ts, legacy, or both. */
static VmmPubKeyReply reply(const uint8_t *v1_sk, uint64_t ts, const uint8_t *legacy_sk) {
        VmmPubKeyReply k = {};
        for (int i = 0; i < 32; i++)
                k.public_key[i] = (uint8_t) (0xa0 + i);
        if (v1_sk) {
                k.has_signature_v1 = k.has_timestamp = true;
                k.timestamp = ts;
                sign(v1_sk, &k, true, ts, k.signature_v1);
        }
        if (legacy_sk) {
                k.has_signature = true;
                sign(legacy_sk, &k, false, 0, k.signature);
        }
        return k;
}

static KmsTrustResult check(const VmmPubKeyReply *k, char **trusted, uint64_t max_age_sec, const char *pinned) {
        KmsTrustInput in = { .app_id = APP, .reply = k, .trusted = trusted, .max_age_usec = max_age_sec * 1000000ULL,
                             .pinned = pinned, .now_sec = NOW };
        KmsTrustResult r;
        assert_se(kms_trust_check(&in, &r) == 0);
        assert_se(r.signer);
        return r;
}

static void expect_ok(KmsTrustResult r, const char *signer, bool pin, bool warn) {
        if (r.blocked || !streq(r.signer, signer) || r.pin != pin || !!r.warning != warn) {
                fprintf(stderr, "got blocked=%s signer=%s pin=%d warning=%s\n", strempty(r.blocked), r.signer, r.pin,
                        strempty(r.warning));
                assert_se(false);
        }
        kms_trust_result_done(&r);
}

static void expect_blocked(KmsTrustResult r, const char *substr) {
        if (!r.blocked || !strstr(r.blocked, substr) || !g_str_has_prefix(r.blocked, "KMS public key for app " APP
                                                                                    " not signed by a trusted signer") ||
            !streq(r.signer, "") || r.pin) {
                fprintf(stderr, "expected blocked with \"%s\", got blocked=%s signer=%s\n", substr,
                        strempty(r.blocked), r.signer);
                assert_se(false);
        }
        kms_trust_result_done(&r);
}

int main(void) {
        ctx = secp256k1_context_create(SECP256K1_CONTEXT_NONE);
        memset(kms_sk, 0x11, 32);
        memset(other_sk, 0x22, 32);
        signer_of(kms_sk, kms_hex);
        signer_of(other_sk, other_hex);
        g_autofree char *kms_upper = g_ascii_strup(kms_hex, -1);
        g_autofree char *kms_0x = g_strconcat("0x", kms_upper, NULL);
        char *trusted[] = { other_hex, kms_0x, NULL }, *only_other[] = { other_hex, NULL }, *none[] = { NULL };

        VmmPubKeyReply full = reply(kms_sk, NOW - 5, kms_sk);
        /* A trusted signer, v1 first; the list's spelling does not matter. */
        expect_ok(check(&full, trusted, 0, ""), kms_hex, false, false);
        expect_blocked(check(&full, only_other, 0, ""), "signature_v1 recovers to");
        /* Legacy alone (an older KMS): verified, with a warning. */
        VmmPubKeyReply legacy = reply(NULL, 0, kms_sk);
        expect_ok(check(&legacy, trusted, 0, ""), kms_hex, false, true);
        expect_ok(check(&legacy, trusted, 300, ""), kms_hex, false, true); /* no timestamp to check */
        expect_blocked(check(&legacy, only_other, 0, ""), "its signature recovers to");
        /* A bad v1 is not excused by a good legacy signature. */
        VmmPubKeyReply mixed = reply(other_sk, NOW, kms_sk);
        expect_blocked(check(&mixed, (char *[]) { kms_hex, NULL }, 0, ""), "signature_v1 recovers to " );
        mixed.signature_v1_malformed = true;
        expect_blocked(check(&mixed, trusted, 0, ""), "its signature_v1 is not 65 bytes of hex");
        /* v1 over another timestamp than the one sent: someone else recovers. */
        VmmPubKeyReply moved = full;
        moved.timestamp += 1;
        expect_blocked(check(&moved, trusted, 0, ""), "not in TrustedKmsSigners");
        /* r = 0: recovers to nobody. */
        VmmPubKeyReply zero = full;
        memset(zero.signature_v1, 0, 32);
        expect_blocked(check(&zero, trusted, 0, ""), "does not verify");
        zero.signature_v1[64] = 4;
        expect_blocked(check(&zero, trusted, 0, ""), "recovery id 4");

        /* Unsigned: blocked with a list, accepted with a warning without one, unless pinned. */
        VmmPubKeyReply unsigned_key = reply(NULL, 0, NULL);
        expect_blocked(check(&unsigned_key, trusted, 0, ""), "unsigned (TrustedKmsSigners is set)");
        expect_ok(check(&unsigned_key, none, 0, ""), "", false, true);
        expect_ok(check(&unsigned_key, NULL, 300, NULL), "", false, true);
        expect_blocked(check(&unsigned_key, NULL, 0, kms_hex), "was pinned on first use");

        /* No list: first use pins; the same signer later passes; another blocks. */
        expect_ok(check(&full, NULL, 0, ""), kms_hex, true, false);
        expect_ok(check(&full, none, 0, kms_hex), kms_hex, false, false);
        expect_ok(check(&full, none, 0, kms_0x), kms_hex, false, false);
        expect_blocked(check(&full, none, 0, other_hex), "add the new signer to TrustedKmsSigners");
        /* A list overrides the pin. */
        expect_ok(check(&full, trusted, 0, other_hex), kms_hex, false, false);

        /* Freshness of v1 (KmsSignatureMaxAgeUSec): 0 = not checked. */
        VmmPubKeyReply old = reply(kms_sk, NOW - 1000, NULL), future = reply(kms_sk, NOW + 600, NULL),
                       soon = reply(kms_sk, NOW + 30, NULL), edge = reply(kms_sk, NOW - 300, NULL);
        expect_ok(check(&old, trusted, 0, ""), kms_hex, false, false);
        expect_blocked(check(&old, trusted, 300, ""), "is 1000 s old, KmsSignatureMaxAgeUSec allows 300 s");
        expect_ok(check(&edge, trusted, 300, ""), kms_hex, false, false);
        expect_ok(check(&old, trusted, 1000, ""), kms_hex, false, false);
        expect_blocked(check(&future, trusted, 300, ""), "600 s in the future");
        expect_ok(check(&future, trusted, 0, ""), kms_hex, false, false);
        expect_ok(check(&soon, trusted, 300, ""), kms_hex, false, false);
        expect_blocked(check(&old, NULL, 300, ""), "1000 s old");

        /* An app id it cannot read is the caller's bug, not a verdict. */
        KmsTrustResult r;
        KmsTrustInput in = { .app_id = "xyz", .reply = &full, .now_sec = NOW };
        assert_se(kms_trust_check(&in, &r) == -EINVAL);

        secp256k1_context_destroy(ctx);
        printf("test-kms-trust: ok\n");
        return 0;
}
