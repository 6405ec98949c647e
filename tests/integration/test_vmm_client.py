"""The C VMM client (src/clients/vmm.c) against the dstack VMM simulator,
driven through tests/unit/vmm-tool (one call per run, JSON on stdout)."""

import json
import os
import socket
import subprocess
import sys

import pytest

SRC = os.environ.get("PLATFORM_SOURCE_DIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BUILD = os.environ.get("PLATFORM_BUILD_DIR", os.path.join(SRC, "build"))
sys.path.insert(0, os.path.join(SRC, "tests", "sim"))

import simlib  # noqa: E402
from simlib import vmm, vmm_process  # noqa: E402,F401  (fixtures)

TOOL = os.path.join(BUILD, "tests", "unit", "vmm-tool")
COMPOSE = simlib.app_compose()
APP_ID = simlib.app_id_of(COMPOSE)


def run(url, *args, ok=True, timeout=30):
    p = subprocess.run([TOOL, *args_split(url, args)], capture_output=True, text=True,
                       timeout=timeout)
    assert p.returncode in (0, 2), "vmm-tool failed (%d): %s" % (p.returncode, p.stderr)
    out = json.loads(p.stdout)
    if ok:
        assert p.returncode == 0, out
    else:
        assert p.returncode == 2 and "error" in out, out
    return out


def args_split(url, args):
    """Options first, then URL, command and its positional arguments."""
    opts, pos = [], []
    it = iter(args)
    for a in it:
        if a.startswith("--"):
            opts.append(a)
            if a not in ("--detect-version", "--stopped", "--update-ports"):
                opts.append(next(it))
        else:
            pos.append(a)
    return opts + [url] + pos


@pytest.fixture
def compose_file(tmp_path):
    p = tmp_path / "app-compose.json"
    p.write_text(COMPOSE)
    return str(p)


def create_args(compose_file, *extra):
    return ["--name", "validator_vm", "--image", "dstack-0.5.2", "--compose-file", compose_file,
            "--vcpu", "2", "--memory", "2048", "--disk", "20", "--port", "tcp:8080:80", *extra]


def test_every_method(vmm, compose_file):
    url = vmm.url
    v = run(url, "version")
    assert v["version"] == vmm.call("Version")["version"]

    imgs = run(url, "images")["images"]
    assert "dstack-0.5.2" in [i["name"] for i in imgs]
    meta = run(url, "meta")
    assert meta["max_cvm_number"] == vmm.call("GetMeta")["resources"]["max_cvm_number"]

    h = run(url, *create_args(compose_file), "compose-hash")
    assert h["hash"] == simlib.compose_hash(COMPOSE)

    pk = run(url, "pubkey", APP_ID)
    assert pk["public_key"] == vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})["public_key"]
    assert pk["has_signature"] and pk["has_signature_v1"] and pk["timestamp"] > 0
    env_hex = simlib.encrypt_env(pk["public_key"], {"HOTKEY_PASSPHRASE": "s3cret"})

    vm_id = run(url, *create_args(compose_file, "--env-hex", env_hex), "create-vm")["id"]
    sent = vmm.calls("CreateVm")[-1]["body"]
    assert sent["ports"] == [{"protocol": "tcp", "host_port": 8080, "vm_port": 80, "host_address": ""}]
    assert "app_id" not in sent and None not in sent.values()
    assert vmm.vm(vm_id)["env"] == {"HOTKEY_PASSPHRASE": "s3cret"}

    st = run(url, "status")
    mine = [x for x in st["vms"] if x["id"] == vm_id]
    assert len(mine) == 1 and mine[0]["app_id"] == APP_ID and mine[0]["status"] == "running"
    assert mine[0]["compose_file"] == COMPOSE and mine[0]["vcpu"] == 2 and mine[0]["disk_size"] == 20
    # sent with host_address "", reported with the VMM's configured address
    assert mine[0]["ports"] == [{"protocol": "tcp", "host_port": 8080, "vm_port": 80,
                                 "host_address": "127.0.0.1"}]
    assert mine[0]["stopped"] is False
    assert run(url, "--keyword", "no-such-vm", "status")["vms"] == []

    info = run(url, "get-info", vm_id)
    assert info["found"] and info["vm"]["status"] == "running" and info["vm"]["image"] == "dstack-0.5.2"
    assert run(url, "get-info", "nonexistent")["found"] is False

    new_compose = simlib.app_compose(docker_compose="services: {}\n")
    p = os.path.join(os.path.dirname(compose_file), "new.json")
    with open(p, "w") as f:
        f.write(new_compose)
    up = run(url, "--detect-version", "--compose-file", p, "update-vm", vm_id)
    assert up["method"] == "UpdateVm"
    # the reply id is the new compose's app-id prefix, never the VM's id/app id
    assert up["compose_app_id"] == simlib.app_id_of(new_compose) and "id" not in up
    assert vmm.vm(vm_id)["configuration"]["compose_file"] == new_compose
    assert vmm.vm(vm_id)["app_id"] == APP_ID

    logs = run(url, "--lines", "10", "--channel", "stdout", "logs", vm_id)["text"]
    assert "[sim stdout] validator_vm: booting image dstack-0.5.2" in logs
    assert vmm.calls("logs")[-1]["path"].startswith("/logs?id=%s&follow=false" % vm_id)

    vmm.set_vm(vm_id, status="exited", boot_error="disk full")
    info = run(url, "get-info", vm_id)["vm"]
    assert info["status"] == "exited" and info["boot_error"] == "disk full" and info["exited_at"]
    vmm.set_vm(vm_id, status="running")

    run(url, "shutdown-vm", vm_id)                  # the guest reports "powering off"
    vmm.wait_status(vm_id, "stopped")
    assert run(url, "get-info", vm_id)["vm"]["stopped"] is True
    run(url, "start-vm", vm_id)
    vmm.wait_status(vm_id, "running")
    vmm.config(guest_shutdown_notify=False)         # the fault: that report is lost
    run(url, "shutdown-vm", vm_id)
    vmm.wait_status(vm_id, "exited")                # `started` stays set
    assert run(url, "get-info", vm_id)["vm"]["stopped"] is False
    run(url, "stop-vm", vm_id)
    assert run(url, "get-info", vm_id)["vm"]["status"] == "stopped"
    assert run(url, "get-info", vm_id)["vm"]["stopped"] is True
    run(url, "start-vm", vm_id)
    vmm.wait_status(vm_id, "running")
    boots = vmm.vm(vm_id)["boot_count"]
    run(url, "start-vm", vm_id)                     # already running: a no-op
    assert vmm.vm(vm_id)["boot_count"] == boots
    run(url, "stop-vm", vm_id)
    vmm.wait_status(vm_id, "stopped")
    run(url, "remove-vm", vm_id)
    vmm.wait_status(vm_id, None)


@pytest.mark.parametrize("kms_reply,sig,sig_v1,ts", [("full", True, True, True),
                                                     ("legacy", True, False, False),
                                                     ("unsigned", False, False, False)])
def test_pubkey_empty_signatures_are_absent(vmm, kms_reply, sig, sig_v1, ts):
    # >= 0.5.6 in front of an older KMS: "timestamp":0,"signature_v1":"" (issue 7 defect 4)
    vmm.config(kms_reply=kms_reply)
    pk = run(vmm.url, "pubkey", APP_ID)
    assert (pk["has_signature"], pk["has_signature_v1"], pk["has_timestamp"]) == (sig, sig_v1, ts)
    assert pk["public_key"] == vmm.call("GetAppEnvEncryptPubKey", {"app_id": APP_ID})["public_key"]


def test_update_ports_with_empty_host_address_is_refused(vmm, compose_file):
    vm_id = run(vmm.url, *create_args(compose_file), "create-vm")["id"]
    out = run(vmm.url, "--update-ports", "--port", "tcp:8080:80", "update-vm", vm_id, ok=False)
    assert out["kind"] == "reply" and out["vmm_message"].startswith("Invalid host address")
    out = run(vmm.url, "--update-ports", "--port", "tcp:9090:80:127.0.0.1", "update-vm", vm_id)
    assert "compose_app_id" not in out
    assert run(vmm.url, "get-info", vm_id)["vm"]["ports"][0]["host_port"] == 9090


def test_vmm_refusal_carries_its_message(vmm):
    out = run(vmm.url, "start-vm", "nonexistent", ok=False)
    assert out["kind"] == "reply" and out["error"] == "EREMOTEIO" and out["http_status"] == 400
    assert out["vmm_message"] and out["message"] == "StartVm: " + out["vmm_message"]


@pytest.mark.parametrize("version,direct", [("0.5.5", False), ("0.5.5", True), ("v0.5.6", True)])
def test_update_falls_back_to_upgrade_app(tmp_path, compose_file, version, direct):
    with simlib.start_vmm(tmp_path, version=version) as sim:
        vm_id = run(sim.url, *create_args(compose_file), "create-vm")["id"]
        extra = ["--detect-version"] if direct else []
        out = run(sim.url, *extra, "--compose-file", compose_file, "update-vm", vm_id)
        old = version == "0.5.5"
        assert out["method"] == ("UpgradeApp" if old else "UpdateVm")
        # With the version known, an old VMM is never asked for UpdateVm.
        assert len(sim.calls("UpdateVm")) == (0 if (old and direct) else 1)


def test_remove_sync_and_async(tmp_path, compose_file):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with simlib.start_vmm(tmp_path / "a", version="0.5.6") as sim:
        vm_id = run(sim.url, *create_args(compose_file), "create-vm")["id"]
        out = run(sim.url, "remove-vm", vm_id, ok=False)
        assert "VM is running, stop it first" in out["vmm_message"]
    with simlib.start_vmm(tmp_path / "b", version="0.5.7", remove_seconds=5) as sim:
        vm_id = run(sim.url, *create_args(compose_file), "create-vm")["id"]
        run(sim.url, "remove-vm", vm_id)
        assert run(sim.url, "get-info", vm_id)["vm"]["status"] == "removing"


def test_unix_socket(tmp_path, compose_file):
    with simlib.start_vmm(tmp_path, unix=True) as sim:
        assert sim.url.startswith("unix:/")
        vm_id = run(sim.url, *create_args(compose_file), "create-vm")["id"]
        assert [x["id"] for x in run(sim.url, "status")["vms"]] == [vm_id]


def test_bearer_token(tmp_path):
    # 0.6.0 (HEAD) guards every route
    with simlib.start_vmm(tmp_path, token="t0k", version="0.6.0") as sim:
        out = run(sim.url, "version", ok=False)
        assert out["kind"] == "auth" and out["error"] == "EACCES" and out["http_status"] == 401
        assert run(sim.url, "--token", "t0k", "version")["version"]


def test_bearer_token_only_logs_up_to_0511(tmp_path, compose_file):
    with simlib.start_vmm(tmp_path, token="t0k", version="0.5.11") as sim:
        vm_id = run(sim.url, *create_args(compose_file), "create-vm")["id"]
        out = run(sim.url, "logs", vm_id, ok=False)
        assert out["kind"] == "auth" and out["http_status"] == 401
        assert "boot done" in run(sim.url, "--token", "t0k", "logs", vm_id)["text"]


def test_connection_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = run("http://127.0.0.1:%d" % port, "version", ok=False)
    assert out["kind"] == "transport" and out["error"] == "ECONNREFUSED"


def test_fault_error(vmm):
    vmm.fault("Status", "error", message="injected refusal")
    out = run(vmm.url, "status", ok=False)
    assert out["kind"] == "reply" and out["vmm_message"] == "injected refusal"


def test_fault_http500(vmm):
    vmm.fault("Status", "http500", status=500, message="boom")
    out = run(vmm.url, "status", ok=False)
    assert out["kind"] == "http" and out["http_status"] == 500 and "boom" in out["message"]


def test_fault_hang_times_out_without_blocking_loop(vmm):
    vmm.fault("Status", "hang")
    out = run(vmm.url, "--timeout-ms", "800", "status", ok=False)
    assert out["kind"] == "transport" and out["error"] == "ETIMEDOUT"
    assert out["loop_max_gap_ms"] < 100


def test_fault_drop(vmm):
    vmm.fault("Status", "drop")
    out = run(vmm.url, "status", ok=False)
    assert out["kind"] == "transport" and out["error"] == "ECONNRESET"


def test_fault_slow_body(vmm):
    vmm.fault("Version", "slow", seconds=1.0)
    out = run(vmm.url, "version")
    assert out["version"] and out["loop_max_gap_ms"] < 100
    vmm.fault("Version", "slow", seconds=3.0)
    out = run(vmm.url, "--timeout-ms", "700", "version", ok=False)
    assert out["error"] == "ETIMEDOUT"


def test_fault_oversize(vmm):
    vmm.fault("Status", "oversize", size=4 * 1024 * 1024)
    out = run(vmm.url, "--max-bytes", "1048576", "status", ok=False)
    assert out["kind"] == "transport" and out["error"] == "EFBIG"
    assert out["message"] == "Status: response exceeds 1048576 bytes"


def test_fault_malformed(vmm):
    vmm.fault("Status", "malformed")
    out = run(vmm.url, "status", ok=False)
    assert out["kind"] == "protocol" and out["error"] == "EBADMSG"
    assert out["message"].startswith("Status: malformed JSON")


def test_fault_after_success_and_recovery(vmm):
    vmm.fault("Version", "error", message="once")
    assert run(vmm.url, "version", ok=False)["vmm_message"] == "once"
    assert run(vmm.url, "version")["version"]
