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


wait_until = simlib.wait_until


def never(sim, vm_id, status, seconds):
    """True if the VM does not reach `status` within `seconds`."""
    try:
        sim.wait_status(vm_id, status, timeout=seconds)
    except simlib.SimError:
        return True
    return False


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
    # ra-rpc: a GET is JSON without ?json; main.rs trims a "Teepod." prefix
    st, _, body = vmm.request("GET", "/prpc/Version")
    assert st == 200 and json.loads(body)["version"] == "0.5.7"
    assert vmm.prpc("Teepod.Version") == (200, {"version": "0.5.7", "rev": "sim"})
    assert [c["method"] for c in vmm.calls()][-1] == "Version"


def test_post_with_a_json_content_type_is_json(vmm):
    # ra-rpc rocket_helper.rs (v0.5.5 :328): is_json = ?json || content_type.is_json()
    for ct in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        st, h, body = vmm.request("POST", "/prpc/Version", b"{}", {"Content-Type": ct})
        assert (st, json.loads(body)) == (200, {"version": "0.5.7", "rev": "sim"}), ct
    st, _, body = vmm.request("POST", "/prpc/StartVm", b'{"id": "nope"}',
                              {"Content-Type": "application/json"})
    assert (st, json.loads(body)) == (400, {"error": "VM not found: nope"})
    for ct in ("text/plain", "application/jsonx", "application/octet-stream"):
        st, _, _ = vmm.request("POST", "/prpc/Version", b"{}", {"Content-Type": ct})
        assert st == 400, ct                         # protobuf, which the simulator does not speak


def test_empty_body_means_defaults_and_get(vmm):
    ids = [create(vmm, name="vm%d" % i) for i in range(3)]
    st, _, body = vmm.request("POST", "/prpc/Status?json", b"")
    assert st == 200 and json.loads(body)["total"] == 3
    st, res = vmm.prpc("GetInfo", http="GET", query={"id": ids[1]})
    assert st == 200 and res["found"] and res["info"]["name"] == "vm1"
    st, res = vmm.prpc("Status", http="GET", query={"ids": ids[:2], "brief": "true"})
    assert st == 200 and res["total"] == 2 and res["vms"][0]["configuration"] is None


def test_auth_only_logs_up_to_0511(tmp_path):
    # v0.5.5..v0.5.11 main_routes.rs: only /logs has the `Authorized` guard
    with simlib.start_vmm(tmp_path, token="s3cret", version="0.5.11") as sim:
        vm_id = create(sim)
        assert sim.call("Version", token="")["version"] == "0.5.11"
        assert sim.prpc("Version", token="wrong")[0] == 200
        assert sim.request("GET", "/logs?id=%s" % vm_id)[0] == 401
        st, _, body = sim.request("GET", "/logs?id=%s" % vm_id,
                                  headers={"Authorization": "Bearer s3cret"})
        assert st == 200 and b"boot done" in body
        sim.config(token="")
        assert sim.request("GET", "/logs?id=%s" % vm_id)[0] == 200


def test_auth_everything_from_060(tmp_path):
    # HEAD (0.6.0) main.rs: HttpAuthFairing on every route
    with simlib.start_vmm(tmp_path, token="s3cret", version="0.6.0") as sim:
        assert sim.call("Version")["version"]
        assert sim.prpc("Version", token="")[0] == 401
        assert sim.prpc("Version", token="wrong")[0] == 401
        st, _, _ = sim.request("POST", "/prpc/Version?json", b"{}", {"X-Admin-Token": "s3cret"})
        assert st == 200
        assert sim.request("GET", "/logs?id=x")[0] == 401
        sim.config(token="")
        assert sim.call("Version", token="")["version"]


def test_body_limit(vmm):
    big = b'{"name":"' + b"a" * (10 * 1024 * 1024) + b'"}'
    st, _, body = vmm.request("POST", "/prpc/GetComposeHash?json", big, timeout=30)
    assert st == 400 and b"too large" in body
    compose = simlib.app_compose(docker_compose="a" * (10 * 1024 * 1024 - 600))
    ok = json.dumps({"compose_file": compose}).encode()
    assert len(ok) < 10 * 1024 * 1024
    st, _, body = vmm.request("POST", "/prpc/GetComposeHash?json", ok, timeout=30)
    assert st == 200 and json.loads(body)["hash"] == simlib.compose_hash(compose)


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
    for name in ("bad/name", "tab\tname", "ünicode", "a:b", "a,b"):
        st, res = vmm.prpc("CreateVm", config(name=name))
        assert (st, res) == (400, {"error": "Invalid name: " + name}), name
    assert vmm.call("CreateVm", config(name="ok-_. @~!$^()"))["id"]
    assert vmm.call("CreateVm", config(name=""))["id"]     # all() of nothing
    st, res = vmm.prpc("CreateVm", config(image="dstack-9.9.9"))
    assert st == 400 and res["error"].startswith("Failed to load VM") and "image" in res["error"]
    st, res = vmm.prpc("CreateVm", config(app_id=""))
    assert st == 400 and "app_id" in res["error"]
    for bad in ("not json", "{}", '{"manifest_version": 2, "name": "x"}',
                '{"manifest_version": "2", "name": "x", "runner": "r"}'):
        st, res = vmm.prpc("CreateVm", config(compose_file=bad))
        assert st == 400 and "Failed to read compose file" in res["error"], bad
    st, res = vmm.prpc("CreateVm", config(ports=[{"protocol": "sctp"}]))
    assert (st, res["error"]) == (400, "Port mapping is not allowed for sctp:0")
    assert len(vmm.vms()) == 2


def test_name_rules_per_version(vmm):
    # v0.5.5 main_service.rs validate_label: alphanumeric (Unicode), '-', '_'
    vmm.config(version="0.5.5")
    for name in ("validator vm", "a.b", "a@b", "x(1)"):
        st, res = vmm.prpc("CreateVm", config(name=name))
        assert (st, res) == (400, {"error": "Invalid name: " + name}), name
        st, res = vmm.prpc("GetComposeHash", {"name": name, "compose_file": COMPOSE})
        assert st == 400 and "Invalid name" in res["error"]
    for name in ("validator_vm", "Validator-2", "ünicode", ""):
        assert vmm.call("CreateVm", config(name=name))["id"], name
    # v0.5.6+: ASCII alphanumerics and - _ . space @ ~ ! $ ^ ( )
    vmm.config(version="0.5.6")
    for name in ("validator vm", "a.b", "a@b~!$^()"):
        assert vmm.call("CreateVm", config(name=name))["id"], name
    for name in ("ünicode", "a/b", "a#b"):
        assert vmm.prpc("CreateVm", config(name=name))[0] == 400, name


def test_no_capacity_limits_but_cid_pool(tmp_path):
    # vcpu/memory limits are GetMeta information only (config.rs "Not yet
    # implement fully"); the CID pool (max_cvm_number) is real
    with simlib.start_vmm(tmp_path, max_cvm=2, max_vcpu=4, max_memory=1024) as sim:
        a = create(sim, name="a", vcpu=64, memory=65536)
        assert sim.status_of(a) == "running"
        create(sim, name="b", vcpu=0, memory=0)
        with pytest.raises(PrpcError, match="CID pool exhausted"):
            create(sim, name="c")


def test_create_app_id_and_configuration(vmm):
    c = config(encrypted_env="", user_config="uc", hugepages=True)
    vm_id = vmm.call("CreateVm", c)["id"]
    info = vmm.call("GetInfo", {"id": vm_id})
    assert info["found"]
    i = info["info"]
    assert i["app_id"] == hashlib.sha256(COMPOSE.encode()).hexdigest()[:40]
    assert i["status"] == "running" and i["boot_progress"] == "done" and i["boot_error"] == ""
    assert i["image_version"] == "0.5.2" and i["instance_id"]
    assert i["app_url"] == "https://%s-8090.sim.dstack.invalid" % i["instance_id"]
    assert i["exited_at"] == "never" and i["uptime"].endswith("s")
    for k, v in c.items():
        if k != "ports":
            assert i["configuration"][k] == v, k
    # the VMM stores and reports the configured address for ""
    assert i["configuration"]["ports"] == [{"protocol": "tcp", "host_port": 8080,
                                            "vm_port": 80, "host_address": "127.0.0.1"}]
    assert i["configuration"]["app_id"] == i["app_id"]
    assert i["configuration"]["stopped"] is False
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
    assert vmm.call("GetInfo", {"id": vm_id})["info"]["configuration"]["stopped"] is False


def test_start_running_vm_is_a_noop(vmm):
    # app.rs start_vm: the process runs already -> set started, start nothing
    vm_id = create(vmm)
    assert vmm.call("StartVm", {"id": vm_id}) is None
    v = vmm.vm(vm_id)
    assert v["status"] == "running" and v["boot_count"] == 1
    assert v["boot_progress"] == "running"
    # StartVm while a StopVm'ed QEMU is still going down: started again -> running
    vmm.config(stop_seconds=30)
    vmm.call("StopVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "stopping"
    vmm.call("StartVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "running" and vmm.vm(vm_id)["boot_count"] == 1


def test_configuration_stopped_follows_start_stop(vmm):
    vm_id = create(vmm, stopped=True)

    def stopped():
        return vmm.call("GetInfo", {"id": vm_id})["info"]["configuration"]["stopped"]
    assert stopped() is True
    vmm.call("StartVm", {"id": vm_id})
    assert stopped() is False
    vmm.call("StopVm", {"id": vm_id})
    assert stopped() is True
    vmm.call("StartVm", {"id": vm_id})
    vmm.set_vm(vm_id, status="exited")              # crash: started stays set
    assert stopped() is False


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
        assert "events" not in sim.call("Status")["vms"][0]   # < 0.5.6


# ---- lifecycle --------------------------------------------------------------------

def test_shutdown_is_graceful_and_async_and_ends_stopped_by_default(vmm):
    # v0.5.5/HEAD main_service.rs shutdown_vm asks the guest agent and returns;
    # the agent reports "powering off" (guest-agent guest_api_service.rs
    # shutdown) and app.rs vm_event_report clears `started`: stopping -> stopped
    vmm.config(shutdown_seconds=0.4, auto_restart_seconds=0.2)
    assert vmm.config()["guest_shutdown_notify"] is True
    vm_id = create(vmm)
    t0 = time.monotonic()
    assert vmm.call("ShutdownVm", {"id": vm_id}) is None
    assert time.monotonic() - t0 < 0.3           # returns before the VM is down
    info = vmm.call("GetInfo", {"id": vm_id})["info"]
    assert info["status"] == "stopping" and info["shutdown_progress"] == "powering off"
    assert info["configuration"]["stopped"] is True
    vmm.wait_status(vm_id, "stopped", 5)
    assert time.monotonic() - t0 >= 0.4
    v = vmm.vm(vm_id)
    assert v["started"] is False and v["process_running"] is False
    [call] = vmm.calls("ShutdownVm")
    assert abs(v["process_stopped_mono"] - (call["mono"] + 0.4)) < 0.1
    # `started` is clear: auto-restart (0.2 s here) leaves it alone
    assert never(vmm, vm_id, "running", 0.6)
    assert vmm.vm(vm_id)["boot_count"] == 1 and vmm.vm(vm_id)["auto_restart_count"] == 0
    with pytest.raises(PrpcError, match="not running"):
        vmm.call("ShutdownVm", {"id": vm_id})
    # HEAD app.rs vm_event_report keeps the event in VmInfo.events (>= 0.5.6)
    assert {"event": "shutdown.progress", "body": "powering off"} in [
        {k: e[k] for k in ("event", "body")} for e in v["events"]]


def test_shutdown_with_the_notification_lost_ends_exited(vmm):
    # The fault: the agent's notify_host(...).ok() failed, `started` stays set,
    # the guest is down = `exited` (app/vm_info.rs), and auto-restart boots it
    vmm.config(shutdown_seconds=0.3, auto_restart_seconds=-1, guest_shutdown_notify=False)
    vm_id = create(vmm)
    vmm.call("ShutdownVm", {"id": vm_id})
    info = vmm.call("GetInfo", {"id": vm_id})["info"]
    assert info["status"] == "running" and info["configuration"]["stopped"] is False
    assert info["shutdown_progress"] == ""
    vmm.wait_status(vm_id, "exited", 5)
    v = vmm.vm(vm_id)
    assert v["started"] is True and v["process_running"] is False
    assert v["exited_at"] != "never" and v["configuration"]["stopped"] is False
    # StopVm clears `started`: exited -> stopped
    vmm.call("StopVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "stopped"
    # and with auto-restart on, an exited VM boots again
    vmm.config(auto_restart_seconds=0.2)
    vmm.call("StartVm", {"id": vm_id})
    vmm.call("ShutdownVm", {"id": vm_id})
    wait_until(lambda: vmm.vm(vm_id)["auto_restart_count"] == 1, 5, "an auto-restart")
    assert vmm.status_of(vm_id) == "running"


def test_shutdown_notification_lost_per_vm(vmm):
    vmm.config(shutdown_seconds=0, auto_restart_seconds=-1)
    lost, ok = create(vmm, name="lost"), create(vmm, name="ok", ports=[])
    vmm.set_vm(lost, guest_shutdown_notify=False)
    vmm.call("ShutdownVm", {"id": lost})
    vmm.call("ShutdownVm", {"id": ok})
    assert (vmm.status_of(lost), vmm.status_of(ok)) == ("exited", "stopped")
    assert vmm.vm(lost)["guest_shutdown_notify"] is False
    vmm.set_vm(lost, guest_shutdown_notify=None)     # back to the global setting
    assert vmm.vm(lost)["guest_shutdown_notify"] is None


def test_cli_no_guest_shutdown_notify_and_app_stop(tmp_path):
    with simlib.start_vmm(tmp_path, no_guest_shutdown_notify=True, app_stop_seconds=0.5) as sim:
        c = sim.config()
        assert c["guest_shutdown_notify"] is False and c["app_stop_seconds"] == 0.5


def test_v055_guest_stops_the_app_before_powering_off(vmm):
    # v0.5.5 guest-agent guest_api_service.rs shutdown: "stopping app",
    # `systemctl stop app-compose`, then "powering off" and poweroff. While
    # the app stops, the VM is still `running` (started, process up).
    vmm.config(app_stop_seconds=0.5, shutdown_seconds=0.2)
    vm_id = create(vmm)
    t0 = time.monotonic()
    vmm.call("ShutdownVm", {"id": vm_id})
    info = vmm.call("GetInfo", {"id": vm_id})["info"]
    assert info["status"] == "running" and info["shutdown_progress"] == "stopping app"
    vmm.wait_status(vm_id, "stopping", 5)
    assert time.monotonic() - t0 >= 0.5
    assert vmm.call("GetInfo", {"id": vm_id})["info"]["shutdown_progress"] == "powering off"
    vmm.wait_status(vm_id, "stopped", 5)
    v = vmm.vm(vm_id)
    [call] = vmm.calls("ShutdownVm")
    assert abs(v["process_stopped_mono"] - (call["mono"] + 0.7)) < 0.1
    bodies = [e["body"] for e in v["events"] if e["event"] == "shutdown.progress"]
    assert bodies == ["stopping app", "powering off"]


def test_stop_during_the_app_stop_is_final(vmm):
    vmm.config(app_stop_seconds=0.3, auto_restart_seconds=0.1)
    vm_id = create(vmm)
    vmm.call("ShutdownVm", {"id": vm_id})
    vmm.call("StopVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "stopped"
    assert never(vmm, vm_id, "running", 0.6)
    assert vmm.vm(vm_id)["shutdown_progress"] == "stopping app"


def test_shutdown_per_vm_and_forever_then_stop(vmm):
    vmm.config(auto_restart_seconds=-1, guest_shutdown_notify=False)
    vm_id = create(vmm)
    vmm.set_vm(vm_id, shutdown_seconds=-1)          # guest ignores the request
    vmm.call("ShutdownVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "running"
    other = create(vmm, name="other", ports=[])
    vmm.call("ShutdownVm", {"id": other})           # global 0.2 s
    vmm.wait_status(other, "exited", 5)
    assert vmm.status_of(vm_id) == "running"
    vmm.call("StopVm", {"id": vm_id})               # hard kill, immediate
    assert vmm.status_of(vm_id) == "stopped"
    assert vmm.vm(vm_id)["started"] is False
    vmm.config(shutdown_seconds=0)
    vmm.call("StartVm", {"id": vm_id})
    vmm.set_vm(vm_id, shutdown_seconds=None)
    vmm.call("ShutdownVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "exited"


def test_stop_takes_stop_seconds(vmm):
    vmm.config(stop_seconds=0.3)
    vm_id = create(vmm)
    vmm.call("StopVm", {"id": vm_id})
    assert vmm.status_of(vm_id) == "stopping"       # not started, QEMU still going
    vmm.wait_status(vm_id, "stopped", 5)


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
    # the reply id is app_id_of(the compose just sent), or "" (main_service.rs
    # upgrade_app / update_vm); the VM's app id stays the original
    r = vmm.call("UpgradeApp", {"id": vm_id, "compose_file": new_compose})
    assert r == {"id": simlib.app_id_of(new_compose)} and r["id"] != APP_ID
    assert vmm.call("GetInfo", {"id": vm_id})["info"]["app_id"] == APP_ID
    vmm.config(version="0.5.6")
    r = vmm.call("UpdateVm", {"id": vm_id, "compose_file": COMPOSE})
    assert r == {"id": APP_ID}
    assert vmm.call("UpgradeApp", {"id": vm_id}) == {"id": ""}
    assert vmm.call("UpdateVm", {"id": vm_id, "user_config": "x"}) == {"id": ""}
    for m in ("UpdateVm", "UpgradeApp"):
        st, res = vmm.prpc(m, {"id": vm_id, "compose_file": "{}"})
        assert st == 400 and res["error"].startswith("Invalid compose file")
        st, res = vmm.prpc(m, {"id": "nope", "compose_file": COMPOSE})
        assert (st, res) == (400, {"error": "The instance nope not found"})


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
    with pytest.raises(PrpcError, match="vm should be stopped before resize: " + vm_id):
        vmm.call("UpdateVm", {"id": vm_id, "vcpu": 4})
    vmm.call("StopVm", {"id": vm_id})
    vmm.call("UpdateVm", {"id": vm_id, "vcpu": 4, "memory": 4096})
    vmm.call("StartVm", {"id": vm_id})
    v = vmm.vm(vm_id)
    # the app id stays the original, so the key of APP_ID still decrypts the env
    assert v["env"] == {"HOTKEY_PASSPHRASE": "two"} and v["status"] == "running"
    assert v["configuration"]["vcpu"] == 4 and v["configuration"]["memory"] == 4096
    assert v["boot_compose_hash"] == simlib.compose_hash(new_compose)
    vmm.call("StopVm", {"id": vm_id})
    with pytest.raises(PrpcError, match="Cannot shrink disk size"):
        vmm.call("UpdateVm", {"id": vm_id, "disk_size": 1})


PORT = {"protocol": "tcp", "host_port": 8080, "vm_port": 80}


def test_ports_resolved_to_configured_address(tmp_path):
    # create_manifest_from_vm_config: "" -> [cvm.port_mapping] address; stored
    # and reported resolved (VmInfo::to_pb prints the parsed IpAddr)
    with simlib.start_vmm(tmp_path, port_address="10.1.2.3") as sim:
        vm_id = create(sim, ports=[dict(PORT, host_address=""),
                                   dict(PORT, host_port=8443, host_address="0:0::1"),
                                   dict(PORT, host_port=53, protocol="udp", host_address="127.0.0.2")])
        ports = sim.call("GetInfo", {"id": vm_id})["info"]["configuration"]["ports"]
        assert [p["host_address"] for p in ports] == ["10.1.2.3", "::1", "127.0.0.2"]
        assert sim.call("Status", {})["vms"][0]["configuration"]["ports"] == ports
        assert sim.config()["port_address"] == "10.1.2.3"
        for bad in ("localhost", "1.2.3", "01.2.3.4", " 1.2.3.4", "[::1]", "fe80::1%eth0"):
            st, res = sim.prpc("CreateVm", config(ports=[dict(PORT, host_address=bad)]))
            assert st == 400 and res["error"].startswith("Invalid host address"), bad
        st, res = sim.prpc("CreateVm", config(ports=[dict(PORT, host_port=70000)]))
        assert st == 400 and res["error"].startswith("Invalid host port")


def test_port_mapping_disabled_and_ranges(vmm):
    vmm.config(port_mapping_enabled=False)
    assert vmm.call("Status", {})["port_mapping_enabled"] is False
    st, res = vmm.prpc("CreateVm", config())
    assert (st, res) == (400, {"error": "Port mapping is disabled"})
    assert vmm.call("CreateVm", config(ports=[]))["id"]      # no ports: fine
    # the sample vmm.toml range: tcp 1-20000 only
    vmm.config(port_mapping_enabled=True, port_ranges=[{"protocol": "tcp", "from": 1, "to": 20000}])
    for p, err in ((dict(PORT, host_port=0, host_address=""), "tcp:0"),
                   (dict(PORT, host_port=20001, host_address=""), "tcp:20001"),
                   (dict(PORT, protocol="udp", host_address=""), "udp:8080")):
        st, res = vmm.prpc("CreateVm", config(ports=[p]))
        assert (st, res) == (400, {"error": "Port mapping is not allowed for " + err})
    assert vmm.call("CreateVm", config(ports=[dict(PORT, host_port=20000, host_address="")]))["id"]


def test_port_range_cli(tmp_path):
    with simlib.start_vmm(tmp_path, port_range=["tcp:100-200", "udp:53-53"],
                          no_port_mapping=True) as sim:
        c = sim.config()
        assert c["port_mapping_enabled"] is False and c["port_ranges"] == [
            {"protocol": "tcp", "from": 100, "to": 200}, {"protocol": "udp", "from": 53, "to": 53}]
        sim.config(port_mapping_enabled=True)
        st, res = sim.prpc("CreateVm", config())
        assert res == {"error": "Port mapping is not allowed for tcp:8080"}


def test_update_ports_host_address_has_no_default(vmm):
    # update_vm: `p.host_address.parse()`; no default, no enabled/range check
    vm_id = create(vmm)
    new_compose = simlib.app_compose(name="v2")
    enc = env_for(vmm, {"HOTKEY_PASSPHRASE": "two"})
    for m in ("UpdateVm", "UpgradeApp"):
        st, res = vmm.prpc(m, {"id": vm_id, "compose_file": new_compose, "encrypted_env": enc,
                               "update_ports": True, "ports": [dict(PORT, host_address="")]})
        assert st == 400 and res["error"].startswith("Invalid host address"), m
    v = vmm.vm(vm_id)
    # what dstack wrote before the failing step stays written
    assert v["configuration"]["compose_file"] == new_compose
    assert v["configuration"]["encrypted_env"] == enc
    assert v["configuration"]["ports"][0]["host_address"] == "127.0.0.1"
    r = vmm.call("UpdateVm", {"id": vm_id, "update_ports": True,
                              "ports": [dict(PORT, host_port=9090, host_address="127.0.0.1")]})
    assert r == {"id": ""}
    assert vmm.vm(vm_id)["configuration"]["ports"] == [dict(PORT, host_port=9090,
                                                           host_address="127.0.0.1")]
    vmm.config(port_mapping_enabled=False)
    vmm.call("UpdateVm", {"id": vm_id, "update_ports": True,
                          "ports": [dict(PORT, host_port=0, host_address="::")]})
    assert vmm.vm(vm_id)["configuration"]["ports"][0]["host_address"] == "::"
    # without update_ports the ports are not looked at
    vmm.call("UpdateVm", {"id": vm_id, "ports": [dict(PORT, host_address="bad")]})


def test_port_conflicts_from_060(vmm):
    # HEAD main_service.rs validate_port_mapping_conflicts (not in 0.5.x)
    a = create(vmm, name="a")
    create(vmm, name="b")                            # 0.5.7: same host port accepted
    vmm.config(version="0.6.0")
    st, res = vmm.prpc("CreateVm", config(name="c"))
    assert st == 400 and res["error"].startswith("host port mapping conflicts with VM " + a)
    st, res = vmm.prpc("CreateVm", config(name="d", ports=[dict(PORT, host_address=""),
                                                           dict(PORT, host_address="0.0.0.0")]))
    assert st == 400 and res["error"].startswith("duplicate host port mapping: tcp")


def test_a_held_host_port_makes_the_second_qemu_exit_up_to_0511(vmm):
    # v0.5.5 app/qemu.rs: every mapping is a QEMU `hostfwd`; nothing checks
    # them across VMs, and a QEMU whose bind fails exits at start: `exited`
    vmm.config(auto_restart_seconds=0.3)
    a = create(vmm, name="a")
    b = create(vmm, name="b")
    vb = vmm.vm(b)
    assert vb["status"] == "exited" and vb["boot_error"] == "" and vb["env"] is None, vb
    st, _, body = vmm.request("GET", "/logs?id=%s&ch=stderr" % b)
    assert "Could not set up host forwarding rule 'tcp:127.0.0.1:8080-:80'" in body.decode()
    assert vmm.status_of(a) == "running"
    # the old QEMU gone, auto-restart boots the new one
    vmm.call("StopVm", {"id": a})
    vmm.wait_status(b, "running", 5)
    assert vmm.vm(b)["auto_restart_count"] >= 1
    # what conflicts: same protocol and port, address equal or unspecified
    for ports, clash in (([dict(PORT, host_address="0.0.0.0")], True),
                         ([dict(PORT, host_address="::")], True),
                         ([dict(PORT, host_address="127.0.0.2")], False),
                         ([dict(PORT, protocol="udp", host_address="127.0.0.1")], False),
                         ([dict(PORT, host_port=8081, host_address="")], False)):
        c = create(vmm, name="c", ports=ports)
        assert vmm.status_of(c) == ("exited" if clash else "running"), ports
        vmm.call("StopVm", {"id": c})
        vmm.call("RemoveVm", {"id": c})
    # port 0 is an ephemeral port for each QEMU; a stopped VM holds nothing
    z1 = create(vmm, name="z1", ports=[dict(PORT, host_port=0, host_address="")])
    z2 = create(vmm, name="z2", ports=[dict(PORT, host_port=0, host_address="")])
    assert vmm.status_of(z1) == vmm.status_of(z2) == "running"
    vmm.call("StopVm", {"id": b})
    d = create(vmm, name="d")
    assert vmm.status_of(d) == "running"


def test_a_stopped_vm_still_holds_its_host_port_at_060(vmm):
    # HEAD validate_port_mapping_conflicts: every VM in the state, whatever its status
    vmm.config(version="0.6.0", auto_restart_seconds=-1)
    a = create(vmm, name="a")
    vmm.call("StopVm", {"id": a})
    st, res = vmm.prpc("CreateVm", config(name="b"))
    assert st == 400 and res["error"] == ("host port mapping conflicts with VM %s: tcp 127.0.0.1:8080" % a)
    st, res = vmm.prpc("CreateVm", config(name="b", ports=[dict(PORT, host_address="0.0.0.0")]))
    assert st == 400 and "conflicts with VM " + a in res["error"]
    assert vmm.call("CreateVm", config(name="b", ports=[dict(PORT, host_address="127.0.0.2")]))
    vmm.call("RemoveVm", {"id": a})
    vmm.wait_status(a, None, 5)
    assert vmm.call("CreateVm", config(name="c"))


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


def test_pubkey_reply_per_version_and_kms(vmm):
    r = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    assert set(r) == {"public_key", "signature", "timestamp", "signature_v1"}
    assert r["timestamp"] > 0 and len(r["signature_v1"]) == 130
    # >= 0.5.6 in front of a KMS that predates signature_v1: every field, defaulted
    vmm.config(kms_reply="legacy")
    r = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    assert r["timestamp"] == 0 and r["signature_v1"] == "" and len(r["signature"]) == 130
    vmm.config(kms_reply="unsigned")
    r2 = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    assert r2 == {"public_key": r["public_key"], "signature": "", "timestamp": 0,
                  "signature_v1": ""}
    st, _, body = vmm.request("POST", "/prpc/GetAppEnvEncryptPubKey?json",
                              json.dumps({"app_id": APP_ID}).encode())
    assert b'"timestamp":0,"signature_v1":""' in body and b'"signature":""' in body
    # v0.5.5 vmm_rpc.proto PublicKeyResponse: public_key and signature only
    vmm.config(version="0.5.5", kms_reply="full")
    r = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    assert set(r) == {"public_key", "signature"} and len(r["signature"]) == 130
    st, _, _ = vmm.request("POST", "/_sim/config", {"kms_reply": "bogus"})
    assert st == 400


def test_kms_reply_cli(tmp_path):
    with simlib.start_vmm(tmp_path, kms_reply="legacy") as sim:
        r = sim.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
        assert (r["timestamp"], r["signature_v1"]) == (0, "")


def test_no_kms(vmm):
    vmm.config(kms=False)
    with pytest.raises(PrpcError, match="KMS is not configured"):
        vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    assert vmm.call("GetMeta")["kms"]["url"] == ""
    vm_id = create(vmm, encrypted_env="00" * 80)
    assert vmm.status_of(vm_id) == "exited"


def test_kms_url_is_the_top_level_setting(vmm):
    # v0.5.5..HEAD app.rs kms_client: GetAppEnvEncryptPubKey asks the top-level
    # `kms_url`; `[cvm] kms_urls` (GetMeta, the guests' KMS) does not count
    vmm.config(kms_url="")
    with pytest.raises(PrpcError, match="400: KMS is not configured$"):
        vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    meta = vmm.call("GetMeta")["kms"]
    assert meta["url"] and meta["urls"] == [meta["url"]]
    # the guests still get keys from [cvm] kms_urls: an env boots
    compose = simlib.app_compose(allowed_envs=["A"])
    pk = vmm.kms_key(simlib.app_id_of(compose))["public_key"]
    v = vmm.vm(create(vmm, ports=[], compose_file=compose, encrypted_env=simlib.encrypt_env(pk, {"A": "1"})))
    assert v["status"] == "running" and v["env"] == {"A": "1"}
    # and the other way round: kms_url set, no [cvm] kms_urls: GetMeta has none,
    # a VM without its own kms_urls cannot get its env key
    vmm.config(kms_url="http://127.0.0.1:2/kms", kms_urls=[])
    assert vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})["public_key"]
    assert vmm.call("GetMeta")["kms"] == {"url": "", "urls": []}
    assert "KMS is not configured" in boot_error_of(vmm, ports=[], encrypted_env="00" * 80)
    v = vmm.vm(create(vmm, ports=[], compose_file=compose, kms_urls=["http://127.0.0.1:3/kms"],
                      encrypted_env=simlib.encrypt_env(pk, {"A": "2"})))
    assert v["status"] == "running" and v["env"] == {"A": "2"}
    c = vmm.config()
    assert (c["kms_url"], c["kms_urls"], c["kms"]) == ("http://127.0.0.1:2/kms", [], True)
    st, _, _ = vmm.request("POST", "/_sim/config", {"kms_urls": "x"})
    assert st == 400


def test_kms_url_cli(tmp_path):
    with simlib.start_vmm(tmp_path, kms_url="", kms_urls=["http://a/kms", "http://b/kms"]) as sim:
        with pytest.raises(PrpcError, match="KMS is not configured"):
            sim.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
        assert sim.call("GetMeta")["kms"] == {"url": "http://a/kms", "urls": ["http://a/kms", "http://b/kms"]}


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
        vm_id = create(vmm, name="vm%d" % i, ports=[], compose_file=compose,
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
    # v0.5.5/HEAD dstack-util/src/parse_env_file.rs parse_env, its messages
    def boot(env, allowed):
        compose = simlib.app_compose(allowed_envs=allowed)
        pk = vmm.call("GetAppEnvEncryptPubKey", {"app_id": simlib.app_id_of(compose)})["public_key"]
        return create(vmm, compose_file=compose, encrypted_env=simlib.encrypt_env(pk, env), ports=[])

    def error(env, allowed):
        v = vmm.vm(boot(env, allowed))
        assert v["status"] == "exited" and v["env"] is None, v
        return v["boot_error"]

    keys = ["K%d" % i for i in range(1025)]
    assert error([(k, "v") for k in keys], keys) == "Too many environment variables: 1025"
    # MAX_ITEMS counts every entry, listed or not
    assert error([(k, "v") for k in keys], ["K0"]) == "Too many environment variables: 1025"
    v = vmm.vm(boot([(k, "v") for k in keys[:1024]], keys))
    assert v["status"] == "running" and len(v["env"]) == 1024
    big = [("K%d" % i, "x" * (120 * 1024)) for i in range(9)]        # > 1 MiB
    assert error(big, keys) == "Environment variables total size too large"
    assert error({"A": "x" * (128 * 1024 + 1)}, ["A"]) == "Environment variable value too long for key: A"
    v = vmm.vm(boot({"HOTKEY_PASSPHRASE": "x" * (128 * 1024)}, ["HOTKEY_PASSPHRASE"]))
    assert v["status"] == "running" and len(v["env"]["HOTKEY_PASSPHRASE"]) == 128 * 1024
    for key in ("1ABC", "A-B", "", "A B"):
        assert error({key: "v"}, [key]) == "Invalid env key: " + key, key
    assert error({"K" * 256: "v"}, ["K" * 256]) == "Environment variable name too long: " + "K" * 256
    assert vmm.vm(boot({"_" + "K" * 254: "v"}, ["_" + "K" * 254]))["status"] == "running"
    assert error(b"not json", ["A"]).startswith("Failed to parse env")
    assert error(b'{"env":[{"key":"A","value":1}]}', ["A"]).startswith("Failed to parse env")
    v = vmm.vm(boot({"HOTKEY_PASSPHRASE": "p", "EVIL": "x"}, ["HOTKEY_PASSPHRASE"]))
    assert v["env"] == {"HOTKEY_PASSPHRASE": "p"} and v["env_dropped"] == ["EVIL"]
    v = vmm.vm(create(vmm))                                          # no env at all
    assert v["status"] == "running" and v["env"] == {}


def test_guest_skips_unlisted_keys_before_any_rule(vmm):
    # parse_env_file.rs: `if !allowed.contains(&key) { warn!(...); continue; }`
    # comes before the name, value, syntax and total checks
    compose = simlib.app_compose(allowed_envs=["HOTKEY_PASSPHRASE"])
    pk = vmm.call("GetAppEnvEncryptPubKey", {"app_id": simlib.app_id_of(compose)})["public_key"]
    env = [("HOTKEY_PASSPHRASE", "p"), ("1-bad key", "v"), ("K" * 300, "v"),
           ("BIG", "x" * (128 * 1024 + 1))] + [("U%d" % i, "x" * (120 * 1024)) for i in range(9)]
    v = vmm.vm(create(vmm, compose_file=compose, encrypted_env=simlib.encrypt_env(pk, env)))
    assert v["status"] == "running" and v["boot_error"] == "", v["boot_error"]
    assert v["env"] == {"HOTKEY_PASSPHRASE": "p"}
    assert v["env_dropped"] == [k for k, _ in env[1:]]


def test_guest_refuses_a_key_with_a_trailing_newline(vmm):
    # Rust regex `^[a-zA-Z_][a-zA-Z0-9_]*$` does not match "K\n" ($ = end of
    # text); Python's re.match with `$` would
    for key in ("K\n", "K\r\n", "\nK"):
        compose = simlib.app_compose(allowed_envs=[key])
        pk = vmm.call("GetAppEnvEncryptPubKey", {"app_id": simlib.app_id_of(compose)})["public_key"]
        v = vmm.vm(create(vmm, compose_file=compose, encrypted_env=simlib.encrypt_env(pk, {key: "v"})))
        assert v["status"] == "exited" and v["boot_error"] == "Invalid env key: " + key, (key, v["boot_error"])
    assert vmm_sim.guest_env(simlib.env_plaintext({"K": "v"}), {"K"}) == ({"K": "v"}, [])


def test_key_provider_id_must_be_hex(vmm):
    # dstack-types AppCompose key_provider_id: serde_human_bytes hex (hex 0.4
    # FromHex: odd length first, then each byte; no 0x prefix)
    for kp in ("", "00ff", "ABcd" * 8):
        assert create(vmm, compose_file=simlib.app_compose(key_provider_id=kp))
        assert vmm.call("GetComposeHash", config(compose_file=simlib.app_compose(key_provider_id=kp)))
    for kp, err in (("0", "Odd number of digits"), ("0x00", "Invalid character 'x' at position 1"),
                    ("zz", "Invalid character 'z' at position 0"), ("0\n", "Invalid character '\\n' at position 1"),
                    (12, "invalid type: integer `12`, expected a string"),
                    (None, "invalid type: null, expected a string")):
        st, res = vmm.prpc("CreateVm", config(compose_file=simlib.app_compose(key_provider_id=kp)))
        assert st == 400 and res["error"].endswith("Failed to read compose file\n    1: " + err), (kp, res)
        st, res = vmm.prpc("GetComposeHash", config(compose_file=simlib.app_compose(key_provider_id=kp)))
        assert st == 400 and res["error"] == "Invalid compose file\n\nCaused by:\n    " + err, (kp, res)


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
        # v0.5.5..v0.5.11 main_routes.rs vm_logs: always 200; an unknown id
        # tails a file that does not exist: the tailf crate's `tail` prints
        # nothing on stdout (stderr is /dev/null), so the body is empty
        for q in ("", "&follow=false", "&follow=true", "&follow=true&lines=5&ch=stderr"):
            st, h, body = sim.request("GET", "/logs?id=nope" + q)
            assert (st, body) == (200, b"") and h["content-type"].startswith("text/plain"), (q, st, body)
        st, _, body = sim.request("GET", "/logs?id=%s&ch=bogus" % vm_id)
        assert (st, body) == (200, b"Unknown channel bogus")
        # HEAD: 404 / 400
        sim.config(version="0.6.0")
        assert sim.request("GET", "/logs?id=nope")[:3:2] == (404, b"VM not found")
        assert sim.request("GET", "/logs?id=%s&ch=bogus" % vm_id)[0] == 400
        sim.config(version="0.5.7")
        # follow: chunked, heartbeats, appended lines; like dstack's tail it
        # does not end when the VM stops; /_sim/log-streams ends it
        conn = simlib.connect(sim.url, 10)
        conn.request("GET", "/logs?id=%s&follow=true" % vm_id)
        r = conn.getresponse()
        assert r.getheader("Transfer-Encoding") == "chunked"
        got = b""
        while b"[vmm heartbeat]" not in got:
            got += r.read1(4096)
        sim.call("StopVm", {"id": vm_id})
        sim.control("vm-log", {"id": vm_id, "lines": ["after stop"]})
        while b"after stop\n" not in got:
            got += r.read1(4096)
        assert sim.control("log-streams")["open"] == 1
        sim.control("log-streams", {"end": True})
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


def test_kms_signer_key_timestamp_and_overrides(vmm, tmp_path):
    # HEAD kms/src/main_service.rs get_app_env_encrypt_pub_key: the KMS's k256
    # key signs; the simulator's is configurable (--kms-signer-key / kms_signer_key)
    import kmscrypto
    key = "11" * 32
    vmm.config(kms_signer_key=key)
    d = int(key, 16)
    assert vmm.config()["kms_signer_public_key"] == kmscrypto.public_key(d).hex()
    r = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    pub, app = bytes.fromhex(r["public_key"]), bytes.fromhex(APP_ID)
    assert abs(r["timestamp"] - time.time()) < 5
    assert kmscrypto.recover(kmscrypto.pubkey_message(app, pub, r["timestamp"]),
                             bytes.fromhex(r["signature_v1"])) == kmscrypto.public_key(d)
    vmm.config(kms_timestamp_offset=-1000)
    r = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    assert abs(r["timestamp"] - (time.time() - 1000)) < 5
    assert kmscrypto.recover(kmscrypto.pubkey_message(app, pub, r["timestamp"]),
                             bytes.fromhex(r["signature_v1"])) == kmscrypto.public_key(d)
    vmm.config(kms_signature_v1_override="00" * 64, kms_signature_override="zz")
    r = vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})
    assert (r["signature_v1"], r["signature"]) == ("00" * 64, "zz")
    vmm.config(kms_signer_key=None, kms_signature_v1_override=None, kms_signature_override=None)
    seed_signer = kmscrypto.public_key(kmscrypto.private_from_seed(simlib.DEFAULT_KMS_SEED)).hex()
    assert vmm.config()["kms_signer_public_key"] == seed_signer
    for bad in ("00" * 32, "xx", "ff" * 32):
        st, _, _ = vmm.request("POST", "/_sim/config", {"kms_signer_key": bad})
        assert st == 400, bad
    with simlib.start_vmm(tmp_path, kms_signer_key="22" * 32) as sim:
        assert sim.config()["kms_signer_public_key"] == kmscrypto.public_key(int("22" * 32, 16)).hex()


def test_auto_restart(vmm):
    vmm.config(auto_restart_seconds=0.1)
    vm_id = create(vmm)
    vmm.set_vm(vm_id, status="exited")          # crash
    vmm.wait_status(vm_id, "running", 5)
    v = vmm.vm(vm_id)
    assert v["boot_count"] == 2 and v["auto_restart_count"] == 1
    vmm.call("StopVm", {"id": vm_id})           # clears started: stays down
    vmm.config(auto_restart_seconds=0)
    assert vmm.status_of(vm_id) == "stopped"
    vmm.call("StartVm", {"id": vm_id})
    vmm.config(auto_restart_seconds=-1)
    vmm.set_vm(vm_id, status="exited")
    assert vmm.status_of(vm_id) == "exited"


def test_auto_restart_on_by_default_after_shutdown(tmp_path):
    # the sample vmm.toml has [cvm.auto_restart] enabled = true; a ShutdownVm
    # whose "powering off" notification is lost (the fault) leaves `started`,
    # so the VMM boots the VM again after the delay
    with simlib.start_vmm(tmp_path, shutdown_seconds=0.1, auto_restart_seconds=0.6,
                          no_guest_shutdown_notify=True) as sim:
        assert sim.config()["auto_restart_enabled"] is True
        vm_id = create(sim)
        t0 = time.monotonic()
        sim.call("ShutdownVm", {"id": vm_id})
        sim.wait_status(vm_id, "exited", 5)
        sim.wait_status(vm_id, "running", 10)
        assert time.monotonic() - t0 >= 0.7          # 0.1 s to go down + 0.6 s delay
        v = sim.vm(vm_id)
        assert v["boot_count"] == 2 and v["auto_restart_count"] == 1


def test_default_delay_and_no_auto_restart_flag(tmp_path):
    with simlib.start_vmm(tmp_path) as sim:
        assert sim.config()["auto_restart_seconds"] == 5.0
    with simlib.start_vmm(tmp_path, no_auto_restart=True) as sim:
        assert sim.config()["auto_restart_enabled"] is False
        vm_id = create(sim)
        sim.set_vm(vm_id, status="exited")
        assert sim.status_of(vm_id) == "exited"


def test_stop_after_exit_prevents_auto_restart(vmm):
    vmm.config(shutdown_seconds=0.05, auto_restart_seconds=0.3, guest_shutdown_notify=False)
    vm_id = create(vmm)
    vmm.call("ShutdownVm", {"id": vm_id})
    vmm.wait_status(vm_id, "exited", 5)
    vmm.call("StopVm", {"id": vm_id})           # as soon as the guest is down
    assert vmm.status_of(vm_id) == "stopped"
    deadline = time.monotonic() + 0.8            # well past the restart delay
    while time.monotonic() < deadline:
        assert vmm.status_of(vm_id) == "stopped"
        time.sleep(0.05)
    assert vmm.vm(vm_id)["boot_count"] == 1


def test_auto_restart_of_failing_boot_gives_up_from_060(vmm):
    # HEAD AutoRestartState: max_retries (5), then a "vmm.auto_restart.exhausted" event
    vmm.config(version="0.6.0", auto_restart_seconds=0.02, auto_restart_max_retries=3)
    vm_id = create(vmm, encrypted_env="00" * 80)    # the guest cannot decrypt: exits
    simlib.wait_until(lambda: any(e["event"] == "vmm.auto_restart.exhausted"
                                  for e in vmm.vm(vm_id)["events"]), 10, "exhausted event")
    v = vmm.vm(vm_id)
    assert v["boot_count"] == 4 and v["status"] == "exited"
    vmm.call("StartVm", {"id": vm_id})           # resets the budget
    simlib.wait_until(lambda: vmm.vm(vm_id)["boot_count"] == 8, 10, "three more restarts")


def test_reset(vmm):
    create(vmm)
    vmm.config(version="0.5.5", kms=False, shutdown_seconds=9)
    vmm.fault("Version", "error", times=0)
    vmm.reset()
    assert vmm.vms() == [] and vmm.calls() == [] and vmm.control("faults")["faults"] == []
    c = vmm.config()
    assert (c["version"], c["kms"], c["shutdown_seconds"]) == ("0.5.7", True, 0.2)
    assert c["auto_restart_enabled"] is True and c["kms_reply"] == "full"
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
