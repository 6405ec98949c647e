/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include <glib.h>

#include "core/kms-trust.h"
#include "shared/hex.h"
#include "shared/kms-signature.h"
#include "shared/macro.h"

void kms_trust_result_done(KmsTrustResult *r) {
        g_free(r->signer);
        g_free(r->warning);
        g_free(r->blocked);
        memset(r, 0, sizeof *r);
}

static bool listed(char *const *trusted, const uint8_t signer[KMS_SIGNER_LEN]) {
        uint8_t k[KMS_SIGNER_LEN];
        for (char *const *t = trusted; t && *t; t++)
                if (kms_signer_parse(*t, k) == 0 && memcmp(k, signer, sizeof k) == 0)
                        return true;
        return false;
}

static void block(KmsTrustResult *r, const char *app_id, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static void block(KmsTrustResult *r, const char *app_id, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        g_autofree char *why = g_strdup_vprintf(fmt, ap);
        va_end(ap);
        r->blocked = g_strdup_printf("KMS public key for app %s not signed by a trusted signer: %s", app_id, why);
}

/* A v1 timestamp's age against KmsSignatureMaxAgeUSec; false = blocked. */
static bool fresh(const KmsTrustInput *in, KmsTrustResult *r) {
        uint64_t max = in->max_age_usec / G_USEC_PER_SEC, ts = in->reply->timestamp;
        if (ts > in->now_sec + KMS_TRUST_FUTURE_SKEW_SEC) {
                block(r, in->app_id, "its signature_v1 timestamp is %" PRIu64 " s in the future", ts - in->now_sec);
                return false;
        }
        if (ts < in->now_sec && in->now_sec - ts > max) {
                block(r, in->app_id, "its signature_v1 is %" PRIu64 " s old, KmsSignatureMaxAgeUSec allows %" PRIu64
                      " s", in->now_sec - ts, max);
                return false;
        }
        return true;
}

int kms_trust_check(const KmsTrustInput *in, KmsTrustResult *ret) {
        const VmmPubKeyReply *k = in->reply;
        KmsTrustResult r = {};
        uint8_t app[KMS_APP_ID_LEN], digest[32], signer[KMS_SIGNER_LEN];
        char hex[KMS_SIGNER_HEX_LEN + 1] = "";
        g_autofree char *why = NULL; /* before any goto: freed on every path */
        bool have_list = in->trusted && in->trusted[0];

        if (!in->app_id || hex_decode_exact(in->app_id, app, sizeof app) < 0)
                return -EINVAL;
        bool v1 = k->has_signature_v1;
        if (!v1 && !k->has_signature) {
                if (have_list)
                        block(&r, in->app_id, "the key is unsigned (TrustedKmsSigners is set)");
                else if (!isempty(in->pinned))
                        block(&r, in->app_id, "the key is unsigned, but signer %s was pinned on first use", in->pinned);
                else
                        r.warning = g_strdup_printf("KMS public key for app %s is unsigned (a KMS older than its "
                                                    "signatures?): it cannot be verified", in->app_id);
                r.signer = g_strdup("");
                *ret = r;
                return 0;
        }

        const char *which = v1 ? "signature_v1" : "signature";
        if (v1 ? k->signature_v1_malformed : k->signature_malformed) {
                block(&r, in->app_id, "its %s is not 65 bytes of hex", which);
                goto done;
        }
        if (v1 && in->max_age_usec > 0 && !fresh(in, &r))
                goto done;
        kms_pubkey_digest(app, k->public_key, v1, v1 ? k->timestamp : 0, digest);
        if (kms_signer_recover(digest, v1 ? k->signature_v1 : k->signature, signer, &why) < 0) {
                block(&r, in->app_id, "its %s does not verify (%s)", which, why);
                goto done;
        }
        kms_signer_to_hex(signer, hex);
        if (have_list) {
                if (!listed(in->trusted, signer))
                        block(&r, in->app_id, "its %s recovers to %s, which is not in TrustedKmsSigners", which, hex);
        } else if (!isempty(in->pinned)) {
                uint8_t pin[KMS_SIGNER_LEN];
                if (kms_signer_parse(in->pinned, pin) < 0 || memcmp(pin, signer, sizeof pin) != 0)
                        block(&r, in->app_id, "its %s recovers to %s, but %s was pinned on first use (add the new "
                              "signer to TrustedKmsSigners to trust it)", which, hex, in->pinned);
        } else
                r.pin = true;
        if (!r.blocked && !v1)
                /* As dstack's vmm-cli.py says when it falls back to the legacy signature. */
                r.warning = g_strdup_printf("KMS public key for app %s carries only a legacy signature (no "
                                            "timestamp): consider upgrading the KMS to one that signs signature_v1",
                                            in->app_id);
done:
        r.signer = g_strdup(r.blocked ? "" : hex);
        *ret = r;
        return 0;
}
