"""Shared HTTP machinery of the two simulators (vmm_sim.py, api_sim.py).

Listening on loopback TCP or a unix socket, readiness reporting, the call log,
fault injection (error, http500, hang, hold, drop, slow, oversize, malformed) and
the common part of the /_sim control API. Python 3.11 stdlib only.
"""

import http.server
import json
import os
import signal
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

FAULT_KINDS = ("error", "http500", "hang", "hold", "drop", "slow", "oversize",
               "malformed")
DRAIN_MAX = 64 * 1024 * 1024  # oversized request bodies read and discarded
BLOCK_MAX = 3600.0          # an unreleased hang/hold gives up after this long


class Reply:
    def __init__(self, status=200, body=b"", content_type="application/json",
                 headers=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.content_type = content_type
        self.headers = headers or []


def json_reply(obj, status=200, pretty=False):
    if pretty:
        text = json.dumps(obj, indent=2, ensure_ascii=False)
    else:
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return Reply(status, text.encode())


class Fault:
    def __init__(self, fid, spec, current_count):
        kind = spec.get("kind")
        if kind not in FAULT_KINDS:
            raise ValueError("unknown fault kind: %r" % (kind,))
        key = spec.get("method", spec.get("path"))
        if not isinstance(key, str) or not key:
            raise ValueError("fault needs a method (or path)")
        self.id = fid
        self.key = key
        self.kind = kind
        call = spec.get("call")
        self.call = int(call) if call is not None else current_count + 1
        self.times = int(spec.get("times", 1))     # 0 = every call from `call` on
        self.message = str(spec.get("message", "injected fault"))
        self.status = int(spec.get("status", 500))
        self.seconds = spec.get("seconds")
        self.after = bool(spec.get("after", False))
        self.size = int(spec.get("size", 16 * 1024 * 1024))
        self.hits = 0

    def matches(self, key, n):
        if key != self.key or n < self.call:
            return False
        return self.times == 0 or n < self.call + self.times

    def as_json(self):
        return {"id": self.id, "method": self.key, "kind": self.kind,
                "call": self.call, "times": self.times, "message": self.message,
                "status": self.status, "seconds": self.seconds,
                "after": self.after, "size": self.size, "hits": self.hits}


class Blocked:
    def __init__(self, record, kind):
        self.record = record
        self.kind = kind
        self.event = threading.Event()


class SimCore:
    """State shared by every simulator: call log, faults, blocked calls."""

    def __init__(self, verbose=False):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.calls = []
        self.counts = {}
        self.faults = []
        self.next_fault_id = 1
        self.blocked = []
        self.verbose = verbose
        self.t0 = time.monotonic()
        self.closing = False
        self.sim = None             # the simulator, for /_sim/reset

    # ---- call log -------------------------------------------------------
    def record_call(self, key, h, body_obj, raw_len):
        with self.lock:
            n = self.counts.get(key, 0) + 1
            self.counts[key] = n
            rec = {"seq": len(self.calls) + 1, "method": key, "n": n,
                   "http_method": h.command, "path": h.path,
                   "headers": {k: v for k, v in h.headers.items()},
                   "body": body_obj, "bytes_in": raw_len,
                   "mono": time.monotonic(), "wall": time.time(),
                   "state": "received", "status": None, "fault": None,
                   "bytes_out": 0, "done_mono": None}
            fault = None
            for f in self.faults:
                if f.matches(key, n):
                    fault = f
                    f.hits += 1
                    rec["fault"] = f.kind
                    break
            self.calls.append(rec)
            self.cond.notify_all()
            return rec, fault

    def finish(self, rec, status, nbytes):
        with self.lock:
            rec["state"] = "done"
            rec["status"] = status
            rec["bytes_out"] = nbytes
            rec["done_mono"] = time.monotonic()
            self.cond.notify_all()

    def block(self, rec, kind, seconds):
        b = Blocked(rec, kind)
        with self.lock:
            rec["state"] = "blocked"
            self.blocked.append(b)
            self.cond.notify_all()
        b.event.wait(BLOCK_MAX if seconds is None else float(seconds))
        with self.lock:
            if b in self.blocked:
                self.blocked.remove(b)
            rec["state"] = "received"
            self.cond.notify_all()

    # ---- control API shared by both simulators ---------------------------
    def add_fault(self, spec):
        with self.lock:
            key = spec.get("method", spec.get("path"))
            f = Fault(self.next_fault_id, spec, self.counts.get(key, 0))
            self.next_fault_id += 1
            self.faults.append(f)
            return f

    def release(self, spec):
        with self.lock:
            n = 0
            for b in list(self.blocked):
                if spec.get("method") not in (None, b.record["method"]):
                    continue
                if spec.get("seq") not in (None, b.record["seq"]):
                    continue
                b.event.set()
                self.blocked.remove(b)
                n += 1
            return n

    def wait(self, spec):
        key = spec.get("method")
        count = int(spec.get("count", 1))
        state = spec.get("state", "received")
        timeout = min(float(spec.get("timeout", 10)), 120.0)
        since = int(spec.get("since_seq", 0))

        def matching():
            k = 0
            for r in self.calls:
                if r["seq"] <= since or (key is not None and r["method"] != key):
                    continue
                if state == "received" or r["state"] == state:
                    k += 1
            return k

        with self.lock:
            ok = self.cond.wait_for(lambda: matching() >= count, timeout)
            return {"ok": bool(ok), "count": matching()}

    def control_common(self, h, path, q, body):
        """Handles the /_sim endpoints both simulators share; None if unknown."""
        if path == "/_sim/calls" and h.command == "GET":
            with self.lock:
                calls = self.calls
                if "method" in q:
                    calls = [c for c in calls if c["method"] == q["method"]]
                return json_reply({"calls": calls, "now_mono": time.monotonic()})
        if path == "/_sim/reset-calls" and h.command == "POST":
            with self.lock:
                self.calls = []
                self.counts = {}
                return json_reply({"ok": True})
        if path == "/_sim/fault" and h.command == "POST":
            try:
                f = self.add_fault(body or {})
            except (ValueError, TypeError) as e:
                return json_reply({"error": str(e)}, 400)
            return json_reply(f.as_json())
        if path == "/_sim/faults" and h.command == "GET":
            with self.lock:
                return json_reply({"faults": [f.as_json() for f in self.faults]})
        if path == "/_sim/clear-faults" and h.command == "POST":
            with self.lock:
                self.faults = []
            n = self.release({})
            return json_reply({"ok": True, "released": n})
        if path == "/_sim/release" and h.command == "POST":
            return json_reply({"released": self.release(body or {})})
        if path == "/_sim/blocked" and h.command == "GET":
            with self.lock:
                return json_reply({"blocked": [
                    {"seq": b.record["seq"], "method": b.record["method"],
                     "kind": b.kind} for b in self.blocked]})
        if path == "/_sim/wait" and h.command == "POST":
            return json_reply(self.wait(body or {}))
        if path == "/_sim/reset" and h.command == "POST":
            with self.lock:
                self.calls = []
                self.counts = {}
                self.faults = []
            self.release({})
            with self.lock:
                self.sim.reset()
            return json_reply({"ok": True})
        if path == "/_sim/ping":
            return json_reply({"ok": True, "pid": os.getpid()})
        return None


# ---- sending replies, with faults ----------------------------------------

def _send_raw(h, data):
    try:
        h.wfile.write(data)
        h.wfile.flush()
        return True
    except (BrokenPipeError, ConnectionResetError, OSError):
        return False


def send_reply(h, reply, head_only=False):
    h.send_response(reply.status)
    if reply.status not in (204, 304):
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Content-Length", str(len(reply.body)))
    for k, v in reply.headers:
        h.send_header(k, v)
    h.end_headers()
    if reply.status in (204, 304) or h.command == "HEAD":
        return 0
    if not head_only and reply.body:
        _send_raw(h, reply.body)
    return len(reply.body)


def drop_connection(h):
    h.close_connection = True
    try:
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def fault_reply(fault):
    """The canned reply of the simple kinds, None for the others."""
    if fault.kind == "error":
        return json_reply({"error": fault.message}, 400, pretty=True)
    if fault.kind == "http500":
        return Reply(fault.status, fault.message + "\n", "text/plain")
    if fault.kind == "malformed":
        return Reply(200, b'{"vms": [{"id": "trunc', "application/json")
    return None


def serve_with_fault(core, h, rec, fault, execute):
    """Runs execute() -> Reply under the fault (or none) and sends the result."""
    try:
        if fault is not None and fault.kind == "hold":
            core.block(rec, "hold", fault.seconds)
            fault = None
        reply = None
        if fault is None or fault.kind == "slow" or fault.after:
            reply = execute()
            if reply is None:           # the handler streamed its own reply
                return core.finish(rec, h._sim_status, 0)
        if fault is not None and fault_reply(fault) is not None:
            reply, fault = fault_reply(fault), None
        if fault is not None:
            nbytes = apply_fault(core, h, rec, fault, reply)
            core.finish(rec, h._sim_status, nbytes)
        else:
            # log first: a client may act on the reply before we return
            bodylen = 0 if reply.status in (204, 304) or h.command == "HEAD" else len(reply.body)
            core.finish(rec, reply.status, bodylen)
            send_reply(h, reply)
    except Exception:
        if rec["state"] != "done":
            core.finish(rec, None, 0)
        raise


def apply_fault(core, h, rec, fault, reply):
    k = fault.kind
    h._sim_status = None
    if k == "drop":
        drop_connection(h)
        return 0
    if k == "hang":
        core.block(rec, "hang", fault.seconds)
        drop_connection(h)
        return 0
    if k == "oversize":
        h._sim_status = 200
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(fault.size))
        h.end_headers()
        head, tail = b'{"pad":"', b'"}'
        sent = 0
        if fault.size >= len(head) + len(tail):
            _send_raw(h, head)
            sent = len(head)
            chunk = b"x" * 65536
            left = fault.size - len(head) - len(tail)
            while left > 0:
                piece = chunk[:min(left, len(chunk))]
                if not _send_raw(h, piece):
                    drop_connection(h)
                    return sent
                left -= len(piece)
                sent += len(piece)
            _send_raw(h, tail)
            sent += len(tail)
        return sent
    if k == "slow":
        h._sim_status = reply.status
        total = float(fault.seconds if fault.seconds is not None else 2.0)
        h.send_response(reply.status)
        h.send_header("Content-Type", reply.content_type)
        h.send_header("Content-Length", str(len(reply.body)))
        for hk, hv in reply.headers:
            h.send_header(hk, hv)
        h.end_headers()
        _send_raw(h, b"")
        body = reply.body
        steps = max(1, min(len(body), int(total / 0.05) or 1))
        size = max(1, -(-len(body) // steps))
        interval = total / steps
        deadline = time.monotonic()
        for i in range(0, len(body), size):
            deadline += interval
            if not _send_raw(h, body[i:i + size]):
                drop_connection(h)
                return i
            delay = deadline - time.monotonic()
            if delay > 0:
                time.sleep(delay)     # trickling is the point of this fault
        return len(body)
    raise ValueError(k)


# ---- servers ------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sim/1"
    sim = None                      # set by make_server

    def address_string(self):
        ca = self.client_address
        return ca[0] if isinstance(ca, tuple) and ca else "unix"

    def log_message(self, fmt, *args):
        if self.sim is not None and self.sim.core.verbose:
            sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def _dispatch(self):
        self._sim_status = None
        try:
            self.sim.handle(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _dispatch


def read_body(h, limit):
    """Returns (bytes, error_reply). Handles Content-Length and chunked."""
    te = h.headers.get("Transfer-Encoding", "").lower()
    if "chunked" in te:
        out = bytearray()
        while True:
            line = h.rfile.readline(1024)
            try:
                n = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                h.close_connection = True
                return b"", json_reply({"error": "bad chunked encoding"}, 400, True)
            if n == 0:
                while h.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(out), None
            if len(out) + n > limit:
                h.close_connection = True
                return b"", json_reply({"error": "request body too large"}, 400, True)
            out += h.rfile.read(n)
            h.rfile.readline(8)
    n = int(h.headers.get("Content-Length") or 0)
    if n > limit:
        # drain (bounded) so the client reads our reply instead of a reset
        h.close_connection = True
        left = n if n <= DRAIN_MAX else 0
        while left > 0:
            got = h.rfile.read(min(left, 1 << 20))
            if not got:
                break
            left -= len(got)
        return b"", json_reply({"error": "request body too large"}, 400, True)
    return (h.rfile.read(n) if n else b""), None


class TCPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class TCP6Server(TCPServer):
    address_family = socket.AF_INET6


class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("unix", 0)


def make_server(listen, sim):
    handler = type("SimHandler", (Handler,), {"sim": sim})
    if listen.startswith("unix:"):
        path = listen[len("unix:"):]
        if os.path.exists(path):
            os.unlink(path)
        srv = UnixServer(path, handler)
        return srv, "unix:" + path, path
    if not listen.startswith("tcp:"):
        raise SystemExit("--listen must be tcp:HOST:PORT or unix:PATH")
    hostport = listen[len("tcp:"):]
    host, _, port = hostport.rpartition(":")
    host = host.strip("[]")
    if host not in ("127.0.0.1", "::1", "localhost"):
        raise SystemExit("only loopback addresses may be bound")
    # A reply goes out as two writes, head then body. With Nagle the body waits
    # for the ACK of the head, which a client in request/reply rhythm delays by
    # up to 40 ms: every reply with a body would be 40 ms late (not so the VMM).
    handler.disable_nagle_algorithm = True
    if host == "::1":
        srv = TCP6Server((host, int(port)), handler)
        url = "http://[::1]:%d" % srv.server_address[1]
    else:
        srv = TCPServer(("127.0.0.1", int(port)), handler)
        url = "http://127.0.0.1:%d" % srv.server_address[1]
    return srv, url, None


def announce(url, ready_file, ready_fd):
    line = (url + "\n").encode()
    if ready_file:
        tmp = "%s.tmp.%d" % (ready_file, os.getpid())
        with open(tmp, "wb") as f:
            f.write(line)
        os.rename(tmp, ready_file)
    if ready_fd is not None:
        os.write(ready_fd, line)
        os.close(ready_fd)


def run(sim, listen, ready_file=None, ready_fd=None):
    srv, url, unix_path = make_server(listen, sim)
    sim.url = url

    def on_term(signum, frame):
        if unix_path:
            try:
                os.unlink(unix_path)
            except OSError:
                pass
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    announce(url, ready_file, ready_fd)
    srv.serve_forever()


def split_path(h):
    u = urllib.parse.urlsplit(h.path)
    q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
    return u.path, u.query, q


def flat_query(q):
    return {k: v[-1] for k, v in q.items()}


def parse_json_body(raw):
    if not raw.strip():
        return None
    return json.loads(raw)
