"""Functional self-check of app/delivery/sender.py's HTTP handling (not a benchmark).

    .venv/bin/python bench/check_sender.py

The sender's urllib3 thread pool was replaced by a small asyncio HTTP/1.1 client
for throughput (see RESULTS.md); this script drives it against a raw-socket
server that answers in the awkward ways push services and attackers can:
chunked bodies, 1xx interim answers, Connection: close, HTTP/1.0, no length,
oversized bodies, redirects, slow or silent servers, garbage, and TLS with host
name verification. It also checks the SSRF guard at send time and that
keep-alive connections are reused. Exits non-zero on the first failure.
"""
from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.delivery.outcomes import AUTH, BLOCKED, GONE, REJECTED, RETRY, SUCCESS  # noqa: E402
from app.delivery.sender import PushRequest, PushSender  # noqa: E402

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
BODY = b"x" * 300

# path -> raw answer bytes (or a callable(conn) for special behaviour)
ANSWERS = {
    "/ok": b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\nLocation: /m/1\r\n\r\n",
    "/ok-body": b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n\r\nhello",
    "/chunked": b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "/interim": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    "/close": b"HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    "/http10": b"HTTP/1.0 201 Created\r\nContent-Length: 0\r\n\r\n",
    "/no-length": b"HTTP/1.1 201 Created\r\n\r\nsome body until close",
    "/big": b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100000\r\n\r\n" + b"y" * 100000,
    "/big-chunked": b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n" + (b"1000\r\n" + b"z" * 4096 + b"\r\n") * 25 + b"0\r\n\r\n",
    "/redirect": b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://169.254.169.254/latest\r\nContent-Length: 0\r\n\r\n",
    "/429": b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 120\r\nContent-Length: 0\r\n\r\n",
    "/503-date": b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\nContent-Length: 0\r\n\r\n",
    "/410": b"HTTP/1.1 410 Gone\r\nContent-Length: 2\r\n\r\n{}",
    "/403": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    "/garbage": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "/conflicting-length": b"HTTP/1.1 201 Created\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "/huge-head": b"HTTP/1.1 201 Created\r\n" + b"X-Pad: " + b"p" * 70000 + b"\r\n\r\n",
    "/silent": None,  # never answers: the read timeout must fire
    "/slow-drip": "drip",  # one byte every 0.2 s, forever: the read timeout bounds the whole answer
    "/hangup": "hangup",  # closes without answering
}


class RawServer:
    def __init__(self, tls_context: ssl.SSLContext | None = None):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.tls = tls_context
        self.connections = 0
        self.requests: list[tuple[str, dict, bytes]] = []
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            if self.tls:
                conn = self.tls.wrap_socket(conn, server_side=True)
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                size = int(headers.get("content-length", "0"))
                while len(buffer) < size:
                    buffer += conn.recv(65536)
                body, buffer = buffer[:size], buffer[size:]
                self.requests.append((path, headers, body))
                answer = ANSWERS.get(path.split("?")[0], ANSWERS["/ok"])
                if answer is None:
                    time.sleep(30)
                    return
                if answer == "drip":
                    conn.sendall(b"HTTP/1.1 201 Created\r\n")
                    while True:
                        conn.sendall(b"X")
                        time.sleep(0.2)
                if answer == "hangup":
                    return
                conn.sendall(answer)
                if path in ("/close", "/http10", "/no-length", "/big", "/big-chunked", "/garbage"):
                    return
        except (OSError, ValueError, IndexError):
            return
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def stop(self):
        self.stopped = True
        self.sock.close()


FAILURES = []


def check(name: str, condition: bool, detail="") -> None:
    print(f"{'ok  ' if condition else 'FAIL'} {name}" + (f"   ({detail})" if detail else ""))
    if not condition:
        FAILURES.append(name)


def request(url: str, sub_id: str = "s", body: bytes = BODY, headers=None) -> PushRequest:
    return PushRequest(sub_id, url, lambda: body, headers or {"TTL": "60", "Content-Encoding": "aes128gcm"})


def one(sender: PushSender, url: str, **kwargs):
    [outcome] = sender.send_all([request(url, **kwargs)], lambda origin: "vapid t=T,k=K")
    return outcome


def self_signed(tmp: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "push.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("push.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def main() -> int:
    server = RawServer()
    sender = PushSender(concurrency=16, per_origin=4, connect_timeout=1, read_timeout=1, allow_http=True,
                        allowed_networks=LOOPBACK)
    try:
        o = one(sender, server.url("/ok"))
        check("201 is success", o.kind == SUCCESS and o.status == 201, o)
        path, headers, body = server.requests[-1]
        check("request carries body, length, Authorization, TTL, Host",
              body == BODY and headers["content-length"] == str(len(BODY)) and headers["authorization"] == "vapid t=T,k=K"
              and headers["ttl"] == "60" and headers["host"] == f"127.0.0.1:{server.port}", headers)
        before = server.connections
        for path in ("/ok", "/ok-body", "/chunked", "/interim", "/ok"):
            o = one(sender, server.url(path))
            check(f"{path} is success", o.kind == SUCCESS, o)
        check("keep-alive connection reused across answers", server.connections == before, server.connections - before)
        for path in ("/close", "/http10", "/no-length"):
            o = one(sender, server.url(path))
            check(f"{path} is success and does not break the next request", o.kind == SUCCESS and one(sender, server.url("/ok")).kind == SUCCESS, o)
        o = one(sender, server.url("/big"))
        check("400 with a 100 kB body: rejected, body not read past 4 KiB", o.kind == REJECTED and o.status == 400, o)
        o = one(sender, server.url("/big-chunked"))
        check("400 with a 100 kB chunked body: rejected", o.kind == REJECTED and o.status == 400, o)
        count = len(server.requests)
        o = one(sender, server.url("/redirect"))
        check("307 is not followed (rejected, one request)", o.kind == REJECTED and o.status == 307 and len(server.requests) == count + 1, o)
        o = one(sender, server.url("/429"))
        check("429 Retry-After: 120 -> retry in 120 s", o.kind == RETRY and o.retry_after == 120, o)
        o = one(sender, server.url("/503-date"))
        check("503 with a past HTTP-date -> retry, clamped to >= 1 s", o.kind == RETRY and o.retry_after == 1, o)
        check("410 -> gone", one(sender, server.url("/410")).kind == GONE)
        check("403 -> auth", one(sender, server.url("/403")).kind == AUTH)
        for path in ("/garbage", "/conflicting-length", "/huge-head", "/hangup"):
            o = one(sender, server.url(path))
            check(f"{path} -> retry (protocol error)", o.kind == RETRY and o.status is None, o)
        for path in ("/silent", "/slow-drip"):
            started = time.monotonic()
            o = one(sender, server.url(path))
            took = time.monotonic() - started
            check(f"{path} -> read timeout after ~1 s", o.kind == RETRY and o.detail == "ReadTimeoutError" and 0.9 < took < 1.6,
                  f"{o.detail}, {took:.2f} s")
        check("a later request still works", one(sender, server.url("/ok")).kind == SUCCESS)
        dead = socket.socket()
        dead.bind(("127.0.0.1", 0))
        dead_port = dead.getsockname()[1]
        dead.close()
        o = one(sender, f"http://127.0.0.1:{dead_port}/x")
        check("connection refused -> retry", o.kind == RETRY and o.detail == "NewConnectionError", o)
        o = one(sender, server.url("/ok", host="no-such-host.invalid"))
        check("unresolvable host -> retry", o.kind == RETRY, o)
        o = one(sender, server.url("/é?q=ü"))
        check("non-ASCII path is percent-encoded", o.kind == SUCCESS and server.requests[-1][0] == "/%C3%A9?q=%C3%BC", server.requests[-1][0])
        o = one(sender, server.url("/ok"), headers={"TTL": "60", "X-Evil": "a\r\nInjected: 1"})
        check("CR/LF in a header value is refused before sending", o.kind == REJECTED, o)
        o = PushSender(concurrency=4, per_origin=2, connect_timeout=1, read_timeout=1, allow_http=True).send_all(
            [request(server.url("/ok"))], lambda origin: "v")[0]
        check("loopback not allowed -> blocked at send time", o.kind == BLOCKED, o)
        o = PushSender(concurrency=4, per_origin=2, connect_timeout=1, read_timeout=1, allow_http=False,
                       allowed_networks=LOOPBACK).send_all([request(server.url("/ok"))], lambda origin: "v")[0]
        check("http refused without PUSH_ALLOW_HTTP", o.kind == BLOCKED, o)
        resolver_calls = []

        def rebinding(host, port, type=0):
            resolver_calls.append(host)
            address = "127.0.0.1" if len(resolver_calls) == 1 else "10.0.0.1"
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

        rebind = PushSender(concurrency=4, per_origin=2, connect_timeout=1, read_timeout=1, allow_http=True,
                            allowed_networks=LOOPBACK, resolver=rebinding)
        o = rebind.send_all([request(server.url("/ok", host="push.test"))], lambda origin: "v")[0]
        check("host name goes to the checked address; Host header keeps the name",
              o.kind == SUCCESS and server.requests[-1][1]["host"] == f"push.test:{server.port}", o)
        rebind._loop.call_soon_threadsafe(rebind._resolved.clear)
        time.sleep(0.05)
        o = rebind.send_all([request(server.url("/ok", host="push.test"))], lambda origin: "v")[0]
        check("re-resolution to a private address -> blocked", o.kind == BLOCKED, o)
        rebind.close()

        # Many requests, one origin: the per-origin bound holds and every push gets one outcome.
        many = [request(server.url(f"/ok?i={i}"), sub_id=f"s{i}") for i in range(500)]
        opened = server.connections
        outcomes = sender.send_all(many, lambda origin: "v")
        check("per-origin bound: at most 4 new connections for 500 pushes", server.connections - opened <= 4,
              server.connections - opened)
        check("500 pushes -> 500 successes, one outcome each",
              len(outcomes) == 500 and {o.subscription_id for o in outcomes} == {f"s{i}" for i in range(500)}
              and all(o.kind == SUCCESS for o in outcomes))
        check("per-origin bound: at most 4 idle connections kept", len(sender._idle[("http", "127.0.0.1", server.port, "127.0.0.1")]) <= 4)
        failing = PushRequest("bad", server.url("/ok"), lambda: (_ for _ in ()).throw(ValueError("bad key")), {})
        o = sender.send_all([failing], lambda origin: "v")[0]
        check("encryption failure -> rejected", o.kind == REJECTED and "encryption failed" in o.detail, o)
    finally:
        sender.close()
        server.stop()

    # TLS: certificate and host name are verified against the name, while the socket goes to the checked address.
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
        tls_server = RawServer(server_context)

        def resolver(host, port, type=0):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

        trusting = ssl.create_default_context(cafile=str(cert))
        tls = PushSender(concurrency=4, per_origin=2, connect_timeout=2, read_timeout=2, allow_http=False,
                         allowed_networks=LOOPBACK, resolver=resolver, ssl_context=trusting)
        try:
            o = one(tls, tls_server.url("/ok", host="push.test", scheme="https"))
            check("https with a trusted certificate for the name -> success", o.kind == SUCCESS, o)
            o = one(tls, tls_server.url("/ok", host="other.test", scheme="https"))
            check("https with a certificate for another name -> retry (SSLError)", o.kind == RETRY and o.detail == "SSLError", o)
        finally:
            tls.close()
        default = PushSender(concurrency=4, per_origin=2, connect_timeout=2, read_timeout=2, allow_http=False,
                             allowed_networks=LOOPBACK, resolver=resolver)
        try:
            o = one(default, tls_server.url("/ok", host="push.test", scheme="https"))
            check("https with an untrusted certificate (system CAs) -> retry (SSLError)", o.kind == RETRY and o.detail == "SSLError", o)
        finally:
            default.close()
            tls_server.stop()

    print(f"\n{len(FAILURES)} failure(s)" if FAILURES else "\nall checks passed")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
