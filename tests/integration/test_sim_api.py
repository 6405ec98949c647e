"""Tests of the Platform API simulator itself (tests/sim/api_sim.py)."""

import email.utils
import http.client
import json
import os
import subprocess
import sys
import threading
import time

import pytest

SRC = os.environ.get("PLATFORM_SOURCE_DIR",
                     os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
sys.path.insert(0, os.path.join(SRC, "tests", "sim"))

import simlib  # noqa: E402
from simlib import api, api_process  # noqa: E402,F401  (fixtures)

DOC = "/config/compose/validator_vm"


def test_default_document_shape(api):
    st, h, body = api.get_doc()
    assert st == 200 and h["content-type"] == "application/json"
    d = json.loads(body)
    assert d["vm_type"] == "validator_vm" and d["required_env"] == []
    assert d["compose_content"].startswith("services:")
    p = d["provisioning"]
    assert p["env_keys"] == ["DSTACK_VMM_URL", "HOTKEY_PASSPHRASE", "VALIDATOR_BASE_URL"]
    assert p["manifest_defaults"]["manifest_version"] == 2
    assert p["vm_parameters"]["ports"][0]["host_address"] is None
    assert p["vm_parameters"]["image"] == "dstack-0.5.2"
    # the example builds the compose-hash vector's app-compose
    md = p["manifest_defaults"]
    compose = simlib.app_compose(allowed_envs=p["env_keys"],
                                 docker_compose=d["compose_content"], **md)
    assert simlib.compose_hash(compose) == \
        "70cfd2f4b998b97f124bdeb743a964a8fac44151ca8183dd8f0a4df1177cb4db"
    etag = h["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert email.utils.parsedate_to_datetime(h["last-modified"])


def test_etag_304(api):
    st, h, body = api.get_doc()
    etag = h["etag"]
    for inm in (etag, "W/" + etag, '"other", ' + etag, "*"):
        st, h2, body2 = api.get_doc({"If-None-Match": inm})
        assert st == 304 and body2 == b"", inm
        assert h2["etag"] == etag and "content-length" not in h2
    st, _, body2 = api.get_doc({"If-None-Match": '"stale"'})
    assert st == 200 and body2 == body
    # If-None-Match wins over If-Modified-Since
    st, _, _ = api.get_doc({"If-None-Match": '"stale"', "If-Modified-Since": h["last-modified"]})
    assert st == 200
    reqs = api.requests(DOC)
    assert [r["not_modified"] for r in reqs] == [False, True, True, True, True, False, False]
    assert [r["conditional"] for r in reqs][0] is False
    assert reqs[1]["headers"]["If-None-Match"] == etag
    assert sum(r["bytes_out"] for r in reqs) == 3 * len(body)


def test_if_modified_since(api):
    api.set_doc(b'{"a":1}', last_modified=1_700_000_000)
    lm = email.utils.formatdate(1_700_000_000, usegmt=True)
    st, h, _ = api.get_doc()
    assert h["last-modified"] == lm
    assert api.get_doc({"If-Modified-Since": lm})[0] == 304
    later = email.utils.formatdate(1_700_000_100, usegmt=True)
    assert api.get_doc({"If-Modified-Since": later})[0] == 304
    earlier = email.utils.formatdate(1_699_999_999, usegmt=True)
    assert api.get_doc({"If-Modified-Since": earlier})[0] == 200
    assert api.get_doc({"If-Modified-Since": "garbage"})[0] == 200


def test_replace_document_raw(api):
    st, h1, _ = api.get_doc()
    s = api.set_doc(b"this is { not json")
    st, h2, body = api.get_doc()
    assert st == 200 and body == b"this is { not json"
    assert h2["etag"] != h1["etag"] and h2["etag"] == s["etag"]
    assert api.get_doc({"If-None-Match": h1["etag"]})[0] == 200
    api.set_doc(b"{}", etag=False, last_modified_header=False)
    st, h3, body = api.get_doc({"If-None-Match": h2["etag"]})
    assert st == 200 and "etag" not in h3 and "last-modified" not in h3
    api.set_doc(b"{}", etag_value='"fixed"')
    assert api.get_doc()[1]["etag"] == '"fixed"'
    st = api.patch_doc(compose_content="services: {}\n", manifest_defaults={"name": "x"})
    d = json.loads(api.get_doc()[2])
    assert d["compose_content"] == "services: {}\n"
    assert d["provisioning"]["manifest_defaults"]["name"] == "x"
    assert d["provisioning"]["manifest_defaults"]["manifest_version"] == 2
    assert api.state()["doc_version"] == st["doc_version"]


def test_doc_file_and_unix_socket(tmp_path):
    f = tmp_path / "doc.json"
    f.write_bytes(b'{"vm_type":"validator_vm"}')
    with simlib.start_api(tmp_path, unix=True, doc=str(f)) as sim:
        assert sim.url.startswith("unix:")
        st, _, body = sim.get_doc()
        assert (st, body) == (200, b'{"vm_type":"validator_vm"}')


def test_ready_file(tmp_path):
    ready = tmp_path / "ready"
    p = subprocess.Popen([simlib.PYTHON, os.path.join(simlib.SIM_DIR, "api_sim.py"),
                          "--listen", "tcp:127.0.0.1:0", "--ready-file", str(ready)],
                         stderr=subprocess.DEVNULL)
    try:
        simlib.wait_until(ready.exists, 10, "ready file")
        url = ready.read_text().strip()
        st, _, _ = simlib.http_request(url, "GET", DOC)
        assert st == 200
    finally:
        p.terminate()
        p.wait(5)


def test_validate_active(tmp_path):
    """alphacore's Validation API shape (dstack.md §5b): {"active": [...]}."""
    with simlib.start_api(tmp_path) as sim:
        st, h, body = sim.request("GET", "/validate/active")
        assert st == 200 and h["content-type"] == "application/json"
        assert json.loads(body) == {"active": []}
        sim.set_active({"active": [{"job_id": "x", "status": "queued", "log_url": "/validate/x/log"}]})
        assert json.loads(sim.request("GET", "/validate/active")[2])["active"][0]["job_id"] == "x"
        sim.set_active(b"garbage", status=503)
        assert sim.request("GET", "/validate/active")[:3:2] == (503, b"garbage")
        assert sim.request("GET", "/nope")[0] == 404
        assert sim.request("POST", DOC, b"{}")[0] == 405
    one = json.dumps({"active": [{"job_id": "a", "status": "running", "log_url": "/validate/a/log"}]})
    with simlib.start_api(tmp_path, active=one) as sim:
        assert json.loads(sim.request("GET", "/validate/active")[2]) == json.loads(one)


def active_mode(sim, mode, jobs=None):
    body = {"mode": mode}
    if jobs is not None:
        body["jobs"] = jobs
    return simlib.http_request(sim.url, "POST", "/_sim/active-mode", json.dumps(body).encode())


def test_validate_active_modes(api):
    assert active_mode(api, "busy", 2)[0] == 200
    assert json.loads(api.request("GET", "/validate/active")[2]) == {"active": [
        {"job_id": "job-1", "status": "running", "log_url": "/validate/job-1/log"},
        {"job_id": "job-2", "status": "running", "log_url": "/validate/job-2/log"}]}
    assert active_mode(api, "busy", [{"job_id": "q", "status": "queued"}])[0] == 200
    assert json.loads(api.request("GET", "/validate/active")[2])["active"] == [
        {"job_id": "q", "status": "queued", "log_url": "/validate/q/log"}]
    # alphacore lists only queued or running jobs
    assert active_mode(api, "busy", [{"job_id": "q", "status": "done"}])[0] == 400
    assert active_mode(api, "idle")[0] == 200
    assert json.loads(api.request("GET", "/validate/active")[2]) == {"active": []}
    assert active_mode(api, "malformed")[0] == 200
    assert json.loads(api.request("GET", "/validate/active")[2]) == {"active_jobs": 1}
    assert active_mode(api, "unreachable")[0] == 200
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        api.request("GET", "/validate/active")
    assert api.get_doc()[0] == 200             # only the gate is away
    assert active_mode(api, "bogus")[0] == 400
    assert active_mode(api, "idle")[0] == 200
    assert api.request("GET", "/validate/active")[0] == 200
    api.control("reset", {})
    assert json.loads(api.request("GET", "/validate/active")[2]) == {"active": []}


def test_literal_validators(api):
    """Hostile validators are sent byte for byte (issue 9 defect 5)."""
    st = simlib.http_request(api.url, "POST", "/_sim/validators",
                             json.dumps({"etag": '"a\x01b"', "last_modified": "x" * 1000}).encode())[0]
    assert st == 200
    _, h, _ = api.get_doc()
    assert h["etag"] == '"a\x01b"' and h["last-modified"] == "x" * 1000
    simlib.http_request(api.url, "POST", "/_sim/validators", b"{}")
    _, h, _ = api.get_doc()
    assert h["etag"] == api.state()["etag"]


def test_head(api):
    st, h, body = api.request("HEAD", DOC)
    assert st == 200 and body == b"" and int(h["content-length"]) > 0


def test_faults(api):
    api.fault(DOC, "http500")
    st, _, _ = api.get_doc()
    assert st == 500
    api.fault(DOC, "http500", status=502, call=3)      # the 3rd request overall
    assert api.get_doc()[0] == 200
    assert api.get_doc()[0] == 502
    api.fault(DOC, "drop")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        api.get_doc()
    api.fault(DOC, "slow", seconds=0.4)
    t0 = time.monotonic()
    st, _, body = api.get_doc()
    assert st == 200 and json.loads(body) and time.monotonic() - t0 >= 0.35
    api.fault(DOC, "oversize", size=3 * 1024 * 1024)
    st, _, body = api.get_doc()
    assert len(body) == 3 * 1024 * 1024
    api.fault(DOC, "malformed")
    with pytest.raises(ValueError):
        json.loads(api.get_doc()[2])
    api.fault("/validate/active", "error", message="nope")
    st, _, body = api.request("GET", "/validate/active")
    assert st == 400 and json.loads(body) == {"error": "nope"}
    api.control("status", {"status": 503})
    assert api.get_doc()[0] == 503
    api.control("status", {"status": 200})
    assert api.get_doc()[0] == 200
    faults = [r["fault"] for r in api.requests(DOC)]
    assert faults[:7] == ["http500", None, "http500", "drop", "slow", "oversize", "malformed"]


def test_hang_and_release(api):
    api.fault(DOC, "hang")
    box = {}

    def run():
        try:
            box["r"] = api.get_doc(timeout=20)
        except Exception as e:          # noqa: BLE001
            box["e"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    api.wait_calls(DOC, state="blocked", timeout=5)
    assert api.get_doc()[0] == 200            # served meanwhile
    assert api.release(DOC) == 1
    t.join(10)
    assert isinstance(box.get("e"), (http.client.RemoteDisconnected, ConnectionError))
    api.fault(DOC, "hang", seconds=0.2)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        api.get_doc()


def test_hold(api):
    api.fault(DOC, "hold")
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("r", api.get_doc(timeout=20)), daemon=True)
    t.start()
    api.wait_calls(DOC, state="blocked", timeout=5)
    api.set_doc(b'{"changed":true}')              # the held request sees the new doc
    api.release()
    t.join(10)
    assert box["r"][0] == 200 and box["r"][2] == b'{"changed":true}'
