#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Loopback HTTP server with misbehaving endpoints, for tests of the HTTP client.

Listens on 127.0.0.1 (ephemeral port), with --unix also on a unix socket, and
with --tls-dir also over HTTPS with a fresh self-signed certificate for
127.0.0.1 (written to DIR/cert.pem; needs python3-cryptography).
Readiness: writes "PORT[ TLSPORT]" to --ready-file (atomically) and/or to
--ready-fd and closes that fd.

  GET  /ok              200 "hello", ETag "v1", Last-Modified; 304 if the
                        request's If-None-Match or If-Modified-Since matches
  POST /echo            200 JSON {method, body, authorization, content_type}
  GET  /status?code=N   status N with body {"error": "status N"}
  GET  /hang            never answers
  GET  /slow?ms=N       answers 200 "slow" after N ms
  GET  /slowbody?ms=N   sends headers, then the body after N ms
  GET  /big?n=N         N bytes with Content-Length
  GET  /bigchunked?n=N  N bytes chunked, no Content-Length
  GET  /drop            closes the connection without an answer
"""
import argparse
import json
import os
import socket
import socketserver
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ETAG = '"v1"'
LAST_MODIFIED = "Wed, 21 Oct 2026 07:28:00 GMT"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def address_string(self):
        return "local"

    def _send(self, code, body, ctype="text/plain", extra=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if code != 304:
            self.wfile.write(body)

    def _query(self):
        u = urllib.parse.urlsplit(self.path)
        return u.path, dict(urllib.parse.parse_qsl(u.query))

    def do_GET(self):
        path, q = self._query()
        if path == "/ok":
            if (self.headers.get("If-None-Match") == ETAG
                    or self.headers.get("If-Modified-Since") == LAST_MODIFIED):
                self._send(304, b"", extra=[("ETag", ETAG)])
            else:
                self._send(200, "hello", extra=[("ETag", ETAG), ("Last-Modified", LAST_MODIFIED)])
        elif path == "/status":
            code = int(q.get("code", "500"))
            self._send(code, json.dumps({"error": f"status {code}"}), "application/json")
        elif path == "/hang":
            time.sleep(3600)
        elif path == "/slow":
            time.sleep(int(q.get("ms", "100")) / 1000)
            self._send(200, "slow")
        elif path == "/slowbody":
            body = b"slow body"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            time.sleep(int(q.get("ms", "100")) / 1000)
            self.wfile.write(body)
        elif path == "/big":
            self._send(200, b"x" * int(q["n"]))
        elif path == "/bigchunked":
            self._chunked(int(q["n"]))
        elif path == "/drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            self._send(404, "not found")

    def _chunked(self, n):
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = b"y" * 65536
        try:
            while n > 0:
                part = chunk[:min(n, len(chunk))]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                n -= len(part)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client gave up, as it should
        self.close_connection = True

    def do_POST(self):
        path, _ = self._query()
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n).decode(errors="replace")
        if path == "/echo":
            self._send(200, json.dumps({
                "method": "POST",
                "path": self.path,
                "body": body,
                "authorization": self.headers.get("Authorization"),
                "content_type": self.headers.get("Content-Type"),
            }), "application/json")
        else:
            self._send(404, "not found")


class Quiet:
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        pass  # clients hanging up early is what the tests do


class TcpServer(Quiet, ThreadingHTTPServer):
    pass


class UnixServer(Quiet, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    pass


def make_cert(d):
    """A self-signed certificate for 127.0.0.1, generated per run."""
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


class TlsServer(TcpServer):
    context = None

    def get_request(self):
        sock, addr = super().get_request()
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.do_handshake()
        except (OSError, ssl.SSLError):
            return  # the client refused our certificate, as it should
        super().finish_request(request, client_address)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ready-file")
    ap.add_argument("--ready-fd", type=int)
    ap.add_argument("--unix")
    ap.add_argument("--tls-dir")
    a = ap.parse_args()

    servers = [TcpServer(("127.0.0.1", 0), Handler)]
    if a.unix:
        servers.append(UnixServer(a.unix, Handler))
    port = str(servers[0].server_address[1])
    if a.tls_dir:
        TlsServer.context = make_cert(a.tls_dir)
        tls = TlsServer(("127.0.0.1", 0), Handler)
        servers.append(tls)
        port += " %d" % tls.server_address[1]
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()

    if a.ready_file:
        tmp = a.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(port + "\n")
        os.rename(tmp, a.ready_file)
    if a.ready_fd is not None:
        os.write(a.ready_fd, (port + "\n").encode())
        os.close(a.ready_fd)
    threading.Event().wait()


if __name__ == "__main__":
    main()
