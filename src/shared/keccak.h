/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define KECCAK256_LEN 32

/* Keccak-256 as Ethereum and dstack's KMS use it (sha3::Keccak256): the
 * original Keccak padding (0x01), not FIPS 202 SHA3-256's (0x06), which is
 * why OpenSSL's SHA3-256 does not do. Rate 136 bytes, capacity 512 bits. */
void keccak256(const void *data, size_t len, uint8_t out[KECCAK256_LEN]);

/* The same sponge with FIPS 202's padding: SHA3-256. Only for tests, which
 * check the permutation and the absorbing against OpenSSL with it. */
void keccak256_sha3_padding_for_test(const void *data, size_t len, uint8_t out[KECCAK256_LEN]);
