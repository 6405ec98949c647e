"""Tests of the dstack VMM simulator itself (tests/sim/vmm_sim.py)."""

import hashlib
import http.client
import json
import os
import random
import string
import subprocess
import sys
import threading
import time

import pytest

SRC = os.environ.get("PLATFORM_SOURCE_DIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "sim"))

import simlib  # noqa: E402
import vmm_sim  # noqa: E402
from simlib import PrpcError, vmm, vmm_process  # noqa: E402,F401  (fixtures)

VECTORS = os.path.join(SRC, "..", "shared", "vectors", "env-encrypt.txt")
COMPOSE = simlib.app_compose()
APP_ID = simlib.app_id_of(COMPOSE)


def load_vector():
    path = os.environ.get("PLATFORM_ENV_VECTOR", VECTORS)
    if not os.path.exists(path):
        path = "/work/shared/vectors/env-encrypt.txt"
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                k, v = line.split(None, 1)
                out[k] = v.strip()
    return out


def config(**over):
    c = {"name": "validator_vm", "image": "dstack-0.5.2", "compose_file": COMPOSE,
         "vcpu": 2, "memory": 2048, "disk_size": 20,
         "ports": [{"protocol": "tcp", "host_port": 8080, "vm_port": 80, "host_address": ""}]}
    c.update(over)
    return c


def create(sim, **over):
    return sim.call("CreateVm", config(**over))["id"]


def env_for(sim, env, app_id=APP_ID):
    pk = sim.call("GetAppEnvEncryptPubKey", {"app_id": app_id})["public_key"]
    return simlib.encrypt_env(pk, env)


# ---- transport ------------------------------------------------------------------

def test_ready_file_and_ipv4(tmp_path):
    ready = tmp_path / "ready"
    p = subprocess.Popen([simlib.PYTHON, os.path.join(simlib.SIM_DIR, "vmm_sim.py"),
                          "--listen", "tcp:127.0.0.1:0", "--ready-file", str(ready)],
                         stderr=subprocess.DEVNULL)
    try:
        simlib.wait_until(ready.exists, 10, "ready file")
        url = ready.read_text()
        assert url.endswith("\n") and url.startswith("http://127.0.0.1:")
        assert not [f for f in os.listdir(tmp_path) if ".tmp." in f]
        st, _, body = simlib.http_request(url.strip(), "POST", "/prpc/Version?json")
        assert st == 200 and json.loads(body)["version"] == "0.5.7"
    finally:
        p.terminate()
        p.wait(5)


def test_refuses_non_loopback(tmp_path):
    r = subprocess.run([simlib.PYTHON, os.path.join(simlib.SIM_DIR, "vmm_sim.py"),
                        "--listen", "tcp:0.0.0.0:0"], capture_output=True, timeout=10)
    assert r.returncode != 0 and b"loopback" in r.stderr


def test_unix_socket(tmp_path):
    with simlib.start_vmm(tmp_path, unix=True) as sim:
        assert sim.url == "unix:" + str(tmp_path / "vmm_sim.sock")
        vm_id = create(sim)
        assert sim.status_of(vm_id) == "running"
        st, hdrs, body = sim.request("GET", "/logs?id=%s&lines=1" % vm_id)
        assert st == 200 and hdrs["content-type"].startswith("text/plain")
    assert not os.path.exists(tmp_path / "vmm_sim.sock")


def test_success_and_error_shapes(vmm):
    st, hdrs, body = vmm.request("POST", "/prpc/Version?json", b"{}")
    assert st == 200 and body == b'{"version":"0.5.7","rev":"sim"}'
    vm_id = create(vmm)
    st, _, body = vmm.request("POST", "/prpc/StopVm?json", json.dumps({"id": vm_id}).encode())
    assert (st, body) == (200, b"null")
    st, _, body = vmm.request("POST", "/prpc/StartVm?json", json.dumps({"id": "nope"}).encode())
    assert st == 400
    assert body.startswith(b'{\n  "error": ') and json.loads(body) == {"error": "VM not found: nope"}


def test_unknown_method_and_prefix(vmm):
    assert vmm.prpc("Nope") == (400, {"error": "Service not found: Nope"})
    assert vmm.prpc("Vmm.Status")[0] == 400
    st, _, _ = vmm.request("POST", "/prpc/Status")          # no ?json: protobuf
    assert st == 400


def test_empty_body_means_defaults_and_get(vmm):
    ids = [create(vmm, name="vm%d" % i) for i in range(3)]
    st, _, body = vmm.request("POST", "/prpc/Status?json", b"")
    assert st == 200 and json.loads(body)["total"] == 3
    st, res = vmm.prpc("GetInfo", http="GET", query={"id": ids[1]})
    assert st == 200 and res["found"] and res["info"]["name"] == "vm1"
    st, res = vmm.prpc("Status", http="GET", query={"ids": ids[:2], "brief": "true"})
    assert st == 200 and res["total"] == 2 and res["vms"][0]["configuration"] is None


def test_auth(tmp_path):
    with simlib.start_vmm(tmp_path, token="s3cret") as sim:
        assert sim.call("Version")["version"]
        sim.config(token="")
        assert sim.call("Version", token="")["version"]
        sim.config(token="s3cret")
        st, _ = sim.prpc("Version", token="")
        assert st == 401
        st, _ = sim.prpc("Version", token="wrong")
        assert st == 401
        assert sim.call("Version")["version"]
        st, _, _ = sim.request("GET", "/logs?id=x")
        assert st == 401


def test_body_limit(vmm):
    big = b'{"name":"' + b"a" * (10 * 1024 * 1024) + b'"}'
    st, _, body = vmm.request("POST", "/prpc/GetComposeHash?json", big, timeout=30)
    assert st == 400 and b"too large" in body
    ok = b'{"compose_file":"' + b"a" * (10 * 1024 * 1024 - 100) + b'"}'
    st, _, body = vmm.request("POST", "/prpc/GetComposeHash?json", ok, timeout=30)
    assert st == 200


def test_serde_like_decoding(vmm):
    st, res = vmm.prpc("CreateVm", config(ports=[{"protocol": "tcp", "host_port": 1,
                                                  "vm_port": 2, "host_address": None}]))
    assert st == 400
    assert res["error"].startswith("invalid type: null, expected a string")
    assert "host_address" in res["error"]
    st, res = vmm.prpc("CreateVm", config(name=None))
    assert st == 400 and "invalid type: null" in res["error"]
    st, res = vmm.prpc("CreateVm", config(vcpu="2"))
    assert st == 400 and "expected u32" in res["error"]
    st, res = vmm.prpc("CreateVm", config(vcpu=-1))
    assert st == 400 and "expected u32" in res["error"]
    st, res = vmm.prpc("CreateVm", config(encrypted_env="zz"))
    assert st == 400 and "hex" in res["error"]
    st, res = vmm.prpc("CreateVm", config(some_future_field={"x": 1}, app_id=None))
    assert st == 200                    # unknown fields ignored, optional null ok
    assert vmm.vms() and len(vmm.vms()) == 1


def test_create_validation(vmm):
    for name in ("", "bad/name", "tab\tname", "ünicode"):
        st, res = vmm.prpc("CreateVm", config(name=name))
        assert st == 400 and "name" in res["error"], name
    assert vmm.call("CreateVm", config(name="ok-_. @~!$^()"))["id"]
    st, res = vmm.prpc("CreateVm", config(image="dstack-9.9.9"))
    assert st == 400 and "Image not found" in res["error"]
    st, res = vmm.prpc("CreateVm", config(app_id=""))
    assert st == 400 and "app_id" in res["error"]
    st, res = vmm.prpc("CreateVm", config(compose_file="not json"))
    assert st == 400
    st, res = vmm.prpc("CreateVm", config(ports=[{"protocol": "sctp"}]))
    assert st == 400 and "protocol" in res["error"]


def test_create_app_id_and_configuration(vmm):
    c = config(encrypted_env="", user_config="uc", hugepages=True)
    vm_id = vmm.call("CreateVm", c)["id"]
    info = vmm.call("GetInfo", {"id": vm_id})
    assert info["found"]
    i = info["info"]
    assert i["app_id"] == hashlib.sha256(COMPOSE.encode()).hexdigest()[:40]
    assert i["status"] == "running" and i["boot_progress"] == "done" and i["boot_error"] == ""
    assert i["image_version"] == "0.5.2" and i["instance_id"] and i["app_url"]
    assert i["exited_at"] is None and i["uptime"].endswith("s")
    for k, v in c.items():
        assert i["configuration"][k] == v, k
    assert i["configuration"]["app_id"] == i["app_id"]
    for k in ("id", "name", "status", "uptime", "app_url", "app_id", "instance_id",
              "configuration", "exited_at", "boot_progress", "boot_error",
              "shutdown_progress", "image_version", "events"):
        assert k in i
    explicit = "0x" + "AB" * 20
    vm2 = vmm.call("CreateVm", config(name="two", app_id=explicit))["id"]
    assert vmm.call("GetInfo", {"id": vm2})["info"]["app_id"] == "ab" * 20
    assert vmm.call("GetInfo", {"id": "missing"}) == {"found": False, "info": None}
    h = vmm.call("GetComposeHash", {"compose_file": COMPOSE})["hash"]
    assert h == hashlib.sha256(COMPOSE.encode()).hexdigest()


def test_create_stopped(vmm):
    vm_id = create(vmm, stopped=True)
    assert vmm.status_of(vm_id) == "stopped"
    assert vmm.vm(vm_id)["boot_count"] == 0
    vmm.call("StartVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "running"
    with pytest.raises(PrpcError, match="already running"):
        vmm.call("StartVm", {"id": vm_id})


def test_status_filters_and_paging(vmm):
    a = create(vmm, name="alpha")
    b = create(vmm, name="beta", image="dstack-0.5.5")
    c = create(vmm, name="gamma", app_id="cd" * 20)
    res = vmm.call("Status", {})
    assert res["total"] == 3 and res["port_mapping_enabled"] is True
    assert [v["id"] for v in res["vms"]] == [a, b, c]
    assert res["vms"][0]["configuration"]["name"] == "alpha"
    assert vmm.call("Status", {"ids": [b]})["total"] == 1
    assert [v["id"] for v in vmm.call("Status", {"keyword": "amm"})["vms"]] == [c]
    assert [v["id"] for v in vmm.call("Status", {"keyword": "0.5.5"})["vms"]] == [b]
    assert [v["id"] for v in vmm.call("Status", {"keyword": "cdcd"})["vms"]] == [c]
    assert [v["id"] for v in vmm.call("Status", {"keyword": a[:8]})["vms"]] == [a]
    p = vmm.call("Status", {"page": 2, "page_size": 2})
    assert p["total"] == 3 and [v["id"] for v in p["vms"]] == [c]
    assert vmm.call("Status", {"page": 0, "page_size": 2})["total"] == 3
    assert len(vmm.call("Status", {"page": 0, "page_size": 2})["vms"]) == 3
    assert vmm.call("Status", {"brief": True})["vms"][0]["configuration"] is None


def test_meta_images_version(tmp_path):
    with simlib.start_vmm(tmp_path, version="0.5.5", rev="abc", max_cvm=2) as sim:
        assert sim.call("Version") == {"version": "0.5.5", "rev": "abc"}
        m = sim.call("GetMeta")
        assert m["resources"]["max_cvm_number"] == 2
        assert set(m["resources"]) == {"max_cvm_number", "max_allocable_vcpu",
                                       "max_allocable_memory_in_mb"}
        imgs = sim.call("ListImages")["images"]
        assert {"name": "dstack-0.5.2", "description": "dstack 0.5.2", "version": "0.5.2",
                "is_dev": False} in imgs
        create(sim, name="a")
        create(sim, name="b")
        with pytest.raises(PrpcError, match="Too many VMs"):
            create(sim, name="c")
        assert "events" not in sim.call("Status")["vms"][0]   # < 0.5.6


# ---- lifecycle --------------------------------------------------------------------

def test_shutdown_is_graceful_and_async(vmm):
    vmm.config(shutdown_seconds=0.4)
    vm_id = create(vmm)
    t0 = time.monotonic()
    assert vmm.call("ShutdownVm", {"id": vm_id}) is None
    assert time.monotonic() - t0 < 0.3           # returns before the VM is down
    info = vmm.call("GetInfo", {"id": vm_id})["info"]
    assert info["status"] == "stopping" and info["shutdown_progress"]
    vmm.wait_status(vm_id, "stopped", 5)
    assert time.monotonic() - t0 >= 0.4
    assert vmm.call("GetInfo", {"id": vm_id})["info"]["exited_at"]
    with pytest.raises(PrpcError, match="not running"):
        vmm.call("ShutdownVm", {"id": vm_id})


def test_shutdown_per_vm_and_forever_then_stop(vmm):
    vm_id = create(vmm)
    vmm.set_vm(vm_id, shutdown_seconds=-1)          # guest ignores the request
    vmm.call("ShutdownVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "stopping"
    other = create(vmm, name="other")
    vmm.call("ShutdownVm", {"id": other})           # global 0.2 s
    vmm.wait_status(other, "stopped", 5)
    assert vmm.status_of(vm_id) == "stopping"
    vmm.call("StopVm", {"id": vm_id})               # hard kill, immediate
    assert vmm.status_of(vm_id) == "stopped"
    assert vmm.vm(vm_id)["started"] is False
    vmm.config(shutdown_seconds=0)
    vmm.call("StartVm", {"id": vm_id})
    vmm.set_vm(vm_id, shutdown_seconds=None)
    vmm.call("ShutdownVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "stopped"


def test_stop_is_immediate(vmm):
    vm_id = create(vmm)
    assert vmm.call("StopVm", {"id": vm_id}) is None
    assert vmm.status_of(vm_id) == "stopped"
    vmm.call("StopVm", {"id": vm_id})               # idempotent
    vmm.call("StartVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "running" and vmm.vm(vm_id)["boot_count"] == 2


def test_remove_sync_up_to_056(vmm):
    vmm.config(version="0.5.6")
    vm_id = create(vmm)
    with pytest.raises(PrpcError, match="VM is running, stop it first"):
        vmm.call("RemoveVm", {"id": vm_id})
    vmm.call("StopVm", {"id": vm_id})
    assert vmm.call("RemoveVm", {"id": vm_id}) is None
    assert vmm.call("GetInfo", {"id": vm_id})["found"] is False
    # exited VMs are not running either
    vm2 = create(vmm, name="two")
    vmm.set_vm(vm2, status="exited")
    vmm.call("RemoveVm", {"id": vm2})
    assert vmm.vms() == []


def test_remove_async_from_057(vmm):
    vmm.config(version="0.5.7", remove_seconds=0.3)
    vm_id = create(vmm)
    t0 = time.monotonic()
    assert vmm.call("RemoveVm", {"id": vm_id}) is None     # running VM accepted
    assert vmm.status_of(vm_id) == "removing"
    vmm.call("RemoveVm", {"id": vm_id})                    # again: fine
    vmm.wait_status(vm_id, None, 5)
    assert time.monotonic() - t0 >= 0.3
    with pytest.raises(PrpcError, match="VM not found"):
        vmm.call("RemoveVm", {"id": vm_id})
    vm2 = create(vmm, name="two")
    vmm.set_vm(vm2, remove_seconds=0)
    vmm.call("RemoveVm", {"id": vm2})
    assert vmm.status_of(vm2) is None


def test_version_switch_changes_semantics(vmm):
    vm_id = create(vmm)
    vmm.config(version="0.5.5")
    assert vmm.call("Version")["version"] == "0.5.5"
    with pytest.raises(PrpcError, match="stop it first"):
        vmm.call("RemoveVm", {"id": vm_id})
    vmm.config(version="0.5.8", remove_seconds=0.1)
    vmm.call("RemoveVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "removing"


def test_update_vm_vs_upgrade_app(vmm):
    vmm.config(version="0.5.5")
    vm_id = create(vmm)
    st, res = vmm.prpc("UpdateVm", {"id": vm_id})
    assert (st, res) == (400, {"error": "Service not found: UpdateVm"})
    new_compose = simlib.app_compose(docker_compose="services: {}\n")
    r = vmm.call("UpgradeApp", {"id": vm_id, "compose_file": new_compose})
    assert r == {"id": APP_ID}
    vmm.config(version="0.5.6")
    r = vmm.call("UpdateVm", {"id": vm_id, "compose_file": COMPOSE})
    assert r == {"id": APP_ID}
    assert vmm.call("UpgradeApp", {"id": vm_id}) == {"id": APP_ID}


def test_update_takes_effect_on_next_start(vmm):
    enc1 = env_for(vmm, {"HOTKEY_PASSPHRASE": "one"})
    vm_id = create(vmm, encrypted_env=enc1)
    assert vmm.vm(vm_id)["env"] == {"HOTKEY_PASSPHRASE": "one"}
    enc2 = env_for(vmm, {"HOTKEY_PASSPHRASE": "two"})
    new_compose = simlib.app_compose(allowed_envs=["HOTKEY_PASSPHRASE", "EXTRA"])
    vmm.call("UpdateVm", {"id": vm_id, "compose_file": new_compose, "encrypted_env": enc2,
                          "update_ports": True, "ports": []})
    v = vmm.vm(vm_id)
    assert v["env"] == {"HOTKEY_PASSPHRASE": "one"}        # still the old boot
    assert v["configuration"]["compose_file"] == new_compose
    assert v["configuration"]["ports"] == [] and v["app_id"] == APP_ID
    with pytest.raises(PrpcError, match="stop it first"):
        vmm.call("UpdateVm", {"id": vm_id, "vcpu": 4})
    vmm.call("StopVm", {"id": vm_id})
    vmm.call("UpdateVm", {"id": vm_id, "vcpu": 4, "memory": 4096})
    vmm.call("StartVm", {"id": vm_id})
    v = vmm.vm(vm_id)
    # the app id stays the original, so the key of APP_ID still decrypts the env
    assert v["env"] == {"HOTKEY_PASSPHRASE": "two"} and v["status"] == "running"
    assert v["configuration"]["vcpu"] == 4 and v["configuration"]["memory"] == 4096
    assert v["boot_compose_hash"] == simlib.compose_hash(new_compose)


# ---- KMS and env ---------------------------------------------------------------

def test_vector_decrypts():
    vec = load_vector()
    priv = bytes.fromhex(vec["kms_private_key"])
    assert vmm_sim.x25519_public(priv).hex() == vec["kms_public_key"]
    pt = vmm_sim.decrypt_env(priv, bytes.fromhex(vec["output"]))
    assert pt == vec["plaintext"].encode()
    env, dropped = vmm_sim.guest_env(pt, {"FOO"})
    assert env == {"FOO": "bar"} and dropped == []
    # and simlib's encryptor reproduces the vector byte for byte
    out = simlib.encrypt_env(vec["kms_public_key"], {"FOO": "bar"},
                             eph_private=bytes.fromhex(vec["ephemeral_private"]),
                             iv=bytes.fromhex(vec["iv"]))
    assert out == vec["output"]
    bad = bytearray(bytes.fromhex(vec["output"]))
    bad[50] ^= 1
    with pytest.raises(Exception):
        vmm_sim.decrypt_env(priv, bytes(bad))


def test_kms_key_is_predictable(tmp_path):
    with simlib.start_vmm(tmp_path, kms_seed="my-seed") as sim:
        r = sim.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
        priv = simlib.kms_private_key("my-seed", APP_ID)
        assert priv == hashlib.sha256(b"my-seed" + APP_ID.encode()).digest()
        assert r["public_key"] == vmm_sim.x25519_public(priv).hex()
        assert len(r["public_key"]) == 64 and len(r["signature"]) == 130
        assert len(r["signature_v1"]) == 130 and isinstance(r["timestamp"], int)
        assert sim.call("GetAppEnvEncryptPubKey", {"app_id": "0x" + APP_ID.upper()}) \
            ["public_key"] == r["public_key"]
        assert sim.kms_key(APP_ID)["private_key"] == priv.hex()
        other = sim.call("GetAppEnvEncryptPubKey", {"app_id": "00" * 20})["public_key"]
        assert other != r["public_key"]
        with pytest.raises(PrpcError):
            sim.call("GetAppEnvEncryptPubKey", {"app_id": "abcd"})
        with pytest.raises(PrpcError):
            sim.call("GetAppEnvEncryptPubKey", {"app_id": "xyz"})


def test_no_kms(vmm):
    vmm.config(kms=False)
    with pytest.raises(PrpcError, match="KMS is not configured"):
        vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    assert vmm.call("GetMeta")["kms"]["url"] == ""
    vm_id = create(vmm, encrypted_env="00" * 80)
    assert vmm.status_of(vm_id) == "exited"


def random_env(rng, n):
    env = {}
    for _ in range(n):
        k = rng.choice(string.ascii_letters + "_") + "".join(
            rng.choice(string.ascii_letters + string.digits + "_") for _ in range(rng.randint(0, 20)))
        env[k] = "".join(rng.choice(string.printable + "äöü€\u2603") for _ in range(rng.randint(0, 200)))
    return env


def test_random_envs_roundtrip(vmm):
    rng = random.Random(1234)
    for i in range(5):
        env = random_env(rng, rng.randint(1, 40))
        allowed = [k for k in env if rng.random() < 0.6] + ["NOT_SENT"]
        compose = simlib.app_compose(allowed_envs=allowed, name="vm%d" % i)
        app_id = simlib.app_id_of(compose)
        vm_id = create(vmm, name="vm%d" % i, compose_file=compose,
                       encrypted_env=env_for(vmm, env, app_id))
        v = vmm.vm(vm_id)
        assert v["status"] == "running", v["boot_error"]
        assert v["env"] == {k: env[k] for k in env if k in allowed}
        assert sorted(v["env_dropped"]) == sorted(k for k in env if k not in allowed)


def boot_error_of(sim, **over):
    vm_id = create(sim, **over)
    v = sim.vm(vm_id)
    assert v["status"] == "exited", "boot should have failed"
    assert v["boot_error"] and v["exited_at"] and v["env"] is None
    return v["boot_error"]


def test_guest_rejects_wrong_key_and_corruption(vmm):
    # encrypted to the key of an app id the VM does not run with (Rust launcher bug)
    wrong = env_for(vmm, {"HOTKEY_PASSPHRASE": "x"}, app_id="ee" * 20)
    assert "decrypt" in boot_error_of(vmm, encrypted_env=wrong)
    good = bytearray(bytes.fromhex(env_for(vmm, {"HOTKEY_PASSPHRASE": "x"})))
    good[-1] ^= 0x80
    assert "decrypt" in boot_error_of(vmm, encrypted_env=bytes(good).hex())
    assert "decrypt" in boot_error_of(vmm, encrypted_env="00" * 10)
    # the GetInfo view agrees
    vm_id = vmm.vms()[-1]["id"]
    info = vmm.call("GetInfo", {"id": vm_id})["info"]
    assert info["status"] == "exited" and info["boot_error"]


def test_guest_rules(vmm):
    pk = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})["public_key"]

    def enc(env):
        return simlib.encrypt_env(pk, env)

    many = [("K%d" % i, "v") for i in range(1025)]
    assert "too many" in boot_error_of(vmm, encrypted_env=enc(many))
    ok_many = [("K%d" % i, "v") for i in range(1024)]
    assert vmm.vm(create(vmm, encrypted_env=enc(ok_many)))["status"] == "running"
    big = [("K%d" % i, "x" * (120 * 1024)) for i in range(9)]        # > 1 MiB
    assert "1 MiB" in boot_error_of(vmm, encrypted_env=enc(big))
    assert "value too large" in boot_error_of(vmm, encrypted_env=enc({"A": "x" * (128 * 1024 + 1)}))
    v = vmm.vm(create(vmm, encrypted_env=enc({"HOTKEY_PASSPHRASE": "x" * (128 * 1024)})))
    assert v["status"] == "running" and len(v["env"]["HOTKEY_PASSPHRASE"]) == 128 * 1024
    for key in ("1ABC", "A-B", "", "A B", "K" * 256):
        assert "invalid env key" in boot_error_of(vmm, encrypted_env=enc({key: "v"})), key
    assert vmm.vm(create(vmm, encrypted_env=enc({"_" + "K" * 254: "v"})))["status"] == "running"
    assert "not valid JSON" in boot_error_of(vmm, encrypted_env=enc(b"not json"))
    v = vmm.vm(create(vmm, encrypted_env=enc({"HOTKEY_PASSPHRASE": "p", "EVIL": "x"})))
    assert v["env"] == {"HOTKEY_PASSPHRASE": "p"} and v["env_dropped"] == ["EVIL"]
    v = vmm.vm(create(vmm))                                          # no env at all
    assert v["status"] == "running" and v["env"] == {}


# ---- control API ---------------------------------------------------------------------

def test_set_status_emulates_crash(vmm):
    vm_id = create(vmm)
    vmm.set_vm(vm_id, status="exited")
    i = vmm.call("GetInfo", {"id": vm_id})["info"]
    assert i["status"] == "exited" and i["exited_at"]
    vmm.call("StartVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "running"
    st, _, _ = vmm.request("POST", "/_sim/vm", {"id": vm_id, "status": "killed"})
    assert st == 400


def test_call_log(vmm):
    vmm.call("Version")
    vm_id = create(vmm)
    vmm.call("GetInfo", {"id": vm_id})
    calls = vmm.calls()
    assert [c["method"] for c in calls] == ["Version", "CreateVm", "GetInfo"]
    assert calls[1]["body"]["name"] == "validator_vm" and calls[1]["status"] == 200
    assert calls[0]["mono"] <= calls[1]["mono"] <= calls[2]["mono"]
    assert abs(calls[0]["wall"] - time.time()) < 60
    assert [c["n"] for c in vmm.calls("GetInfo")] == [1]
    vmm.reset_calls()
    assert vmm.calls() == []


def test_logs(tmp_path):
    with simlib.start_vmm(tmp_path, log_heartbeat_seconds=0.05) as sim:
        vm_id = create(sim)
        st, h, body = sim.request("GET", "/logs?id=%s&follow=false&ansi=false&lines=100&ch=serial" % vm_id)
        assert st == 200 and h["content-type"].startswith("text/plain")
        lines = body.decode().splitlines()
        assert len(lines) >= 3 and "boot done" in body.decode()
        st, _, body = sim.request("GET", "/logs?id=%s&lines=1" % vm_id)
        assert len(body.decode().splitlines()) == 1
        st, _, body = sim.request("GET", "/logs?id=%s&ansi=true" % vm_id)
        assert b"\x1b[" in body
        assert sim.request("GET", "/logs?id=nope")[0] == 404
        assert sim.request("GET", "/logs?id=%s&ch=bogus" % vm_id)[0] == 400
        # follow: chunked, heartbeats, ends when the VM stops
        conn = simlib.connect(sim.url, 10)
        conn.request("GET", "/logs?id=%s&follow=true" % vm_id)
        r = conn.getresponse()
        assert r.getheader("Transfer-Encoding") == "chunked"
        got = b""
        while b"[vmm heartbeat]" not in got:
            got += r.read1(4096)
        sim.call("StopVm", {"id": vm_id})
        got += r.read()
        conn.close()
        assert b"boot done" in got


# ---- faults ----------------------------------------------------------------------------

def in_thread(fn):
    box = {}

    def run():
        try:
            box["result"] = fn()
        except Exception as e:      # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def test_fault_error_and_http500_by_call_count(vmm):
    vmm.fault("CreateVm", "error", call=2, message="disk full")
    vmm.fault("GetInfo", "http500", status=503, message="busy")
    a = create(vmm, name="a")
    st, res = vmm.prpc("CreateVm", config(name="b"))
    assert (st, res) == (400, {"error": "disk full"})
    assert len(vmm.vms()) == 1                      # the failed call had no effect
    create(vmm, name="c")
    st, res = vmm.prpc("GetInfo", {"id": a})
    assert st == 503 and res == b"busy\n"
    assert vmm.prpc("GetInfo", {"id": a})[0] == 200   # times=1 by default
    assert [c["fault"] for c in vmm.calls("CreateVm")] == [None, "error", None]


def test_fault_times_forever_and_clear(vmm):
    vmm.fault("Version", "error", times=0)
    for _ in range(3):
        assert vmm.prpc("Version")[0] == 400
    vmm.clear_faults()
    assert vmm.prpc("Version")[0] == 200


def test_fault_drop(vmm):
    vmm.fault("CreateVm", "drop")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        create(vmm)
    assert vmm.vms() == []
    vmm.fault("CreateVm", "drop", after=True)       # done, but the reply is lost
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        create(vmm)
    assert len(vmm.vms()) == 1


def test_fault_hang_until_released_and_concurrency(vmm):
    vmm.fault("Status", "hang")
    t, box = in_thread(lambda: vmm.prpc("Status", {}, timeout=20))
    vmm.wait_calls("Status", state="blocked", timeout=5)
    # the simulator keeps serving other calls while one hangs
    assert vmm.call("Version")["version"]
    vm_id = create(vmm)
    assert vmm.status_of(vm_id) == "running"
    assert vmm.control("blocked")["blocked"][0]["kind"] == "hang"
    assert vmm.release("Status") == 1
    t.join(10)
    assert isinstance(box.get("error"), (http.client.RemoteDisconnected, ConnectionError))


def test_fault_hang_for_seconds_and_client_timeout(vmm):
    vmm.fault("Version", "hang", seconds=0.3)
    t0 = time.monotonic()
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        vmm.prpc("Version", timeout=10)
    assert time.monotonic() - t0 >= 0.3
    vmm.fault("Version", "hang")
    with pytest.raises(TimeoutError):
        vmm.prpc("Version", timeout=0.3)
    assert vmm.release() == 1


def test_fault_hold_then_proceed(vmm):
    vmm.fault("CreateVm", "hold")
    t, box = in_thread(lambda: create(vmm))
    vmm.wait_calls("CreateVm", state="blocked", timeout=5)
    assert vmm.vms() == []                          # nothing happened yet
    vmm.release("CreateVm")
    t.join(10)
    assert "error" not in box
    assert vmm.status_of(box["result"]) == "running"
    vmm.wait_calls("CreateVm", state="done", timeout=5)
    vmm.fault("StopVm", "hold", seconds=0.2)        # auto-release after 0.2 s
    vmm.call("StopVm", {"id": box["result"]})
    assert vmm.status_of(box["result"]) == "stopped"


def test_fault_slow(vmm):
    vmm.fault("ListImages", "slow", seconds=0.5)
    t0 = time.monotonic()
    st, res = vmm.prpc("ListImages")
    assert time.monotonic() - t0 >= 0.45
    assert st == 200 and len(res["images"]) == 3


def test_fault_oversize_and_malformed(vmm):
    vmm.fault("Status", "oversize", size=11 * 1024 * 1024)
    st, _, body = vmm.request("POST", "/prpc/Status?json", b"{}", timeout=30)
    assert st == 200 and len(body) == 11 * 1024 * 1024 and json.loads(body)["pad"]
    vmm.fault("Status", "malformed")
    st, _, body = vmm.request("POST", "/prpc/Status?json", b"{}")
    assert st == 200
    with pytest.raises(ValueError):
        json.loads(body)


def test_fault_control_errors(vmm):
    st, _, _ = vmm.request("POST", "/_sim/fault", {"method": "X", "kind": "explode"})
    assert st == 400
    assert vmm.request("GET", "/_sim/nothing")[0] == 404
    f = vmm.fault("StartVm", "error", call=3, times=2)
    assert vmm.control("faults")["faults"][0]["id"] == f["id"]


def test_keccak256():
    import kmscrypto
    assert kmscrypto.keccak256(b"").hex() == \
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert kmscrypto.keccak256(b"abc").hex() == \
        "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"
    for n in (0, 1, 135, 136, 137, 300, 1000):        # the permutation, multi-block
        data = bytes(range(256)) * 4
        assert kmscrypto._sponge256(data[:n], 0x06) == hashlib.sha3_256(data[:n]).digest()


def test_kms_pubkey_signatures(vmm):
    import kmscrypto
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    cfg = vmm.config()
    signer = bytes.fromhex(cfg["kms_signer_public_key"])
    assert signer == kmscrypto.public_key(kmscrypto.private_from_seed(simlib.DEFAULT_KMS_SEED))
    r = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    pub, app = bytes.fromhex(r["public_key"]), bytes.fromhex(APP_ID)
    verifier = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256K1(), signer)
    for sig_hex, ts in ((r["signature"], None), (r["signature_v1"], r["timestamp"])):
        sig = bytes.fromhex(sig_hex)
        assert len(sig) == 65 and sig[64] in (0, 1)
        digest = kmscrypto.pubkey_message(app, pub, ts)
        # r||s checked by OpenSSL, independent of the simulator's own EC code
        der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                         int.from_bytes(sig[32:64], "big"))
        verifier.verify(der, digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
        assert kmscrypto.recover(digest, sig) == signer
    # a different app id's message does not recover to the signer
    wrong = kmscrypto.pubkey_message(b"\xee" * 20, pub)
    assert kmscrypto.recover(wrong, bytes.fromhex(r["signature"])) != signer
    vmm.config(kms_bad_signature=True)
    r = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    digest = kmscrypto.pubkey_message(app, bytes.fromhex(r["public_key"]))
    assert kmscrypto.recover(digest, bytes.fromhex(r["signature"])) != signer


def test_auto_restart(vmm):
    vmm.config(auto_restart_seconds=0.1)
    vm_id = create(vmm)
    vmm.set_vm(vm_id, status="exited")          # crash
    vmm.wait_status(vm_id, "running", 5)
    assert vmm.vm(vm_id)["boot_count"] == 2
    vmm.call("StopVm", {"id": vm_id})           # clears started: stays down
    vmm.config(auto_restart_seconds=0)
    assert vmm.status_of(vm_id) == "stopped"
    vmm.call("StartVm", {"id": vm_id})
    vmm.config(auto_restart_seconds=-1)
    vmm.set_vm(vm_id, status="exited")
    assert vmm.status_of(vm_id) == "exited"


def test_reset(vmm):
    create(vmm)
    vmm.config(version="0.5.5", kms=False, shutdown_seconds=9)
    vmm.fault("Version", "error", times=0)
    vmm.reset()
    assert vmm.vms() == [] and vmm.calls() == [] and vmm.control("faults")["faults"] == []
    c = vmm.config()
    assert (c["version"], c["kms"], c["shutdown_seconds"]) == ("0.5.7", True, 0.2)
    assert vmm.call("Version")["version"] == "0.5.7"


def test_no_kms_flag(tmp_path):
    with simlib.start_vmm(tmp_path, no_kms=True) as sim:
        with pytest.raises(PrpcError, match="KMS is not configured"):
            sim.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})


def test_hold_client_gives_up_call_still_happens(vmm):
    # a client killed (here: timed out) mid-step; the VMM finishes the call anyway
    vmm.fault("CreateVm", "hold")
    with pytest.raises(TimeoutError):
        vmm.prpc("CreateVm", config(), timeout=0.3)
    vmm.wait_calls("CreateVm", state="blocked", timeout=5)
    assert vmm.vms() == []
    vmm.release("CreateVm")
    vmm.wait_calls("CreateVm", state="done", timeout=5)
    assert len(vmm.vms()) == 1 and vmm.calls("CreateVm")[0]["status"] == 200


def test_after_faults_take_effect(vmm):
    vmm.fault("StopVm", "error", after=True, message="lost")
    vm_id = create(vmm)
    with pytest.raises(PrpcError, match="lost"):
        vmm.call("StopVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "stopped"
    vmm.fault("StartVm", "hang", after=True, seconds=0.1)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        vmm.call("StartVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "running"
