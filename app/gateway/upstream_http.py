"""A lean HTTP/1.1 client for the one upstream DAV server, with a keep-alive pool.

Every DAV request of every user goes through here, so it does only what a proxy to one server
needs: write the head and stream the body, read the answer head, hand the body back as it arrives
(Content-Length, chunked or until close), keep the connection if the exchange ended cleanly.
requests/urllib3 spent about 1.1 ms of CPU per request on top of this (bench/RESULTS.md, issue 11).

Blocking sockets: under gunicorn's gevent workers they are gevent's (monkey-patched), so a request
waiting on upstream holds a greenlet, not a thread.
"""
from __future__ import annotations

import select
import socket
import ssl
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import splice

MAX_HEAD = 64 * 1024  # status line + headers of an answer
MAX_HEADERS = 200
MAX_INTERIM = 5  # 1xx answers skipped before the final one
READ_SIZE = 256 * 1024
CHECK_AFTER_IDLE = 1.0  # seconds idle after which a pooled connection is checked before use
MAX_IDLE = 50.0  # seconds idle after which a pooled connection is not used again
NO_BODY_STATUSES = frozenset((204, 304))


class UpstreamError(Exception):
    """The upstream server could not be reached, broke off, or answered something that is not HTTP/1.x."""


class UpstreamTimeout(UpstreamError):
    """The upstream server did not answer (or go on answering) in time."""


class StaleConnection(UpstreamError):
    """A pooled keep-alive connection was closed by the server before it answered anything."""


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, base_url: str) -> Origin:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        return cls(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


class Pool:
    """Idle keep-alive connections to one origin (LIFO: the warmest first), at most `size` kept."""

    def __init__(self, origin: Origin, *, connect_timeout: float, verify_tls: bool = True, size: int = 64):
        self.origin = origin
        self.connect_timeout = connect_timeout
        self.size = size
        self._idle: list[tuple[socket.socket, float]] = []  # with the time each went idle
        self._tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            self._tls = ssl.create_default_context()
            if not verify_tls:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE

    def take(self) -> tuple[socket.socket, bool]:
        """A connection and whether it was reused from the pool."""
        while True:
            try:
                sock, idle_since = self._idle.pop()
            except IndexError:
                break
            idle = time.monotonic() - idle_since
            if idle < CHECK_AFTER_IDLE or (idle < MAX_IDLE and _still_open(sock)):
                return sock, True
            sock.close()  # closed by the server while idle (or idle too long to trust)
        try:
            sock = socket.create_connection((self.origin.host, self.origin.port), timeout=self.connect_timeout)
        except TimeoutError:
            raise UpstreamTimeout("connecting timed out") from None
        except OSError as error:
            raise UpstreamError(f"cannot connect: {error.strerror or error}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._tls is not None:
            try:
                sock = self._tls.wrap_socket(sock, server_hostname=self.origin.host)
            except (OSError, ssl.SSLError) as error:
                sock.close()
                raise UpstreamError(f"TLS handshake failed: {error}") from None
        return sock, False

    def give_back(self, sock: socket.socket) -> None:
        if len(self._idle) < self.size:
            self._idle.append((sock, time.monotonic()))
        else:
            sock.close()

    def close(self) -> None:
        while self._idle:
            self._idle.pop()[0].close()


def _still_open(sock: socket.socket) -> bool:
    """An idle connection has nothing to read: readable means the server closed it (or misbehaved).
    Checked only after CHECK_AFTER_IDLE, since a request with a streamed body cannot be retried
    once the server turns out to have closed the connection (upstreams close idle ones after 5 s
    (Apache) to 75 s (nginx))."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


class Response:
    """An upstream answer whose body is read on demand (`read1`, `read_all`); `close()` always."""

    def __init__(self, pool: Pool, sock: socket.socket, buffer: bytearray, status: int, reason: str,
                 headers: list[tuple[str, str]], *, method: str, reusable: bool):
        self.pool = pool
        self.status = status
        self.reason = reason
        self.headers = headers
        self._sock: socket.socket | None = sock
        self._buffer = buffer
        self._reusable = reusable
        self._chunk_left = 0  # bytes left in the current chunk (chunked framing)
        self._decoder: zlib._Decompress | None = None
        self._splice_target: tuple | None = None
        self.read_timeout: float = 60.0
        if method == "HEAD" or status in NO_BODY_STATUSES or 100 <= status < 200:
            self._mode, self._left = "length", 0
        elif (encoding := self.header("transfer-encoding")) is not None:
            if encoding.lower().rsplit(",", 1)[-1].strip() != "chunked":
                raise UpstreamError("unsupported Transfer-Encoding")
            self._mode, self._left = "chunked", -1
        elif (length := self.header("content-length")) is not None:
            self._mode, self._left = "length", _content_length(length)
        else:
            self._mode, self._left = "close", -1
            self._reusable = False
        self.content_length = self._left if self._mode == "length" else None
        if self._left == 0:
            self._finish()

    # headers
    def header(self, name: str) -> str | None:
        """The value of `name` (several: joined with ", "), or None."""
        values = self.header_list(name)
        return ", ".join(values) if values else None

    def header_list(self, name: str) -> list[str]:
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    # body
    def decode_content(self) -> None:
        """Undo gzip/deflate Content-Encoding in what read1 returns (for answers that are rewritten)."""
        encoding = (self.header("content-encoding") or "identity").strip().lower()
        if encoding in ("gzip", "x-gzip", "deflate"):
            self._decoder = zlib.decompressobj(47 if encoding != "deflate" else zlib.MAX_WBITS)
        elif encoding != "identity":
            raise UpstreamError(f"unsupported Content-Encoding {encoding!r}")

    def read1(self, limit: int = READ_SIZE) -> bytes:
        """What has arrived of the body (at most about `limit` bytes, after one read at most); b"" at its end."""
        while True:
            data = self._read_framed(limit)
            if self._decoder is None or not data:
                if not data and self._decoder is not None:
                    tail, self._decoder = self._decoder.flush(), None
                    return tail
                return data
            try:
                decoded = self._decoder.decompress(data)
            except zlib.error:
                raise UpstreamError("undecodable compressed body") from None
            if decoded:
                return decoded

    def read_all(self, max_bytes: int) -> bytes:
        """The whole body; UpstreamError beyond `max_bytes`."""
        parts, size = [], 0
        while data := self.read1():
            size += len(data)
            if size > max_bytes:
                self.close()
                raise UpstreamError("answer too large")
            parts.append(data)
        return b"".join(parts)

    def close(self) -> None:
        """Give the connection back if the answer was read to its end, else close it."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def splice_to(self, destination, *, timeout: float) -> bytes | None:
        """For a plain connection and a Content-Length body: returns what of the body is buffered
        here (send it first), then call `finish_splice`. None when splicing cannot be done."""
        if self._mode != "length" or self._decoder is not None or self._sock is None or not splice.spliceable(self._sock):
            return None
        data = bytes(self._buffer[:self._left])
        del self._buffer[:len(data)]
        self._left -= len(data)
        self._splice_target = (destination, timeout)
        return data

    def finish_splice(self) -> None:
        """Move the rest of the body straight to the destination given to splice_to."""
        assert self._splice_target is not None
        destination, timeout = self._splice_target
        if self._left:
            try:
                splice.transfer(self._sock, destination, self._left, timeout=timeout)
            except splice.SpliceError:
                self.close()
                raise
            self._left = 0
        self._finish()

    @property
    def complete(self) -> bool:
        return self._sock is None and self._left == 0

    def _read_framed(self, limit: int) -> bytes:
        if self._sock is None:
            return b""
        if self._mode == "length":
            if self._left == 0:
                return b""
            data = self._take(min(limit, self._left), exact=False)
            if not data:
                self._fail("the answer ended early")
            self._left -= len(data)
            if self._left == 0:
                self._finish()
            return data
        if self._mode == "close":
            data = self._take(limit, exact=False)
            if not data:
                self._left = 0
                self.close()
            return data
        return self._read_chunk(limit)

    def _read_chunk(self, limit: int) -> bytes:
        if self._chunk_left == 0:
            line = self._line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self._fail("bad chunk size")
            if size < 0:
                self._fail("bad chunk size")
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                self._left = 0
                self._finish()
                return b""
            self._chunk_left = size
        data = self._take(min(limit, self._chunk_left), exact=False)
        if not data:
            self._fail("the answer ended early")
        self._chunk_left -= len(data)
        if self._chunk_left == 0 and self._take(2, exact=True) != b"\r\n":
            self._fail("bad chunk framing")
        return data

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD or not self._recv_more():
                self._fail("bad chunk framing")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _take(self, size: int, *, exact: bool) -> bytes:
        """Up to `size` bytes (exactly `size` if `exact`, b"" if the stream ends first): buffered
        ones first, else what one recv brings."""
        if exact:
            while len(self._buffer) < size:
                if not self._recv_more():
                    return b""
        elif not self._buffer:
            return self._recv(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _recv_more(self) -> bytes:
        data = self._recv(READ_SIZE)
        self._buffer += data
        return data

    def _recv(self, size: int) -> bytes:
        if self._sock is None:
            return b""
        try:
            return self._sock.recv(size)
        except TimeoutError:
            self.close()
            raise UpstreamTimeout("the answer stalled") from None
        except OSError:
            self.close()
            raise UpstreamError("the connection broke") from None

    def _fail(self, why: str):
        self.close()
        raise UpstreamError(why)

    def _finish(self) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if self._reusable and not self._buffer:
            self.pool.give_back(sock)
        else:
            sock.close()


def _content_length(value: str) -> int:
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1:
        raise UpstreamError("conflicting Content-Length")
    (single,) = values
    if not single.isascii() or not single.isdigit() or len(single) > 18:
        raise UpstreamError("bad Content-Length")
    return int(single)


def request_head(method: str, target: str, host: str, headers: Iterable[tuple[str, str]],
                 body_length: int | None) -> bytes:
    """The request line and headers; `body_length` None means a chunked body, -1 none."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for name, value in headers:
        if "\r" in value or "\n" in value or "\x00" in value:
            raise ValueError(f"header {name} has a line break")
        lines.append(f"{name}: {value}")
    if body_length is None:
        lines.append("Transfer-Encoding: chunked")
    elif body_length >= 0:
        lines.append(f"Content-Length: {body_length}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def exchange(pool: Pool, method: str, target: str, headers: list[tuple[str, str]], body,
             *, read_timeout: float) -> Response:
    """Send one request and read the answer's head. `body`: None, bytes, or a stream with
    `length` (int, or None when unknown: sent chunked), `chunks()` and `started` (true once a
    chunk was taken).

    A pooled connection the server had already closed is retried once on a new connection: safe,
    since the server took nothing of the request, as long as the body can be sent again (bytes,
    or a stream none of which was read yet)."""
    for attempt in (1, 2):
        sock, reused = pool.take()
        sock.settimeout(read_timeout)
        try:
            _send(pool, sock, method, target, headers, body)
            response = _read_answer(pool, sock, method, fresh=not reused)
            response.read_timeout = read_timeout
            return response
        except StaleConnection:
            sock.close()
            if not reused or attempt == 2 or getattr(body, "started", False):
                raise UpstreamError("the connection was closed by the server") from None
        except BaseException:
            sock.close()
            raise
    raise AssertionError("unreachable")


def _send(pool: Pool, sock: socket.socket, method: str, target: str, headers, body) -> None:
    host = pool.origin.host_header
    try:
        if body is None:
            sock.sendall(request_head(method, target, host, headers, -1))
        elif isinstance(body, bytes):
            sock.sendall(request_head(method, target, host, headers, len(body)) + body)
        else:
            length = body.length
            sock.sendall(request_head(method, target, host, headers, length))
            if getattr(body, "send_to", None) is not None:
                body.send_to(sock)
                return
            for data in body.chunks():
                sock.sendall(data if length is not None else b"%x\r\n%b\r\n" % (len(data), data))
            if length is None:
                sock.sendall(b"0\r\n\r\n")
    except TimeoutError:
        raise UpstreamTimeout("sending the request timed out") from None
    except OSError:
        raise StaleConnection() from None


def _read_answer(pool: Pool, sock: socket.socket, method: str, *, fresh: bool) -> Response:
    buffer = bytearray()
    for _ in range(MAX_INTERIM + 1):
        while (end := buffer.find(b"\r\n\r\n")) < 0:
            if len(buffer) > MAX_HEAD:
                raise UpstreamError("answer head too large")
            try:
                data = sock.recv(READ_SIZE)
            except TimeoutError:
                raise UpstreamTimeout("no answer in time") from None
            except OSError:
                if buffer or fresh:
                    raise UpstreamError("the connection broke") from None
                raise StaleConnection() from None
            if not data:
                if buffer or fresh:
                    raise UpstreamError("the connection closed before the answer was complete")
                raise StaleConnection()
            buffer += data
        head = bytes(buffer[:end]).decode("latin-1")
        del buffer[: end + 4]
        version, status, reason, headers = _parse_head(head)
        if 100 <= status < 200 and status != 101:
            continue  # 100 Continue, 103 Early Hints: interim, the final answer follows
        if status == 101:
            raise UpstreamError("unexpected protocol switch")
        tokens = {t.strip().lower() for n, v in headers if n.lower() == "connection" for t in v.split(",")}
        reusable = version == "HTTP/1.1" and "close" not in tokens
        return Response(pool, sock, buffer, status, reason, headers, method=method, reusable=reusable)
    raise UpstreamError("too many interim answers")


def _parse_head(head: str) -> tuple[str, int, str, list[tuple[str, str]]]:
    status_line, _, rest = head.partition("\r\n")
    version, _, tail = status_line.partition(" ")
    code, _, reason = tail.partition(" ")
    if version not in ("HTTP/1.1", "HTTP/1.0") or len(code) != 3 or not code.isascii() or not code.isdigit():
        raise UpstreamError("not an HTTP/1.x answer")
    headers: list[tuple[str, str]] = []
    if rest:
        lines = rest.split("\r\n")
        if len(lines) > MAX_HEADERS:
            raise UpstreamError("too many headers")
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip() or line[0] in " \t":
                raise UpstreamError("malformed header line")
            headers.append((name, value.strip(" \t")))
    return version, int(code), reason, headers
