"""Test helpers for the simulators: start one as a subprocess, talk to it, stop it.

    import os, sys
    sys.path.insert(0, os.path.join(os.environ.get("PLATFORM_SOURCE_DIR",
                    os.path.join(os.path.dirname(__file__), "..", "..")), "tests", "sim"))
    import simlib

    with simlib.start_vmm(tmp_path, shutdown_seconds=0.2) as vmm:
        vm_id = vmm.call("CreateVm", {...})["id"]

Also usable as pytest fixtures: `from simlib import vmm, api` (each yields a fresh
simulator in the test's tmp_path and stops it on teardown, also on failure).
Only the standard library (plus python3-cryptography for encrypt_env).
"""

import hashlib
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

SIM_DIR = os.path.dirname(os.path.abspath(__file__))
PYTHON = "/usr/bin/python3"
READY_TIMEOUT = 10.0


class SimError(Exception):
    pass


class PrpcError(Exception):
    def __init__(self, status, message, body):
        super().__init__("HTTP %d: %s" % (status, message))
        self.status = status
        self.message = message
        self.body = body


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def connect(url, timeout=10.0):
    if url.startswith("unix:"):
        return UnixHTTPConnection(url[len("unix:"):], timeout)
    u = urllib.parse.urlsplit(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


def http_request(url, method, path, body=None, headers=None, timeout=10.0):
    """One request on a fresh connection. Returns (status, headers dict, bytes)."""
    conn = connect(url, timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        hdrs = dict(headers or {})
        if body is not None and "Content-Type" not in hdrs:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        conn.close()


class Sim:
    """A running simulator process."""

    def __init__(self, proc, url, workdir, stderr_path):
        self.proc = proc
        self.pid = proc.pid
        self.url = url
        self.workdir = workdir
        self.stderr_path = stderr_path

    # ---- plumbing ---------------------------------------------------------
    def request(self, method, path, body=None, headers=None, timeout=10.0):
        return http_request(self.url, method, path, body, headers, timeout)

    def control(self, path, body=None, method=None, timeout=30.0):
        m = method or ("GET" if body is None else "POST")
        st, _, data = self.request(m, "/_sim/" + path.lstrip("/"), body, timeout=timeout)
        if st != 200:
            raise SimError("control %s: HTTP %d %s" % (path, st, data[:200]))
        return json.loads(data)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "short_dir", None):
            shutil.rmtree(self.short_dir, ignore_errors=True)
            self.short_dir = None
        if getattr(self, "owned_dir", None):
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            self.owned_dir = None

    def stderr(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- call log and faults (both simulators) ----------------------------
    def calls(self, method=None):
        q = "?method=" + urllib.parse.quote(method) if method else ""
        return self.control("calls" + q)["calls"]

    def reset_calls(self):
        return self.control("reset-calls", {})

    def reset(self):
        """Everything back to the command line's state: no VMs, no faults,
        empty log, blocked calls released. Lets a module share one process."""
        return self.control("reset", {})

    def fault(self, method, kind, **kw):
        """kind: error http500 hang hold drop slow oversize malformed.
        kw: call=N (Nth call of method, default next), times=K (0 = forever),
        message, status, seconds, after=True (run the method, then fault), size."""
        spec = dict(kw, method=method, kind=kind)
        return self.control("fault", spec)

    def clear_faults(self):
        return self.control("clear-faults", {})

    def release(self, method=None, seq=None):
        spec = {}
        if method is not None:
            spec["method"] = method
        if seq is not None:
            spec["seq"] = seq
        return self.control("release", spec)["released"]

    def wait_calls(self, method=None, count=1, state="received", timeout=10.0, since_seq=0):
        """Blocks (server side) until `count` calls of `method` are in `state`
        (received | blocked | done). Raises on timeout."""
        spec = {"count": count, "state": state, "timeout": timeout, "since_seq": since_seq}
        if method is not None:
            spec["method"] = method
        r = self.control("wait", spec, timeout=timeout + 10)
        if not r["ok"]:
            raise SimError("timeout waiting for %d %s call(s) of %s (have %d)"
                           % (count, state, method, r["count"]))
        return r["count"]


class VmmSim(Sim):
    token = None

    def prpc(self, method, body=None, http="POST", query=None, token=None, timeout=10.0):
        """Raw prpc call: returns (status, decoded JSON or raw bytes)."""
        path = "/prpc/%s?json" % method
        if query:
            path += "&" + urllib.parse.urlencode(query, doseq=True)
        hdrs = {}
        tok = token if token is not None else self.token
        if tok:
            hdrs["Authorization"] = "Bearer " + tok
        raw = None if body is None else json.dumps(body).encode()
        st, _, data = self.request(http, path, raw, hdrs, timeout)
        try:
            return st, json.loads(data)
        except ValueError:
            return st, data

    def call(self, method, body=None, **kw):
        """prpc call that raises PrpcError unless HTTP 200."""
        st, res = self.prpc(method, body, **kw)
        if st != 200:
            msg = res.get("error") if isinstance(res, dict) else res
            raise PrpcError(st, msg, res)
        return res

    def vms(self):
        return self.control("vms")["vms"]

    def vm(self, vm_id):
        return self.control("vm?id=" + urllib.parse.quote(vm_id))

    def set_vm(self, vm_id, **kw):
        """status=running|exited|stopping|stopped|removing (forced through the
        `started` flag and the process: exited = a crash, started kept), seconds
        (stopping: the process ends after it; removing: gone after it), started,
        boot_error, shutdown_seconds, remove_seconds."""
        return self.control("vm", dict(kw, id=vm_id))

    def config(self, **kw):
        """version, rev, shutdown_seconds, stop_seconds, remove_seconds, token,
        kms, kms_url, kms_urls, kms_reply (full|legacy|unsigned), kms_bad_signature,
        kms_signer_key, kms_timestamp_offset, kms_signature_override,
        kms_signature_v1_override, resources, images, port_mapping_enabled,
        port_address, port_ranges, auto_restart_seconds (negative or None: off),
        auto_restart_max_retries, guest_shutdown_notify (False: the fault),
        app_stop_seconds."""
        return self.control("config", kw if kw else None, method="POST" if kw else "GET")

    def kms_key(self, app_id):
        return self.control("kms-key?app_id=" + app_id)

    def status_of(self, vm_id):
        r = self.call("GetInfo", {"id": vm_id})
        return r["info"]["status"] if r["found"] else None

    def wait_status(self, vm_id, status, timeout=10.0):
        """Polls GetInfo until the VM has `status` (None = gone)."""
        return wait_until(lambda: self.status_of(vm_id) == status, timeout,
                          "VM %s to be %s" % (vm_id, status))


class ApiSim(Sim):
    def get_doc(self, headers=None, timeout=10.0):
        return self.request("GET", "/config/compose/validator_vm", None, headers, timeout)

    def set_doc(self, data, etag=True, last_modified=None, last_modified_header=True,
                etag_value=None):
        if isinstance(data, (dict, list)):
            data = json.dumps(data, indent=2).encode()
        q = {"etag": "1" if etag else "0",
             "last_modified_header": "1" if last_modified_header else "0"}
        if last_modified is not None:
            q["last_modified"] = str(last_modified)
        if etag_value:
            q["etag_value"] = etag_value
        st, _, body = self.request("POST", "/_sim/doc?" + urllib.parse.urlencode(q), data)
        if st != 200:
            raise SimError("set_doc: HTTP %d" % st)
        return json.loads(body)

    def patch_doc(self, **fields):
        return self.control("doc-json", fields)

    def state(self):
        return self.control("state")

    def requests(self, path=None):
        reqs = self.control("requests")["requests"]
        return [r for r in reqs if path is None or r["method"] == path]

    def set_active(self, obj, status=200):
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        st, _, body = self.request("POST", "/_sim/active?status=%d" % status, data)
        if st != 200:
            raise SimError("set_active: HTTP %d" % st)


# ---- starting ----------------------------------------------------------------

def _start(script, cls, workdir, unix, extra):
    owned = workdir is None
    workdir = str(workdir) if workdir is not None else tempfile.mkdtemp(prefix="sim-")
    name = os.path.splitext(script)[0]
    listen = "tcp:127.0.0.1:0"
    short_dir = None
    if unix:
        sock = os.path.join(workdir, name + ".sock")
        if len(sock) > 100:             # sun_path holds 108 bytes
            short_dir = tempfile.mkdtemp(prefix="sim")
            sock = os.path.join(short_dir, name + ".sock")
        listen = "unix:" + sock
    stderr_path = os.path.join(workdir, name + ".stderr")
    rfd, wfd = os.pipe()
    argv = [PYTHON, os.path.join(SIM_DIR, script), "--listen", listen,
            "--ready-fd", str(wfd)] + extra
    try:
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err,
                                    stderr=err, pass_fds=(wfd,), cwd=workdir)
    finally:
        os.close(wfd)
    try:
        line = b""
        deadline = time.monotonic() + READY_TIMEOUT
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([rfd], [], [], left)[0]:
                break
            chunk = os.read(rfd, 4096)
            if not chunk:
                break
            line += chunk
    finally:
        os.close(rfd)
    sim = cls(proc, line.decode().strip(), workdir, stderr_path)
    sim.short_dir = short_dir
    sim.owned_dir = workdir if owned else None
    if not line.endswith(b"\n"):
        sim.stop()
        raise SimError("%s did not become ready (exit %s): %s"
                       % (script, proc.returncode, sim.stderr()[-2000:]))
    return sim


def _opts(kw):
    out = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif v is False or v is None:
            continue
        elif isinstance(v, (list, tuple)):
            for x in v:
                out += [flag, str(x)]
        else:
            out += [flag, str(v)]
    return out


def start_vmm(workdir=None, unix=False, **opts):
    """opts map to CLI flags: version="0.5.6", token="t", no_kms=True,
    shutdown_seconds=0.2, remove_seconds=0.2, kms_seed="s", image=[...],
    auto_restart_seconds=5 (default; -1 or no_auto_restart=True: off),
    kms_reply="legacy", port_address="10.0.0.1", port_range=["tcp:1-20000"],
    no_port_mapping=True, no_guest_shutdown_notify=True (the fault: ShutdownVm
    ends exited), app_stop_seconds=1, kms_signer_key="11"*32, stop_seconds=0.5, ..."""
    sim = _start("vmm_sim.py", VmmSim, workdir, unix, _opts(opts))
    sim.token = opts.get("token")
    return sim


def start_api(workdir=None, unix=False, **opts):
    """opts: doc="/path/file", active='{"active": []}'."""
    return _start("api_sim.py", ApiSim, workdir, unix, _opts(opts))


# ---- helpers -------------------------------------------------------------------

def wait_until(pred, timeout=10.0, what="condition", interval=0.01):
    """Polls pred() until true; raises SimError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise SimError("timeout waiting for " + what)
        time.sleep(interval)


def compose_hash(compose_file):
    return hashlib.sha256(compose_file.encode()).hexdigest()


def app_id_of(compose_file):
    return compose_hash(compose_file)[:40]


def kms_private_key(seed, app_id):
    """The simulator's KMS key: sha256(seed || app_id as 40 lowercase hex chars)."""
    a = app_id.lower()
    a = a[2:] if a.startswith("0x") else a
    return hashlib.sha256(seed.encode() + a.encode()).digest()


DEFAULT_KMS_SEED = "platform-launcher-sim"


def env_plaintext(env):
    """{"env":[{"key":K,"value":V},...]} compact; env is a dict or (k, v) pairs."""
    items = env.items() if isinstance(env, dict) else env
    return json.dumps({"env": [{"key": k, "value": v} for k, v in items]},
                      separators=(",", ":"), ensure_ascii=False).encode()


def encrypt_env(public_key_hex, env, eph_private=None, iv=None):
    """dstack env encryption (dstack.md section 3). Returns lowercase hex.
    env: dict, list of pairs, or raw plaintext bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    pt = env if isinstance(env, bytes) else env_plaintext(env)
    sk = X25519PrivateKey.from_private_bytes(eph_private) if eph_private else X25519PrivateKey.generate()
    eph_pk = sk.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    shared = sk.exchange(X25519PublicKey.from_public_bytes(bytes.fromhex(public_key_hex)))
    iv = iv if iv is not None else os.urandom(12)
    return (eph_pk + iv + AESGCM(shared).encrypt(iv, pt, None)).hex()


def app_compose(allowed_envs=("DSTACK_VMM_URL", "HOTKEY_PASSPHRASE", "VALIDATOR_BASE_URL"),
                docker_compose='services:\n  app:\n    image: "nginx:latest"\n', **over):
    """An app-compose.json text like Platform Network builds it (dstack.md section 4)."""
    d = {"allowed_envs": sorted(set(allowed_envs)), "docker_compose_file": docker_compose,
         "gateway_enabled": True, "key_provider_id": "", "kms_enabled": True,
         "local_key_provider_enabled": False, "manifest_version": 2, "name": "validator_vm",
         "no_instance_id": False, "public_logs": True, "public_sysinfo": True,
         "public_tcbinfo": True, "runner": "docker-compose", "secure_time": False}
    d.update(over)
    return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


try:
    import pytest

    # One simulator process per test module, reset before each test. A test file
    # imports both names: `from simlib import vmm, vmm_process`.
    @pytest.fixture(scope="module")
    def vmm_process(tmp_path_factory):
        sim = start_vmm(tmp_path_factory.mktemp("vmm"), shutdown_seconds=0.2,
                        remove_seconds=0.2)
        try:
            yield sim
        finally:
            sim.stop()

    @pytest.fixture
    def vmm(vmm_process):
        vmm_process.reset()
        vmm_process.token = None
        return vmm_process

    @pytest.fixture(scope="module")
    def api_process(tmp_path_factory):
        sim = start_api(tmp_path_factory.mktemp("api"))
        try:
            yield sim
        finally:
            sim.stop()

    @pytest.fixture
    def api(api_process):
        api_process.reset()
        return api_process
except ImportError:     # pragma: no cover - simlib is usable without pytest
    pass

if __name__ == "__main__":
    sys.exit("simlib is a library; see tests/sim/README.md")
