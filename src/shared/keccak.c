/* SPDX-License-Identifier: Apache-2.0 */
/* Keccak-f[1600] and a 256-bit sponge (FIPS 202 §3 and §4 for the
 * permutation; the padding byte is the only difference from SHA3-256).
 * Lanes are 64-bit little-endian words, state index x + 5y. */
#include <string.h>

#include "shared/keccak.h"

#define RATE 136

static const uint64_t round_constants[24] = {
        0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808aULL, 0x8000000080008000ULL,
        0x000000000000808bULL, 0x0000000080000001ULL, 0x8000000080008081ULL, 0x8000000000008009ULL,
        0x000000000000008aULL, 0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000aULL,
        0x000000008000808bULL, 0x800000000000008bULL, 0x8000000000008089ULL, 0x8000000000008003ULL,
        0x8000000000008002ULL, 0x8000000000000080ULL, 0x000000000000800aULL, 0x800000008000000aULL,
        0x8000000080008081ULL, 0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* ρ offsets, for lane x + 5y. */
static const unsigned rho[25] = {
        0, 1, 62, 28, 27, 36, 44, 6, 55, 20, 3, 10, 43, 25, 39, 41, 45, 15, 21, 8, 18, 2, 61, 56, 14,
};

static uint64_t rol(uint64_t v, unsigned n) {
        return n ? (v << n) | (v >> (64 - n)) : v;
}

static void keccak_f(uint64_t a[25]) {
        uint64_t c[5], b[25];
        for (unsigned round = 0; round < 24; round++) {
                for (unsigned x = 0; x < 5; x++) /* θ */
                        c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
                for (unsigned x = 0; x < 5; x++) {
                        uint64_t d = c[(x + 4) % 5] ^ rol(c[(x + 1) % 5], 1);
                        for (unsigned y = 0; y < 25; y += 5)
                                a[y + x] ^= d;
                }
                for (unsigned x = 0; x < 5; x++) /* ρ and π: B[y, 2x+3y] = rot(A[x, y]) */
                        for (unsigned y = 0; y < 5; y++)
                                b[y + 5 * ((2 * x + 3 * y) % 5)] = rol(a[x + 5 * y], rho[x + 5 * y]);
                for (unsigned y = 0; y < 25; y += 5) /* χ */
                        for (unsigned x = 0; x < 5; x++)
                                a[y + x] = b[y + x] ^ (~b[y + (x + 1) % 5] & b[y + (x + 2) % 5]);
                a[0] ^= round_constants[round]; /* ι */
        }
}

static void absorb_block(uint64_t a[25], const uint8_t *block) {
        for (unsigned i = 0; i < RATE / 8; i++) {
                uint64_t lane = 0;
                for (unsigned k = 0; k < 8; k++)
                        lane |= (uint64_t) block[8 * i + k] << (8 * k);
                a[i] ^= lane;
        }
        keccak_f(a);
}

static void sponge(const void *data, size_t len, uint8_t pad, uint8_t out[KECCAK256_LEN]) {
        const uint8_t *p = data;
        uint64_t a[25] = { 0 };
        uint8_t last[RATE];

        for (; len >= RATE; p += RATE, len -= RATE)
                absorb_block(a, p);
        memset(last, 0, sizeof last);
        if (len)
                memcpy(last, p, len);
        last[len] ^= pad;
        last[RATE - 1] ^= 0x80;
        absorb_block(a, last);
        for (unsigned i = 0; i < KECCAK256_LEN; i++)
                out[i] = (uint8_t) (a[i / 8] >> (8 * (i % 8)));
}

void keccak256(const void *data, size_t len, uint8_t out[KECCAK256_LEN]) {
        sponge(data, len, 0x01, out);
}

void keccak256_sha3_padding_for_test(const void *data, size_t len, uint8_t out[KECCAK256_LEN]) {
        sponge(data, len, 0x06, out);
}
