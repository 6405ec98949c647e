/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target: the KMS's env-encryption key signature as the VMM sends
 * it (shared/kms-signature.c: the hex parser, secp256k1 recovery, the
 * trusted-signer key parser) and the trust policy over it (core/kms-trust.c).
 * Input: a text line (the signature field, then a trusted key), then raw
 * bytes for the key, app id and timestamp. Checks: what parses is exactly 65
 * bytes of hex (an independent decoder agrees); a recovered signer is a
 * valid compressed key; the policy either blocks with the fixed prefix or
 * names a signer, never both. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "core/kms-trust.h"
#include "shared/kms-signature.h"
#include "shared/macro.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        return 0;
}

static int nib(char c) {
        return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Independent: strip one "0x"/"0X", then exactly 130 hex digits. */
static bool reference_parse(const char *s, uint8_t out[65]) {
        if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
                s += 2;
        if (strlen(s) != 130)
                return false;
        for (size_t i = 0; i < 65; i++) {
                if (nib(s[2 * i]) < 0 || nib(s[2 * i + 1]) < 0)
                        return false;
                out[i] = (uint8_t) (nib(s[2 * i]) << 4 | nib(s[2 * i + 1]));
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > 4096)
                return 0;
        const uint8_t *nl = memchr(data, '\n', size);
        size_t line = nl ? (size_t) (nl - data) : size;
        char *text = malloc(line + 1);
        memcpy(text, data, line);
        text[line] = '\0';
        const uint8_t *rest = nl ? nl + 1 : data + size;
        size_t rest_len = size - (size_t) (rest - data);
        char *key = strchr(text, ' ');
        if (key)
                *key++ = '\0';

        uint8_t sig[65], want[65], digest[32] = { 0 }, signer[33], app[20] = { 0 }, pk[32] = { 0 };
        char *err = NULL;
        int r = kms_signature_parse(text, sig, &err);
        bool ok = reference_parse(text, want);
        if ((r == 0) != ok || (ok && memcmp(sig, want, 65) != 0) || (r == -ENODATA) != isempty(text) ||
            (r == -EINVAL) != !!err)
                abort();
        free(err), err = NULL;

        memcpy(pk, rest, MIN(rest_len, sizeof pk));
        if (rest_len > sizeof pk)
                memcpy(app, rest + sizeof pk, MIN(rest_len - sizeof pk, sizeof app));
        uint64_t ts = 0;
        for (size_t i = 52; i < MIN(rest_len, (size_t) 60); i++)
                ts = ts << 8 | rest[i];
        kms_pubkey_digest(app, pk, ts != 0, ts, digest);
        if (r == 0) {
                if (kms_signer_recover(digest, sig, signer, &err) == 0) {
                        char hex[67];
                        kms_signer_to_hex(signer, hex);
                        if ((signer[0] != 2 && signer[0] != 3) || kms_signer_parse(hex, NULL) < 0 || err)
                                abort();
                } else if (!err)
                        abort();
                free(err), err = NULL;
        }
        if (key)
                (void) kms_signer_parse(key, NULL);

        /* The policy over the same reply, v1 and legacy. */
        static const char app_hex[] = "70cfd2f4b998b97f124bdeb743a964a8fac44151";
        VmmPubKeyReply k = {};
        memcpy(k.public_key, pk, sizeof pk);
        bool v1 = rest_len % 2;
        if (!isempty(text)) {
                bool *has = v1 ? &k.has_signature_v1 : &k.has_signature;
                *has = true;
                *(v1 ? &k.signature_v1_malformed : &k.signature_malformed) =
                        kms_signature_parse(text, v1 ? k.signature_v1 : k.signature, NULL) < 0;
        }
        k.timestamp = ts, k.has_timestamp = ts != 0;
        char *trusted[] = { key, NULL };
        KmsTrustInput in = { .app_id = app_hex, .reply = &k, .trusted = key ? trusted : NULL,
                             .max_age_usec = (rest_len % 3) * 300 * 1000000ULL, .pinned = (rest_len % 5) ? "" : key,
                             .now_sec = 1767225600 };
        KmsTrustResult t;
        if (kms_trust_check(&in, &t) < 0)
                abort();
        if (t.blocked ? (!streq(t.signer, "") || t.pin ||
                         strncmp(t.blocked, "KMS public key for app ", 23) != 0)
                      : (!t.signer || (t.pin && isempty(t.signer))))
                abort();
        kms_trust_result_done(&t);
        free(text);
        return 0;
}
