/* SPDX-License-Identifier: Apache-2.0 */
/* Keccak-256 and the KMS signature's recovery (src/shared/keccak.c,
 * kms-signature.c) against published vectors and OpenSSL. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <openssl/evp.h>

#include "shared/hex.h"
#include "shared/keccak.h"
#include "shared/kms-signature.h"
#include "shared/macro.h"
#include "tests.h"

static void expect_keccak(const char *msg, const char *want) {
        uint8_t out[32];
        char hex[65];
        keccak256(msg, strlen(msg), out);
        for (int i = 0; i < 32; i++)
                snprintf(hex + 2 * i, 3, "%02x", out[i]);
        if (!streq(hex, want)) {
                fprintf(stderr, "keccak256(\"%.40s\") = %s, want %s\n", msg, hex, want);
                assert_se(false);
        }
}

static void test_keccak_vectors(void) {
        /* The Keccak team's / Ethereum's published values (Keccak-256, not SHA3-256). */
        expect_keccak("", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470");
        expect_keccak("abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45");
        expect_keccak("The quick brown fox jumps over the lazy dog",
                      "4d741b6f1eb29cb2a9b9911c82f56fa8d73b04959d3d9d222895df6c0b28aa15");
        expect_keccak("The quick brown fox jumps over the lazy dog.",
                      "578951e24efd62a3d63a86f7cd19aaa53c898fe287d2552133220370240b572d");
}

/* The permutation and the absorbing are SHA3-256's: check them against
 * OpenSSL on every length around the 136-byte rate. */
static void test_sponge_against_openssl(void) {
        uint8_t data[3 * 136 + 5], a[32], b[32];
        unsigned blen = 0;
        for (size_t i = 0; i < sizeof data; i++)
                data[i] = (uint8_t) (i * 7 + 3);
        for (size_t n = 0; n <= sizeof data; n++) {
                keccak256_sha3_padding_for_test(data, n, a);
                assert_se(EVP_Digest(data, n, b, &blen, EVP_sha3_256(), NULL) == 1 && blen == 32);
                assert_se(memcmp(a, b, 32) == 0);
                keccak256(data, n, b);
                assert_se(memcmp(a, b, 32) != 0); /* the padding differs */
        }
}

static void hexin(const char *h, uint8_t *out, size_t n) {
        assert_se(hex_decode_exact(h, out, n) == 0);
}

static void test_published_legacy_signature(void) {
        /* dstack vmm-cli.py verify_signature doctest (and the JS SDK's
         * verify-env-encrypt-public-key.test.ts): app id 00 × 20. */
        uint8_t app[20] = { 0 }, pk[32], sig[65], digest[32], signer[33];
        char hex[67];
        g_autofree char *err = NULL;
        hexin("e33a1832c6562067ff8f844a61e51ad051f1180b66ec2551fb0251735f3ee90a", pk, 32);
        assert_se(kms_signature_parse("8542c49081fbf4e03f62034f13fbf70630bdf256a53032e38465a27c36fd6bed7a5e7111652004aef"
                                      "37f7fd92fbfc1285212c4ae6a6154203a48f5e16cad2cef00", sig, &err) == 0);
        kms_pubkey_digest(app, pk, false, 0, digest);
        assert_se(kms_signer_recover(digest, sig, signer, &err) == 0);
        kms_signer_to_hex(signer, hex);
        assert_se(streq(hex, "0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f"));
        /* Signed over the legacy message: read as v1 (timestamp 0), it recovers someone else. */
        kms_pubkey_digest(app, pk, true, 0, digest);
        assert_se(kms_signer_recover(digest, sig, signer, NULL) == 0);
        kms_signer_to_hex(signer, hex);
        assert_se(!streq(hex, "0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f"));
}

static void test_v1_signature(void) {
        /* Made with tests/sim/kmscrypto.py, private key sha256("test-kms-signer"). */
        uint8_t app[20], pk[32], sig[65], digest[32], want[32], signer[33];
        char hex[67];
        hexin("70cfd2f4b998b97f124bdeb743a964a8fac44151", app, 20);
        hexin("a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209", pk, 32);
        kms_pubkey_digest(app, pk, true, 1767225600, digest);
        hexin("a602afb49eb4805510b75514700401015bf67b6d44fec33acb9ab21664cd9400", want, 32);
        assert_se(memcmp(digest, want, 32) == 0);
        kms_pubkey_digest(app, pk, false, 0, digest);
        hexin("d7533d7dd5c72b3cb6f1d9db67ae28e2300959397a09129deaba870a072b1a7b", want, 32);
        assert_se(memcmp(digest, want, 32) == 0);
        assert_se(kms_signature_parse("0xAC8D5CC55DDFB68AE16667EA256C2390665B1D4F8FD46A95DD89551D27563C1230966A419F7C8F0F"
                                      "DFF5DD4B1A4691A7C5C8505077A0096DB5B0C52494C11EC101", sig, NULL) == 0);
        kms_pubkey_digest(app, pk, true, 1767225600, digest);
        assert_se(kms_signer_recover(digest, sig, signer, NULL) == 0);
        kms_signer_to_hex(signer, hex);
        assert_se(streq(hex, "03f765b1460b8bde0690bd7aebd5046b899ab0f195f873063c9efe8b3cd1c1a3c9"));
        /* Another timestamp: another (wrong) signer, never an error to hide behind. */
        kms_pubkey_digest(app, pk, true, 1767225601, digest);
        assert_se(kms_signer_recover(digest, sig, signer, NULL) == 0);
        kms_signer_to_hex(signer, hex);
        assert_se(!streq(hex, "03f765b1460b8bde0690bd7aebd5046b899ab0f195f873063c9efe8b3cd1c1a3c9"));

        /* Malformed: v outside 0..3 (27 is Ethereum's offset), r or s 0 or ≥ n. */
        uint8_t bad[65];
        g_autofree char *e1 = NULL, *e2 = NULL, *e3 = NULL;
        memcpy(bad, sig, 65);
        bad[64] = 27;
        assert_se(kms_signer_recover(digest, bad, signer, &e1) == -EINVAL && strstr(e1, "recovery id 27"));
        memcpy(bad, sig, 65);
        memset(bad, 0xff, 32);
        assert_se(kms_signer_recover(digest, bad, signer, &e2) == -EINVAL && strstr(e2, "group order"));
        memcpy(bad, sig, 65);
        memset(bad + 32, 0, 32);
        assert_se(kms_signer_recover(digest, bad, signer, &e3) == -EINVAL);
        memset(bad, 0, 65);
        assert_se(kms_signer_recover(digest, bad, signer, NULL) == -EINVAL);
}

static void test_parse(void) {
        uint8_t sig[65], k[33];
        g_autofree char *e1 = NULL, *e2 = NULL, *e3 = NULL;
        char sig64[2 * 64 + 1], sig66[2 * 66 + 1];
        memset(sig64, 'a', sizeof sig64 - 1), sig64[sizeof sig64 - 1] = 0;
        memset(sig66, 'a', sizeof sig66 - 1), sig66[sizeof sig66 - 1] = 0;
        assert_se(kms_signature_parse("", sig, NULL) == -ENODATA);
        assert_se(kms_signature_parse(NULL, sig, NULL) == -ENODATA);
        assert_se(kms_signature_parse(sig64, sig, &e1) == -EINVAL && strstr(e1, "not 65 bytes of hex (128 characters)"));
        assert_se(kms_signature_parse(sig66, sig, &e2) == -EINVAL && strstr(e2, "(132 characters)"));
        sig66[130] = 0;
        assert_se(kms_signature_parse(sig66, sig, NULL) == 0);
        sig66[7] = 'g';
        assert_se(kms_signature_parse(sig66, sig, &e3) == -EINVAL);
        sig66[7] = 'a';
        sig66[129] = 0;                                          /* odd length */
        assert_se(kms_signature_parse(sig66, sig, NULL) == -EINVAL);
        assert_se(kms_signature_parse("0x", sig, NULL) == -EINVAL);
        g_autofree char *huge = g_strnfill(5000, 'a'), *e4 = NULL;
        assert_se(kms_signature_parse(huge, sig, &e4) == -EINVAL && strstr(e4, "more than 4096 characters"));

        const char *good = "0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f";
        assert_se(kms_signer_parse(good, k) == 0 && k[0] == 2);
        assert_se(kms_signer_parse("0x0217610D74CBD39B6143842C6D8BC310D79DA1D82CC9D17F8876376221EDA0C38F", NULL) == 0);
        assert_se(kms_signer_parse("04" "17610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f", NULL) < 0);
        assert_se(kms_signer_parse("0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c3", NULL) < 0);
        assert_se(kms_signer_parse("0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f00", NULL) < 0);
        assert_se(kms_signer_parse("02" "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff", NULL) < 0);
        assert_se(kms_signer_parse("", NULL) < 0 && kms_signer_parse(NULL, NULL) < 0);
        assert_se(kms_signer_parse(" 0217610d74cbd39b6143842c6d8bc310d79da1d82cc9d17f8876376221eda0c38f", NULL) < 0);
}

int main(void) {
        test_keccak_vectors();
        test_sponge_against_openssl();
        test_published_legacy_signature();
        test_v1_signature();
        test_parse();
        printf("test-kms-signature: ok\n");
        return 0;
}
