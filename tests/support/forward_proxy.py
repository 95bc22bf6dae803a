"""A small outbound HTTP proxy on 127.0.0.1 that records what passes through it.

- `CONNECT host:port` opens a tunnel (recorded in `tunnels`) and relays bytes both ways;
- a request in absolute form (`POST http://host:port/path HTTP/1.1`) is forwarded in origin form
  without the Proxy-* headers (recorded in `forwarded`), and its answer relayed with
  `Connection: close`: one request per client connection keeps this proxy simple;
- with `credentials=(user, password)` anything without the matching Proxy-Authorization is
  answered 407 (recorded in `refused`); `hosts` maps names to addresses, as the proxy's own DNS;
- with `tls` (a server-side SSLContext) clients talk to the proxy itself over TLS (an https:// proxy).

    with ForwardProxy(credentials=("u", "p")) as proxy:
        ... push through proxy.url_with("u", "p") ...
        proxy.tunnels, proxy.forwarded, proxy.refused
"""
from __future__ import annotations

import base64
import socket
import threading
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024


class ForwardProxy:
    def __init__(self, *, credentials: tuple[str, str] | None = None, hosts: dict[str, str] | None = None,
                 tls=None):
        self.credentials = credentials
        self.tls = tls
        self.hosts = dict(hosts or {})
        self.tunnels: list[str] = []  # "host:port" of every tunnel opened
        self.forwarded: list[str] = []  # absolute URL of every request forwarded
        self.refused: list[str] = []  # request line of every request answered 407
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._start(self._accept)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str, host: str = "127.0.0.1") -> str:
        return f"http://{user}:{password}@{host}:{self.port}"

    # -- serving -------------------------------------------------------------------------------

    def _start(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> socket.socket:
        with self._lock:
            self._sockets.add(sock)
        return sock

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            self._start(self._serve, self._track(client))

    def _serve(self, client: socket.socket) -> None:
        try:
            if self.tls is not None:
                client = self._track(self.tls.wrap_socket(client, server_side=True))
            head, rest = _read_head(client, b"")
            if head is None:
                return
            line, headers = _parse_head(head)
            method, target, _ = line.split(" ", 2)
            if not self._authorized(headers.get("proxy-authorization")):
                with self._lock:
                    self.refused.append(line)
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n"
                               b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if method == "CONNECT":
                self._tunnel(client, target, rest)
            elif target.startswith("http://"):
                self._forward(client, method, target, headers, rest)
            else:
                client.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except (OSError, ValueError):
            return
        finally:
            client.close()

    def _authorized(self, header: str | None) -> bool:
        if self.credentials is None:
            return True
        expected = "Basic " + base64.b64encode(":".join(self.credentials).encode("utf-8")).decode("ascii")
        return header == expected

    def _upstream(self, host: str, port: int) -> socket.socket:
        return self._track(socket.create_connection((self.hosts.get(host, host), port), timeout=5))

    def _tunnel(self, client: socket.socket, target: str, rest: bytes) -> None:
        host, _, port = target.rpartition(":")
        upstream = self._upstream(host.strip("[]"), int(port))
        upstream.settimeout(None)
        with self._lock:
            self.tunnels.append(target)
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        if rest:
            upstream.sendall(rest)
        self._start(_pipe, upstream, client)
        _pipe(client, upstream)

    def _forward(self, client: socket.socket, method: str, url: str, headers: dict, rest: bytes) -> None:
        body = rest
        size = int(headers.get("content-length", "0"))
        while len(body) < size:
            data = client.recv(65536)
            if not data:
                return
            body += data
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            self.forwarded.append(url)
        kept = [f"{name}: {value}" for name, value in headers.items()
                if not name.startswith("proxy-") and name != "connection"]
        request = "\r\n".join([f"{method} {target} HTTP/1.1", *kept, "Connection: close", "", ""])
        upstream = self._upstream(parts.hostname, parts.port or 80)
        upstream.sendall(request.encode("latin-1") + body[:size])
        answer_head, answer_rest = _read_head(upstream, b"")
        if answer_head is None:
            return
        status_line, answer_headers = _parse_head(answer_head)
        lines = [status_line] + [f"{n}: {v}" for n, v in answer_headers.items() if n != "connection"]
        client.sendall(("\r\n".join(lines + ["Connection: close", "", ""])).encode("latin-1"))
        length = answer_headers.get("content-length")
        remaining = int(length) if length is not None else None
        data = answer_rest
        while True:
            if remaining is not None:
                data = data[:remaining]
                remaining -= len(data)
            if data:
                client.sendall(data)
            if remaining == 0:
                return
            data = upstream.recv(65536)
            if not data:
                return

    # -- shutting down -------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        for thread in threads:
            thread.join(timeout=5)

    def __enter__(self) -> ForwardProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _read_head(sock: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            raise ValueError("head too large")
        data = sock.recv(65536)
        if not data:
            return None, b""
        buffer += data
    head, rest = buffer.split(b"\r\n\r\n", 1)
    return head, rest


def _parse_head(head: bytes) -> tuple[str, dict[str, str]]:
    line, *fields = head.decode("latin-1").split("\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.partition(":")
        headers[name.strip().lower()] = value.strip()
    return line, headers


def _pipe(source: socket.socket, target: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
