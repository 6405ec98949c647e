/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <glib.h>
#include <openssl/evp.h>

#include "shared/crypto.h"
#include "shared/hex.h"
#include "shared/macro.h"
#include "shared/strv.h"
#include "shared/validate.h"
#include "tests.h"

/* vectors/env-encrypt.txt */
#define KMS_SK "0101010101010101010101010101010101010101010101010101010101010101"
#define KMS_PK "a4e09292b651c278b9772c569f5fa9bb13d906b46ab68c9df9dc2b4409f8a209"
#define EPH_SK "0202020202020202020202020202020202020202020202020202020202020202"
#define IV "000102030405060708090a0b"
#define PLAINTEXT "{\"env\":[{\"key\":\"FOO\",\"value\":\"bar\"}]}"
#define OUTPUT "ce8d3ad1ccb633ec7b70c17814a5c76ecd029685050d344745ba05870e587d59" \
        "000102030405060708090a0bfacc732ca4f3e1372b4a45b5596b30eacc569d8d505bca4ecea0518a558bcec007c" \
        "57054dd8922245c7bc3313befac9e382bbaf772"

static uint8_t kms_pk[32];

/* The guest's side, written independently of crypto.c. */
static char *decrypt(const char *hex) {
        _cleanup_free_ uint8_t *in = NULL;
        size_t n;
        uint8_t sk[32], shared[32];
        size_t slen = sizeof shared;
        int len = 0, fin = 0;

        assert_se(hex_decode(hex, &in, &n) == 0 && n >= 60);
        assert_se(hex_decode_exact(KMS_SK, sk, 32) == 0);
        EVP_PKEY *priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, NULL, sk, 32);
        EVP_PKEY *eph = EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, NULL, in, 32);
        EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(priv, NULL);
        assert_se(EVP_PKEY_derive_init(pctx) == 1 && EVP_PKEY_derive_set_peer(pctx, eph) == 1);
        assert_se(EVP_PKEY_derive(pctx, shared, &slen) == 1);
        size_t ctlen = n - 60;
        char *out = calloc(1, ctlen + 1);
        EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
        assert_se(EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, shared, in + 32) == 1);
        assert_se(EVP_DecryptUpdate(c, (uint8_t *) out, &len, in + 44, (int) ctlen) == 1);
        assert_se(EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, in + 44 + ctlen) == 1);
        assert_se(EVP_DecryptFinal_ex(c, (uint8_t *) out + len, &fin) == 1);
        EVP_CIPHER_CTX_free(c);
        EVP_PKEY_CTX_free(pctx);
        EVP_PKEY_free(eph);
        EVP_PKEY_free(priv);
        return out;
}

static void test_vector(void) {
        _cleanup_env_list_ EnvList env = ENV_LIST_INIT;
        _cleanup_free_ char *hex = NULL, *err = NULL, *pt = NULL;
        _cleanup_strv_free_ char **dropped = NULL;
        char *allowed[] = { "FOO", NULL };
        uint8_t sk[32], iv[12];
        size_t n;

        assert_se(env_list_add(&env, "FOO", "bar") == 0);
        assert_se(env_plaintext_build(&env, allowed, &pt, &n, NULL) == 0);
        assert_se(n == strlen(PLAINTEXT) && streq(pt, PLAINTEXT));
        assert_se(hex_decode_exact(EPH_SK, sk, 32) == 0 && hex_decode_exact(IV, iv, 12) == 0);
        assert_se(env_encrypt_with_keys_for_test(&env, allowed, kms_pk, sk, iv, &hex, &dropped, &err) == 0);
        assert_se(streq(hex, OUTPUT));
        assert_se(dropped && !dropped[0] && !err);
}

static void expect_reject(const EnvList *env, const char *want_substr) {
        _cleanup_free_ char *hex = NULL, *err = NULL;
        int r = env_encrypt(env, NULL, kms_pk, &hex, NULL, &err);
        if (r != -EINVAL || !err || !strstr(err, want_substr)) {
                fprintf(stderr, "expected \"%s\", got %d \"%s\"\n", want_substr, r, strempty(err));
                assert_se(false);
        }
        assert_se(!hex);
        assert_se(!strstr(err, "SECRETVALUE"));
}

static char *filled(size_t n, char c) {
        char *s = malloc(n + 1);
        memset(s, c, n);
        s[n] = '\0';
        return s;
}

static void test_limits(void) {
        _cleanup_env_list_ EnvList many = ENV_LIST_INIT, big = ENV_LIST_INIT, bad = ENV_LIST_INIT,
                                   total = ENV_LIST_INIT, dup = ENV_LIST_INIT, utf = ENV_LIST_INIT,
                                   longkey = ENV_LIST_INIT;
        _cleanup_free_ char *v128k = filled(ENV_VALUE_MAX, 'S'), *v128k1 = filled(ENV_VALUE_MAX + 1, 'S'),
                            *k256 = filled(ENV_KEY_MAX + 1, 'K');
        char key[16];

        for (int i = 0; i <= ENV_MAX_ENTRIES; i++) {
                snprintf(key, sizeof key, "K%d", i);
                assert_se(env_list_add(&many, key, "SECRETVALUE") == 0);
        }
        expect_reject(&many, "env: 1025 entries, at most 1024 allowed");

        assert_se(env_list_add(&big, "BIG", v128k1) == 0);
        expect_reject(&big, "env[0] (BIG): value exceeds 131072 bytes");

        assert_se(env_list_add(&bad, "OK", "SECRETVALUE") == 0);
        assert_se(env_list_add(&bad, "1BAD", "SECRETVALUE") == 0);
        expect_reject(&bad, "env[1]: key is not a valid name");
        assert_se(env_list_add(&longkey, k256, "SECRETVALUE") == 0);
        expect_reject(&longkey, "env[0]: key is not a valid name");

        for (int i = 0; i < 9; i++) {
                snprintf(key, sizeof key, "V%d", i);
                assert_se(env_list_add(&total, key, v128k) == 0);
        }
        expect_reject(&total, "env: keys and values total 1179666 bytes, at most 1048576 allowed");

        assert_se(env_list_add(&dup, "A", "SECRETVALUE") == 0 && env_list_add(&dup, "A", "x") == 0);
        expect_reject(&dup, "env[1] (A): duplicate key");
        assert_se(env_list_add(&utf, "U", "SECRETVALUE\xff") == 0);
        expect_reject(&utf, "env[0] (U): value is not valid UTF-8");

        uint8_t zero[32] = { 0 };
        _cleanup_free_ char *hex = NULL, *err = NULL;
        assert_se(env_encrypt(&bad, NULL, zero, &hex, NULL, &err) == -EINVAL);
        free(err);
        err = NULL;
        _cleanup_env_list_ EnvList ok = ENV_LIST_INIT;
        assert_se(env_list_add(&ok, "A", "b") == 0);
        assert_se(env_encrypt(&ok, NULL, zero, &hex, NULL, &err) == -EINVAL);
        assert_se(err && strstr(err, "KMS public key"));
}

static void test_limits_edge_accepted(void) {
        _cleanup_env_list_ EnvList env = ENV_LIST_INIT;
        _cleanup_free_ char *v128k = filled(ENV_VALUE_MAX, 'v'), *k255 = filled(ENV_KEY_MAX, 'K');
        char key[16];
        for (int i = 0; i < ENV_MAX_ENTRIES - 2; i++) {
                snprintf(key, sizeof key, "K%d", i);
                assert_se(env_list_add(&env, key, "x") == 0);
        }
        assert_se(env_list_add(&env, "BIG", v128k) == 0);
        assert_se(env_list_add(&env, k255, "y") == 0);
        _cleanup_free_ char *hex = NULL, *err = NULL;
        assert_se(env_encrypt(&env, NULL, kms_pk, &hex, NULL, &err) == 0);
        _cleanup_free_ char *pt = decrypt(hex);
        assert_se(strstr(pt, v128k) && g_str_has_suffix(pt, "\"value\":\"y\"}]}"));
}

static void test_dropped(void) {
        _cleanup_env_list_ EnvList env = ENV_LIST_INIT;
        _cleanup_free_ char *hex = NULL, *err = NULL;
        _cleanup_strv_free_ char **dropped = NULL;
        char *allowed[] = { "HOTKEY_PASSPHRASE", "FOO", NULL };

        assert_se(env_list_add(&env, "FOO", "1") == 0);
        assert_se(env_list_add(&env, "EXTRA", "2") == 0);
        assert_se(env_list_add(&env, "HOTKEY_PASSPHRASE", "p\"w\n\xc3\xa9") == 0);
        assert_se(env_list_add(&env, "OTHER", "3") == 0);
        assert_se(env_encrypt(&env, allowed, kms_pk, &hex, &dropped, &err) == 0);
        assert_se(strv_length(dropped) == 2 && streq(dropped[0], "EXTRA") && streq(dropped[1], "OTHER"));
        _cleanup_free_ char *pt = decrypt(hex);
        assert_se(streq(pt, "{\"env\":[{\"key\":\"FOO\",\"value\":\"1\"},"
                         "{\"key\":\"HOTKEY_PASSPHRASE\",\"value\":\"p\\\"w\\n\xc3\xa9\"}]}"));

        /* An empty allow-list drops everything; the guest gets an empty env. */
        char *none[] = { NULL };
        _cleanup_free_ char *hex2 = NULL;
        _cleanup_strv_free_ char **dropped2 = NULL;
        assert_se(env_encrypt(&env, none, kms_pk, &hex2, &dropped2, NULL) == 0);
        assert_se(strv_length(dropped2) == 4);
        _cleanup_free_ char *pt2 = decrypt(hex2);
        assert_se(streq(pt2, "{\"env\":[]}"));
}

/* The guest skips a key the compose does not list before any rule (dstack
 * dstack-util/src/parse_env_file.rs), and it is never sent: it cannot make
 * the encryption fail, nor count toward the limits. */
static void test_unlisted_keys_are_not_validated(void) {
        _cleanup_env_list_ EnvList env = ENV_LIST_INIT;
        _cleanup_free_ char *v128k = filled(ENV_VALUE_MAX, 'v'), *k256 = filled(ENV_KEY_MAX + 1, 'K');
        char key[16];
        char *allowed[] = { "HOTKEY_PASSPHRASE", NULL };

        assert_se(env_list_add(&env, "HOTKEY_PASSPHRASE", "p") == 0);
        assert_se(env_list_add(&env, "1-bad key", "SECRETVALUE") == 0);
        assert_se(env_list_add(&env, "TRAILING\n", "SECRETVALUE") == 0);
        assert_se(env_list_add(&env, k256, "SECRETVALUE") == 0);
        assert_se(env_list_add(&env, "HOTKEY_PASSPHRASE2", "SECRETVALUE\xff") == 0);
        assert_se(env_list_add(&env, "DUP", "a") == 0 && env_list_add(&env, "DUP", "b") == 0);
        for (int i = 0; i < ENV_MAX_ENTRIES + 10; i++) {      /* > 1024 entries, > 1 MiB */
                snprintf(key, sizeof key, "U%d", i);
                assert_se(env_list_add(&env, key, i < 9 ? v128k : "x") == 0);
        }
        _cleanup_free_ char *hex = NULL, *err = NULL;
        _cleanup_strv_free_ char **dropped = NULL;
        assert_se(env_encrypt(&env, allowed, kms_pk, &hex, &dropped, &err) == 0);
        assert_se(!err && strv_length(dropped) == env.n - 1);
        _cleanup_free_ char *pt = decrypt(hex);
        assert_se(streq(pt, "{\"env\":[{\"key\":\"HOTKEY_PASSPHRASE\",\"value\":\"p\"}]}"));

        /* The same list with every key allowed fails, naming the first bad entry. */
        assert_se(env_list_validate(&env, &err) == -EINVAL && err && strstr(err, "env[1]: key is not a valid name"));
        free(err);
        err = NULL;
        /* A listed key is checked, even next to unlisted ones. */
        char *listed_bad[] = { "HOTKEY_PASSPHRASE", "TRAILING\n", NULL };
        assert_se(env_list_validate_allowed(&env, listed_bad, &err) == -EINVAL);
        assert_se(err && strstr(err, "env[2]: key is not a valid name") && !strstr(err, "SECRETVALUE"));
        free(err);
        err = NULL;
        char *listed_dup[] = { "DUP", NULL };
        assert_se(env_list_validate_allowed(&env, listed_dup, &err) == -EINVAL && strstr(err, "(DUP): duplicate key"));
}

static void test_random(void) {
        _cleanup_env_list_ EnvList env = ENV_LIST_INIT;
        _cleanup_free_ char *a = NULL, *b = NULL;
        assert_se(env_list_add(&env, "FOO", "bar") == 0);
        assert_se(env_encrypt(&env, NULL, kms_pk, &a, NULL, NULL) == 0);
        assert_se(env_encrypt(&env, NULL, kms_pk, &b, NULL, NULL) == 0);
        assert_se(strlen(a) == 2 * (60 + strlen(PLAINTEXT)) && strlen(b) == strlen(a));
        assert_se(memcmp(a, b, 64) != 0);             /* ephemeral key */
        assert_se(memcmp(a + 64, b + 64, 24) != 0);   /* iv */
        _cleanup_free_ char *pa = decrypt(a), *pb = decrypt(b);
        assert_se(streq(pa, PLAINTEXT) && streq(pb, PLAINTEXT));
}

static void fp(const EnvList *env, const uint8_t *key, char out[65]) {
        assert_se(env_fingerprint(env, key, 32, out) == 0);
        assert_se(strlen(out) == 64);
}

static void test_fingerprint(void) {
        _cleanup_env_list_ EnvList a = ENV_LIST_INIT, b = ENV_LIST_INIT, c = ENV_LIST_INIT, d = ENV_LIST_INIT;
        uint8_t k1[32], k2[32];
        char fa[65], fb[65], fc[65], fd[65], fk[65];
        memset(k1, 1, sizeof k1);
        memset(k2, 2, sizeof k2);

        assert_se(env_list_add(&a, "A", "1") == 0 && env_list_add(&a, "B", "2") == 0);
        assert_se(env_list_add(&b, "B", "2") == 0 && env_list_add(&b, "A", "1") == 0);
        assert_se(env_list_add(&c, "A", "1") == 0 && env_list_add(&c, "B", "3") == 0);
        /* Length prefixes: "A"="12" differs from "A1"="2". */
        assert_se(env_list_add(&d, "A1", "2") == 0);
        fp(&a, k1, fa);
        fp(&b, k1, fb);
        fp(&c, k1, fc);
        fp(&d, k1, fd);
        fp(&a, k2, fk);
        assert_se(streq(fa, fb));
        assert_se(!streq(fa, fc) && !streq(fa, fd) && !streq(fa, fk));
        assert_se(env_fingerprint(&a, k1, ENV_FINGERPRINT_KEY_MIN - 1, fa) == -EINVAL);
}

int main(void) {
        assert_se(hex_decode_exact(KMS_PK, kms_pk, 32) == 0);
        test_vector();
        test_limits();
        test_random();
        test_dropped();
        test_limits_edge_accepted();
        test_unlisted_keys_are_not_validated();
        test_fingerprint();
        printf("test-crypto: ok\n");
        return 0;
}
