/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

/* The dstack KMS's signature of an env-encryption public key (dstack.md §3;
 * dstack kms/src/crypto.rs sign_message and sign_message_with_timestamp,
 * main_service.rs get_app_env_encrypt_pub_key): secp256k1 ECDSA, 65 bytes
 * r ‖ s ‖ v, over Keccak-256 of
 *   "dstack-env-encrypt-pubkey" ‖ ":" ‖ app_id (20 bytes) ‖ public_key (32)     legacy `signature`
 *   "dstack-env-encrypt-pubkey" ‖ ":" ‖ app_id ‖ timestamp (u64 BE) ‖ public_key `signature_v1`
 * Verifying = recovering the signer's public key and comparing it with a
 * trusted one (as dstack's vmm-cli.py and SDKs do). Pure: no I/O. */

#define KMS_APP_ID_LEN 20
#define KMS_PUBLIC_KEY_LEN 32
#define KMS_SIGNATURE_LEN 65
#define KMS_SIGNER_LEN 33             /* compressed SEC1 secp256k1 key */
#define KMS_SIGNER_HEX_LEN (2 * KMS_SIGNER_LEN)

void kms_pubkey_digest(const uint8_t app_id[KMS_APP_ID_LEN], const uint8_t public_key[KMS_PUBLIC_KEY_LEN],
                       bool timestamped, uint64_t timestamp, uint8_t ret[32]);

/* A signature as the VMM sends it: hex (either case, optional "0x") of
 * exactly 65 bytes. "" or NULL is -ENODATA (absent: a ≥0.5.6 VMM sends "" for
 * a KMS that did not sign); anything else wrong is -EINVAL with *ret_error
 * (malloc'd) saying what. */
int kms_signature_parse(const char *hex, uint8_t ret[KMS_SIGNATURE_LEN], char **ret_error);

/* The signer of sig over digest, compressed. v (sig[64]) is the recovery id
 * 0..3 (as libsecp256k1, k256 and noble take it; 27/28 are refused), r and s
 * must be in [1, n-1]; high s is accepted, as recovery does everywhere.
 * Returns 0, or -EINVAL with *ret_error. */
int kms_signer_recover(const uint8_t digest[32], const uint8_t sig[KMS_SIGNATURE_LEN],
                       uint8_t ret_signer[KMS_SIGNER_LEN], char **ret_error);

/* A signer key as configured (dstack's kms-whitelist.json trusted_signers, the
 * KMS's GetMeta k256_pubkey): 33-byte compressed SEC1 in hex, either case,
 * optional "0x", a point on the curve. Returns 0 or -EINVAL; ret may be NULL. */
int kms_signer_parse(const char *hex, uint8_t ret[KMS_SIGNER_LEN]);

/* Lowercase hex without "0x", NUL-terminated. */
void kms_signer_to_hex(const uint8_t signer[KMS_SIGNER_LEN], char ret[KMS_SIGNER_HEX_LEN + 1]);
