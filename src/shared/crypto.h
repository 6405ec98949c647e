/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "shared/env-list.h"

/* dstack env encryption (dstack.md §3): X25519 ECDH with the KMS key, the
 * raw shared secret as AES-256-GCM key, no AAD. */

#define ENV_X25519_KEY_LEN 32
#define ENV_GCM_IV_LEN 12
#define ENV_GCM_TAG_LEN 16
#define ENV_ENCRYPT_OVERHEAD (ENV_X25519_KEY_LEN + ENV_GCM_IV_LEN + ENV_GCM_TAG_LEN)
#define ENV_FINGERPRINT_KEY_MIN 16
#define ENV_FINGERPRINT_HEX_LEN 64

/* {"env":[{"key":"K","value":"V"},...]} of the entries whose key is in
 * allowed (NULL-terminated; NULL allows all), in list order. Keys not
 * allowed are appended to *ret_dropped (always set, possibly empty) if
 * ret_dropped is non-NULL. The caller wipes *ret (erase_and_free()).
 * Returns 0, -ENOMEM or -EINVAL (a value that is not UTF-8). */
int env_plaintext_build(const EnvList *env, char *const *allowed,
                        char **ret, size_t *ret_len, char ***ret_dropped);

/* Validates the entries listed in allowed_envs against every guest limit
 * (env_list_validate_allowed(): unlisted keys are not checked), drops keys
 * not in allowed_envs (NULL-terminated; NULL keeps all) and reports them
 * in *ret_dropped (always set, possibly empty) if non-NULL, encrypts to
 * kms_public_key with a fresh ephemeral key and IV from the OS CSPRNG, and
 * returns eph_pk ‖ iv ‖ ciphertext ‖ tag as lowercase hex in *ret_hex.
 * Returns 0, -ENOMEM, -EIO (crypto library failure), or -EINVAL with
 * *ret_error (malloc'd, never containing a value) for a limit or an
 * unusable public key. */
int env_encrypt(const EnvList *env, char *const *allowed_envs,
                const uint8_t kms_public_key[ENV_X25519_KEY_LEN],
                char **ret_hex, char ***ret_dropped, char **ret_error);

/* As env_encrypt() with a chosen ephemeral private key and IV. Reusing
 * either breaks the encryption: for test vectors only. */
int env_encrypt_with_keys_for_test(const EnvList *env, char *const *allowed_envs,
                                   const uint8_t kms_public_key[ENV_X25519_KEY_LEN],
                                   const uint8_t ephemeral_private_key[ENV_X25519_KEY_LEN],
                                   const uint8_t iv[ENV_GCM_IV_LEN],
                                   char **ret_hex, char ***ret_dropped, char **ret_error);

/* HMAC-SHA256 with key over the key-sorted list of length-prefixed keys
 * and values: tells whether the env changed without storing the values.
 * key_len must be at least ENV_FINGERPRINT_KEY_MIN. Returns 0, -EINVAL,
 * -ENOMEM or -EIO; ret is lowercase hex. */
int env_fingerprint(const EnvList *env, const uint8_t *key, size_t key_len,
                    char ret[ENV_FINGERPRINT_HEX_LEN + 1]);
