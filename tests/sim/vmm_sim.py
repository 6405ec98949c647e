#!/usr/bin/python3
"""dstack VMM simulator (prpc over HTTP), faithful to design/dstack.md sections 1-3.

Also emulates the KMS (one X25519 key per app id, derived from a seed) and the
guest's env decryption, so a test can see what a VM would really boot with.
Control and inspection API under /_sim (see README.md).
"""

import argparse
import datetime
import hashlib
import json
import os
import re
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kmscrypto  # noqa: E402
import simcore  # noqa: E402
from simcore import Reply, json_reply  # noqa: E402

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402

BODY_LIMIT = 10 * 1024 * 1024
NAME_RE = re.compile(r"^[A-Za-z0-9\-_. @~!$^()]+$")
ENV_KEY_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
HEX_RE = re.compile(r"^[0-9a-fA-F]*$")
DEFAULT_SEED = "platform-launcher-sim"
DEFAULT_IMAGES = [
    {"name": "dstack-0.5.2", "description": "dstack 0.5.2", "version": "0.5.2", "is_dev": False},
    {"name": "dstack-0.5.5", "description": "dstack 0.5.5", "version": "0.5.5", "is_dev": False},
    {"name": "dstack-dev-0.5.5", "description": "dstack 0.5.5 (dev)", "version": "0.5.5", "is_dev": True},
]


# ---------------------------------------------------------------------------
# serde-like request decoding

class DecodeError(Exception):
    pass


PORT = {"protocol": "str", "host_port": "u32", "vm_port": "u32", "host_address": "str"}
VM_CONFIG = {
    "name": "str", "image": "str", "compose_file": "str", "vcpu": "u32",
    "memory": "u32", "disk_size": "u32", "ports": [PORT], "encrypted_env": "bytes",
    "app_id": "opt_str", "user_config": "str", "hugepages": "bool",
    "pin_numa": "bool", "gpus": "any", "kms_urls": ["str"],
    "gateway_urls": ["str"], "stopped": "bool",
}
ID = {"id": "str"}
STATUS = {"ids": ["str"], "brief": "bool", "keyword": "str", "page": "u32",
          "page_size": "u32"}
UPDATE = {"id": "str", "compose_file": "str", "encrypted_env": "bytes",
          "user_config": "str", "update_ports": "bool", "ports": [PORT],
          "vcpu": "opt_u32", "memory": "opt_u32", "disk_size": "opt_u32",
          "image": "opt_str", "gpus": "any", "kms_urls": ["str"],
          "update_kms_urls": "bool", "gateway_urls": ["str"],
          "update_gateway_urls": "bool"}
APP_ID = {"app_id": "bytes"}
EMPTY = {}

DEFAULTS = {"str": "", "u32": 0, "u64": 0, "bool": False, "bytes": "",
            "opt_str": None, "opt_u32": None, "any": None}
EXPECT = {"str": "a string", "u32": "u32", "u64": "u64", "bool": "a boolean",
          "bytes": "a hex string"}


def _decode_value(t, v, where, from_query):
    if isinstance(t, list):
        if from_query and not isinstance(v, list):
            v = [v]
        if not isinstance(v, list):
            raise DecodeError("invalid type: %s, expected a sequence at %s"
                              % (_typename(v), where))
        return [_decode_value(t[0], x, "%s[%d]" % (where, i), from_query)
                for i, x in enumerate(v)]
    if isinstance(t, dict):
        if not isinstance(v, dict):
            raise DecodeError("invalid type: %s, expected struct at %s"
                              % (_typename(v), where))
        return _decode_struct(t, v, where + ".", from_query)
    if t == "any":
        return v
    if t.startswith("opt_"):
        if v is None:
            return None
        t = t[4:]
    if from_query and isinstance(v, list):
        v = v[-1]
    if t in ("str", "bytes"):
        if not isinstance(v, str):
            raise DecodeError("invalid type: %s, expected %s at %s"
                              % (_typename(v), EXPECT[t], where))
        if t == "bytes":
            h = v[2:] if v.startswith("0x") else v
            if len(h) % 2 or not HEX_RE.match(h):
                raise DecodeError("invalid hex string at %s" % where)
            return h.lower()
        return v
    if t in ("u32", "u64"):
        if from_query and isinstance(v, str) and re.match(r"^-?[0-9]+$", v):
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, int):
            raise DecodeError("invalid type: %s, expected %s at %s"
                              % (_typename(v), EXPECT[t], where))
        if v < 0 or v >= (1 << (32 if t == "u32" else 64)):
            raise DecodeError("invalid value: integer `%d`, expected %s at %s"
                              % (v, t, where))
        return v
    if t == "bool":
        if from_query and v in ("true", "false", ""):
            v = v != "false"
        if not isinstance(v, bool):
            raise DecodeError("invalid type: %s, expected a boolean at %s"
                              % (_typename(v), where))
        return v
    raise AssertionError(t)


def _typename(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean `%s`" % ("true" if v else "false")
    if isinstance(v, int):
        return "integer `%d`" % v
    if isinstance(v, float):
        return "floating point `%s`" % v
    if isinstance(v, str):
        return "string %s" % json.dumps(v)
    if isinstance(v, list):
        return "sequence"
    return "map"


def _decode_struct(schema, obj, prefix, from_query):
    out = {}
    for name, t in schema.items():
        if name in obj:
            out[name] = _decode_value(t, obj[name], prefix + name, from_query)
        elif isinstance(t, list):
            out[name] = []
        elif isinstance(t, dict):
            out[name] = None
        else:
            out[name] = DEFAULTS[t]
    return out


def decode(schema, obj, from_query=False):
    if obj is None:
        obj = {}
    if not isinstance(obj, dict):
        raise DecodeError("invalid type: %s, expected struct" % _typename(obj))
    return _decode_struct(schema, obj, "", from_query)


# ---------------------------------------------------------------------------
# KMS and guest emulation

def kms_private_key(seed, app_id_hex):
    """sha256(seed || app_id) with app_id as 40 lowercase hex ASCII characters."""
    return hashlib.sha256(seed.encode() + app_id_hex.lower().encode()).digest()


def x25519_public(priv32):
    pk = X25519PrivateKey.from_private_bytes(priv32).public_key()
    return pk.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def decrypt_env(priv32, blob):
    """The guest's decryption: eph_pk(32) || iv(12) || ct || tag(16), key = shared."""
    if len(blob) < 32 + 12 + 16:
        raise ValueError("encrypted env too short")
    eph = X25519PublicKey.from_public_bytes(blob[:32])
    shared = X25519PrivateKey.from_private_bytes(priv32).exchange(eph)
    return AESGCM(shared).decrypt(blob[32:44], blob[44:], None)


def guest_env(plaintext, allowed):
    """Applies the guest's rules. Returns (env dict, dropped keys) or raises."""
    try:
        doc = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError("env is not valid JSON: %s" % e)
    if not isinstance(doc, dict) or not isinstance(doc.get("env"), list):
        raise ValueError("env JSON has no env list")
    entries = doc["env"]
    if len(entries) > 1024:
        raise ValueError("too many env entries: %d > 1024" % len(entries))
    total = 0
    env, dropped = {}, []
    for e in entries:
        if not isinstance(e, dict) or not isinstance(e.get("key"), str) \
                or not isinstance(e.get("value"), str):
            raise ValueError("malformed env entry")
        k, v = e["key"], e["value"]
        kb, vb = len(k.encode()), len(v.encode())
        total += kb + vb
        if kb > 255 or not ENV_KEY_RE.match(k):
            raise ValueError("invalid env key: %r" % k[:64])
        if vb > 128 * 1024:
            raise ValueError("env value too large for %s: %d bytes" % (k, vb))
        if total > 1024 * 1024:
            raise ValueError("env too large: more than 1 MiB")
        if k in allowed:
            env[k] = v
        else:
            dropped.append(k)
    return env, dropped


def parse_version(s):
    parts = re.findall(r"[0-9]+", s)[:3]
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


def humantime(seconds):
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    out = []
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= n:
            out.append("%d%s" % (seconds // n, unit))
            seconds %= n
    return " ".join(out)


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(
        timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------

class VM:
    def __init__(self, cfg, app_id):
        self.id = str(uuid.uuid4())
        self.cfg = cfg
        self.app_id = app_id
        self.status = "stopped"
        self.started = False
        self.boot_error = ""
        self.boot_progress = ""
        self.started_at = None
        self.exited_at = None
        self.exited_mono = None     # for auto-restart
        self.until = None           # monotonic deadline of stopping/removing
        self.shutdown_seconds = None  # per-VM override (None = global)
        self.remove_seconds = None
        self.env = None             # decrypted env of the last successful boot
        self.env_dropped = []
        self.boot_count = 0
        self.boot_compose_hash = None
        self.events = []
        self.created_wall = time.time()


class VmmSim:
    def __init__(self, args):
        self.core = simcore.SimCore(args.verbose)
        self.core.sim = self
        self.lock = self.core.lock
        self.args = args
        self.reset()

    def reset(self):
        """Back to the state given by the command line: no VMs, CLI settings."""
        args = self.args
        self.version = args.version
        self.rev = args.rev
        self.token = args.token
        self.kms = not args.no_kms
        self.seed = args.kms_seed
        self.signer = kmscrypto.private_from_seed(self.seed)
        self.kms_bad_signature = False
        self.shutdown_seconds = args.shutdown_seconds
        self.remove_seconds = args.remove_seconds
        self.heartbeat_seconds = args.log_heartbeat_seconds
        self.auto_restart = args.auto_restart_seconds
        self.port_mapping = not args.no_port_mapping
        self.images = [dict(i) for i in DEFAULT_IMAGES]
        if args.image:
            self.images = [{"name": n, "description": n,
                            "version": ".".join(re.findall(r"[0-9]+", n)[:3]),
                            "is_dev": "dev" in n} for n in args.image]
        self.resources = {"max_cvm_number": args.max_cvm, "max_allocable_vcpu": args.max_vcpu,
                          "max_allocable_memory_in_mb": args.max_memory}
        self.vms = {}
        self.order = []

    # ---- state ticking ----------------------------------------------------
    def tick(self):
        now = time.monotonic()
        for vid in list(self.order):
            vm = self.vms[vid]
            if (self.auto_restart >= 0 and vm.status == "exited" and vm.started
                    and vm.exited_mono is not None and now >= vm.exited_mono + self.auto_restart):
                self.boot(vm)
            if vm.until is not None and now >= vm.until:
                vm.until = None
                if vm.status == "stopping":
                    vm.status = "stopped"
                    vm.exited_at = time.time()
                    vm.events.append({"event": "shutdown", "body": "", "timestamp": int(time.time() * 1000)})
                elif vm.status == "removing":
                    self.remove_now(vm)

    def remove_now(self, vm):
        del self.vms[vm.id]
        self.order.remove(vm.id)

    def get_vm(self, vid):
        self.tick()
        vm = self.vms.get(vid)
        if vm is None:
            raise RpcError("VM not found: %s" % vid)
        return vm

    def ver(self):
        return parse_version(self.version)

    def boot(self, vm):
        vm.boot_count += 1
        vm.started = True
        vm.started_at = time.time()
        vm.exited_at = None
        vm.boot_error = ""
        vm.until = None
        err = None
        try:
            compose = json.loads(vm.cfg["compose_file"])
            allowed = set(compose.get("allowed_envs") or []) if isinstance(compose, dict) else set()
        except ValueError:
            allowed = set()
        blob = bytes.fromhex(vm.cfg["encrypted_env"])
        env, dropped = {}, []
        if blob:
            if not self.kms:
                err = "failed to get env encryption key: KMS is not configured"
            else:
                try:
                    pt = decrypt_env(kms_private_key(self.seed, vm.app_id), blob)
                except Exception as e:   # InvalidTag, bad point, short blob
                    err = "failed to decrypt env: %s" % (str(e) or type(e).__name__)
                else:
                    try:
                        env, dropped = guest_env(pt, allowed)
                    except ValueError as e:
                        err = "invalid env: %s" % e
        vm.boot_compose_hash = hashlib.sha256(vm.cfg["compose_file"].encode()).hexdigest()
        if err:
            vm.status = "exited"
            vm.boot_error = err
            vm.boot_progress = "failed"
            vm.exited_at = time.time()
            vm.exited_mono = time.monotonic()
            vm.env = None
            vm.env_dropped = []
        else:
            vm.status = "running"
            vm.boot_progress = "done"
            vm.env = env
            vm.env_dropped = dropped
        vm.events.append({"event": "boot.progress", "body": vm.boot_progress,
                          "timestamp": int(time.time() * 1000)})
        vm.events = vm.events[-20:]

    def info(self, vm, brief=False):
        img = next((i for i in self.images if i["name"] == vm.cfg["image"]), None)
        running = vm.status in ("running", "stopping")
        d = {
            "id": vm.id, "name": vm.cfg["name"], "status": vm.status,
            "uptime": humantime(time.time() - vm.started_at) if running and vm.started_at else "",
            "app_url": "https://%s-8090.sim.dstack.invalid" % vm.app_id if running else None,
            "app_id": vm.app_id,
            "instance_id": hashlib.sha256(vm.id.encode()).hexdigest()[:40] if vm.boot_count else None,
            "configuration": None if brief else dict(vm.cfg, app_id=vm.app_id),
            "exited_at": rfc3339(vm.exited_at) if vm.exited_at else None,
            "boot_progress": vm.boot_progress,
            "boot_error": vm.boot_error,
            "shutdown_progress": "stopping" if vm.status == "stopping" else "",
            "image_version": img["version"] if img else "",
        }
        if self.ver() >= (0, 5, 6):
            d["events"] = [] if brief else list(vm.events)
        return d

    # ---- prpc methods -----------------------------------------------------
    def m_Status(self, req):
        self.tick()
        vms = [self.vms[i] for i in self.order]
        if req["ids"]:
            vms = [v for v in vms if v.id in req["ids"]]
        kw = req["keyword"]
        if kw:
            vms = [v for v in vms if kw in v.cfg["name"] or kw in v.id
                   or kw in v.app_id or kw in v.cfg["image"]]
        total = len(vms)
        if req["page"] > 0 and req["page_size"] > 0:
            start = (req["page"] - 1) * req["page_size"]
            vms = vms[start:start + req["page_size"]]
        return {"vms": [self.info(v, req["brief"]) for v in vms],
                "port_mapping_enabled": self.port_mapping, "total": total}

    def m_GetInfo(self, req):
        self.tick()
        vm = self.vms.get(req["id"])
        if vm is None:
            return {"found": False, "info": None}
        return {"found": True, "info": self.info(vm)}

    def validate_config(self, cfg):
        if not cfg["name"] or not NAME_RE.match(cfg["name"]):
            raise RpcError("Invalid VM name: %r" % cfg["name"])
        if not any(i["name"] == cfg["image"] for i in self.images):
            raise RpcError("Image not found: %s" % cfg["image"])
        try:
            json.loads(cfg["compose_file"])
        except ValueError as e:
            raise RpcError("Invalid compose file: %s" % e)
        if cfg["vcpu"] == 0 or cfg["vcpu"] > self.resources["max_allocable_vcpu"]:
            raise RpcError("Invalid vcpu: %d" % cfg["vcpu"])
        if cfg["memory"] == 0 or cfg["memory"] > self.resources["max_allocable_memory_in_mb"]:
            raise RpcError("Invalid memory: %d" % cfg["memory"])
        for p in cfg["ports"]:
            if p["protocol"] not in ("tcp", "udp"):
                raise RpcError("Invalid protocol: %r" % p["protocol"])

    def m_CreateVm(self, req):
        self.tick()
        self.validate_config(req)
        if len(self.vms) >= self.resources["max_cvm_number"]:
            raise RpcError("Too many VMs: the maximum is %d" % self.resources["max_cvm_number"])
        if req["app_id"] is None:
            app_id = hashlib.sha256(req["compose_file"].encode()).hexdigest()[:40]
        else:
            a = req["app_id"]
            a = a[2:] if a.startswith("0x") else a
            if len(a) != 40 or not HEX_RE.match(a):
                raise RpcError("Invalid app_id: %r" % req["app_id"])
            app_id = a.lower()
        cfg = dict(req)
        cfg.pop("app_id")
        vm = VM(cfg, app_id)
        self.vms[vm.id] = vm
        self.order.append(vm.id)
        if not req["stopped"]:
            self.boot(vm)
        return {"id": vm.id}

    def m_StartVm(self, req):
        vm = self.get_vm(req["id"])
        if vm.status in ("running", "stopping"):
            raise RpcError("VM is already running")
        if vm.status == "removing":
            raise RpcError("VM is being removed")
        self.boot(vm)
        return None

    def m_ShutdownVm(self, req):
        vm = self.get_vm(req["id"])
        if vm.status != "running":
            raise RpcError("VM is not running")
        secs = vm.shutdown_seconds if vm.shutdown_seconds is not None else self.shutdown_seconds
        vm.status = "stopping"
        vm.started = False
        vm.until = None if secs < 0 else time.monotonic() + secs
        self.tick()
        return None

    def m_StopVm(self, req):
        vm = self.get_vm(req["id"])
        if vm.status == "removing":
            raise RpcError("VM is being removed")
        if vm.status in ("running", "stopping"):
            vm.exited_at = time.time()
        vm.status = "stopped"
        vm.started = False
        vm.until = None
        return None

    def m_RemoveVm(self, req):
        vm = self.get_vm(req["id"])
        if self.ver() <= (0, 5, 6):
            if vm.status in ("running", "stopping"):
                raise RpcError("VM is running, stop it first")
            self.remove_now(vm)
            return None
        if vm.status == "removing":
            return None
        secs = vm.remove_seconds if vm.remove_seconds is not None else self.remove_seconds
        vm.status = "removing"
        vm.started = False
        vm.until = time.monotonic() + max(secs, 0)
        self.tick()
        return None

    def m_UpdateVm(self, req):
        vm = self.get_vm(req["id"])
        running = vm.status in ("running", "stopping")
        res = {k: req[k] for k in ("vcpu", "memory", "disk_size", "image") if req[k] is not None}
        if res and running:
            raise RpcError("VM is running, stop it first to change resources")
        new = dict(vm.cfg)
        if req["compose_file"]:
            try:
                json.loads(req["compose_file"])
            except ValueError as e:
                raise RpcError("Invalid compose file: %s" % e)
            new["compose_file"] = req["compose_file"]
        if req["encrypted_env"]:
            new["encrypted_env"] = req["encrypted_env"]
        if req["user_config"]:
            new["user_config"] = req["user_config"]
        if req["update_ports"]:
            for p in req["ports"]:
                if p["protocol"] not in ("tcp", "udp"):
                    raise RpcError("Invalid protocol: %r" % p["protocol"])
            new["ports"] = req["ports"]
        if req.get("update_kms_urls"):
            new["kms_urls"] = req["kms_urls"]
        if req.get("update_gateway_urls"):
            new["gateway_urls"] = req["gateway_urls"]
        new.update(res)
        if "image" in res and not any(i["name"] == res["image"] for i in self.images):
            raise RpcError("Image not found: %s" % res["image"])
        vm.cfg = new
        return {"id": vm.app_id}

    m_UpgradeApp = m_UpdateVm

    def m_GetComposeHash(self, req):
        return {"hash": hashlib.sha256(req["compose_file"].encode()).hexdigest()}

    def m_GetAppEnvEncryptPubKey(self, req):
        if not self.kms:
            raise RpcError("KMS is not configured")
        if len(req["app_id"]) != 40:
            raise RpcError("Invalid app_id: expected 20 bytes")
        priv = kms_private_key(self.seed, req["app_id"])
        pub = x25519_public(priv)
        app_id = bytes.fromhex(req["app_id"])
        ts = int(time.time())
        sig = kmscrypto.sign_recoverable(self.signer, kmscrypto.pubkey_message(app_id, pub))
        sig1 = kmscrypto.sign_recoverable(self.signer, kmscrypto.pubkey_message(app_id, pub, ts))
        if self.kms_bad_signature:          # signed by a key nobody trusts
            other = kmscrypto.private_from_seed(self.seed + ":untrusted")
            sig = kmscrypto.sign_recoverable(other, kmscrypto.pubkey_message(app_id, pub))
            sig1 = kmscrypto.sign_recoverable(other, kmscrypto.pubkey_message(app_id, pub, ts))
        return {"public_key": pub.hex(), "signature": sig.hex(), "timestamp": ts,
                "signature_v1": sig1.hex()}

    def m_Version(self, req):
        return {"version": self.version, "rev": self.rev}

    def m_GetMeta(self, req):
        return {"kms": {"url": "http://127.0.0.1:1/kms" if self.kms else "",
                        "urls": ["http://127.0.0.1:1/kms"] if self.kms else []},
                "gateway": {"url": "http://127.0.0.1:1/gateway", "urls": ["http://127.0.0.1:1/gateway"],
                            "base_domain": "sim.dstack.invalid", "port": 443, "agent_port": 8090},
                "resources": dict(self.resources)}

    def m_ListImages(self, req):
        return {"images": [dict(i) for i in self.images]}

    SCHEMAS = {"Status": STATUS, "GetInfo": ID, "CreateVm": VM_CONFIG, "StartVm": ID,
               "ShutdownVm": ID, "StopVm": ID, "RemoveVm": ID, "UpdateVm": UPDATE,
               "UpgradeApp": UPDATE, "GetComposeHash": VM_CONFIG,
               "GetAppEnvEncryptPubKey": APP_ID, "Version": EMPTY, "GetMeta": EMPTY,
               "ListImages": EMPTY}

    def method_exists(self, name):
        if name not in self.SCHEMAS:
            return False
        if name == "UpdateVm" and self.ver() < (0, 5, 6):
            return False
        return True

    # ---- HTTP -------------------------------------------------------------
    def handle(self, h):
        path, query, q = simcore.split_path(h)
        raw, err = simcore.read_body(h, BODY_LIMIT)
        if path.startswith("/_sim/"):
            if err:
                return simcore.send_reply(h, err)
            try:
                body = simcore.parse_json_body(raw)
            except ValueError as e:
                return simcore.send_reply(h, json_reply({"error": str(e)}, 400))
            r = self.control(h, path, simcore.flat_query(q), body)
            if r is None:
                r = json_reply({"error": "no such control endpoint: %s" % path}, 404)
            return simcore.send_reply(h, r)

        if path.startswith("/prpc/"):
            key = path[len("/prpc/"):]
        elif path == "/logs":
            key = "logs"
        else:
            key = path
        try:
            body_obj = json.loads(raw) if raw.strip() else None
        except ValueError:
            body_obj = raw.decode("utf-8", "replace")
        rec, fault = self.core.record_call(key, h, body_obj, len(raw))
        if err:
            self.core.finish(rec, err.status, len(err.body))
            return simcore.send_reply(h, err)
        if key == "logs":
            return simcore.serve_with_fault(self.core, h, rec, fault,
                                            lambda: self.logs(h, q, rec))
        simcore.serve_with_fault(self.core, h, rec, fault,
                                 lambda: self.prpc(h, path, key, q, raw))

    def authorized(self, h):
        if not self.token:
            return True
        return h.headers.get("Authorization", "") == "Bearer " + self.token

    def prpc(self, h, path, method, q, raw):
        if not self.authorized(h):
            return json_reply({"error": "Unauthorized"}, 401, pretty=True)
        if not path.startswith("/prpc/") or not self.method_exists(method):
            return json_reply({"error": "Service not found: %s" % method}, 400, pretty=True)
        if "json" not in q:
            return json_reply({"error": "simulator speaks only ?json (no protobuf)"}, 400, pretty=True)
        try:
            if h.command == "GET" and not raw.strip():
                fields = {k: v for k, v in q.items() if k != "json"}
                req = decode(self.SCHEMAS[method], fields, from_query=True)
            else:
                try:
                    obj = json.loads(raw) if raw.strip() else None
                except ValueError as e:
                    raise DecodeError(str(e))
                req = decode(self.SCHEMAS[method], obj)
        except DecodeError as e:
            return json_reply({"error": str(e)}, 400, pretty=True)
        with self.lock:
            try:
                res = getattr(self, "m_" + method)(req)
            except RpcError as e:
                return json_reply({"error": str(e)}, 400, pretty=True)
        return json_reply(res)

    def log_lines(self, vm, ch):
        name = vm.cfg["name"]
        lines = ["[sim %s] %s: booting image %s" % (ch, name, vm.cfg["image"]),
                 "[sim %s] %s: app_id %s" % (ch, name, vm.app_id)]
        if vm.boot_error:
            lines.append("[sim %s] %s: boot failed: %s" % (ch, name, vm.boot_error))
        elif vm.boot_count:
            lines.append("[sim %s] %s: env keys %s" % (ch, name, ",".join(sorted(vm.env or {}))))
            lines.append("[sim %s] %s: boot done" % (ch, name))
        lines.append("[sim %s] %s: status %s" % (ch, name, vm.status))
        return lines

    def logs(self, h, q, rec):
        fq = simcore.flat_query(q)
        if not self.authorized(h):
            return Reply(401, "Unauthorized\n", "text/plain")
        ch = fq.get("ch", "serial")
        if ch not in ("serial", "stdout", "stderr"):
            return Reply(400, "invalid channel: %s\n" % ch, "text/plain")
        with self.lock:
            self.tick()
            vm = self.vms.get(fq.get("id", ""))
            if vm is None:
                return Reply(404, "VM not found\n", "text/plain")
            lines = self.log_lines(vm, ch)
        n = fq.get("lines", "")
        if n.isdigit():
            lines = lines[-int(n):] if int(n) else []
        ansi = fq.get("ansi", "false") == "true"
        if ansi:
            lines = ["\x1b[32m%s\x1b[0m" % ln for ln in lines]
        text = "".join(ln + "\n" for ln in lines)
        if fq.get("follow", "false") != "true":
            return Reply(200, text, "text/plain; charset=utf-8")
        # follow: chunked, heartbeat on silence, ends when the VM is gone/stopped
        h.send_response(200)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.close_connection = True

        def chunk(s):
            b = s.encode()
            return simcore._send_raw(h, b"%x\r\n%s\r\n" % (len(b), b))

        ok = chunk(text) if text else True
        vid = vm.id
        while ok:
            with self.lock:
                self.core.cond.wait(self.heartbeat_seconds)
                self.tick()
                vm = self.vms.get(vid)
                done = vm is None or vm.status in ("stopped", "exited")
            if done:
                break
            ok = chunk("[vmm heartbeat]\n")
        simcore._send_raw(h, b"0\r\n\r\n")
        h._sim_status = 200
        return None

    # ---- control API ------------------------------------------------------
    def control(self, h, path, q, body):
        r = self.core.control_common(h, path, q, body)
        if r is not None:
            return r
        body = body or {}
        with self.lock:
            self.tick()
            if path == "/_sim/vms" and h.command == "GET":
                return json_reply({"vms": [self.sim_vm(self.vms[i]) for i in self.order]})
            if path == "/_sim/vm" and h.command == "GET":
                vm = self.vms.get(q.get("id", ""))
                if vm is None:
                    return json_reply({"error": "VM not found"}, 404)
                return json_reply(self.sim_vm(vm))
            if path in ("/_sim/vm", "/_sim/vm-status") and h.command == "POST":
                vm = self.vms.get(body.get("id", ""))
                if vm is None:
                    return json_reply({"error": "VM not found"}, 404)
                st = body.get("status")
                if st is not None:
                    if st not in ("running", "exited", "stopping", "stopped", "removing"):
                        return json_reply({"error": "bad status %r" % st}, 400)
                    if st in ("exited", "stopped") and vm.status != st:
                        vm.exited_at = time.time()
                    if st == "running" and vm.status != "running":
                        vm.started_at = time.time()
                        vm.exited_at = None
                    vm.status = st
                    vm.until = body.get("seconds") and time.monotonic() + float(body["seconds"])
                    if st == "exited":
                        vm.started = True
                        vm.exited_mono = time.monotonic()
                if "boot_error" in body:
                    vm.boot_error = body["boot_error"]
                if "shutdown_seconds" in body:
                    vm.shutdown_seconds = body["shutdown_seconds"]
                if "remove_seconds" in body:
                    vm.remove_seconds = body["remove_seconds"]
                self.core.cond.notify_all()
                return json_reply(self.sim_vm(vm))
            if path == "/_sim/config" and h.command == "GET":
                return json_reply(self.sim_config())
            if path == "/_sim/config" and h.command == "POST":
                if "version" in body:
                    self.version = body["version"]
                if "rev" in body:
                    self.rev = body["rev"]
                if "shutdown_seconds" in body:
                    self.shutdown_seconds = float(body["shutdown_seconds"])
                if "remove_seconds" in body:
                    self.remove_seconds = float(body["remove_seconds"])
                if "token" in body:
                    self.token = body["token"] or None
                if "kms" in body:
                    self.kms = bool(body["kms"])
                if "kms_bad_signature" in body:
                    self.kms_bad_signature = bool(body["kms_bad_signature"])
                if "resources" in body:
                    self.resources.update(body["resources"])
                if "images" in body:
                    self.images = body["images"]
                if "port_mapping_enabled" in body:
                    self.port_mapping = bool(body["port_mapping_enabled"])
                if "auto_restart_seconds" in body:
                    self.auto_restart = float(body["auto_restart_seconds"])
                return json_reply(self.sim_config())
            if path == "/_sim/kms-key" and h.command == "GET":
                a = q.get("app_id", "").lower()
                a = a[2:] if a.startswith("0x") else a
                priv = kms_private_key(self.seed, a)
                return json_reply({"app_id": a, "private_key": priv.hex(),
                                   "public_key": x25519_public(priv).hex()})
        return None

    def sim_config(self):
        return {"version": self.version, "rev": self.rev,
                "shutdown_seconds": self.shutdown_seconds,
                "remove_seconds": self.remove_seconds, "token": self.token,
                "kms": self.kms, "kms_seed": self.seed,
                "kms_signer_public_key": kmscrypto.public_key(self.signer).hex(),
                "kms_signer_public_key_uncompressed": kmscrypto.public_key(self.signer, False).hex(),
                "kms_bad_signature": self.kms_bad_signature, "resources": self.resources,
                "images": self.images, "port_mapping_enabled": self.port_mapping,
                "auto_restart_seconds": self.auto_restart}

    def sim_vm(self, vm):
        d = self.info(vm)
        d.update({"started": vm.started, "env": vm.env, "env_dropped": vm.env_dropped,
                  "boot_count": vm.boot_count, "boot_compose_hash": vm.boot_compose_hash,
                  "shutdown_seconds": vm.shutdown_seconds, "remove_seconds": vm.remove_seconds})
        return d


class RpcError(Exception):
    pass


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="tcp:127.0.0.1:0",
                   help="tcp:127.0.0.1:PORT, tcp:[::1]:PORT or unix:/path/vmm.sock")
    p.add_argument("--ready-file", help="write the URL here (atomically) once listening")
    p.add_argument("--ready-fd", type=int, help="write the URL to this inherited fd")
    p.add_argument("--version", default="0.5.7", help="emulated VMM version")
    p.add_argument("--rev", default="sim")
    p.add_argument("--token", help="require Authorization: Bearer TOKEN")
    p.add_argument("--no-kms", action="store_true", help="emulate a VMM without KMS")
    p.add_argument("--kms-seed", default=DEFAULT_SEED,
                   help="KMS private key = sha256(seed || app_id hex)")
    p.add_argument("--shutdown-seconds", type=float, default=0.5,
                   help="time ShutdownVm stays 'stopping' (negative: forever)")
    p.add_argument("--remove-seconds", type=float, default=0.5,
                   help="time an async RemoveVm (>=0.5.7) stays 'removing'")
    p.add_argument("--log-heartbeat-seconds", type=float, default=60.0)
    p.add_argument("--auto-restart-seconds", type=float, default=-1.0,
                   help="[cvm.auto_restart]: restart an exited VM whose started flag "
                   "is set after this delay (negative: disabled)")
    p.add_argument("--image", action="append", help="image name (repeatable)")
    p.add_argument("--max-cvm", type=int, default=16)
    p.add_argument("--max-vcpu", type=int, default=64)
    p.add_argument("--max-memory", type=int, default=262144)
    p.add_argument("--no-port-mapping", action="store_true")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    simcore.run(VmmSim(args), args.listen, args.ready_file, args.ready_fd)


if __name__ == "__main__":
    main()
