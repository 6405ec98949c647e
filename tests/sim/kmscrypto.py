"""Pure-Python Keccak-256 and secp256k1 recoverable signatures, as the dstack KMS
uses to sign env-encryption public keys (dstack.md section 3). For tests only:
slow and not constant time."""

import hashlib
import os

# ---- Keccak-256 (the original padding 0x01, not SHA3's 0x06) -----------------

_RC = [0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
       0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
       0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
       0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
       0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
       0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008]
_ROT = [[0, 36, 3, 41, 18], [1, 44, 10, 45, 2], [62, 6, 43, 15, 61],
        [28, 55, 25, 21, 56], [27, 20, 39, 8, 14]]
_M = (1 << 64) - 1


def _rol(x, n):
    return ((x << n) | (x >> (64 - n))) & _M if n else x


def _keccak_f(a):
    for rc in _RC:
        c = [a[x][0] ^ a[x][1] ^ a[x][2] ^ a[x][3] ^ a[x][4] for x in range(5)]
        d = [c[(x - 1) % 5] ^ _rol(c[(x + 1) % 5], 1) for x in range(5)]
        a = [[a[x][y] ^ d[x] for y in range(5)] for x in range(5)]
        b = [[0] * 5 for _ in range(5)]
        for x in range(5):
            for y in range(5):
                b[y][(2 * x + 3 * y) % 5] = _rol(a[x][y], _ROT[x][y])
        a = [[b[x][y] ^ ((~b[(x + 1) % 5][y]) & b[(x + 2) % 5][y]) for y in range(5)]
             for x in range(5)]
        a[0][0] ^= rc
    return a


def keccak256(data):
    return _sponge256(data, 0x01)


def _sponge256(data, pad):
    """pad 0x01 = Keccak-256, 0x06 = SHA3-256 (lets tests check against hashlib)."""
    rate = 136
    msg = bytearray(data) + bytes([pad])
    msg += b"\x00" * (-len(msg) % rate)
    msg[-1] |= 0x80
    a = [[0] * 5 for _ in range(5)]
    for off in range(0, len(msg), rate):
        block = msg[off:off + rate]
        for i in range(rate // 8):
            x, y = i % 5, i // 5
            a[x][y] ^= int.from_bytes(block[8 * i:8 * i + 8], "little")
        a = _keccak_f(a)
    out = b"".join(a[i % 5][i // 5].to_bytes(8, "little") for i in range(4))
    return out


# ---- secp256k1 ---------------------------------------------------------------------

P = 2 ** 256 - 2 ** 32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
     0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8)


def _add(p1, p2):
    if p1 is None:
        return p2
    if p2 is None:
        return p1
    if p1[0] == p2[0] and (p1[1] + p2[1]) % P == 0:
        return None
    if p1 == p2:
        lam = 3 * p1[0] * p1[0] * pow(2 * p1[1], -1, P) % P
    else:
        lam = (p2[1] - p1[1]) * pow(p2[0] - p1[0], -1, P) % P
    x = (lam * lam - p1[0] - p2[0]) % P
    return x, (lam * (p1[0] - x) - p1[1]) % P


def _mul(k, pt):
    out = None
    while k:
        if k & 1:
            out = _add(out, pt)
        pt = _add(pt, pt)
        k >>= 1
    return out


def private_from_seed(seed):
    """The simulated KMS signer: sha256(seed || ":kms-signer") mod n."""
    return int.from_bytes(hashlib.sha256(seed.encode() + b":kms-signer").digest(), "big") % N or 1


def public_key(d, compressed=True):
    x, y = _mul(d, G)
    if compressed:
        return bytes([2 + (y & 1)]) + x.to_bytes(32, "big")
    return b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")


def sign_recoverable(d, digest):
    """65 bytes r || s || v, low s, v in {0, 1}."""
    e = int.from_bytes(digest, "big")
    while True:
        k = int.from_bytes(os.urandom(32), "big") % N
        if not k:
            continue
        R = _mul(k, G)
        r = R[0] % N
        if not r or R[0] >= N:
            continue
        s = pow(k, -1, N) * (e + r * d) % N
        if not s:
            continue
        v = R[1] & 1
        if s > N // 2:
            s = N - s
            v ^= 1
        return r.to_bytes(32, "big") + s.to_bytes(32, "big") + bytes([v])


def recover(digest, sig):
    """The signer's compressed public key from a 65-byte r || s || v signature."""
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    v = sig[64]
    if not (0 < r < N and 0 < s < N) or v not in (0, 1):
        raise ValueError("bad signature")
    y2 = (pow(r, 3, P) + 7) % P
    y = pow(y2, (P + 1) // 4, P)
    if y * y % P != y2:
        raise ValueError("bad signature")
    if y & 1 != v:
        y = P - y
    e = int.from_bytes(digest, "big")
    rinv = pow(r, -1, N)
    q = _add(_mul(s * rinv % N, (r, y)), _mul((-e * rinv) % N, G))
    if q is None:
        raise ValueError("bad signature")
    return bytes([2 + (q[1] & 1)]) + q[0].to_bytes(32, "big")


PREFIX = b"dstack-env-encrypt-pubkey"


def pubkey_message(app_id, pub, timestamp=None):
    """Keccak256(prefix || ":" || app_id(20) [|| timestamp(8, BE)] || public_key)."""
    ts = b"" if timestamp is None else int(timestamp).to_bytes(8, "big")
    return keccak256(PREFIX + b":" + app_id + ts + pub)
