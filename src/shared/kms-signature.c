/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include <glib.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include "shared/hex.h"
#include "shared/keccak.h"
#include "shared/kms-signature.h"
#include "shared/macro.h"

static const char prefix[] = "dstack-env-encrypt-pubkey";

void kms_pubkey_digest(const uint8_t app_id[KMS_APP_ID_LEN], const uint8_t public_key[KMS_PUBLIC_KEY_LEN],
                       bool timestamped, uint64_t timestamp, uint8_t ret[32]) {
        uint8_t m[sizeof prefix - 1 + 1 + KMS_APP_ID_LEN + 8 + KMS_PUBLIC_KEY_LEN];
        size_t n = 0;
        memcpy(m, prefix, sizeof prefix - 1), n += sizeof prefix - 1;
        m[n++] = ':';
        memcpy(m + n, app_id, KMS_APP_ID_LEN), n += KMS_APP_ID_LEN;
        if (timestamped)
                for (int i = 7; i >= 0; i--)
                        m[n++] = (uint8_t) (timestamp >> (8 * i));
        memcpy(m + n, public_key, KMS_PUBLIC_KEY_LEN), n += KMS_PUBLIC_KEY_LEN;
        keccak256(m, n, ret);
}

static int fail(char **ret_error, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static int fail(char **ret_error, const char *fmt, ...) {
        if (ret_error) {
                va_list ap;
                va_start(ap, fmt);
                *ret_error = g_strdup_vprintf(fmt, ap);
                va_end(ap);
        }
        return -EINVAL;
}

int kms_signature_parse(const char *hex, uint8_t ret[KMS_SIGNATURE_LEN], char **ret_error) {
        enum { SHOWN_MAX = 4096 };
        if (isempty(hex))
                return -ENODATA;
        if (hex_decode_exact(hex, ret, KMS_SIGNATURE_LEN) < 0) {
                size_t len = strnlen(hex, SHOWN_MAX + 1);
                return fail(ret_error, "not %d bytes of hex (%s%zu characters)", KMS_SIGNATURE_LEN,
                            len > SHOWN_MAX ? "more than " : "", MIN(len, (size_t) SHOWN_MAX));
        }
        return 0;
}

int kms_signer_recover(const uint8_t digest[32], const uint8_t sig[KMS_SIGNATURE_LEN],
                       uint8_t ret_signer[KMS_SIGNER_LEN], char **ret_error) {
        const secp256k1_context *ctx = secp256k1_context_static;
        secp256k1_ecdsa_recoverable_signature rs;
        secp256k1_pubkey pk;
        size_t n = KMS_SIGNER_LEN;

        /* The library aborts on a recovery id outside 0..3 (an illegal argument). */
        if (sig[64] > 3)
                return fail(ret_error, "recovery id %u is not 0..3", sig[64]);
        if (!secp256k1_ecdsa_recoverable_signature_parse_compact(ctx, &rs, sig, sig[64]))
                return fail(ret_error, "r or s is not below the group order");
        if (!secp256k1_ecdsa_recover(ctx, &pk, &rs, digest))
                return fail(ret_error, "no public key recovers from it");
        if (!secp256k1_ec_pubkey_serialize(ctx, ret_signer, &n, &pk, SECP256K1_EC_COMPRESSED) || n != KMS_SIGNER_LEN)
                return fail(ret_error, "the recovered key cannot be serialized");
        return 0;
}

int kms_signer_parse(const char *hex, uint8_t ret[KMS_SIGNER_LEN]) {
        uint8_t k[KMS_SIGNER_LEN];
        secp256k1_pubkey pk;
        if (!hex || hex_decode_exact(hex, k, sizeof k) < 0 || (k[0] != 0x02 && k[0] != 0x03) ||
            !secp256k1_ec_pubkey_parse(secp256k1_context_static, &pk, k, sizeof k))
                return -EINVAL;
        if (ret)
                memcpy(ret, k, sizeof k);
        return 0;
}

void kms_signer_to_hex(const uint8_t signer[KMS_SIGNER_LEN], char ret[KMS_SIGNER_HEX_LEN + 1]) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < KMS_SIGNER_LEN; i++) {
                ret[2 * i] = digits[signer[i] >> 4];
                ret[2 * i + 1] = digits[signer[i] & 15];
        }
        ret[KMS_SIGNER_HEX_LEN] = '\0';
}
