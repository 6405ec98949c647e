#!/usr/bin/python3
"""dstack VMM simulator (prpc over HTTP), faithful to design/dstack.md sections 1-3.

Also emulates the KMS (one X25519 key per app id, derived from a seed) and the
guest's env decryption, so a test can see what a VM would really boot with.
Control and inspection API under /_sim (see README.md).
"""

import argparse
import hashlib
import ipaddress
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
ENV_KEY_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")    # fullmatch only
HEX_RE = re.compile(r"^[0-9a-fA-F]*$")
DEFAULT_SEED = "platform-launcher-sim"
DEFAULT_IMAGES = [
    {"name": "dstack-0.5.2", "description": "dstack 0.5.2", "version": "0.5.2", "is_dev": False},
    {"name": "dstack-0.5.5", "description": "dstack 0.5.5", "version": "0.5.5", "is_dev": False},
    {"name": "dstack-dev-0.5.5", "description": "dstack 0.5.5 (dev)", "version": "0.5.5", "is_dev": True},
]


def log_bytes(text):
    """A log's text as the bytes the VMM sends. dstack HEAD decodes each line
    lossily (vmm/src/main_routes.rs vm_logs: String::from_utf8_lossy) and, with
    ansi=false, strips escapes (strip_ansi_escapes); the simulator does neither,
    standing for a VMM that does not: a lone surrogate U+DC80..U+DCFF goes out
    as the byte it escapes (Python's surrogateescape)."""
    return text.encode("utf-8", "surrogateescape")


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
    """The guest's rules: v0.5.5 and HEAD dstack-util/src/parse_env_file.rs
    parse_env, with its messages. Returns (env dict, dropped keys) or raises."""
    try:
        doc = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ValueError("Failed to parse env: %s" % e)
    # serde: struct Data { env: Vec<Pair { key: String, value: String }> }
    if not isinstance(doc, dict) or not isinstance(doc.get("env"), list) or not all(
            isinstance(e, dict) and isinstance(e.get("key"), str) and isinstance(e.get("value"), str)
            for e in doc["env"]):
        raise ValueError("Failed to parse env: not {\"env\": [{\"key\": str, \"value\": str}]}")
    entries = doc["env"]
    if len(entries) > 1024:                 # MAX_ITEMS counts every entry
        raise ValueError("Too many environment variables: %d" % len(entries))
    total = 0
    env, dropped = {}, []
    for e in entries:
        k, v = e["key"], e["value"]
        # "Skipping unauthorized environment variable": before any rule, so an
        # unlisted key neither fails the boot nor counts toward the total
        if k not in allowed:
            dropped.append(k)
            continue
        kb, vb = len(k.encode()), len(v.encode())
        if kb > 255:
            raise ValueError("Environment variable name too long: %s" % k)
        if vb > 128 * 1024:
            raise ValueError("Environment variable value too long for key: %s" % k)
        # Rust regex `^[a-zA-Z_][a-zA-Z0-9_]*$`: `$` is the end of the text
        # (no multi-line mode), so a trailing "\n" does not match; Python's
        # `$` would match before it, hence fullmatch
        if not ENV_KEY_RE.fullmatch(k):
            raise ValueError("Invalid env key: %s" % k)
        total += kb + vb
        if total > 1024 * 1024:
            raise ValueError("Environment variables total size too large")
        env[k] = v
    return env, dropped


def content_type_is_json(h):
    mt = (h.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    return mt == "application/json"


def parse_version(s):
    parts = re.findall(r"[0-9]+", s)[:3]
    return tuple(int(p) for p in parts) + (0,) * (3 - len(parts))


def humantime(seconds):
    seconds = int(seconds)
    if seconds <= 0:
        return "0s"
    out = []
    # humantime::format_duration (truncated to seconds): "2days 1h 3m 4s"
    days, seconds = divmod(seconds, 86400)
    if days:
        out.append("%dday%s" % (days, "s" if days > 1 else ""))
    for unit, n in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= n:
            out.append("%d%s" % (seconds // n, unit))
            seconds %= n
    return " ".join(out)


# ---------------------------------------------------------------------------
# Sources cited below (Dstack-TEE/dstack): "v0.5.5" = tag v0.5.5, paths vmm/src/...;
# "HEAD" = the 2026-08 main branch (Cargo version 0.6.0), paths dstack/vmm/src/...
# Versions in between were checked where a behaviour changed (v0.5.6, v0.5.7, v0.5.11).

def chain(*msgs):
    """An anyhow error with context, as ra-rpc sends it: `format!("{err:?}")`
    (v0.5.5 ra-rpc/src/lib.rs dispatch_prpc) = the outer context, then
    "Caused by:" and the inner messages, one per line."""
    msgs = [m for m in msgs if m]
    if len(msgs) == 1:
        return msgs[0]
    if len(msgs) == 2:
        return "%s\n\nCaused by:\n    %s" % tuple(msgs)
    return "%s\n\nCaused by:\n%s" % (msgs[0], "\n".join(
        "    %d: %s" % (i, m) for i, m in enumerate(msgs[1:])))


def valid_label(name, ver):
    """validate_label() in main_service.rs. v0.5.5: every char alphanumeric (Rust
    char::is_alphanumeric, i.e. Unicode) or '-' '_'. v0.5.6 and later: ASCII
    alphanumerics and - _ . space @ ~ ! $ ^ ( ). Both accept the empty name."""
    if ver < (0, 5, 6):
        return all(c.isalnum() or c in "-_" for c in name)
    return all((c.isascii() and c.isalnum()) or c in "-_. @~!$^()" for c in name)


def parse_ip(s):
    """Rust `IpAddr::from_str` (std): dotted-quad IPv4 or RFC 4291 IPv6, no zone
    id, no brackets. Returns the text form Rust prints (`IpAddr`'s Display)."""
    if not s or "%" in s or s.strip() != s:
        raise ValueError("invalid IP address syntax")
    try:
        return str(ipaddress.ip_address(s))
    except ValueError:
        raise ValueError("invalid IP address syntax")


def rust_char(c):
    """Rust's `{:?}` of a char, as the hex crate's FromHexError prints it."""
    esc = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "'": "\\'", "\\": "\\\\", "\0": "\\0"}
    if c in esc:
        return "'%s'" % esc[c]
    if ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0:
        return "'\\u{%x}'" % ord(c)
    return "'%s'" % c


def check_app_compose(text):
    """serde_json::from_str::<AppCompose>() (v0.5.5 dstack-types/src/lib.rs):
    an object with manifest_version (u32), name and runner (strings); the other
    known fields are optional but typed. Returns the parsed object or raises
    ValueError with serde's wording (without line/column)."""
    try:
        d = json.loads(text)
    except ValueError as e:
        raise ValueError(str(e))
    if not isinstance(d, dict):
        raise ValueError("invalid type: %s, expected struct AppCompose" % _typename(d))
    for k in ("manifest_version", "name", "runner"):
        if k not in d:
            raise ValueError("missing field `%s`" % k)
    mv = d["manifest_version"]
    if isinstance(mv, bool) or not isinstance(mv, int) or not 0 <= mv < 1 << 32:
        raise ValueError("invalid type: %s, expected u32" % _typename(mv))
    for k in ("name", "runner"):
        if not isinstance(d[k], str):
            raise ValueError("invalid type: %s, expected a string" % _typename(d[k]))
    for k in ("public_logs", "public_sysinfo", "public_tcbinfo", "kms_enabled",
              "local_key_provider_enabled", "no_instance_id", "secure_time",
              "gateway_enabled", "tproxy_enabled"):
        if k in d and not isinstance(d[k], bool):
            raise ValueError("invalid type: %s, expected a boolean" % _typename(d[k]))
    for k in ("features", "allowed_envs"):
        if k in d and not (isinstance(d[k], list) and all(isinstance(x, str) for x in d[k])):
            raise ValueError("invalid type: %s, expected a sequence of strings" % _typename(d[k]))
    # key_provider_id: `#[serde(default, with = "hex_bytes")] Vec<u8>`
    # (serde_human_bytes, kvinwang/serde-human-bytes src/de.rs: hex::decode of
    # a string: even length, hex digits, no 0x prefix)
    if "key_provider_id" in d:
        kp = d["key_provider_id"]
        if not isinstance(kp, str):
            raise ValueError("invalid type: %s, expected a string" % _typename(kp))
        raw = kp.encode()                   # hex 0.4 FromHex: odd length first,
        if len(raw) % 2:                    # then each byte as a char
            raise ValueError("Odd number of digits")
        for i, b in enumerate(raw):
            if chr(b) not in "0123456789abcdefABCDEF":
                raise ValueError("Invalid character %s at position %d" % (rust_char(chr(b)), i))
    for k in ("docker_compose_file", "storage_fs"):
        if d.get(k) is not None and not isinstance(d[k], str):
            raise ValueError("invalid type: %s, expected a string" % _typename(d[k]))
    return d


class VM:
    """One VM as dstack keeps it: the manifest/config (`cfg`), the persisted
    `started` flag (v0.5.5 app/qemu.rs VmWorkDir::started/set_started) and the
    QEMU process under the supervisor (`running`). The status is derived from
    those two, never stored (see VmmSim.status)."""

    def __init__(self, cfg, app_id):
        self.id = str(uuid.uuid4())
        self.cfg = cfg
        self.app_id = app_id
        self.started = False
        self.running = False        # the QEMU process runs
        self.removing = False       # >= 0.5.7: RemoveVm in progress
        self.remove_at = None       # monotonic time the removal completes (None = never)
        self.poweroff_at = None     # monotonic time the running process exits (None = not scheduled)
        self.notify_at = None       # monotonic time the guest reports "powering off" (None = not scheduled)
        self.notify_lost = False    # that report does not reach the VMM (the injected fault)
        self.guest_notify = None    # per-VM override of VmmSim.guest_notify (None = global)
        self.proc_started_wall = None
        self.proc_stopped_wall = None
        self.exited_mono = None     # when the process last went away (auto-restart clock)
        self.proc_started_mono = None
        self.proc_stopped_mono = None
        self.restart_attempts = 0
        self.restart_exhausted = False
        self.boot_error = ""
        self.boot_progress = ""
        self.shutdown_progress = ""
        self.instance_id = None
        self.shutdown_seconds = None  # per-VM override (None = global)
        self.remove_seconds = None
        self.env = None             # decrypted env of the last successful boot
        self.env_dropped = []
        self.boot_count = 0
        self.auto_restart_count = 0
        self.boot_compose_hash = None
        self.events = []
        self.created_wall = time.time()
        self.log_extra = {"serial": [], "stdout": [], "stderr": []}  # /_sim/vm-log
        self.guest_sysinfo = None     # /_sim/guest-sysinfo: the figures (None: from cfg)
        self.guest_agent = True       # False: an older guest without the agent API


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
        # Two settings in vmm.toml (v0.5.5 config.rs): top-level `kms_url`, the
        # KMS the VMM itself asks for GetAppEnvEncryptPubKey (app.rs
        # kms_client), and `[cvm] kms_urls`, handed to the guests (app.rs
        # make_sys_config, unless the VM has its own) and reported by GetMeta.
        self.kms_url = "" if args.no_kms else args.kms_url
        self.kms_urls = [] if args.no_kms else list(args.kms_urls or [DEFAULT_KMS_URL])
        self.kms_reply = args.kms_reply
        self.seed = args.kms_seed
        self.signer = signer_key(args.kms_signer_key) if args.kms_signer_key else \
            kmscrypto.private_from_seed(self.seed)
        self.kms_bad_signature = False
        self.kms_timestamp_offset = 0
        self.kms_signature_override = None
        self.kms_signature_v1_override = None
        self.shutdown_seconds = args.shutdown_seconds
        self.stop_seconds = args.stop_seconds
        self.remove_seconds = args.remove_seconds
        self.heartbeat_seconds = args.log_heartbeat_seconds
        self.log_streams_open = getattr(self, "log_streams_open", 0)  # follow streams being served
        self.log_streams_opened = getattr(self, "log_streams_opened", 0)
        self.log_heartbeats = getattr(self, "log_heartbeats", 0)
        self.log_streams_gen = getattr(self, "log_streams_gen", 0)
        self.auto_restart = -1.0 if args.no_auto_restart else args.auto_restart_seconds
        self.auto_restart_max = args.auto_restart_max_retries
        self.guest_notify = not args.no_guest_shutdown_notify
        self.app_stop_seconds = args.app_stop_seconds
        self.port_mapping = not args.no_port_mapping
        self.port_address = args.port_address
        self.port_ranges = parse_ranges(args.port_range) if args.port_range else \
            [dict(r) for r in DEFAULT_PORT_RANGES]
        self.images = [dict(i) for i in DEFAULT_IMAGES]
        if args.image:
            self.images = [{"name": n, "description": n,
                            "version": ".".join(re.findall(r"[0-9]+", n)[:3]),
                            "is_dev": "dev" in n} for n in args.image]
        self.resources = {"max_cvm_number": args.max_cvm, "max_allocable_vcpu": args.max_vcpu,
                          "max_allocable_memory_in_mb": args.max_memory}
        self.vms = {}
        self.order = []

    def ver(self):
        return parse_version(self.version)

    # ---- derived status -----------------------------------------------------
    def status(self, vm):
        # HEAD app/vm_info.rs VmState::merged_info (v0.5.5 app/qemu.rs the same
        # without "removing"): removing first, then (started, process running).
        if vm.removing:
            return "removing"
        return {(True, True): "running", (True, False): "exited",
                (False, True): "stopping", (False, False): "stopped"}[(vm.started, vm.running)]

    # ---- the QEMU process ---------------------------------------------------
    def proc_exit(self, vm, when_mono=None):
        """The QEMU process ends (guest powered off, killed, or boot failed)."""
        if not vm.running:
            return
        now = time.monotonic()
        when_mono = now if when_mono is None else when_mono
        vm.running = False
        vm.poweroff_at = None
        vm.notify_at = None
        vm.proc_stopped_wall = time.time() - (now - when_mono)
        vm.proc_stopped_mono = when_mono
        vm.exited_mono = when_mono

    def tick(self):
        now = time.monotonic()
        for vid in list(self.order):
            vm = self.vms[vid]
            if vm.running and vm.notify_at is not None and now >= vm.notify_at:
                # the guest agent's "powering off", after its app stop
                vm.notify_at = None
                if not vm.notify_lost:
                    self.guest_event(vm, "shutdown.progress", "powering off")
            if vm.running and vm.poweroff_at is not None and now >= vm.poweroff_at:
                self.proc_exit(vm, vm.poweroff_at)
            if vm.removing:
                if vm.remove_at is not None and now >= vm.remove_at:
                    self.remove_now(vm)
                continue
            self.auto_restart_check(vm, now)

    def auto_restart_check(self, vm, now):
        # [cvm.auto_restart]: v0.5.5 app.rs try_restart_exited_vms (every
        # `interval` s, restart every VM whose started flag is set and whose process
        # is not running); HEAD app.rs the same with AutoRestartState (first retry
        # after initial_backoff, at most max_retries, then a
        # "vmm.auto_restart.exhausted" event). The simulator restarts
        # `auto_restart_seconds` after the exit (not on a 20 s interval grid).
        if self.auto_restart < 0 or vm.running or not vm.started:
            return
        if vm.exited_mono is None:
            vm.exited_mono = now
        if now < vm.exited_mono + self.auto_restart:
            return
        limit = self.auto_restart_max if self.ver() >= (0, 6, 0) else 0
        if limit and vm.restart_attempts >= limit:
            if not vm.restart_exhausted:
                vm.restart_exhausted = True
                vm.events.append({"event": "vmm.auto_restart.exhausted",
                                  "body": "Automatic restart stopped after %d failed attempts"
                                  % vm.restart_attempts, "timestamp": int(time.time() * 1000)})
            return
        vm.restart_attempts += 1
        vm.auto_restart_count += 1
        self.boot(vm, at_mono=vm.exited_mono + self.auto_restart)

    def reset_restart_policy(self, vm):
        # HEAD app.rs start_vm / stop_vm: vm.state.auto_restart.reset()
        vm.restart_attempts = 0
        vm.restart_exhausted = False

    def remove_now(self, vm):
        del self.vms[vm.id]
        self.order.remove(vm.id)

    def get_vm(self, vid):
        # An unknown id fails in dstack somewhere inside the method (reading the
        # work dir or the in-memory state); the exact text differs per method and
        # version, so the simulator answers one message for all.
        self.tick()
        vm = self.vms.get(vid)
        if vm is None:
            raise RpcError("VM not found: %s" % vid)
        return vm

    def boot(self, vm, at_mono=None):
        """StartVm with the process not running (v0.5.5 app.rs start_vm): set
        `started`, deploy QEMU. The simulated guest then decrypts the env; a
        failure ends the process at once (status `exited`, boot_error set)."""
        vm.started = True
        if vm.running:
            return
        now = time.monotonic()
        at_mono = now if at_mono is None else at_mono
        vm.boot_count += 1
        vm.running = True
        vm.poweroff_at = None
        vm.exited_mono = None
        vm.proc_started_wall = time.time() - (now - at_mono)
        vm.proc_started_mono = at_mono
        vm.boot_error = ""
        vm.shutdown_progress = ""
        err = None
        try:
            compose = json.loads(vm.cfg["compose_file"])
            allowed = set(compose.get("allowed_envs") or []) if isinstance(compose, dict) else set()
        except ValueError:
            allowed = set()
        blob = bytes.fromhex(vm.cfg["encrypted_env"])
        env, dropped = {}, []
        if blob:
            # the guest's KMS: the VM's kms_urls, else [cvm] kms_urls (v0.5.5
            # app.rs make_sys_config)
            if not (vm.cfg.get("kms_urls") or self.kms_urls):
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
                        err = str(e)
        vm.boot_compose_hash = hashlib.sha256(vm.cfg["compose_file"].encode()).hexdigest()
        vm.instance_id = hashlib.sha256(vm.id.encode()).hexdigest()[:40]
        busy = self.hostfwd_conflict(vm)
        if busy:
            # QEMU cannot bind a `hostfwd` another running QEMU holds and exits
            # at once: no guest ever ran (no boot_error), the VM reads `exited`,
            # and auto-restart tries again later
            rule, other = busy
            vm.log_extra["stderr"].append(
                "qemu-system-x86_64: -netdev user,id=net0,...: Could not set up host forwarding rule "
                "'%s' (held by VM %s)" % (rule, other))
            vm.boot_progress = ""
            vm.env = None
            vm.env_dropped = []
            self.proc_exit(vm, at_mono)
            return
        if err:
            vm.boot_error = err
            vm.boot_progress = "failed"
            vm.env = None
            vm.env_dropped = []
            self.proc_exit(vm, at_mono)
        else:
            vm.boot_progress = "done"
            vm.env = env
            vm.env_dropped = dropped
        vm.events.append({"event": "boot.progress", "body": vm.boot_progress,
                          "timestamp": int(time.time() * 1000)})
        vm.events = vm.events[-20:]

    def hostfwd_conflict(self, vm):
        """Up to v0.5.11 nothing checks host ports across VMs: v0.5.5
        app/qemu.rs (433-436) passes every mapping to QEMU as `-netdev
        user,...,hostfwd=PROTO:ADDR:FROM-:TO`, and a second QEMU whose bind
        fails (the port held by a running QEMU, same protocol, same address or
        either one unspecified) exits at start. Port 0 binds an ephemeral port.
        HEAD refuses such a CreateVm instead (check_port_conflicts). Returns
        (rule, other VM id) or None."""
        if self.ver() >= (0, 6, 0):
            return None
        for p in vm.cfg["ports"]:
            if not p["host_port"]:
                continue
            for vid in self.order:
                o = self.vms[vid]
                if o is vm or not o.running:
                    continue
                for q in o.cfg["ports"]:
                    if (q["protocol"], q["host_port"]) == (p["protocol"], p["host_port"]) and (
                            q["host_address"] == p["host_address"] or
                            ipaddress.ip_address(q["host_address"]).is_unspecified or
                            ipaddress.ip_address(p["host_address"]).is_unspecified):
                        return ("%s:%s:%d-:%d" % (p["protocol"], p["host_address"], p["host_port"],
                                                  p["vm_port"]), o.id)
        return None

    def info(self, vm, brief=False):
        img = next((i for i in self.images if i["name"] == vm.cfg["image"]), None)
        try:
            gateway = bool(json.loads(vm.cfg["compose_file"]).get("gateway_enabled"))
        except (ValueError, AttributeError):
            gateway = False

        def since(wall):
            # merged_info display_ts: humantime of the time elapsed, or "never"
            return "never" if wall is None else humantime(time.time() - wall)

        cfg = None
        if not brief:
            # v0.5.5 app/qemu.rs VmInfo::to_pb: the stored config; ports with the
            # resolved address; app_id; stopped = !started
            cfg = dict(vm.cfg, app_id=vm.app_id, stopped=not vm.started,
                       ports=[dict(p) for p in vm.cfg["ports"]])
        d = {
            "id": vm.id, "name": vm.cfg["name"], "status": self.status(vm),
            "uptime": since(vm.proc_started_wall),
            # to_pb: app_url only when the compose enables the gateway and the
            # guest reported its instance id
            "app_url": ("https://%s-8090.sim.dstack.invalid" % vm.instance_id)
            if gateway and vm.instance_id else None,
            "app_id": vm.app_id,
            "instance_id": vm.instance_id,
            "configuration": cfg,
            "exited_at": since(vm.proc_stopped_wall),
            "boot_progress": vm.boot_progress,
            "boot_error": vm.boot_error,
            "shutdown_progress": vm.shutdown_progress,
            "image_version": img["version"] if img else "",
        }
        if self.ver() >= (0, 5, 6):
            d["events"] = [] if brief else list(vm.events)
        return d

    # ---- prpc methods -----------------------------------------------------
    def m_Status(self, req):
        # v0.5.5 app.rs list_vms: filter ids/keyword, creation order, paginate
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

    def port_allowed(self, protocol, port):
        # config.rs PortMappingConfig::is_allowed: enabled and in a range of that
        # protocol (the protocol text as sent, before it is parsed)
        return self.port_mapping and any(
            r["protocol"] == protocol and r["from"] <= port <= r["to"] for r in self.port_ranges)

    def port_map(self, ports, create):
        """create_manifest_from_vm_config (CreateVm) or update_vm's port list
        (UpdateVm/UpgradeApp with update_ports), main_service.rs v0.5.5 and HEAD."""
        out = []
        for p in ports:
            if p["host_port"] > 65535:
                raise RpcError(chain("Invalid host port", "out of range integral type conversion attempted"))
            if p["vm_port"] > 65535:
                raise RpcError(chain("Invalid vm port", "out of range integral type conversion attempted"))
            if create and not self.port_allowed(p["protocol"], p["host_port"]):
                raise RpcError("Port mapping is not allowed for %s:%d" % (p["protocol"], p["host_port"]))
            if p["protocol"] not in ("tcp", "udp"):   # config.rs Protocol::from_str
                raise RpcError(chain("Invalid protocol", "Invalid protocol: %s" % p["protocol"]))
            if create and p["host_address"] == "":
                addr = self.port_address      # `[cvm.port_mapping] address`
            else:
                # update_vm: `p.host_address.parse()`, no default for ""
                try:
                    addr = parse_ip(p["host_address"])
                except ValueError as e:
                    raise RpcError(chain("Invalid host address", str(e)))
            out.append({"protocol": p["protocol"], "host_port": p["host_port"],
                        "vm_port": p["vm_port"], "host_address": addr})
        if create and self.ver() >= (0, 6, 0):
            self.check_port_conflicts(out, None)
        return out

    def check_port_conflicts(self, mappings, vm_id):
        # HEAD main_service.rs validate_unique_port_mappings and
        # validate_port_mapping_conflicts (not in v0.5.11 or earlier)
        def conflict(a, b):
            return (a["protocol"] == b["protocol"] and a["host_port"] == b["host_port"] and
                    (a["host_address"] == b["host_address"] or
                     ipaddress.ip_address(a["host_address"]).is_unspecified or
                     ipaddress.ip_address(b["host_address"]).is_unspecified))
        for i, m in enumerate(mappings):
            if any(conflict(m, o) for o in mappings[:i]):
                raise RpcError("duplicate host port mapping: %s %s:%d"
                               % (m["protocol"], m["host_address"], m["host_port"]))
        for vid in self.order:
            if vid == vm_id:
                continue
            for m in mappings:
                if any(conflict(m, o) for o in self.vms[vid].cfg["ports"]):
                    raise RpcError("host port mapping conflicts with VM %s: %s %s:%d"
                                   % (vid, m["protocol"], m["host_address"], m["host_port"]))

    def image_ok(self, name):
        return any(i["name"] == name for i in self.images)

    def m_CreateVm(self, req):
        self.tick()
        # main_service.rs create_manifest_from_vm_config, in its order
        if not valid_label(req["name"], self.ver()):
            raise RpcError("Invalid name: %s" % req["name"])
        if req["ports"] and not self.port_mapping:
            raise RpcError("Port mapping is disabled")
        ports = self.port_map(req["ports"], create=True)
        if req["app_id"] is None:
            app_id = hashlib.sha256(req["compose_file"].encode()).hexdigest()[:40]
        else:
            # `id.strip_prefix("0x").to_lowercase()`: not checked further by the
            # VMM (the simulator refuses what is not 40 hex: its KMS needs 20 bytes)
            a = req["app_id"]
            a = a[2:] if a.startswith("0x") else a
            if len(a) != 40 or not HEX_RE.match(a):
                raise RpcError("Invalid app_id: %r" % req["app_id"])
            app_id = a.lower()
        # app.rs load_vm: the image must load, the compose must be an AppCompose,
        # a CID must be free (cid_pool_size = GetMeta max_cvm_number). The VMM
        # does not enforce vcpu/memory limits (config.rs: "Max allocable
        # resources. Not yet implement fully, only for inspect API `GetMeta`").
        if not self.image_ok(req["image"]):
            raise RpcError(chain("Failed to load VM", "Failed to load image",
                                 "No such file or directory (os error 2)"))
        try:
            check_app_compose(req["compose_file"])
        except ValueError as e:
            raise RpcError(chain("Failed to load VM", "Failed to read compose file", str(e)))
        if len(self.vms) >= self.resources["max_cvm_number"]:
            raise RpcError(chain("Failed to load VM", "CID pool exhausted"))
        cfg = dict(req)
        cfg.pop("app_id")
        cfg.pop("stopped")
        cfg["ports"] = ports
        vm = VM(cfg, app_id)
        self.vms[vm.id] = vm
        self.order.append(vm.id)
        # create_vm: set_started(!stopped), then start_vm unless stopped
        if not req["stopped"]:
            self.boot(vm)
        return {"id": vm.id}

    def m_StartVm(self, req):
        vm = self.get_vm(req["id"])
        self.reset_restart_policy(vm)
        if vm.removing and self.ver() >= (0, 5, 7):
            raise RpcError(chain("Failed to start VM", "VM is being removed"))
        if vm.running:
            # app.rs start_vm with the process already running: sets `started`,
            # reports boot_progress "running", starts nothing, succeeds
            vm.started = True
            vm.boot_progress = "running"
            return None
        self.boot(vm)
        return None

    def m_ShutdownVm(self, req):
        # v0.5.5 and HEAD main_service.rs shutdown_vm: asks the guest agent to
        # power off (guest_agent_client(id).shutdown()) and returns; the agent
        # (guest-agent/src/guest_api_service.rs shutdown) does the rest in a
        # spawned task: v0.5.5 notifies "shutdown.progress: stopping app", runs
        # `systemctl stop app-compose` (--app-stop-seconds here), then, like
        # HEAD, notifies "shutdown.progress: powering off" and runs `systemctl
        # poweroff`. That notification makes the VMM clear `started` (v0.5.5
        # and HEAD app.rs vm_event_report), so the VM ends `stopped`. The
        # notification is best effort (`.ok()`): losing it is the injected
        # fault guest_shutdown_notify=false, and then `started` stays set,
        # the VM ends `exited` and auto-restart boots it again.
        vm = self.get_vm(req["id"])
        if not vm.running:
            raise RpcError("VM is not running")
        secs = vm.shutdown_seconds if vm.shutdown_seconds is not None else self.shutdown_seconds
        notify = vm.guest_notify if vm.guest_notify is not None else self.guest_notify
        now = time.monotonic()
        app_stop = max(self.app_stop_seconds, 0.0)
        if notify and app_stop > 0 and vm.notify_at is None:
            self.guest_event(vm, "shutdown.progress", "stopping app")
        if vm.notify_at is None or now + app_stop < vm.notify_at:
            vm.notify_at = now + app_stop
            vm.notify_lost = not notify
        if secs >= 0:
            at = now + app_stop + secs
            if vm.poweroff_at is None or at < vm.poweroff_at:
                vm.poweroff_at = at
        self.tick()
        return None

    def guest_event(self, vm, event, body):
        """vm_event_report (v0.5.5 and HEAD app.rs) for a shutdown.progress
        event; HEAD also records every event in VmInfo.events."""
        vm.shutdown_progress = body
        if event == "shutdown.progress" and body == "powering off":
            vm.started = False
        vm.events.append({"event": event, "body": body, "timestamp": int(time.time() * 1000)})
        vm.events = vm.events[-20:]

    def m_StopVm(self, req):
        # app.rs stop_vm: reset the restart policy, clear `started`, stop the
        # process (the supervisor kills QEMU; `stop_seconds` models how long it
        # takes, during which the status is `stopping`). No check for removing.
        vm = self.get_vm(req["id"])
        self.reset_restart_policy(vm)
        vm.started = False
        if vm.running:
            if self.stop_seconds > 0:
                at = time.monotonic() + self.stop_seconds
                if vm.poweroff_at is None or at < vm.poweroff_at:
                    vm.poweroff_at = at
            else:
                self.proc_exit(vm)
        return None

    def m_RemoveVm(self, req):
        vm = self.get_vm(req["id"])
        if self.ver() <= (0, 5, 6):
            # v0.5.5 app.rs remove_vm: refuses while the process runs
            # (`running` and `stopping`), else removes at once
            if vm.running:
                raise RpcError(chain("Failed to remove VM", "VM is running, stop it first"))
            self.remove_now(vm)
            return None
        # v0.5.7+ app.rs remove_vm: idempotent; mark removing, then in the
        # background stop the process, wait for it, delete
        if vm.removing:
            return None
        secs = vm.remove_seconds if vm.remove_seconds is not None else self.remove_seconds
        vm.removing = True
        self.proc_exit(vm)
        vm.remove_at = time.monotonic() + max(secs, 0)
        self.tick()
        return None

    def m_UpdateVm(self, req):
        # v0.5.5 main_service.rs upgrade_app; v0.5.6+ update_vm (UpgradeApp is
        # the same method). Steps in dstack's order; the files written before a
        # failing step stay written (compose, env, user config).
        self.tick()
        vm = self.vms.get(req["id"])
        new_id = ""
        if req["compose_file"]:
            try:
                check_app_compose(req["compose_file"])
            except ValueError as e:
                raise RpcError(chain("Invalid compose file", str(e)))
            if vm is None:
                raise RpcError("The instance %s not found" % req["id"])
            vm.cfg["compose_file"] = req["compose_file"]
            # the reply id is the app id of the compose just sent (app_id_of), not
            # the VM's app id, which stays what the manifest says
            new_id = hashlib.sha256(req["compose_file"].encode()).hexdigest()[:40]
        if req["encrypted_env"]:
            if vm is None:
                raise RpcError(chain("Failed to write encrypted env",
                                     "No such file or directory (os error 2)"))
            vm.cfg["encrypted_env"] = req["encrypted_env"]
        if req["user_config"]:
            if vm is None:
                raise RpcError(chain("Failed to write user config",
                                     "No such file or directory (os error 2)"))
            vm.cfg["user_config"] = req["user_config"]
        if vm is None:
            raise RpcError(chain("Failed to read manifest", "No such file or directory (os error 2)"))
        new = dict(vm.cfg)
        if self.ver() >= (0, 5, 6):
            # apply_resource_updates: only on a stopped or exited VM
            res = {k: req[k] for k in ("vcpu", "memory", "disk_size", "image") if req[k] is not None}
            if res:
                if self.status(vm) not in ("stopped", "exited"):
                    raise RpcError("vm should be stopped before resize: %s" % vm.id)
                if "disk_size" in res and res["disk_size"] < new["disk_size"]:
                    raise RpcError("Cannot shrink disk size")
                new.update(res)
        if req["update_ports"]:
            new["ports"] = self.port_map(req["ports"], create=False)
            if self.ver() >= (0, 6, 0):
                self.check_port_conflicts(new["ports"], vm.id)
        if self.ver() >= (0, 5, 6):
            if req["update_kms_urls"]:
                new["kms_urls"] = req["kms_urls"]
            if req["update_gateway_urls"]:
                new["gateway_urls"] = req["gateway_urls"]
        # put_manifest, then load_vm (which loads the image)
        if not self.image_ok(new["image"]):
            raise RpcError(chain("Failed to load VM", "Failed to load image",
                                 "No such file or directory (os error 2)"))
        vm.cfg = new
        return {"id": new_id}

    m_UpgradeApp = m_UpdateVm

    def m_GetComposeHash(self, req):
        # main_service.rs get_compose_hash: label and AppCompose checked first
        if not valid_label(req["name"], self.ver()):
            raise RpcError("Invalid name: %s" % req["name"])
        try:
            check_app_compose(req["compose_file"])
        except ValueError as e:
            raise RpcError(chain("Invalid compose file", str(e)))
        return {"hash": hashlib.sha256(req["compose_file"].encode()).hexdigest()}

    def m_GetAppEnvEncryptPubKey(self, req):
        # v0.5.5 (and to HEAD) app.rs kms_client: the VMM asks the KMS of the
        # top-level `kms_url`, "KMS is not configured" when it is empty; the
        # `[cvm] kms_urls` GetMeta reports do not count
        if not self.kms_url:
            raise RpcError("KMS is not configured")
        if len(req["app_id"]) != 40:
            raise RpcError("Invalid app_id: expected 20 bytes")
        priv = kms_private_key(self.seed, req["app_id"])
        pub = x25519_public(priv)
        app_id = bytes.fromhex(req["app_id"])
        # The KMS signs the key with its k256 key (HEAD kms/src/main_service.rs
        # get_app_env_encrypt_pub_key: `signature` = crypto.rs sign_message(
        # k256_key, "dstack-env-encrypt-pubkey", app_id, public_key), and
        # `signature_v1` = sign_message_with_timestamp(..., timestamp = now in
        # seconds, ...): Keccak256(prefix ‖ ":" ‖ app_id ‖ [ts u64 BE] ‖ key),
        # recoverable secp256k1, r ‖ s ‖ v. v0.5.5's KMS signs the legacy
        # message only.) The signer is --kms-signer-key / kms_signer_key;
        # kms_timestamp_offset moves the timestamp (a stale or future reply).
        ts = int(time.time()) + self.kms_timestamp_offset
        signer = self.signer
        if self.kms_bad_signature:          # signed by a key nobody trusts
            signer = kmscrypto.private_from_seed(self.seed + ":untrusted")
        sig = kmscrypto.sign_recoverable(signer, kmscrypto.pubkey_message(app_id, pub)).hex()
        sig1 = kmscrypto.sign_recoverable(signer, kmscrypto.pubkey_message(app_id, pub, ts)).hex()
        # test control: what goes on the wire instead (truncated, malformed)
        if self.kms_signature_override is not None:
            sig = self.kms_signature_override
        if self.kms_signature_v1_override is not None:
            sig1 = self.kms_signature_v1_override
        # The KMS behind the VMM: "full" signs both; "legacy" (a KMS older than
        # the timestamped signature) leaves timestamp 0 and signature_v1 empty;
        # "unsigned" leaves every signature empty.
        if self.kms_reply in ("legacy", "unsigned"):
            ts, sig1 = 0, ""
        if self.kms_reply == "unsigned":
            sig = ""
        # v0.5.5 vmm_rpc.proto PublicKeyResponse has public_key and signature
        # only; v0.5.6+ adds timestamp and signature_v1, and the VMM copies every
        # field of the KMS reply (main_service.rs get_app_env_encrypt_pub_key):
        # prost defaults are serialised, so an older KMS gives 0 and "".
        if self.ver() < (0, 5, 6):
            return {"public_key": pub.hex(), "signature": sig}
        return {"public_key": pub.hex(), "signature": sig, "timestamp": ts,
                "signature_v1": sig1}

    def m_Version(self, req):
        return {"version": self.version, "rev": self.rev}

    def m_GetMeta(self, req):
        # v0.5.5 main_service.rs get_meta: [cvm] kms_urls, url = the first
        return {"kms": {"url": self.kms_urls[0] if self.kms_urls else "",
                        "urls": list(self.kms_urls)},
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

        if path.startswith("/guest/"):
            return self.serve_guest_api(h, path, raw)
        if path.startswith("/prpc/"):
            key = path[len("/prpc/"):]
            # main.rs: prpc_routes!(App, RpcHandler, trim: "Teepod.")
            if key.startswith("Teepod."):
                key = key[len("Teepod."):]
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

    def authorized(self, h, logs):
        """Up to v0.5.11 the token (rocket_apitoken `Authorized` guard,
        main_routes.rs vm_logs) guards only /logs; prpc is open. HEAD (0.6.0)
        main.rs attaches HttpAuthFairing to every route (Bearer or X-Admin-Token)."""
        if not self.token:
            return True
        if not logs and self.ver() < (0, 6, 0):
            return True
        if h.headers.get("Authorization", "") == "Bearer " + self.token:
            return True
        return self.ver() >= (0, 6, 0) and h.headers.get("X-Admin-Token", "") == self.token

    def prpc(self, h, path, method, q, raw):
        if not self.authorized(h, False):
            return json_reply({"error": "Unauthorized"}, 401, pretty=True)
        if not path.startswith("/prpc/") or not self.method_exists(method):
            return json_reply({"error": "Service not found: %s" % method}, 400, pretty=True)
        # ra-rpc rocket_helper.rs (v0.5.5 :328, HEAD :564): `is_json =
        # request.json || content_type.is_json()`, with `json: method == Get ||
        # query "json"`; Rocket's ContentType::is_json compares the media type
        # (application/json, case-insensitive), not its parameters
        if "json" not in q and h.command != "GET" and not content_type_is_json(h):
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
            self.core.cond.notify_all()
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
        lines.append("[sim %s] %s: status %s" % (ch, name, self.status(vm)))
        return lines + vm.log_extra.get(ch, [])

    def logs(self, h, q, rec):
        fq = simcore.flat_query(q)
        if not self.authorized(h, True):
            return Reply(401, "Unauthorized\n", "text/plain")
        ch = fq.get("ch", "serial")
        vid = fq.get("id", "")
        with self.lock:
            self.tick()
            vm = self.vms.get(vid)
            if self.ver() >= (0, 6, 0):
                # HEAD main_routes.rs vm_logs: 404 for a VM it does not know,
                # 400 for a bad channel
                if vm is None:
                    return Reply(404, "VM not found", "text/plain; charset=utf-8")
                if ch not in ("serial", "stdout", "stderr"):
                    return Reply(400, "Unknown channel %s" % ch, "text/plain; charset=utf-8")
            else:
                # v0.5.5 (to v0.5.11) main_routes.rs vm_logs: a TextStream that
                # answers 200 and yields the error text instead of the log
                if ch not in ("serial", "stdout", "stderr"):
                    return Reply(200, "Unknown channel %s" % ch, "text/plain; charset=utf-8")
                if vm is None:
                    # the tail is the tailf crate (kvinwang/tailf src/lib.rs
                    # Options::tail): it spawns `tail -n N [-f] FILE` with
                    # stderr to /dev/null; for a work dir that does not exist
                    # `tail` exits with nothing on stdout, so the stream ends
                    # empty: 200 with an empty body, with or without follow
                    return Reply(200, "", "text/plain; charset=utf-8")
            lines = self.log_lines(vm, ch)
        n = fq.get("lines", "")
        if n.isdigit():
            lines = lines[-int(n):] if int(n) else []
        ansi = fq.get("ansi", "false") == "true"
        if ansi:
            lines = ["\x1b[32m%s\x1b[0m" % ln for ln in lines]
        text = "".join(ln + "\n" for ln in lines)
        if fq.get("follow", "false") != "true":
            return Reply(200, log_bytes(text), "text/plain; charset=utf-8")
        # follow: chunked. dstack v0.5.5 and HEAD vmm/src/main_routes.rs vm_logs:
        # the tail yields each new line as written, and after 60 s without one
        # `yield format!("[vmm heartbeat]\n")` (here --log-heartbeat-seconds).
        # dstack's tail follows the log file with no end, whatever the VM does
        # (stopped, or removed: the tail keeps the deleted file open); so does
        # the simulator, until the client goes or POST /_sim/log-streams
        # {"end": true} ends the streams being served (as a VMM restart does).
        # Lines appended with POST /_sim/vm-log are the new lines.
        h.send_response(200)
        h.send_header("Content-Type", "text/plain; charset=utf-8")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.close_connection = True

        def chunk(s):
            b = log_bytes(s)
            return simcore._send_raw(h, b"%x\r\n%s\r\n" % (len(b), b))

        vid = vm.id
        with self.lock:
            sent = len(vm.log_extra.get(ch, []))
            gen = self.log_streams_gen
            self.log_streams_open += 1
            self.log_streams_opened += 1
        try:
            ok = chunk(text) if text else True
            last = time.monotonic()
            while ok:
                with self.lock:
                    self.core.cond.wait(max(0.0, last + self.heartbeat_seconds - time.monotonic()))
                    self.tick()
                    vm = self.vms.get(vid)
                    done = self.log_streams_gen != gen
                    new = vm.log_extra.get(ch, [])[sent:] if vm is not None else []
                    sent += len(new)
                if done:
                    break
                if new:
                    ok = chunk("".join(("\x1b[32m%s\x1b[0m" % ln if ansi else ln) + "\n" for ln in new))
                    last = time.monotonic()
                elif time.monotonic() >= last + self.heartbeat_seconds:
                    ok = chunk("[vmm heartbeat]\n")
                    with self.lock:
                        self.log_heartbeats += 1
                    last = time.monotonic()
            if ok:
                simcore._send_raw(h, b"0\r\n\r\n")
        finally:
            with self.lock:
                self.log_streams_open -= 1
                self.core.cond.notify_all()
        h._sim_status = 200
        return None

    # ---- control API ------------------------------------------------------
    def set_status(self, vm, st, seconds):
        """Forces a state through the two facts the status derives from."""
        now = time.monotonic()
        if st == "running":
            vm.removing = False
            vm.started = True
            if not vm.running:
                vm.running = True
                vm.proc_started_wall = time.time()
                vm.exited_mono = None
            vm.notify_at = None
            vm.poweroff_at = None if not seconds else now + float(seconds)
        elif st == "exited":            # a crash: `started` stays, the process ends
            vm.removing = False
            vm.started = True
            vm.running = True
            self.proc_exit(vm)
        elif st == "stopping":          # not started, the process still runs
            vm.removing = False
            vm.started = False
            if not vm.running:
                vm.running = True
                vm.proc_started_wall = time.time()
            vm.poweroff_at = None if not seconds else now + float(seconds)
        elif st == "stopped":
            vm.removing = False
            vm.started = False
            self.proc_exit(vm)
        elif st == "removing":
            vm.removing = True
            vm.started = False
            self.proc_exit(vm)
            vm.remove_at = None if not seconds else now + float(seconds)

    def control(self, h, path, q, body):
        r = self.core.control_common(h, path, q, body)
        if r is not None:
            return r
        body = body or {}
        if path == "/_sim/guest-sysinfo" and h.command == "POST":
            return self.control_guest_sysinfo(body)
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
                    self.set_status(vm, st, body.get("seconds"))
                if "started" in body:
                    vm.started = bool(body["started"])
                if "boot_error" in body:
                    vm.boot_error = body["boot_error"]
                if "shutdown_seconds" in body:
                    vm.shutdown_seconds = body["shutdown_seconds"]
                if "guest_shutdown_notify" in body:
                    v = body["guest_shutdown_notify"]
                    vm.guest_notify = None if v is None else bool(v)
                if "remove_seconds" in body:
                    vm.remove_seconds = body["remove_seconds"]
                self.core.cond.notify_all()
                return json_reply(self.sim_vm(vm))
            if path == "/_sim/vm-log" and h.command == "POST":
                # Appends lines to a VM's log channel: what /logs returns and
                # what a follow=true stream sends next. A lone surrogate
                # U+DC80..U+DCFF stands for the raw byte 0x80..0xFF (see
                # log_bytes), so a test can put invalid UTF-8 in a log.
                vm = self.vms.get(body.get("id", ""))
                if vm is None:
                    return json_reply({"error": "VM not found"}, 404)
                ch = body.get("ch", "serial")
                lines = body.get("lines")
                if ch not in vm.log_extra or not isinstance(lines, list) or \
                        not all(isinstance(x, str) and "\n" not in x for x in lines):
                    return json_reply({"error": "need ch serial|stdout|stderr and lines: [str without newline]"}, 400)
                vm.log_extra[ch].extend(lines)
                self.core.cond.notify_all()
                return json_reply({"count": len(vm.log_extra[ch])})
            if path == "/_sim/log-streams" and h.command == "POST":
                if body.get("end"):
                    self.log_streams_gen += 1  # every stream served now ends
                    self.core.cond.notify_all()
                return json_reply({"open": self.log_streams_open})
            if path == "/_sim/log-streams" and h.command == "GET":
                return json_reply({"open": self.log_streams_open, "opened": self.log_streams_opened,
                                   "heartbeats": self.log_heartbeats})
            if path == "/_sim/config" and h.command == "GET":
                return json_reply(self.sim_config())
            if path == "/_sim/config" and h.command == "POST":
                try:
                    self.set_config(body)
                except (ValueError, TypeError, KeyError) as e:
                    return json_reply({"error": "bad config: %s" % e}, 400)
                self.core.cond.notify_all()
                return json_reply(self.sim_config())
            if path == "/_sim/kms-key" and h.command == "GET":
                a = q.get("app_id", "").lower()
                a = a[2:] if a.startswith("0x") else a
                priv = kms_private_key(self.seed, a)
                return json_reply({"app_id": a, "private_key": priv.hex(),
                                   "public_key": x25519_public(priv).hex()})
        return None

    def set_config(self, body):
        if "version" in body:
            self.version = body["version"]
        if "rev" in body:
            self.rev = body["rev"]
        if "shutdown_seconds" in body:
            self.shutdown_seconds = float(body["shutdown_seconds"])
        if "stop_seconds" in body:
            self.stop_seconds = float(body["stop_seconds"])
        if "remove_seconds" in body:
            self.remove_seconds = float(body["remove_seconds"])
        if "token" in body:
            self.token = body["token"] or None
        if "kms" in body:                   # both settings at once
            on = bool(body["kms"])
            self.kms_url = DEFAULT_KMS_URL if on else ""
            self.kms_urls = [DEFAULT_KMS_URL] if on else []
        if "kms_url" in body:
            if not isinstance(body["kms_url"], str):
                raise ValueError("kms_url must be a string")
            self.kms_url = body["kms_url"]
        if "kms_urls" in body:
            if not (isinstance(body["kms_urls"], list) and all(isinstance(u, str) for u in body["kms_urls"])):
                raise ValueError("kms_urls must be a list of strings")
            self.kms_urls = list(body["kms_urls"])
        if "kms_bad_signature" in body:
            self.kms_bad_signature = bool(body["kms_bad_signature"])
        if "kms_signer_key" in body:
            v = body["kms_signer_key"]
            self.signer = kmscrypto.private_from_seed(self.seed) if v is None else signer_key(v)
        if "kms_timestamp_offset" in body:
            self.kms_timestamp_offset = int(body["kms_timestamp_offset"])
        for k in ("kms_signature_override", "kms_signature_v1_override"):
            if k in body:
                if body[k] is not None and not isinstance(body[k], str):
                    raise ValueError("%s must be a string or null" % k)
                setattr(self, k, body[k])
        if "kms_reply" in body:
            if body["kms_reply"] not in KMS_REPLIES:
                raise ValueError("kms_reply must be one of %s" % ", ".join(KMS_REPLIES))
            self.kms_reply = body["kms_reply"]
        if "resources" in body:
            self.resources.update(body["resources"])
        if "images" in body:
            self.images = body["images"]
        if "port_mapping_enabled" in body:
            self.port_mapping = bool(body["port_mapping_enabled"])
        if "port_address" in body:
            self.port_address = parse_ip(body["port_address"])
        if "port_ranges" in body:
            self.port_ranges = [{"protocol": r["protocol"], "from": int(r["from"]),
                                 "to": int(r["to"])} for r in body["port_ranges"]]
        if "auto_restart_seconds" in body:
            v = body["auto_restart_seconds"]
            self.auto_restart = -1.0 if v is None else float(v)
        if "auto_restart_max_retries" in body:
            self.auto_restart_max = int(body["auto_restart_max_retries"])
        if "guest_shutdown_notify" in body:
            self.guest_notify = bool(body["guest_shutdown_notify"])
        if "app_stop_seconds" in body:
            self.app_stop_seconds = float(body["app_stop_seconds"])

    # ---- the guest API through the VMM -------------------------------------
    # HEAD vmm/src/main.rs mounts prpc_routes!(App, GuestApiHandler) at
    # /guest; vmm/src/guest_api_service.rs forwards each call to the guest
    # agent at vsock://<cid>:8000/api (app.rs guest_agent_client: "vm not
    # found" for an unknown id); the agent's sys_info is
    # guest-agent/src/guest_api_service.rs (sysinfo crate: bytes, uptime in
    # seconds, load average x100, the data disks only). A guest that is down, or
    # an older one without the agent API, cannot answer.
    def guest_sysinfo(self, vm):
        if vm.guest_sysinfo is not None:
            return dict(vm.guest_sysinfo)
        up = max(0, int(time.time() - (vm.proc_started_wall or time.time())))
        total = int(vm.cfg["memory"]) * 1024 * 1024
        disk = int(vm.cfg["disk_size"]) * 1024 ** 3
        return {"os_name": "DStack", "os_version": "0.5.2", "kernel_version": "6.9.0", "cpu_model": "sim @0 MHz",
                "num_cpus": int(vm.cfg["vcpu"]), "total_memory": total, "available_memory": total * 3 // 4,
                "used_memory": total // 4, "free_memory": total // 2, "total_swap": 0, "used_swap": 0,
                "free_swap": 0, "uptime": up, "loadavg_one": 25, "loadavg_five": 20, "loadavg_fifteen": 10,
                "disks": [{"name": "/dev/mapper/dstack_data_disk", "mount_point": "/dstack/persistent",
                           "total_size": disk, "free_size": disk * 9 // 10}]}

    def serve_guest_api(self, h, path, raw):
        method = path[len("/guest/"):]
        rec, fault = self.core.record_call("guest." + method, h, None, len(raw))

        def answer():
            if method != "SysInfo":
                return json_reply({"error": "Service not found: %s" % method}, 400, pretty=True)
            try:
                req = json.loads(raw) if raw.strip() else {}
            except ValueError as e:
                return json_reply({"error": str(e)}, 400, pretty=True)
            with self.lock:
                self.tick()
                vm = self.vms.get(req.get("id", "") if isinstance(req, dict) else "")
                if vm is None:
                    return json_reply({"error": "vm not found"}, 400, pretty=True)
                if self.status(vm) != "running" or vm.guest_agent is False:
                    return json_reply({"error": "Failed to connect to the guest agent: Connection refused"}, 400,
                                      pretty=True)
                return json_reply(self.guest_sysinfo(vm))
        simcore.serve_with_fault(self.core, h, rec, fault, answer)

    def control_guest_sysinfo(self, body):
        """POST /_sim/guest-sysinfo {"id", "sysinfo": {...} | null (computed), "agent": bool}."""
        with self.lock:
            vm = self.vms.get(body.get("id", ""))
            if vm is None:
                return json_reply({"error": "VM not found"}, 404)
            if "sysinfo" in body:
                vm.guest_sysinfo = body["sysinfo"]
            if "agent" in body:
                vm.guest_agent = bool(body["agent"])
            return json_reply({})

    def sim_config(self):
        return {"version": self.version, "rev": self.rev,
                "shutdown_seconds": self.shutdown_seconds,
                "stop_seconds": self.stop_seconds,
                "remove_seconds": self.remove_seconds, "token": self.token,
                "kms": bool(self.kms_url), "kms_url": self.kms_url, "kms_urls": self.kms_urls,
                "kms_seed": self.seed, "kms_reply": self.kms_reply,
                "kms_signer_public_key": kmscrypto.public_key(self.signer).hex(),
                "kms_signer_public_key_uncompressed": kmscrypto.public_key(self.signer, False).hex(),
                "kms_bad_signature": self.kms_bad_signature,
                "kms_timestamp_offset": self.kms_timestamp_offset,
                "kms_signature_override": self.kms_signature_override,
                "kms_signature_v1_override": self.kms_signature_v1_override,
                "resources": self.resources,
                "images": self.images, "port_mapping_enabled": self.port_mapping,
                "port_address": self.port_address, "port_ranges": self.port_ranges,
                "auto_restart_seconds": self.auto_restart,
                "auto_restart_enabled": self.auto_restart >= 0,
                "auto_restart_max_retries": self.auto_restart_max,
                "guest_shutdown_notify": self.guest_notify,
                "app_stop_seconds": self.app_stop_seconds}

    def sim_vm(self, vm):
        d = self.info(vm)
        d.update({"started": vm.started, "process_running": vm.running,
                  # CLOCK_MONOTONIC of the last process start/end, comparable with
                  # the call log's "mono" (e.g. guest down -> CreateVm)
                  "process_started_mono": vm.proc_started_mono,
                  "process_stopped_mono": vm.proc_stopped_mono,
                  "env": vm.env, "env_dropped": vm.env_dropped,
                  "boot_count": vm.boot_count, "auto_restart_count": vm.auto_restart_count,
                  "restart_attempts": vm.restart_attempts,
                  "boot_compose_hash": vm.boot_compose_hash,
                  "shutdown_seconds": vm.shutdown_seconds, "remove_seconds": vm.remove_seconds,
                  "guest_shutdown_notify": vm.guest_notify})
        return d


class RpcError(Exception):
    pass


KMS_REPLIES = ("full", "legacy", "unsigned")


def signer_key(hexkey):
    """A secp256k1 private key given as 64 hex digits (the KMS's k256 key)."""
    d = int(hexkey, 16) if isinstance(hexkey, str) and re.fullmatch(r"[0-9a-fA-F]{64}", hexkey) else 0
    if not 0 < d < kmscrypto.N:
        raise ValueError("kms_signer_key must be 64 hex digits of a secp256k1 private key")
    return d
DEFAULT_KMS_URL = "http://127.0.0.1:1/kms"
# The simulator's default `[cvm.port_mapping] range`: every tcp and udp port.
# dstack's sample vmm.toml allows only tcp 1-20000 (--port-range tcp:1-20000).
DEFAULT_PORT_RANGES = [{"protocol": "tcp", "from": 0, "to": 65535},
                       {"protocol": "udp", "from": 0, "to": 65535}]


def parse_ranges(specs):
    out = []
    for s in specs:
        m = re.match(r"^(tcp|udp):([0-9]+)-([0-9]+)$", s)
        if not m:
            raise SystemExit("--port-range: expected PROTO:FROM-TO, got %r" % s)
        out.append({"protocol": m.group(1), "from": int(m.group(2)), "to": int(m.group(3))})
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="tcp:127.0.0.1:0",
                   help="tcp:127.0.0.1:PORT, tcp:[::1]:PORT or unix:/path/vmm.sock")
    p.add_argument("--ready-file", help="write the URL here (atomically) once listening")
    p.add_argument("--ready-fd", type=int, help="write the URL to this inherited fd")
    p.add_argument("--version", default="0.5.7", help="emulated VMM version")
    p.add_argument("--rev", default="sim")
    p.add_argument("--token", help="[auth] token: /logs (<= 0.5.11) or everything (>= 0.6.0) "
                   "needs Authorization: Bearer TOKEN")
    p.add_argument("--no-kms", action="store_true",
                   help="emulate a VMM without KMS: kms_url and [cvm] kms_urls both empty")
    p.add_argument("--kms-url", default=DEFAULT_KMS_URL,
                   help="top-level kms_url: the KMS the VMM asks for GetAppEnvEncryptPubKey "
                   "(\"\": 'KMS is not configured')")
    p.add_argument("--kms-urls", action="append",
                   help="[cvm] kms_urls entry (repeatable): given to the guests, reported by GetMeta")
    p.add_argument("--kms-seed", default=DEFAULT_SEED,
                   help="KMS private key = sha256(seed || app_id hex)")
    p.add_argument("--kms-signer-key",
                   help="the KMS's k256 signing key, 64 hex digits (default: sha256(seed ':kms-signer'))")
    p.add_argument("--kms-reply", default="full", choices=KMS_REPLIES,
                   help="what the KMS behind the VMM fills in: full, legacy (no "
                   "timestamp/signature_v1), unsigned (no signatures)")
    p.add_argument("--shutdown-seconds", type=float, default=0.5,
                   help="time the guest takes to power off after ShutdownVm and the app stop "
                   "(negative: never)")
    p.add_argument("--stop-seconds", type=float, default=0.0,
                   help="time QEMU takes to die after StopVm (status 'stopping' meanwhile)")
    p.add_argument("--guest-shutdown-notify", action="store_true",
                   help="(the default) the guest reports 'powering off' on ShutdownVm, which "
                   "clears `started`: the VM ends 'stopped'")
    p.add_argument("--no-guest-shutdown-notify", action="store_true",
                   help="fault: the guest's 'powering off' report is lost, `started` stays set, "
                   "the VM ends 'exited' (and auto-restart boots it again)")
    p.add_argument("--app-stop-seconds", type=float, default=0.0,
                   help="v0.5.5 guest agents: `systemctl stop app-compose` before the guest "
                   "reports 'powering off' and powers off; this long (0: HEAD agents, no app stop)")
    p.add_argument("--remove-seconds", type=float, default=0.5,
                   help="time an async RemoveVm (>=0.5.7) stays 'removing'")
    p.add_argument("--log-heartbeat-seconds", type=float, default=60.0)
    p.add_argument("--auto-restart-seconds", type=float, default=5.0,
                   help="[cvm.auto_restart]: restart an exited VM (started flag set, "
                   "process gone) this long after it exited (negative: disabled)")
    p.add_argument("--no-auto-restart", action="store_true",
                   help="[cvm.auto_restart] enabled = false")
    p.add_argument("--auto-restart-max-retries", type=int, default=5,
                   help=">= 0.6.0: give up after this many restarts (0: never give up)")
    p.add_argument("--image", action="append", help="image name (repeatable)")
    p.add_argument("--max-cvm", type=int, default=1000,
                   help="cid_pool_size: CreateVm fails with 'CID pool exhausted' beyond it")
    p.add_argument("--max-vcpu", type=int, default=64, help="reported by GetMeta only")
    p.add_argument("--max-memory", type=int, default=262144, help="reported by GetMeta only")
    p.add_argument("--no-port-mapping", action="store_true",
                   help="[cvm.port_mapping] enabled = false")
    p.add_argument("--port-address", default="127.0.0.1",
                   help="[cvm.port_mapping] address: used for host_address \"\"")
    p.add_argument("--port-range", action="append",
                   help="[cvm.port_mapping] range entry PROTO:FROM-TO (repeatable; "
                   "default every tcp and udp port)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    args.port_address = parse_ip(args.port_address)
    simcore.run(VmmSim(args), args.listen, args.ready_file, args.ready_fd)


if __name__ == "__main__":
    main()
