"""A raw-socket HTTP/1.1 server for clients that must cope with awkward answers.

Unlike werkzeug (see servers.py), nothing here is normalised: every answer is written byte for
byte as scripted, connections stay open unless an answer says otherwise (so keep-alive reuse can
be observed), and each request is recorded exactly as it arrived (request line, headers, body).

    with RawHTTPServer() as server:
        server.script("/slow", drip(b"HTTP/1.1 201 Created\\r\\n"))
        ... POST to server.url("/slow") ...
        server.requests[0].line, server.connections

Scripts are keyed by path without the query; unscripted paths get `CREATED` and keep-alive.
"""
from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CREATED = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
MAX_HEAD = 256 * 1024

# A handler writes the answer to the connection; it returns True to read the next request on the
# same connection, False to close it. `stopping` is set when the server shuts down.
Handler = Callable[[socket.socket, threading.Event], bool]


@dataclass
class RawRequest:
    line: str  # e.g. "POST /push/1 HTTP/1.1", the target still percent-encoded
    headers: dict[str, str]  # lower-cased names
    body: bytes
    connection: int  # 1 for the first connection the server accepted, 2 for the next ...

    @property
    def target(self) -> str:
        return self.line.split(" ")[1]


def reply(data: bytes, *, close: bool = False, delay: float = 0.0) -> Handler:
    """Write `data` (after `delay` seconds), then keep the connection or close it."""

    def handler(conn: socket.socket, stopping: threading.Event) -> bool:
        if delay and stopping.wait(delay):
            return False
        conn.sendall(data)
        return not close

    return handler


def in_parts(*parts: bytes, pause: float = 0.2) -> Handler:
    """Write `parts` with a pause between them (the client sees each part on its own), keep the connection."""

    def handler(conn: socket.socket, stopping: threading.Event) -> bool:
        for number, part in enumerate(parts):
            if number and stopping.wait(pause):
                return False
            conn.sendall(part)
        return True

    return handler


def hang_up() -> Handler:
    """Close the connection without answering."""
    return lambda conn, stopping: False


def drip(head: bytes, *, interval: float = 0.05, limit: float = 10.0) -> Handler:
    """Write `head`, then one byte every `interval` seconds for up to `limit` seconds, then close.

    The answer never completes; a client with a per-read (rather than per-answer) timeout would
    keep reading until the limit and then see the connection closed.
    """

    def handler(conn: socket.socket, stopping: threading.Event) -> bool:
        conn.sendall(head)
        waited = 0.0
        while waited < limit and not stopping.wait(interval):
            conn.sendall(b"X")
            waited += interval
        return False

    return handler


class RawHTTPServer:
    """Threaded raw HTTP/1.x server on 127.0.0.1 (ephemeral port), optionally behind TLS."""

    def __init__(self, tls: ssl.SSLContext | None = None):
        self.tls = tls
        self.requests: list[RawRequest] = []
        self.connections = 0  # accepted so far
        self._scripts: dict[str, Handler] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)  # the accept loop notices stop() quickly
        self.port = self._listener.getsockname()[1]
        accept = threading.Thread(target=self._accept, name=f"raw-http-{self.port}", daemon=True)
        self._threads.append(accept)
        accept.start()

    def url(self, path: str = "/push", host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed (by either side)."""
        with self._lock:
            return len(self._open)

    def script(self, path: str, answer: bytes | Handler) -> None:
        """How to answer every request to `path`: raw bytes (connection kept) or a handler."""
        self._scripts[path] = reply(answer) if isinstance(answer, bytes) else answer

    # -- serving ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self.connections += 1
                number = self.connections
                worker = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
                self._threads.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with self._lock:
            self._open.add(conn)
        try:
            if self.tls is not None:
                plain = conn
                conn = self.tls.wrap_socket(plain, server_side=True)
                with self._lock:
                    self._open.discard(plain)
                    self._open.add(conn)
            if self._stopping.is_set():
                return
            buffer = b""
            while True:
                request, buffer = self._read_request(conn, buffer, number)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                path = request.target.split("?", 1)[0]
                handler = self._scripts.get(path) or reply(CREATED)
                if not handler(conn, self._stopping):
                    return
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._open.discard(conn)
            conn.close()

    @staticmethod
    def _read_request(conn: socket.socket, buffer: bytes, number: int) -> tuple[RawRequest | None, bytes]:
        while b"\r\n\r\n" not in buffer:
            if len(buffer) > MAX_HEAD:
                raise ValueError("request head too large")
            data = conn.recv(65536)
            if not data:
                return None, b""
            buffer += data
        head, buffer = buffer.split(b"\r\n\r\n", 1)
        line, *fields = head.decode("latin-1").split("\r\n")
        headers = {}
        for field in fields:
            name, _, value = field.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = int(headers.get("content-length", "0"))
        while len(buffer) < size:
            data = conn.recv(65536)
            if not data:
                return None, b""
            buffer += data
        return RawRequest(line, headers, buffer[:size], number), buffer[size:]

    # -- shutting down ----------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            still_open = list(self._open)
            threads = list(self._threads)
        for conn in still_open:
            try:  # wakes a thread blocked in recv(); plain socket shutdown also for TLS sockets
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> RawHTTPServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def self_signed_certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate (also its own CA) for DNS name `name`: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
