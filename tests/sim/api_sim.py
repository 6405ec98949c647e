#!/usr/bin/python3
"""Platform Network API simulator: GET /config/compose/validator_vm and /validate/active.

The document is served as raw bytes (tests may install invalid documents) with a
strong ETag and Last-Modified; conditional requests get 304. Control API under
/_sim (see README.md).

/validate/active follows alphacore's Validation API (validation_api.py,
list_active_jobs; ../shared/design/dstack.md §5b): {"active": [{"job_id",
"status", "log_url": "/validate/<job_id>/log"}, ...]} listing the jobs whose
status is "queued" or "running"; {"active": []} = idle.
"""

import argparse
import email.utils
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import simcore  # noqa: E402
from simcore import Reply, json_reply  # noqa: E402

COMPOSE_PATH = "/config/compose/validator_vm"
ACTIVE_PATH = "/validate/active"
CONTROL_LIMIT = 64 * 1024 * 1024

EXAMPLE_DOC = {
    "vm_type": "validator_vm",
    "compose_content": "services:\n  app:\n    image: \"nginx:latest\"\n",
    "description": "Platform Network validator VM",
    "required_env": [],
    "updated_at": "2026-08-01T12:00:00Z",
    "provisioning": {
        "env_keys": ["DSTACK_VMM_URL", "HOTKEY_PASSPHRASE", "VALIDATOR_BASE_URL"],
        "manifest_defaults": {
            "manifest_version": 2, "name": "validator_vm", "runner": "docker-compose",
            "kms_enabled": True, "gateway_enabled": True,
            "local_key_provider_enabled": False, "key_provider_id": "",
            "public_logs": True, "public_sysinfo": True, "public_tcbinfo": True,
            "no_instance_id": False, "secure_time": False},
        "vm_parameters": {
            "name": "validator_vm", "image": "dstack-0.5.2", "vcpu": 16,
            "memory": 16384, "disk_size": 200, "user_config": "",
            "ports": [{"protocol": "tcp", "host_port": 0, "vm_port": 0,
                       "host_address": None}],
            "hugepages": False, "pin_numa": False, "stopped": False}}}


def example_bytes():
    return json.dumps(EXAMPLE_DOC, indent=2).encode() + b"\n"


def etag_list_matches(header, etag):
    """Weak comparison, as RFC 9110 prescribes for If-None-Match."""
    if header.strip() == "*":
        return True
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


class ApiSim:
    def __init__(self, args):
        self.core = simcore.SimCore(args.verbose)
        self.core.sim = self
        self.lock = self.core.lock
        self.args = args
        self.reset()

    def reset(self):
        """Back to the state given by the command line."""
        args = self.args
        if args.doc:
            with open(args.doc, "rb") as f:
                doc = f.read()
        else:
            doc = example_bytes()
        self.set_doc(doc, None, True, True, None)
        self.active = (args.active or json.dumps({"active": []})).encode()
        self.active_status = 200
        self.active_mode = "idle"
        self.compose_status = 200
        self.raw_etag = None            # literal header values (hostile-API tests)
        self.raw_last_modified = None

    def set_doc(self, doc, last_modified, use_etag, use_lm, etag=None):
        self.doc = doc
        self.etag = etag or ('"%s"' % hashlib.sha256(doc).hexdigest()[:32])
        self.use_etag = use_etag
        self.use_lm = use_lm
        self.last_modified = int(last_modified if last_modified is not None else time.time())
        self.doc_version = getattr(self, "doc_version", 0) + 1

    def handle(self, h):
        path, query, q = simcore.split_path(h)
        fq = simcore.flat_query(q)
        raw, err = simcore.read_body(h, CONTROL_LIMIT if path.startswith("/_sim/") else 1024 * 1024)
        if path.startswith("/_sim/"):
            if err:
                return simcore.send_reply(h, err)
            return simcore.send_reply(h, self.control(h, path, fq, raw))
        rec, fault = self.core.record_call(path, h, raw.decode("utf-8", "replace") or None, len(raw))
        if err:
            self.core.finish(rec, err.status, len(err.body))
            return simcore.send_reply(h, err)
        simcore.serve_with_fault(self.core, h, rec, fault, lambda: self.serve(h, path, rec))

    def serve(self, h, path, rec):
        if h.command not in ("GET", "HEAD"):
            return json_reply({"error": "method not allowed"}, 405)
        with self.lock:
            if path == COMPOSE_PATH:
                return self.serve_doc(h, rec)
            if path == ACTIVE_PATH:
                if self.active_mode == "unreachable":
                    # the connection dies without a reply, as when the API's
                    # process is gone behind a proxy
                    simcore.drop_connection(h)
                    h._sim_status = None
                    return None
                return Reply(self.active_status, self.active, "application/json")
        return json_reply({"error": "not found"}, 404)

    def serve_doc(self, h, rec):
        if self.compose_status != 200:
            return json_reply({"error": "injected status"}, self.compose_status)
        headers = []
        if self.raw_etag is not None:
            headers.append(("ETag", self.raw_etag))
        elif self.use_etag:
            headers.append(("ETag", self.etag))
        if self.raw_last_modified is not None:
            headers.append(("Last-Modified", self.raw_last_modified))
        elif self.use_lm:
            headers.append(("Last-Modified", email.utils.formatdate(self.last_modified, usegmt=True)))
        inm = h.headers.get("If-None-Match")
        ims = h.headers.get("If-Modified-Since")
        rec["conditional"] = bool(inm or ims)
        not_modified = False
        if inm is not None:
            if self.raw_etag is not None:
                not_modified = etag_list_matches(inm, self.raw_etag)
            else:
                not_modified = self.use_etag and etag_list_matches(inm, self.etag)
        elif ims is not None and self.use_lm:
            try:
                t = email.utils.parsedate_to_datetime(ims).timestamp()
                not_modified = self.last_modified <= t
            except (TypeError, ValueError):
                not_modified = False
        rec["not_modified"] = not_modified
        if not_modified:
            r = Reply(304, b"", "application/json", headers)
            return r
        return Reply(200, self.doc, "application/json", headers)

    def control(self, h, path, q, raw):
        try:
            body = simcore.parse_json_body(raw) if path not in ("/_sim/doc", "/_sim/active") else None
        except ValueError as e:
            return json_reply({"error": str(e)}, 400)
        r = self.core.control_common(h, path, q, body)
        if r is not None:
            return r
        with self.lock:
            if path == "/_sim/requests" and h.command == "GET":
                return json_reply({"requests": self.core.calls, "now_mono": time.monotonic()})
            if path == "/_sim/doc" and h.command == "GET":
                return Reply(200, self.doc, "application/octet-stream",
                             [("X-Sim-ETag", self.etag)])
            if path == "/_sim/doc" and h.command in ("POST", "PUT"):
                lm = q.get("last_modified")
                self.set_doc(raw, float(lm) if lm else None,
                             q.get("etag", "1") != "0", q.get("last_modified_header", "1") != "0",
                             q.get("etag_value") or None)
                return json_reply(self.state())
            if path == "/_sim/doc-json" and h.command == "POST":
                # convenience: patch the example with top-level / provisioning keys
                doc = json.loads(json.dumps(EXAMPLE_DOC))
                for k, v in (body or {}).items():
                    if k in ("manifest_defaults", "vm_parameters"):
                        doc["provisioning"][k].update(v)
                    elif k == "env_keys":
                        doc["provisioning"]["env_keys"] = v
                    else:
                        doc[k] = v
                self.set_doc(json.dumps(doc, indent=2).encode() + b"\n", None, True, True)
                return json_reply(self.state())
            if path == "/_sim/active" and h.command in ("POST", "PUT"):
                self.active = raw
                self.active_status = int(q.get("status", 200))
                self.active_mode = "raw"
                return json_reply({"ok": True})
            if path == "/_sim/active-mode" and h.command == "POST":
                return self.set_active_mode(body or {})
            if path == "/_sim/validators" and h.command == "POST":
                # literal ETag / Last-Modified header values, sent as given
                # (control bytes, 90 KB...); null = the computed ones again
                b = body or {}
                for k in ("etag", "last_modified"):
                    if b.get(k) is not None and not isinstance(b[k], str):
                        return json_reply({"error": "%s: must be a string or null" % k}, 400)
                self.raw_etag = b.get("etag")
                self.raw_last_modified = b.get("last_modified")
                return json_reply({"ok": True})
            if path == "/_sim/status" and h.command == "POST":
                self.compose_status = int((body or {}).get("status", 200))
                return json_reply(self.state())
            if path == "/_sim/state" and h.command == "GET":
                return json_reply(self.state())
        return json_reply({"error": "no such control endpoint: %s" % path}, 404)

    def set_active_mode(self, b):
        """idle | busy (jobs: a count or [{"job_id", "status"}]) | malformed
        (the pre-§5b shape {"active_jobs": N}, which is not the API's) |
        unreachable (connections dropped without a reply)."""
        mode = b.get("mode")
        jobs = b.get("jobs", 1)
        if mode == "idle":
            active = []
        elif mode == "busy":
            if isinstance(jobs, int) and not isinstance(jobs, bool) and jobs >= 0:
                jobs = [{"job_id": "job-%d" % (i + 1), "status": "running"} for i in range(jobs)]
            if not isinstance(jobs, list) or not all(
                    isinstance(j, dict) and isinstance(j.get("job_id"), str)
                    and j.get("status") in ("queued", "running") for j in jobs):
                return json_reply({"error": "jobs: a count or [{job_id, status: queued|running}]"}, 400)
            active = [{"job_id": j["job_id"], "status": j["status"],
                       "log_url": "/validate/%s/log" % j["job_id"]} for j in jobs]
        elif mode == "malformed":
            self.active = json.dumps({"active_jobs": 1}).encode()
        elif mode != "unreachable":
            return json_reply({"error": "mode: idle, busy, malformed or unreachable"}, 400)
        if mode in ("idle", "busy"):
            self.active = json.dumps({"active": active}).encode()
        self.active_status = 200
        self.active_mode = mode
        return json_reply({"ok": True, "mode": mode})

    def state(self):
        return {"etag": self.etag if self.use_etag else None,
                "last_modified": email.utils.formatdate(self.last_modified, usegmt=True)
                if self.use_lm else None,
                "last_modified_epoch": self.last_modified, "size": len(self.doc),
                "sha256": hashlib.sha256(self.doc).hexdigest(),
                "doc_version": self.doc_version, "compose_status": self.compose_status}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", default="tcp:127.0.0.1:0",
                   help="tcp:127.0.0.1:PORT, tcp:[::1]:PORT or unix:/path/api.sock")
    p.add_argument("--ready-file", help="write the URL here (atomically) once listening")
    p.add_argument("--ready-fd", type=int, help="write the URL to this inherited fd")
    p.add_argument("--doc", help="file whose bytes are served as the document")
    p.add_argument("--active", help="JSON served at /validate/active (default {\"active\": []})")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    sim = ApiSim(args)
    simcore.run(sim, args.listen, args.ready_file, args.ready_fd)


if __name__ == "__main__":
    main()
