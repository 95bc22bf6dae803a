"""Concurrent, guarded HTTP POSTs of encrypted push messages.

- one keep-alive pool per (push-service origin, resolved address), kept for the
  life of the worker process;
- per origin at most PUSH_PER_ORIGIN_CONCURRENCY requests in flight (or the
  origin's own limit from PUSH_ORIGIN_CONCURRENCY), overall at most
  PUSH_CONCURRENCY: each origin gets a few "lanes" that drain its queue, so a
  slow service never ties up the capacity other services need;
- the SSRF guard runs again at send time and the connection goes to the address
  that was checked (DNS cannot be swapped in between); redirects are never
  followed; connect and read timeouts are always set (the connect timeout covers
  the TLS handshake, the read timeout the whole answer); at most 4 KiB of an
  answer body is read and the answer head is capped too.

How: one asyncio event loop per sender, in a daemon thread that lives as long
as the worker process (so do its keep-alive connections). send_all() hands the
batch to that loop and waits. Encryption (make_body) runs in the loop thread
just before each request. The HTTP/1.1 exchange is a small asyncio Protocol
instead of urllib3 in a thread pool: urllib3/http.client spent ~0.4 ms of CPU
per push and hundreds of threads fighting over the GIL doubled the cost of the
encryption (bench/RESULTS.md). Only what a push needs is implemented: one
request per connection at a time; Content-Length, chunked or read-until-close
answer framing; keep-alive unless the server says otherwise. Anything
unexpected closes the connection.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import ssl
import string
import threading
import time
import traceback
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Mapping
from urllib.parse import quote

from ..logs import endpoint_label, log
from . import ssrf
from .outcomes import BLOCKED, REJECTED, RETRY, Outcome, classify, parse_retry_after

RESOLVE_TTL = 30.0
SWEEP_SECONDS = 0.1  # resolution of the read timeout
SHAPE_CACHE_SIZE = 200_000
MAX_ANSWER_BODY = 4096  # bytes of an answer body that are read at most
MAX_ANSWER_HEAD = 65536  # status line + headers
MAX_ANSWER_HEADERS = 100
MAX_INTERIM = 5  # 1xx answers skipped before the final one
MAX_DEMOTED_FACTOR = 4  # stragglers outside PUSH_CONCURRENCY, as a multiple of it
_BUFFER_CAP = MAX_ANSWER_HEAD + MAX_ANSWER_BODY + 65536  # reading pauses beyond this
USER_AGENT = "davpush"
_TARGET_SAFE = string.punctuation  # keeps existing %-escapes; only non-ASCII gets encoded
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")
_DROP_HEADERS = frozenset(("host", "content-length", "connection", "transfer-encoding"))
_MAX_LENGTH_DIGITS = 18  # a longer Content-Length is over MAX_ANSWER_BODY anyway (and int() caps digits)
logger = logging.getLogger("davpush.sender")


@dataclass
class PushRequest:
    subscription_id: str
    endpoint: str
    make_body: Callable[[], bytes]  # encryption runs just before the request is sent
    headers: dict


class _Flight:
    """One request in flight: when it becomes a straggler, and whether it already is one."""

    __slots__ = ("deadline", "demoted")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.demoted = False


def _log_failure(future) -> None:
    if not future.cancelled() and future.exception() is not None:
        error = future.exception()
        log(logger, logging.ERROR, "push batch failed", error=type(error).__name__, detail=str(error)[:200])


class ProtocolError(Exception):
    """The answer is not HTTP/1.x we accept (or the connection ended mid-answer)."""


class _Named(Exception):
    """A failure reported under a stable name (the outcome detail)."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: collects what the server sends into `buffer`."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.transport = None
        self.buffer = bytearray()
        self.eof = False
        self.deadline = 0.0  # loop time by which the answer must be complete
        self.timed_out = False
        self._waiter = None

    # asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _BUFFER_CAP:
            self.transport.pause_reading()  # memory stays bounded; the reader gives up
        self._wake()

    def eof_received(self):
        self.eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc) -> None:
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
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self.timed_out:
            raise _Named("ReadTimeoutError")
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


class PushSender:
    def __init__(
        self,
        *,
        concurrency: int,
        per_origin: int,
        connect_timeout: float,
        read_timeout: float,
        allow_http: bool,
        allowed_networks: tuple = (),
        resolver=socket.getaddrinfo,
        ssl_context: ssl.SSLContext | None = None,
        origin_limits: Mapping[str, int] | None = None,
        straggler_after: float = 0.5,
    ):
        self.concurrency = concurrency
        self.per_origin = per_origin
        self.origin_limits = dict(origin_limits or {})
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.straggler_after = straggler_after
        self.allow_http = allow_http
        self.allowed_networks = allowed_networks
        self.resolver = resolver
        self.ssl_context = ssl_context or _default_ssl_context()
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._reset_loop_state()

    def _reset_loop_state(self) -> None:
        # Everything below is only touched from the loop thread.
        self._idle: dict[tuple, deque] = defaultdict(deque)
        self._resolved: dict[tuple, tuple[float, list[str]]] = {}
        self._resolving: dict[tuple, asyncio.Future] = {}
        self._slots = None  # asyncio.Semaphore(concurrency), made in the loop
        self._origin_slots: dict[str, asyncio.Semaphore] = {}
        self._waiting: set = set()  # connections waiting for an answer (see _sweep)
        self._flights: set[_Flight] = set()  # requests holding a PUSH_CONCURRENCY slot
        self._demoted = 0
        self._sweeper = None
        self._shapes: dict[str, ssrf.Endpoint] = {}  # check_shape() is a pure function of the URL
        self._dns = ThreadPoolExecutor(max_workers=8, thread_name_prefix="push-dns")

    # -- public ------------------------------------------------------------------------

    def limit_for(self, origin: str) -> int:
        """Requests in flight allowed to one push-service origin."""
        return self.origin_limits.get(origin, self.per_origin)

    def submit(self, requests: list[PushRequest], authorization: Callable[[str], str],
               on_outcome: Callable[[Outcome], None]) -> None:
        """Start sending; `on_outcome` gets each push's outcome as soon as it is known (in the
        sender's thread, or in the caller's for endpoints refused before any I/O). Returns at once."""
        by_origin: dict[str, deque] = defaultdict(deque)
        shapes = self._shapes
        if len(shapes) > SHAPE_CACHE_SIZE:
            shapes.clear()
        for item in requests:
            try:
                endpoint = shapes.get(item.endpoint)
                if endpoint is None:
                    endpoint = shapes[item.endpoint] = ssrf.check_shape(item.endpoint, allow_http=self.allow_http)
            except ssrf.BlockedEndpoint as error:
                on_outcome(Outcome(item.subscription_id, BLOCKED, detail=str(error)))
                continue
            by_origin[endpoint.origin].append((endpoint, item))
        if not by_origin:
            return
        headers = {origin: authorization(origin) for origin in by_origin}
        future = asyncio.run_coroutine_threadsafe(self._send_groups(by_origin, headers, on_outcome), self._ensure_loop())
        future.add_done_callback(_log_failure)

    def send_all(self, requests: list[PushRequest], authorization: Callable[[str], str]) -> list[Outcome]:
        """Send and wait for every outcome."""
        outcomes: list[Outcome] = []
        finished = threading.Event()
        lock = threading.Lock()

        def collect(outcome: Outcome) -> None:
            with lock:
                outcomes.append(outcome)
                if len(outcomes) == len(requests):
                    finished.set()

        if requests:
            self.submit(requests, authorization, collect)
            finished.wait()
        return outcomes

    def close(self) -> None:
        with self._start_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or not loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_idle(), loop).result(timeout=5)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._dns.shutdown(wait=False)

    # -- the loop thread -----------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None or self._pid != os.getpid():  # a forked child needs its own loop
                self._pid = os.getpid()
                self._reset_loop_state()  # connections and semaphores belong to one loop
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(target=self._run_loop, args=(loop, ready), name="push-loop", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run_loop(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._slots = asyncio.Semaphore(self.concurrency)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _close_idle(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

    async def _send_groups(self, by_origin: dict, headers: dict, on_outcome: Callable[[Outcome], None]) -> None:
        lanes = [
            asyncio.ensure_future(self._drain(origin, queue, headers[origin], on_outcome))
            for origin, queue in by_origin.items()
            for _ in range(min(self.limit_for(origin), len(queue)))
        ]
        try:
            await asyncio.gather(*lanes)
        finally:
            for lane in lanes:
                lane.cancel()

    async def _drain(self, origin: str, queue: deque, authorization: str, on_outcome: Callable[[Outcome], None]) -> None:
        origin_slots = self._origin_slots.get(origin)
        if origin_slots is None:
            origin_slots = self._origin_slots[origin] = asyncio.Semaphore(self.limit_for(origin))
        loop = asyncio.get_running_loop()
        while queue:
            endpoint, item = queue.popleft()
            async with origin_slots:
                await self._slots.acquire()
                flight = _Flight(loop.time() + self.straggler_after)
                self._flights.add(flight)
                try:
                    outcome = await self._send_one(endpoint, item, authorization)
                finally:
                    self._flights.discard(flight)
                    if flight.demoted:
                        self._demoted -= 1
                    else:
                        self._slots.release()
            on_outcome(outcome)

    async def _send_one(self, endpoint: ssrf.Endpoint, item: PushRequest, authorization: str) -> Outcome:
        """One push, one outcome. Whatever goes wrong costs this push only, never the batch:
        an exception escaping here would cancel the other pushes in flight and fail send_all()."""
        try:
            return await self._attempt(endpoint, item, authorization)
        except Exception as error:  # not BaseException: cancellation still propagates
            where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
            log(logger, logging.ERROR, "unexpected error while sending a push", error=type(error).__name__,
                where=f"{os.path.basename(where.filename)}:{where.lineno}" if where else "-",
                endpoint=endpoint_label(item.endpoint))
            return Outcome(item.subscription_id, RETRY, detail=type(error).__name__)

    async def _attempt(self, endpoint: ssrf.Endpoint, item: PushRequest, authorization: str) -> Outcome:
        try:
            address = self._cached_address(endpoint) or await self._resolve_address(endpoint)
        except ssrf.BlockedEndpoint as error:
            kind = RETRY if "does not resolve" in str(error) else BLOCKED
            return Outcome(item.subscription_id, kind, detail=str(error))
        try:
            body = item.make_body()
        except Exception as error:  # a key that passed validation but cannot encrypt
            return Outcome(item.subscription_id, REJECTED, detail=f"encryption failed: {type(error).__name__}")
        try:
            request = _request_bytes(item.endpoint, item.headers, authorization, body)
        except (ValueError, UnicodeError) as error:
            return Outcome(item.subscription_id, REJECTED, detail=f"cannot build the request: {error}")
        key = (endpoint.scheme, endpoint.host, endpoint.port, address)
        conn = self._take_idle(key)
        try:
            if conn is None:
                conn = await self._connect(endpoint, address)
            conn.deadline = conn.loop.time() + self.read_timeout
            self._waiting.add(conn)
            if self._sweeper is None:
                self._sweeper = conn.loop.call_later(SWEEP_SECONDS, self._sweep)
            try:
                conn.transport.write(request)
                status, retry_after_header, reusable = await self._read_answer(conn)
            finally:
                self._waiting.discard(conn)
            kind = classify(status)
            retry_after = parse_retry_after(retry_after_header) if kind == RETRY else None
        except (_Named, ProtocolError, OSError) as error:
            if conn is not None:
                conn.close()
            return Outcome(item.subscription_id, RETRY, detail=_error_name(error))
        except BaseException:  # anything else: the connection is not trusted again (see _send_one)
            if conn is not None:
                conn.close()
            raise
        if reusable and conn.usable():
            idle = self._idle[key]
            if len(idle) < self.limit_for(endpoint.origin):
                idle.append(conn)
            else:
                conn.close()
        else:
            conn.close()
        return Outcome(item.subscription_id, kind, status, retry_after)

    # -- connections -----------------------------------------------------------------------

    def _sweep(self) -> None:
        """Read timeouts: one timer for all connections instead of one per request."""
        self._sweeper = None
        if not self._waiting:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for conn in [c for c in self._waiting if c.deadline <= now]:
            self._waiting.discard(conn)
            conn.time_out()
        self._demote_stragglers(now)
        self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)

    def _demote_stragglers(self, now: float) -> None:
        """Requests slower than straggler_after give their place in PUSH_CONCURRENCY back, so a few
        push services that never answer cannot hold every slot; their origin's own bound still
        holds them, and at most MAX_DEMOTED_FACTOR × concurrency are demoted at once."""
        for flight in self._flights:
            if self._demoted >= self.concurrency * MAX_DEMOTED_FACTOR:
                return
            if not flight.demoted and flight.deadline <= now:
                flight.demoted = True
                self._demoted += 1
                self._slots.release()

    def _take_idle(self, key: tuple) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # most recently used first
            if conn.usable():
                return conn
            conn.close()
        return None

    async def _connect(self, endpoint: ssrf.Endpoint, address: str) -> _Connection:
        """A new connection to the checked address (never to the host name)."""
        loop = asyncio.get_running_loop()
        tls = endpoint.scheme == "https"
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop), host=address, port=endpoint.port,
                    ssl=self.ssl_context if tls else None, server_hostname=endpoint.host if tls else None,
                    ssl_handshake_timeout=self.connect_timeout if tls else None,
                )
        except TimeoutError:
            raise _Named("ConnectTimeoutError") from None
        except ssl.SSLError:
            raise _Named("SSLError") from None
        except OSError:
            raise _Named("NewConnectionError") from None
        return conn

    def _cached_address(self, endpoint: ssrf.Endpoint) -> str | None:
        """The SSRF-checked address while it is fresh (RESOLVE_TTL); checked without a coroutine switch."""
        cached = self._resolved.get((endpoint.host, endpoint.port))
        return cached[1][0] if cached and cached[0] > time.monotonic() else None

    async def _resolve_address(self, endpoint: ssrf.Endpoint) -> str:
        """Resolve and SSRF-check off the loop; concurrent requests for one name share the lookup."""
        key = (endpoint.host, endpoint.port)
        pending = self._resolving.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(self._dns, ssrf.resolve, endpoint, self.allowed_networks, self.resolver)
            self._resolving[key] = pending
            pending.add_done_callback(lambda done, key=key: self._resolved_done(key, done))
        addresses = await asyncio.shield(pending)
        return addresses[0]

    def _resolved_done(self, key: tuple, done: asyncio.Future) -> None:
        self._resolving.pop(key, None)
        if not done.cancelled() and done.exception() is None:
            self._resolved[key] = (time.monotonic() + RESOLVE_TTL, done.result())

    # -- answers ---------------------------------------------------------------------------

    async def _read_answer(self, conn: _Connection) -> tuple[int, str | None, bool]:
        """(status, Retry-After, whether the connection may be reused)."""
        for _ in range(MAX_INTERIM + 1):
            version, status, headers = await self._read_head(conn)
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
                reusable = await self._skip_chunked(conn) and reusable
            else:
                await self._skip_until_close(conn)
                reusable = False
        elif length is not None:
            if not _ascii_digits(length):
                raise ProtocolError("bad Content-Length")
            digits = length.lstrip("0") or "0"
            size = int(digits) if len(digits) <= _MAX_LENGTH_DIGITS else MAX_ANSWER_BODY + 1
            if size > MAX_ANSWER_BODY:
                await self._fill(conn, MAX_ANSWER_BODY, eof_ok=True)
                reusable = False
            else:
                await self._fill(conn, size)
                del buffer[:size]
        else:
            await self._skip_until_close(conn)
            reusable = False
        if buffer:  # bytes nobody asked for: do not trust this connection again
            reusable = False
        return status, headers.get("retry-after"), reusable

    async def _read_head(self, conn: _Connection) -> tuple[str, int, dict]:
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
        if len(parts) < 2 or parts[0] not in ("HTTP/1.1", "HTTP/1.0") or len(parts[1]) != 3 or not _ascii_digits(parts[1]):
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

    async def _fill(self, conn: _Connection, size: int, eof_ok: bool = False) -> None:
        while len(conn.buffer) < size:
            if not await conn.more():
                if eof_ok:
                    return
                raise ProtocolError("connection closed inside the answer body")

    async def _skip_until_close(self, conn: _Connection) -> None:
        while len(conn.buffer) < MAX_ANSWER_BODY:
            if not await conn.more():
                return
        # more than we read: the caller closes the connection

    async def _skip_chunked(self, conn: _Connection) -> bool:
        """Consume a chunked body of at most MAX_ANSWER_BODY bytes; False when it was cut short."""
        total = 0
        buffer = conn.buffer
        while True:
            line = await self._line(conn)
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
                raise ProtocolError("bad chunk size")
            size = int(size_text, 16)
            if size == 0:
                while await self._line(conn):  # trailer fields, then the empty line
                    pass
                return True
            total += size
            if total > MAX_ANSWER_BODY:
                return False
            await self._fill(conn, size + 2)
            if buffer[size : size + 2] != b"\r\n":
                raise ProtocolError("bad chunk framing")
            del buffer[: size + 2]

    async def _line(self, conn: _Connection) -> bytes:
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


def _ascii_digits(text: str) -> bool:
    """0-9 only: heads are decoded as latin-1, and "²".isdigit() is true although int("²") fails."""
    return text.isascii() and text.isdigit()


def _error_name(error: BaseException) -> str:
    if isinstance(error, _Named):
        return error.name
    if isinstance(error, ProtocolError):
        return "RemoteDisconnected" if str(error) == "RemoteDisconnected" else "ProtocolError"
    if isinstance(error, ssl.SSLError):
        return "SSLError"
    return type(error).__name__


def _default_ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()  # CERT_REQUIRED, host name checked, system CAs
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def _request_bytes(url: str, headers: dict, authorization: str, body: bytes) -> bytes:
    """The request head and body. The URL passed check_shape: absolute, no fragment,
    no user information, no whitespace or control characters."""
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
    lines = [f"POST {target} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: {USER_AGENT}\r\n"
             f"Accept-Encoding: identity\r\nContent-Length: {len(body)}\r\nAuthorization: {authorization}\r\n"]
    values = [authorization]
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in _DROP_HEADERS or name.lower() == "authorization":
            continue  # Host, Content-Length, Connection, Transfer-Encoding and Authorization are ours
        value = str(value)
        values.append(value)
        lines.append(f"{name}: {value}\r\n")
    if _BAD_HEADER_VALUE.search("".join(values)):
        raise ValueError("a header value contains CR, LF or NUL")
    lines.append("\r\n")
    head = "".join(lines)
    return head.encode("latin-1") + body
