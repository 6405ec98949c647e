# SPDX-License-Identifier: Apache-2.0
"""Property tests of the pure C layer against Python's json and cryptography.

Python's json.dumps(..., ensure_ascii=False, separators=(',', ':')) escapes
exactly what serde_json's compact writer escapes: '"', '\\', \\b \\t \\n \\f \\r
by name, the other C0 controls as \\u00xx in lowercase hex, and copies '/',
DEL (0x7f), U+2028/U+2029 and all other non-ASCII raw. So for any valid
Unicode string Python is an independent oracle for the bytes the compose hash
is computed over. Where they differ, and what the tests therefore avoid or
check separately:
  - ensure_ascii=True (Python's default) escapes all non-ASCII: never use it
    for the expected bytes;
  - Python strings may hold lone surrogates, which have no UTF-8 form; serde
    cannot hold them and the C writer refuses bytes that are not UTF-8
    (checked by test_invalid_utf8_refused);
  - the API loader refuses "\\u0000" (json-glib would cut the string there),
    so random compose contents exclude NUL; the writer itself escapes NUL
    (test_json_string_matches_python covers it).
"""

import hashlib
import json
import os
import random
import subprocess

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import serialization

BUILD = os.environ.get("PLATFORM_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
TOOL = os.path.join(BUILD, "tests", "unit", "pure-tool")
DEFAULT_KEYS = ["DSTACK_VMM_URL", "HOTKEY_PASSPHRASE", "VALIDATOR_BASE_URL"]

# Characters where escaping rules live, plus plain and multi-byte ones.
SPECIAL = ['"', "\\", "/", "\x7f", "\u2028", "\u2029", "\ufeff", "\u00e9", "\u20ac",
           "\U0001f600", "\U0010ffff", "\ud7ff", "\ue000", "\uffff", " ", "'"]
CONTROLS = [chr(c) for c in range(0x20)]


def rand_char(rng, allow_nul=True):
    roll = rng.random()
    if roll < 0.25:
        c = rng.choice(CONTROLS)
        return c if (allow_nul or c != "\0") else "\x01"
    if roll < 0.5:
        return rng.choice(SPECIAL)
    if roll < 0.8:
        return chr(rng.randrange(0x20, 0x7f))
    while True:
        cp = rng.randrange(0x80, 0x110000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def rand_string(rng, max_len=40, allow_nul=True):
    return "".join(rand_char(rng, allow_nul) for _ in range(rng.randrange(max_len + 1)))


def rand_key(rng):
    first = rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
    rest = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_0123456789")
                   for _ in range(rng.randrange(12)))
    return first + rest


def run_batch(command, records, *args):
    data = b"".join(b"%d\n" % len(r) + r for r in records)
    out = subprocess.run([TOOL, "batch", command, *args], input=data, capture_output=True,
                         check=True, timeout=60).stdout
    lines = out.split(b"\n")
    assert lines[-1] == b""
    lines = lines[:-1]
    assert len(lines) == len(records)
    return lines


def compact(obj, sort_keys=False):
    return json.dumps(obj, sort_keys=sort_keys, separators=(",", ":"), ensure_ascii=False).encode()


def test_json_string_matches_python():
    rng = random.Random(20261122)
    strings = [rand_string(rng) for _ in range(6000)]
    strings += ["", "\0", "\x7f", "/", "\u2028", '"\\', "".join(CONTROLS)]
    got = run_batch("json-string", [s.encode() for s in strings])
    for s, line in zip(strings, got):
        assert line == compact(s), (s, line)


def test_invalid_utf8_refused():
    bad = [b"\xff", b"\xc3", b"a\xed\xa0\x80b", b"\xc0\xaf", b"\xf4\x90\x80\x80"]
    for line in run_batch("json-string", bad):
        assert line.startswith(b"error: "), line


def rand_manifest(rng):
    label = "abcdefghijklmnopqrstuvwxyz0123456789_-"
    m = {k: rng.random() < 0.5 for k in (
        "kms_enabled", "gateway_enabled", "local_key_provider_enabled", "public_logs",
        "public_sysinfo", "public_tcbinfo", "no_instance_id", "secure_time")}
    m["manifest_version"] = rng.choice([1, 2, 3, rng.randrange(1, 2**31)])
    m["name"] = rng.choice("abcdef") + "".join(rng.choice(label) for _ in range(rng.randrange(20)))
    m["runner"] = rng.choice(["docker-compose", "bash"])
    m["key_provider_id"] = rng.randbytes(rng.choice([0, 0, 4, 32])).hex()
    return m


def rand_api_doc(rng):
    required = [rand_key(rng) for _ in range(rng.randrange(5))] + rng.sample(DEFAULT_KEYS, rng.randrange(3))
    env_keys = [rand_key(rng) for _ in range(rng.randrange(5))] + rng.sample(DEFAULT_KEYS, rng.randrange(4))
    rng.shuffle(env_keys)
    doc = {
        "vm_type": "validator_vm",
        "compose_content": "x" + rand_string(rng, 200, allow_nul=False),
        "description": rng.choice([None, rand_string(rng, allow_nul=False)]),
        "required_env": required,
        "updated_at": "2026-11-22T00:00:00Z",
        "provisioning": {
            "env_keys": env_keys,
            "manifest_defaults": rand_manifest(rng),
            "vm_parameters": {"name": "validator_vm", "image": "dstack-0.5.2", "vcpu": rng.randrange(1, 513),
                              "memory": 16384, "disk_size": 200, "user_config": "",
                              "ports": [{"protocol": "tcp", "host_port": 0, "vm_port": 0, "host_address": None}],
                              "hugepages": False, "pin_numa": False, "stopped": False},
        },
    }
    return doc


def expected_app_compose(doc):
    prov = doc["provisioning"]
    app = dict(prov["manifest_defaults"])
    app["allowed_envs"] = sorted(set(DEFAULT_KEYS) | set(doc["required_env"]) | set(prov["env_keys"]))
    app["docker_compose_file"] = doc["compose_content"]
    return compact(app, sort_keys=True)


def test_compose_matches_python():
    rng = random.Random(4242)
    docs = [rand_api_doc(rng) for _ in range(2000)]
    # Both as Python's ASCII-escaped JSON and as raw UTF-8: the loader must
    # decode \\uXXXX (and surrogate pairs) exactly like raw bytes.
    records = [json.dumps(d, ensure_ascii=(i % 2 == 0)).encode() for i, d in enumerate(docs)]
    got = run_batch("compose", records)
    for doc, line in zip(docs, got):
        assert line == expected_app_compose(doc), (doc, line)


def test_compose_hash_vector():
    doc = rand_api_doc(random.Random(1))
    doc["compose_content"] = 'services:\n  app:\n    image: "nginx:latest"\n'
    doc["required_env"] = []
    doc["provisioning"]["env_keys"] = list(DEFAULT_KEYS)
    doc["provisioning"]["manifest_defaults"] = {
        "manifest_version": 2, "name": "validator_vm", "runner": "docker-compose", "kms_enabled": True,
        "gateway_enabled": True, "local_key_provider_enabled": False, "key_provider_id": "",
        "public_logs": True, "public_sysinfo": True, "public_tcbinfo": True, "no_instance_id": False,
        "secure_time": False}
    out = subprocess.run([TOOL, "compose", "--hash"], input=json.dumps(doc).encode(), capture_output=True,
                         check=True).stdout.decode()
    want = hashlib.sha256(expected_app_compose(doc)).hexdigest()
    assert want == "70cfd2f4b998b97f124bdeb743a964a8fac44151ca8183dd8f0a4df1177cb4db"
    assert out == f"compose_hash {want}\napp_id {want[:40]}\n"


def test_api_doc_nul_refused():
    doc = rand_api_doc(random.Random(2))
    doc["compose_content"] = "a\0b"
    (line,) = run_batch("compose", [json.dumps(doc).encode()])
    assert line.startswith(b"error: api: document: contains an escaped NUL"), line


def rand_env_case(rng):
    keys = list(dict.fromkeys(rand_key(rng) for _ in range(rng.randrange(0, 30))))
    env = [{"key": k, "value": rand_string(rng, rng.choice([10, 60, 2000]), allow_nul=False)} for k in keys]
    allowed = [k for k in keys if rng.random() < 0.7] + [rand_key(rng) for _ in range(rng.randrange(3))]
    return env, allowed


def test_encrypt_decrypts_with_python():
    rng = random.Random(777)
    sk = X25519PrivateKey.generate()
    pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    cases = [rand_env_case(rng) for _ in range(1500)]
    records = [json.dumps({"env": env, "allowed_envs": allowed}).encode() for env, allowed in cases]
    got = run_batch("encrypt", records, pk.hex())
    seen_keys, seen_ivs = set(), set()
    for (env, allowed), line in zip(cases, got):
        hexout, dropped = line.decode().split(" ")
        blob = bytes.fromhex(hexout)
        assert hexout == blob.hex()  # lowercase
        kept = [e for e in env if e["key"] in allowed]
        plaintext = compact({"env": kept})
        assert len(blob) == 60 + len(plaintext)
        eph, iv, ct = blob[:32], blob[32:44], blob[44:]
        shared = sk.exchange(X25519PublicKey.from_public_bytes(eph))
        assert AESGCM(shared).decrypt(iv, ct, None) == plaintext
        want_dropped = [e["key"] for e in env if e["key"] not in allowed]
        assert dropped == (",".join(want_dropped) or "-")
        seen_keys.add(eph)
        seen_ivs.add(iv)
    assert len(seen_keys) == len(cases) and len(seen_ivs) == len(cases)


def test_encrypt_limits_refused():
    pk = X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    cases = [
        ([{"key": "1BAD", "value": "v"}], "env[0]: key is not a valid name"),
        ([{"key": "K%d" % i, "value": "v"} for i in range(1025)], "env: 1025 entries"),
        ([{"key": "BIG", "value": "v" * (128 * 1024 + 1)}], "env[0] (BIG): value exceeds 131072 bytes"),
        ([{"key": "V%d" % i, "value": "v" * (128 * 1024)} for i in range(9)], "env: keys and values total"),
    ]
    records = [json.dumps({"env": env}).encode() for env, _ in cases]
    for (_, msg), line in zip(cases, run_batch("encrypt", records, pk.hex())):
        assert line.startswith(b"error: encrypt: " + msg.encode()), line
        assert b"vvvv" not in line
