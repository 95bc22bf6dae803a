"""The HTTP/1.1 exchange of one push, written for what a push needs and nothing more.

- `Connection`: an asyncio Protocol that collects what the server sends; reading pauses when the
  buffer is full, so memory stays bounded whatever the server does;
- `request_bytes`: the request head and body, refusing header values with CR, LF or NUL;
  non-ASCII targets percent-encoded (escapes already there are kept), internationalised host
  names in IDNA form; through a proxy the target is in absolute form with Proxy-Authorization;
- `read_answer`: status, Retry-After and whether the connection may be reused. Content-Length,
  chunked or read-until-close framing, at most MAX_ANSWER_BODY bytes of a body; 1xx answers are
  skipped; HTTP/1.0, `Connection: close`, conflicting lengths, garbage or leftover bytes mean the
  connection is not reused; the head is capped at MAX_ANSWER_HEAD bytes and MAX_ANSWER_HEADERS.

Written instead of using an HTTP library: a worker's throughput is bound by its CPU, and with
aiohttp's client a worker needed 1.4–1.6× the CPU per push and reached 61–76 % of the throughput
(measured side by side, bench/RESULTS.md, issue 10).
"""
from __future__ import annotations

import asyncio
import re
import ssl
import string
from typing import Any
from urllib.parse import quote

from ..protocol.numbers import ascii_digits

MAX_ANSWER_BODY = 4096  # bytes of an answer body that are read at most
MAX_ANSWER_HEAD = 65536  # status line + headers
MAX_ANSWER_HEADERS = 100
MAX_INTERIM = 5  # 1xx answers skipped before the final one
_BUFFER_CAP = MAX_ANSWER_HEAD + MAX_ANSWER_BODY + 65536  # reading pauses beyond this
USER_AGENT = "davpush"
_TARGET_SAFE = string.punctuation  # keeps existing %-escapes; only non-ASCII gets encoded
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")
_DROP_HEADERS = frozenset(("host", "content-length", "connection", "transfer-encoding", "authorization",
                           "proxy-authorization"))
_MAX_LENGTH_DIGITS = 18  # a longer Content-Length is over MAX_ANSWER_BODY anyway (and int() caps digits)


class ProtocolError(Exception):
    """The answer is not HTTP/1.x we accept (or the connection ended mid-answer)."""


class NamedFailure(Exception):
    """A failure reported under a stable name (the outcome detail)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: collects what the server sends into `buffer`."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport: Any = None  # the asyncio transport, once connected
        self.buffer = bytearray()
        self.eof = False
        self.deadline = 0.0  # loop time by which the answer must be complete
        self.timed_out = False
        self._waiter: asyncio.Future[None] | None = None

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _BUFFER_CAP:
            self.transport.pause_reading()  # memory stays bounded; the reader gives up
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # used by the sender
    async def more(self) -> bool:
        """Wait for more bytes; False at the end of the stream."""
        if len(self.buffer) > _BUFFER_CAP:
            raise ProtocolError("answer too large")
        size = len(self.buffer)
        while len(self.buffer) == size and not self.eof:
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._waiter = waiter
            try:
                await waiter
            finally:
                self._waiter = None
        if self.timed_out:
            raise NamedFailure("ReadTimeoutError")
        return len(self.buffer) > size

    def time_out(self) -> None:
        self.timed_out = True
        self.eof = True
        self._wake()
        self.close()

    def usable(self) -> bool:
        """An idle keep-alive connection is only reused if the server neither closed it nor sent anything."""
        return not self.eof and not self.buffer and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()



async def read_answer(conn: Connection) -> tuple[int, str | None, bool]:
    """(status, Retry-After, whether the connection may be reused)."""
    for _ in range(MAX_INTERIM + 1):
        version, status, headers = await read_head(conn)
        if not (100 <= status < 200 and status != 101):
            break  # 1xx (100 Continue, 103 Early Hints) are interim: the final answer follows
    else:
        raise ProtocolError("too many interim answers")
    if status == 101:
        raise ProtocolError("unexpected protocol switch")
    tokens = {t.strip() for t in headers.get("connection", "").lower().split(",")}
    reusable = version == "HTTP/1.1" and "close" not in tokens
    encoding = headers.get("transfer-encoding")
    length = headers.get("content-length")
    buffer = conn.buffer
    if status in (204, 304):
        pass
    elif encoding is not None:
        if encoding.lower().rsplit(",", 1)[-1].strip() == "chunked":
            reusable = await _skip_chunked(conn) and reusable
        else:
            await _skip_until_close(conn)
            reusable = False
    elif length is not None:
        if not ascii_digits(length):
            raise ProtocolError("bad Content-Length")
        digits = length.lstrip("0") or "0"
        size = int(digits) if len(digits) <= _MAX_LENGTH_DIGITS else MAX_ANSWER_BODY + 1
        if size > MAX_ANSWER_BODY:
            await _fill(conn, MAX_ANSWER_BODY, eof_ok=True)
            reusable = False
        else:
            await _fill(conn, size)
            del buffer[:size]
    else:
        await _skip_until_close(conn)
        reusable = False
    if buffer:  # bytes nobody asked for: do not trust this connection again
        reusable = False
    return status, headers.get("retry-after"), reusable

async def read_head(conn: Connection) -> tuple[str, int, dict[str, str]]:
    buffer = conn.buffer
    start = 0
    while True:
        end = buffer.find(b"\r\n\r\n", max(0, start - 3))
        if end > MAX_ANSWER_HEAD or (end < 0 and len(buffer) > MAX_ANSWER_HEAD):
            raise ProtocolError("answer head too large")
        if end >= 0:
            break
        start = len(buffer)
        if not await conn.more():
            raise ProtocolError("connection closed before a complete answer" if buffer else "RemoteDisconnected")
    head = bytes(buffer[:end]).decode("latin-1")
    del buffer[: end + 4]
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or len(parts[1]) != 3 or not ascii_digits(parts[1]):
        raise ProtocolError("not an HTTP/1.x status line")
    if len(lines) - 1 > MAX_ANSWER_HEADERS:
        raise ProtocolError("too many answer headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError("malformed answer header")
        name = name.lower()
        value = value.strip()
        if name in headers:
            if name == "content-length" and headers[name] != value:
                raise ProtocolError("conflicting Content-Length")
            if name in ("transfer-encoding", "connection"):
                value = headers[name] + ", " + value
        headers[name] = value
    return parts[0], int(parts[1]), headers

async def _fill(conn: Connection, size: int, eof_ok: bool = False) -> None:
    while len(conn.buffer) < size:
        if not await conn.more():
            if eof_ok:
                return
            raise ProtocolError("connection closed inside the answer body")

async def _skip_until_close(conn: Connection) -> None:
    while len(conn.buffer) < MAX_ANSWER_BODY:
        if not await conn.more():
            return
    # more than we read: the caller closes the connection

async def _skip_chunked(conn: Connection) -> bool:
    """Consume a chunked body of at most MAX_ANSWER_BODY bytes; False when it was cut short."""
    total = 0
    buffer = conn.buffer
    while True:
        line = await _line(conn)
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise ProtocolError("bad chunk size")
        size = int(size_text, 16)
        if size == 0:
            while await _line(conn):  # trailer fields, then the empty line
                pass
            return True
        total += size
        if total > MAX_ANSWER_BODY:
            return False
        await _fill(conn, size + 2)
        if buffer[size : size + 2] != b"\r\n":
            raise ProtocolError("bad chunk framing")
        del buffer[: size + 2]

async def _line(conn: Connection) -> bytes:
    buffer = conn.buffer
    while True:
        end = buffer.find(b"\r\n")
        if end >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            return line
        if len(buffer) > 1024:
            raise ProtocolError("chunk line too long")
        if not await conn.more():
            raise ProtocolError("connection closed inside a chunked body")




def error_name(error: BaseException) -> str:
    if isinstance(error, NamedFailure):
        return error.name
    if isinstance(error, ProtocolError):
        return "RemoteDisconnected" if str(error) == "RemoteDisconnected" else "ProtocolError"
    if isinstance(error, ssl.SSLError):
        return "SSLError"
    return type(error).__name__


def request_bytes(url: str, headers: dict[str, str], authorization: str, body: bytes, *,
                  proxy_authorization: str | None = None, absolute_form: bool = False) -> bytes:
    """The request head and body. The URL passed check_shape: absolute, no fragment,
    no user information, no whitespace or control characters. `absolute_form` for a plain-http
    request through a forward proxy (RFC 9112 §3.2.2), with the proxy's credentials if any."""
    rest = url.split("://", 1)[1]
    cut = len(rest)
    for mark in ("/", "?"):
        position = rest.find(mark)
        if 0 <= position < cut:
            cut = position
    netloc, target = rest[:cut], rest[cut:]
    if not netloc.isascii():  # an internationalised name: Host carries its ASCII (IDNA) form, as DNS and SNI do
        host, colon, port = netloc.partition(":")
        netloc = host.encode("idna").decode("ascii") + colon + port
    if not target.startswith("/"):
        target = "/" + target
    if not target.isascii():
        target = quote(target, safe=_TARGET_SAFE)
    if absolute_form:
        target = f"{url.split('://', 1)[0]}://{netloc}{target}"
    lines = [f"POST {target} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: {USER_AGENT}\r\n"
             f"Accept-Encoding: identity\r\nContent-Length: {len(body)}\r\nAuthorization: {authorization}\r\n"]
    values = [authorization]
    if proxy_authorization is not None:
        lines.append(f"Proxy-Authorization: {proxy_authorization}\r\n")
        values.append(proxy_authorization)
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in _DROP_HEADERS:
            continue  # Host, Content-Length, Connection, Transfer-Encoding and the authorizations are ours
        value = str(value)
        values.append(value)
        lines.append(f"{name}: {value}\r\n")
    if _BAD_HEADER_VALUE.search("".join(values)):
        raise ValueError("a header value contains CR, LF or NUL")
    lines.append("\r\n")
    head = "".join(lines)
    return head.encode("latin-1") + body
