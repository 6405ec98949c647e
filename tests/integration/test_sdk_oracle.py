# SPDX-License-Identifier: Apache-2.0
"""Cross-checks against an oracle no one here wrote: the dstack SDK.

`@phala/dstack-sdk` (npm, pinned by tests/oracle/package-lock.json, installed
by tests/run-tests.sh with `npm ci`) is driven by the small node scripts in
tests/oracle/ (see its README.md):
  - compose bytes and hash: our compose (tests/unit/pure-tool) of randomised
    API documents with hostile strings, hashed by the SDK's getComposeHash()
    over its deterministic JSON of the same app-compose object;
  - env encryption, both ways: the SDK's encryptEnvVars() output decrypted by
    the simulator's guest logic (tests/sim/vmm_sim.py decrypt_env/guest_env),
    and ours decrypted by tests/oracle/decrypt-env.mjs, written from the SDK's
    format with @noble/curves and Web Crypto only.
Needs node >= 18 and tests/oracle/node_modules (`npm ci`).
"""

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from test_pure_props import (CONTROLS, DEFAULT_KEYS, SPECIAL, compact, expected_app_compose,
                             rand_api_doc, rand_env_case, rand_key, run_batch)

SRC = os.environ.get("PLATFORM_SOURCE_DIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ORACLE = os.path.join(SRC, "tests", "oracle")
sys.path.insert(0, os.path.join(SRC, "tests", "sim"))
import vmm_sim  # noqa: E402


def node_or_skip():
    node = shutil.which("node")
    if not node:
        pytest.skip("needs node >= 18 (the dstack SDK oracle)")
    major = int(subprocess.run([node, "-p", "process.versions.node.split('.')[0]"],
                               capture_output=True, text=True, check=True).stdout)
    if major < 18:
        pytest.skip("needs node >= 18, found %d" % major)
    if not os.path.isdir(os.path.join(ORACLE, "node_modules", "@phala", "dstack-sdk")):
        pytest.skip("needs tests/oracle/node_modules: run `npm ci` in tests/oracle (tests/run-tests.sh does)")
    return node


def node(script, request):
    exe = node_or_skip()
    out = subprocess.run([exe, os.path.join(ORACLE, script)], input=json.dumps(request).encode(),
                         capture_output=True, check=True, timeout=300, cwd=ORACLE)
    return json.loads(out.stdout)


# Hostile text: every C0 control but NUL (the API loader refuses "\u0000"),
# the characters escaping rules are about, astral characters, BOM, U+2028/9,
# JSON and YAML syntax, and long runs.
HOSTILE = [c for c in CONTROLS if c != "\0"] + SPECIAL + [
    "\\u0000", "\\\"", "}", "]", "{\"a\":1}", "${HOTKEY_PASSPHRASE}", "$(id)", "`id`", "\r\n",
    "\U0001f4a9", "\U000e0001", "\ufffd", "\u200b", "\u0301", "a" * 300, "\\" * 17, "\"" * 9]


def hostile_string(rng, n):
    return "".join(rng.choice(HOSTILE) if rng.random() < 0.6 else chr(rng.randrange(0x20, 0x7f))
                   for _ in range(n))


def hostile_doc(rng):
    doc = rand_api_doc(rng)
    doc["compose_content"] = "x" + hostile_string(rng, rng.choice([5, 50, 400]))
    if rng.random() < 0.3:
        doc["description"] = hostile_string(rng, 30)
    return doc


def app_compose_object(doc):
    """The app-compose object whose deterministic JSON the launcher sends."""
    prov = doc["provisioning"]
    app = dict(prov["manifest_defaults"])
    app["allowed_envs"] = sorted(set(DEFAULT_KEYS) | set(doc["required_env"]) | set(prov["env_keys"]))
    app["docker_compose_file"] = doc["compose_content"]
    return app


def test_compose_hash_matches_sdk():
    rng = random.Random(20261125)
    docs = [hostile_doc(rng) for _ in range(1200)]
    records = [json.dumps(d, ensure_ascii=(i % 2 == 0)).encode() for i, d in enumerate(docs)]
    ours = run_batch("compose", records)
    objects, our_bytes = [], []
    for doc, line in zip(docs, ours):
        assert not line.startswith(b"error:"), (doc, line)
        objects.append(app_compose_object(doc))
        our_bytes.append(line)
    sdk = node("compose-hash.mjs", objects)
    assert len(sdk) == len(objects) >= 1000
    mismatches = [(o, b) for o, b, h in zip(objects, our_bytes, sdk) if hashlib.sha256(b).hexdigest() != h]
    assert not mismatches, "%d of %d differ; first: %r" % (len(mismatches), len(objects), mismatches[0])
    # the SDK's bytes are not exported: a second, independent statement of them
    for doc, b in zip(docs[:50], our_bytes):
        assert b == expected_app_compose(doc)


def test_compose_hash_vector_matches_sdk():
    """The compose-hash vector of dstack.md §5 / the API simulator's example."""
    sim_doc = json.loads(subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, %r); import api_sim, sys; "
         "sys.stdout.buffer.write(api_sim.example_bytes())" % os.path.join(SRC, "tests", "sim")],
        capture_output=True, check=True).stdout)
    (h,) = node("compose-hash.mjs", [app_compose_object(sim_doc)])
    assert h == "70cfd2f4b998b97f124bdeb743a964a8fac44151ca8183dd8f0a4df1177cb4db"
    (line,) = run_batch("compose", [json.dumps(sim_doc).encode()])
    assert hashlib.sha256(line).hexdigest() == h


def rand_hostile_env(rng):
    keys = list(dict.fromkeys(rand_key(rng) for _ in range(rng.randrange(0, 12))))
    return [{"key": k, "value": hostile_string(rng, rng.choice([0, 8, 80, 3000]))} for k in keys]


def test_sdk_encryption_decrypts_in_guest():
    node_or_skip()
    rng = random.Random(5150)
    priv = hashlib.sha256(b"sdk-oracle").digest()
    pub = vmm_sim.x25519_public(priv)
    cases = [rand_hostile_env(rng) for _ in range(300)]
    blobs = node("encrypt-env.mjs", {"public_key": pub.hex(), "cases": cases})
    assert len(blobs) == len(cases)
    ephs = set()
    for env, hexblob in zip(cases, blobs):
        blob = bytes.fromhex(hexblob)
        ephs.add(blob[:32])
        plain = vmm_sim.decrypt_env(priv, blob)
        got, dropped = vmm_sim.guest_env(plain, [e["key"] for e in env])
        assert got == {e["key"]: e["value"] for e in env} and not dropped
        # the SDK's plaintext is JSON.stringify({env}): the same bytes as ours
        assert plain == compact({"env": env})
    assert len(ephs) == len(cases)          # a fresh ephemeral key each time


def test_our_encryption_decrypts_with_sdk_format():
    node_or_skip()
    rng = random.Random(6160)
    sk = X25519PrivateKey.generate()
    priv = sk.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    cases = [rand_hostile_env(rng) for _ in range(300)] + [rand_env_case(rng)[0] for _ in range(100)]
    records = [json.dumps({"env": env}).encode() for env in cases]
    lines = run_batch("encrypt", records, pk.hex())
    blobs = [line.decode().split(" ")[0] for line in lines]
    got = node("decrypt-env.mjs", {"private_key": priv.hex(), "blobs": blobs})
    assert len(got) == len(cases)
    for env, r in zip(cases, got):
        assert "ok" in r, r
        assert json.loads(r["ok"]) == {"env": env}
    # a flipped bit anywhere is refused (the tag covers all of it)
    bad = bytearray(bytes.fromhex(blobs[0]))
    bad[40] ^= 1
    (r,) = node("decrypt-env.mjs", {"private_key": priv.hex(), "blobs": [bad.hex()]})
    assert "error" in r


def test_sdk_divergences_documented():
    """Where the JS SDK's deterministic JSON is not dstack's (tests/oracle/README.md):
    integer-like keys first (JS property order), keys sorted by UTF-16 code units,
    integers beyond 2^53 rounded. dstack's rule (keys byte-wise, exact integers) is
    Python's json.dumps(sort_keys=True). None of it can arise in an app-compose:
    its keys are fixed ASCII names and manifest_version is a u32."""
    cases = [{"10": 1, "9": 2, "a": 3}, {"\U0001F600": 1, "\uFF61": 2}, {"v": 9007199254740993}]
    sdk = node("compose-hash.mjs", cases)
    for obj, h in zip(cases, sdk):
        dstack = hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"),
                                           ensure_ascii=False).encode()).hexdigest()
        assert h != dstack, obj
    for key in app_compose_object(rand_api_doc(random.Random(3))):
        assert key.isascii() and not key.isdigit()


# ---- the KMS's signature of the env-encryption key (issue 18) ------------------------------

def signature_cases(rng, now):
    """200 cases for verifyEnvEncryptPublicKey / ...Legacy: keys signed as the
    dstack KMS signs them (kms/src/crypto.rs, by tests/sim/kmscrypto.py), by
    the right and a wrong signer, v1 and legacy, fresh, stale and future
    timestamps (kept well away from the 300 s / 60 s edges: the two sides read
    their clocks a moment apart), and truncated and malformed signatures."""
    import kmscrypto
    keys = [kmscrypto.private_from_seed("oracle-kms-%d" % i) for i in range(3)]
    n = kmscrypto.N
    cases = []

    def add(kind, pk, sig, app, ts=0):
        cases.append({"kind": kind, "public_key": pk.hex(), "signature": sig.hex(), "app_id": app.hex(),
                      "timestamp": ts})

    def mangle(sig, how):
        r, s, v = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]
        if how == "truncated":
            return sig[:rng.choice([0, 1, 32, 64])]
        if how == "extended":
            return sig + b"\x00"
        if how == "v+27":
            return sig[:64] + bytes([v + 27])
        if how == "v^2":                  # recovery id 2 or 3: r + n is no x coordinate
            return sig[:64] + bytes([v ^ 2])
        if how == "v^1":                  # the other point: another signer
            return sig[:64] + bytes([v ^ 1])
        if how == "high-s":               # the malleable twin: same signer
            return sig[:32] + (n - s).to_bytes(32, "big") + bytes([v ^ 1])
        if how == "r=0":
            return bytes(32) + sig[32:]
        if how == "s=0":
            return sig[:32] + bytes(32) + sig[64:]
        if how == "r>=n":
            return (n + rng.randrange(0, 2 ** 256 - n)).to_bytes(32, "big") + sig[32:]
        if how == "random":
            return bytes(rng.randrange(256) for _ in range(64)) + bytes([rng.randrange(2)])
        if how == "bitflip":
            b = bytearray(sig)
            b[rng.randrange(64)] ^= 1 << rng.randrange(8)
            return bytes(b)
        raise AssertionError(how)

    ages = [10, 120, 1000, 5000, -30, -600]           # fresh, fresh, stale, stale, near future, future
    hows = ["truncated", "extended", "v+27", "v^2", "v^1", "high-s", "r=0", "s=0", "r>=n", "random", "bitflip"]
    while len(cases) < 200:
        app = bytes(rng.randrange(256) for _ in range(20))
        pk = bytes(rng.randrange(256) for _ in range(32))
        d = rng.choice(keys)
        age = rng.choice(ages)
        ts = now - age
        v1 = kmscrypto.sign_recoverable(d, kmscrypto.pubkey_message(app, pk, ts))
        legacy = kmscrypto.sign_recoverable(d, kmscrypto.pubkey_message(app, pk))
        add("v1", pk, v1, app, ts)
        add("legacy", pk, legacy, app)
        how = rng.choice(hows)
        add("v1", pk, mangle(v1, how), app, ts)
        add("legacy", pk, mangle(legacy, how), app)
        # the signature of another message: verifies, to another signer
        other = bytearray(pk)
        other[rng.randrange(32)] ^= 1
        add(rng.choice(["v1", "legacy"]), bytes(other), rng.choice([v1, legacy]), app, ts)
    return cases[:200]


def test_kms_signature_verification_agrees_with_sdk():
    """Our verification (core/kms-trust.c through tests/unit/kms-tool, with
    libsecp256k1 and our Keccak-256) against the dstack SDK's
    verifyEnvEncryptPublicKey (maxAgeSeconds 300) and ...Legacy on 200 cases:
    the same signer or the same refusal, every time."""
    import time
    node_or_skip()
    tool = os.path.join(os.environ.get("PLATFORM_BUILD_DIR", os.path.join(SRC, "build")), "tests", "unit",
                        "kms-tool")
    rng = random.Random(1818)
    cases = signature_cases(rng, int(time.time()))
    assert len(cases) == 200
    request = {"cases": cases}
    sdk = node("verify-pubkey.mjs", request)
    ours = json.loads(subprocess.run([tool], input=json.dumps(request).encode(), capture_output=True,
                                     check=True, timeout=60).stdout)
    assert len(sdk) == len(ours) == 200
    disagree = [(c, s, o) for c, s, o in zip(cases, sdk, ours) if s != o]
    assert disagree == [], "%d disagreements, first: %r" % (len(disagree), disagree[:3])
    # the cases do cover both answers and both kinds
    accepted = [s for s in sdk if s]
    assert 40 < len(accepted) < 160, len(accepted)
    assert {c["kind"] for c, s in zip(cases, sdk) if s} == {"v1", "legacy"}
    import kmscrypto
    signers = {kmscrypto.public_key(kmscrypto.private_from_seed("oracle-kms-%d" % i)).hex() for i in range(3)}
    assert signers <= set(accepted)                   # right signers recovered
    assert set(accepted) - signers                    # and wrong ones, as wrong ones
