/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "clients/vmm-json.h"

/* Which env-encryption keys the launcher may send secrets to
 * (dbus-api.md "Only a trusted KMS gets to encrypt the secrets"). The VMM
 * forwards GetAppEnvEncryptPubKey to the KMS and verifies nothing; the KMS
 * signs the key (shared/kms-signature.h). Pure policy, no I/O:
 *
 * - The signature used is signature_v1 when there is one, else the legacy
 *   signature (never the legacy one beside a bad v1).
 * - TrustedKmsSigners non-empty: the signer must be one of them, else
 *   blocked; an unsigned key is blocked.
 * - Empty list: the signer is pinned on first use (the caller stores it); a
 *   later different signer, or an unsigned key once one is pinned (else
 *   stripping the signatures would get past the pin), is blocked until the
 *   operator trusts it. An unsigned key with nothing pinned is accepted with a
 *   warning (a KMS older than the signatures); so is a legacy signature alone
 *   (no timestamp), as vmm-cli.py warns.
 * - A signature that is there but malformed, or recovers to nobody, blocks.
 * - KmsSignatureMaxAgeUSec > 0: a v1 timestamp older than that, or more than
 *   60 s ahead (the JS SDK's verifyEnvEncryptPublicKey tolerance), blocks.
 *   0 = no check, as dstack's vmm-cli.py. A legacy signature has no timestamp
 *   to check. */

#define KMS_TRUST_FUTURE_SKEW_SEC 60

typedef struct KmsTrustInput {
        const char *app_id;                 /* 40 hex: what the key was asked for */
        const VmmPubKeyReply *reply;
        char *const *trusted;               /* TrustedKmsSigners (NULL or empty: none) */
        uint64_t max_age_usec;              /* KmsSignatureMaxAgeUSec */
        const char *pinned;                 /* the signer pinned on first use, "" or NULL: none */
        uint64_t now_sec;                   /* CLOCK_REALTIME */
} KmsTrustInput;

typedef struct KmsTrustResult {
        char *signer;       /* lowercase hex of the signer whose key is used; "" = unsigned */
        bool pin;           /* pin signer now (empty list, nothing pinned yet) */
        char *warning;      /* accepted, but say this (an unsigned key); NULL if nothing */
        char *blocked;      /* not accepted: the VM's StateReason; NULL if accepted */
} KmsTrustResult;

/* Fills *ret; returns 0, or -EINVAL for an input it cannot read (app id). */
int kms_trust_check(const KmsTrustInput *in, KmsTrustResult *ret);
void kms_trust_result_done(KmsTrustResult *r);
