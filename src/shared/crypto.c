/* SPDX-License-Identifier: Apache-2.0 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "shared/crypto.h"
#include "shared/hex.h"
#include "shared/json-out.h"
#include "shared/macro.h"
#include "shared/strv.h"

static inline void evp_pkey_freep(EVP_PKEY **p) {
        EVP_PKEY_free(*p);
}
static inline void evp_pkey_ctx_freep(EVP_PKEY_CTX **p) {
        EVP_PKEY_CTX_free(*p);
}
static inline void evp_cipher_ctx_freep(EVP_CIPHER_CTX **p) {
        EVP_CIPHER_CTX_free(*p);
}
static inline void evp_mac_freep(EVP_MAC **p) {
        EVP_MAC_free(*p);
}
static inline void evp_mac_ctx_freep(EVP_MAC_CTX **p) {
        EVP_MAC_CTX_free(*p);
}
static inline void evp_cipher_freep(EVP_CIPHER **p) {
        EVP_CIPHER_free(*p);
}
static inline void lib_ctx_freep(OSSL_LIB_CTX **p) {
        OSSL_LIB_CTX_free(*p);
}

/* Each call below runs in a library context of its own, freed when it
 * returns: the env is encrypted only when a VM is (re)created and
 * fingerprinted only when its inputs change, and OpenSSL's default context
 * would otherwise keep the provider's algorithm tables, method caches and
 * a seeded DRBG (~150 KiB) for the daemon's whole life. A new context loads
 * the default provider on its first fetch and reads no openssl.cnf. */
#define _cleanup_lib_ctx_ _cleanup_(lib_ctx_freep)

int env_plaintext_build(const EnvList *env, char *const *allowed,
                        char **ret, size_t *ret_len, char ***ret_dropped) {
        _cleanup_strv_free_ char **dropped = calloc(1, sizeof(char *));
        JsonOut j = JSON_OUT_SENSITIVE_INIT;

        if (!dropped)
                return -ENOMEM;
        json_out_begin_object(&j);
        json_out_key(&j, "env");
        json_out_begin_array(&j);
        for (size_t i = 0; i < env->n; i++) {
                const EnvEntry *e = &env->entries[i];
                if (allowed && !strv_contains(allowed, e->key)) {
                        if (strv_extend(&dropped, e->key) < 0) {
                                json_out_done(&j);
                                return -ENOMEM;
                        }
                        continue;
                }
                json_out_begin_object(&j);
                json_out_key(&j, "key");
                json_out_string(&j, e->key);
                json_out_key(&j, "value");
                json_out_string(&j, e->value);
                json_out_end_object(&j);
        }
        json_out_end_array(&j);
        json_out_end_object(&j);
        int r = json_out_finish(&j, ret, ret_len);
        if (r < 0)
                return r;
        if (ret_dropped)
                *ret_dropped = TAKE_PTR(dropped);
        return 0;
}

static int x25519_shared(OSSL_LIB_CTX *lib, const uint8_t sk[ENV_X25519_KEY_LEN],
                         const uint8_t pk[ENV_X25519_KEY_LEN],
                         uint8_t ret_eph_pk[ENV_X25519_KEY_LEN], uint8_t ret_shared[ENV_X25519_KEY_LEN]) {
        _cleanup_(evp_pkey_freep) EVP_PKEY *eph =
                EVP_PKEY_new_raw_private_key_ex(lib, "X25519", NULL, sk, ENV_X25519_KEY_LEN);
        _cleanup_(evp_pkey_freep) EVP_PKEY *peer =
                EVP_PKEY_new_raw_public_key_ex(lib, "X25519", NULL, pk, ENV_X25519_KEY_LEN);
        if (!eph || !peer)
                return -EIO;
        size_t n = ENV_X25519_KEY_LEN;
        if (EVP_PKEY_get_raw_public_key(eph, ret_eph_pk, &n) != 1 || n != ENV_X25519_KEY_LEN)
                return -EIO;
        _cleanup_(evp_pkey_ctx_freep) EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(lib, eph, NULL);
        if (!ctx || EVP_PKEY_derive_init(ctx) != 1 || EVP_PKEY_derive_set_peer(ctx, peer) != 1)
                return -EIO;
        n = ENV_X25519_KEY_LEN;
        /* OpenSSL refuses an all-zero result, i.e. a low-order public key. */
        if (EVP_PKEY_derive(ctx, ret_shared, &n) != 1 || n != ENV_X25519_KEY_LEN)
                return -EINVAL;
        return 0;
}

static int aes_gcm_seal(OSSL_LIB_CTX *lib, const uint8_t key[32], const uint8_t iv[ENV_GCM_IV_LEN],
                        const uint8_t *pt, size_t n, uint8_t *ret_ct, uint8_t ret_tag[ENV_GCM_TAG_LEN]) {
        _cleanup_(evp_cipher_freep) EVP_CIPHER *cipher = EVP_CIPHER_fetch(lib, "AES-256-GCM", NULL);
        _cleanup_(evp_cipher_ctx_freep) EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int len = 0, fin = 0;
        if (n > INT32_MAX / 2)
                return -EINVAL;
        if (!cipher || !ctx ||
            EVP_EncryptInit_ex(ctx, cipher, NULL, NULL, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, ENV_GCM_IV_LEN, NULL) != 1 ||
            EVP_EncryptInit_ex(ctx, NULL, NULL, key, iv) != 1 ||
            EVP_EncryptUpdate(ctx, ret_ct, &len, pt, (int) n) != 1 ||
            EVP_EncryptFinal_ex(ctx, ret_ct + len, &fin) != 1 ||
            (size_t) len + (size_t) fin != n ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, ENV_GCM_TAG_LEN, ret_tag) != 1)
                return -EIO;
        return 0;
}

/* out must hold ENV_ENCRYPT_OVERHEAD + n bytes. */
static int seal(OSSL_LIB_CTX *lib, const uint8_t *pt, size_t n, const uint8_t pk[ENV_X25519_KEY_LEN],
                const uint8_t sk[ENV_X25519_KEY_LEN], const uint8_t iv[ENV_GCM_IV_LEN], uint8_t *out) {
        uint8_t shared[ENV_X25519_KEY_LEN];
        int r = x25519_shared(lib, sk, pk, out, shared);
        if (r >= 0) {
                memcpy(out + ENV_X25519_KEY_LEN, iv, ENV_GCM_IV_LEN);
                uint8_t *ct = out + ENV_X25519_KEY_LEN + ENV_GCM_IV_LEN;
                r = aes_gcm_seal(lib, shared, iv, pt, n, ct, ct + n);
        }
        OPENSSL_cleanse(shared, sizeof shared);
        return r;
}

static int set_error(char **ret_error, const char *msg) {
        if (ret_error && !(*ret_error = strdup(msg)))
                return -ENOMEM;
        return -EINVAL;
}

/* Plaintext → hex; sk and iv are random when NULL. */
static int encrypt_plaintext(const char *pt, size_t n, const uint8_t pk[ENV_X25519_KEY_LEN],
                             const uint8_t *fixed_sk, const uint8_t *fixed_iv,
                             char **ret_hex, char **ret_error) {
        _cleanup_lib_ctx_ OSSL_LIB_CTX *lib = OSSL_LIB_CTX_new();
        uint8_t sk[ENV_X25519_KEY_LEN], iv[ENV_GCM_IV_LEN];
        int r;

        if (!lib)
                return -ENOMEM;
        if (fixed_sk) {
                memcpy(sk, fixed_sk, sizeof sk);
                memcpy(iv, fixed_iv, sizeof iv);
        } else if (RAND_priv_bytes_ex(lib, sk, sizeof sk, 0) != 1 || RAND_bytes_ex(lib, iv, sizeof iv, 0) != 1) {
                OPENSSL_cleanse(sk, sizeof sk);
                return -EIO;
        }
        _cleanup_free_ uint8_t *out = malloc(ENV_ENCRYPT_OVERHEAD + n);
        r = out ? seal(lib, (const uint8_t *) pt, n, pk, sk, iv, out) : -ENOMEM;
        OPENSSL_cleanse(sk, sizeof sk);
        if (r == -EINVAL)
                return set_error(ret_error, "KMS public key: not usable for X25519 (low-order point)");
        if (r < 0)
                return r;
        *ret_hex = hex_encode(out, ENV_ENCRYPT_OVERHEAD + n);
        return *ret_hex ? 0 : -ENOMEM;
}

static int encrypt_env(const EnvList *env, char *const *allowed_envs, const uint8_t pk[ENV_X25519_KEY_LEN],
                       const uint8_t *sk, const uint8_t *iv,
                       char **ret_hex, char ***ret_dropped, char **ret_error) {
        _cleanup_erase_free_ char *pt = NULL;
        _cleanup_strv_free_ char **dropped = NULL;
        size_t n;
        int r;

        if (ret_error)
                *ret_error = NULL;
        r = env_list_validate_allowed(env, allowed_envs, ret_error);
        if (r < 0)
                return r;
        r = env_plaintext_build(env, allowed_envs, &pt, &n, &dropped);
        if (r < 0)
                return r;
        r = encrypt_plaintext(pt, n, pk, sk, iv, ret_hex, ret_error);
        if (r < 0)
                return r;
        if (ret_dropped)
                *ret_dropped = TAKE_PTR(dropped);
        return 0;
}

int env_encrypt(const EnvList *env, char *const *allowed_envs,
                const uint8_t kms_public_key[ENV_X25519_KEY_LEN],
                char **ret_hex, char ***ret_dropped, char **ret_error) {
        return encrypt_env(env, allowed_envs, kms_public_key, NULL, NULL, ret_hex, ret_dropped, ret_error);
}

int env_encrypt_with_keys_for_test(const EnvList *env, char *const *allowed_envs,
                                   const uint8_t kms_public_key[ENV_X25519_KEY_LEN],
                                   const uint8_t ephemeral_private_key[ENV_X25519_KEY_LEN],
                                   const uint8_t iv[ENV_GCM_IV_LEN],
                                   char **ret_hex, char ***ret_dropped, char **ret_error) {
        return encrypt_env(env, allowed_envs, kms_public_key, ephemeral_private_key, iv,
                           ret_hex, ret_dropped, ret_error);
}

static int cmp_entry(const void *a, const void *b) {
        const EnvEntry *x = *(const EnvEntry *const *) a, *y = *(const EnvEntry *const *) b;
        int c = strcmp(x->key, y->key);
        return c ? c : strcmp(x->value, y->value);
}

static int mac_update_lp(EVP_MAC_CTX *ctx, const char *s) {
        size_t n = strlen(s);
        uint8_t be[4] = { (uint8_t) (n >> 24), (uint8_t) (n >> 16), (uint8_t) (n >> 8), (uint8_t) n };
        return EVP_MAC_update(ctx, be, sizeof be) == 1 && EVP_MAC_update(ctx, (const uint8_t *) s, n) == 1;
}

static int mac_env(EVP_MAC_CTX *ctx, const EnvList *env) {
        static const char domain[] = "platform-launcher env fingerprint v1";
        _cleanup_free_ const EnvEntry **sorted = calloc(env->n ? env->n : 1, sizeof(EnvEntry *));
        if (!sorted)
                return -ENOMEM;
        for (size_t i = 0; i < env->n; i++)
                sorted[i] = &env->entries[i];
        qsort(sorted, env->n, sizeof(EnvEntry *), cmp_entry);
        if (!mac_update_lp(ctx, domain))
                return -EIO;
        for (size_t i = 0; i < env->n; i++)
                if (!mac_update_lp(ctx, sorted[i]->key) || !mac_update_lp(ctx, sorted[i]->value))
                        return -EIO;
        return 0;
}

int env_fingerprint(const EnvList *env, const uint8_t *key, size_t key_len,
                    char ret[ENV_FINGERPRINT_HEX_LEN + 1]) {
        char digest[] = "SHA256";
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                OSSL_PARAM_construct_end(),
        };
        uint8_t md[32];
        size_t mdlen = 0;

        if (!key || key_len < ENV_FINGERPRINT_KEY_MIN)
                return -EINVAL;
        _cleanup_lib_ctx_ OSSL_LIB_CTX *lib = OSSL_LIB_CTX_new();
        _cleanup_(evp_mac_freep) EVP_MAC *mac = lib ? EVP_MAC_fetch(lib, "HMAC", NULL) : NULL;
        _cleanup_(evp_mac_ctx_freep) EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
        if (!ctx || EVP_MAC_init(ctx, key, key_len, params) != 1)
                return -EIO;
        int r = mac_env(ctx, env);
        if (r < 0)
                return r;
        if (EVP_MAC_final(ctx, md, &mdlen, sizeof md) != 1 || mdlen != sizeof md)
                return -EIO;
        _cleanup_free_ char *h = hex_encode(md, sizeof md);
        if (!h)
                return -ENOMEM;
        memcpy(ret, h, ENV_FINGERPRINT_HEX_LEN + 1);
        return 0;
}
