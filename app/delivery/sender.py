"""Concurrent, guarded HTTP POSTs of encrypted push messages.

- one asyncio event loop per worker process, in a daemon thread that lives as long as the process,
  so keep-alive connections and the VAPID header cache are reused across jobs. Idle connections
  are kept per push-service origin (whatever address they went to) and closed after
  PUSH_KEEPALIVE_SECONDS, so rotating DNS does not pile up dead connections;
- per origin at most PUSH_PER_ORIGIN_CONCURRENCY requests in flight (or the origin's own limit
  from PUSH_ORIGIN_CONCURRENCY), overall at most PUSH_CONCURRENCY: each origin gets a few "lanes"
  that drain its queue, so a slow service never ties up the capacity other services need;
  requests slower than straggler_after give their PUSH_CONCURRENCY slot back (their origin's bound
  still holds them), so a few push services that never answer cannot hold every slot;
- the SSRF guard runs before every request (guarded_dns), and a new connection goes only to the
  addresses it checked: every one of them is tried, the next as soon as the previous fails or
  after HAPPY_EYEBALLS_DELAY (RFC 8305), so a broken route to the first address costs a quarter
  of a second, not the connect timeout; TLS checks the host name; redirects are never followed;
  the connect timeout covers every attempt and the TLS handshake, the read timeout the whole
  answer;
- with PUSH_PROXY every push goes through that proxy: a CONNECT tunnel for https endpoints (TLS
  with the push service runs inside it), a request in absolute form for http ones. The guard
  still checks the endpoint's name first; the proxy's own policy applies after that.

The HTTP/1.1 exchange itself is in http1.py. Encryption (make_body) runs in the loop thread just
before each request.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import ssl
import threading
import traceback
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohappyeyeballs

from ..core.logs import endpoint_label, log
from ..net import ssrf
from .egress_proxy import parse_proxy_url
from .guarded_dns import GuardedDNS
from .http1 import Connection, NamedFailure, ProtocolError, error_name, read_answer, read_head, request_bytes
from .origin_gate import OriginGate, SlotLease
from .outcomes import BLOCKED, REJECTED, RETRY, Outcome, classify, parse_retry_after

SWEEP_SECONDS = 0.1  # resolution of the read timeout and of straggler demotion
SHAPE_CACHE_SIZE = 200_000
MAX_DEMOTED_FACTOR = 4  # stragglers outside PUSH_CONCURRENCY, as a multiple of it
HAPPY_EYEBALLS_DELAY = 0.25  # RFC 8305's connection attempt delay
logger = logging.getLogger("davpush.sender")


@dataclass
class PushRequest:
    subscription_id: str
    endpoint: str
    make_body: Callable[[], bytes]  # encryption runs just before the request is sent
    headers: dict[str, str]


class _Flight:
    """One request in flight: when it becomes a straggler, and whether it already is one."""

    __slots__ = ("deadline", "demoted")

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.demoted = False


def _log_failure(future: concurrent.futures.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        error = future.exception()
        log(logger, logging.ERROR, "push batch failed", error=type(error).__name__, detail=str(error)[:200])


class PushSender:
    def __init__(
        self,
        *,
        concurrency: int,
        per_origin: int,
        connect_timeout: float,
        read_timeout: float,
        allow_http: bool,
        allowed_networks: tuple[ssrf.IPNetwork, ...] = (),
        resolver: Callable[..., Any] = socket.getaddrinfo,
        ssl_context: ssl.SSLContext | None = None,
        origin_limits: Mapping[str, int] | None = None,
        straggler_after: float = 0.5,
        proxy: str = "",
        keepalive_timeout: float = 30.0,
        slot_lease: SlotLease | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.per_origin = per_origin
        self.origin_limits = dict(origin_limits or {})
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.straggler_after = straggler_after
        self.allow_http = allow_http
        self.allowed_networks = allowed_networks
        self.resolver = resolver  # getaddrinfo-like; tests pin names with it
        self.ssl_context = ssl_context or _default_ssl_context()
        self.proxy = parse_proxy_url(proxy)
        self.keepalive_timeout = keepalive_timeout
        self.slot_lease = slot_lease  # per-origin limits across all workers (see origin_gate.py)
        self._lease_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="push-slots")
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._reset_loop_state()

    def _reset_loop_state(self) -> None:
        # Everything below is only touched from the loop thread.
        self._idle: dict[str, deque[tuple[Connection, float]]] = {}  # origin -> (connection, idle since), oldest first
        self._reaper: asyncio.TimerHandle | None = None
        self._dns = GuardedDNS(allowed_networks=self.allowed_networks, getaddrinfo=self.resolver)
        self._slots: asyncio.Semaphore | None = None  # asyncio.Semaphore(concurrency), made in the loop
        self._gates: dict[str, OriginGate] = {}
        self._waiting: set[Connection] = set()  # connections waiting for an answer (see _sweep)
        self._flights: set[_Flight] = set()  # requests holding a PUSH_CONCURRENCY slot
        self._demoted = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._shapes: dict[str, ssrf.Endpoint] = {}  # check_shape() is a pure function of the URL

    # -- public ------------------------------------------------------------------------

    def limit_for(self, origin: str) -> int:
        """Requests in flight allowed to one push-service origin."""
        return self.origin_limits.get(origin, self.per_origin)

    def submit(self, requests: list[PushRequest], authorization: Callable[[str], str],
               on_outcome: Callable[[Outcome], None]) -> None:
        """Start sending; `on_outcome` gets each push's outcome as soon as it is known (in the
        sender's thread, or in the caller's for endpoints refused before any I/O). Returns at once."""
        by_origin: dict[str, deque[tuple[ssrf.Endpoint, PushRequest]]] = defaultdict(deque)
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
        self._dns.close()

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
                idle.pop()[0].close()
        self._idle.clear()

    async def _send_groups(self, by_origin: dict[str, deque[tuple[ssrf.Endpoint, PushRequest]]], headers: dict[str, str],
                           on_outcome: Callable[[Outcome], None]) -> None:
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

    async def _drain(self, origin: str, queue: deque[tuple[ssrf.Endpoint, PushRequest]], authorization: str,
                     on_outcome: Callable[[Outcome], None]) -> None:
        gate = self._gates.get(origin)
        if gate is None:
            gate = self._gates[origin] = OriginGate(origin, self.limit_for(origin), self.slot_lease, self._lease_pool)
        loop = asyncio.get_running_loop()
        while queue:
            endpoint, item = queue.popleft()
            await gate.acquire()
            slots = self._slots
            assert slots is not None  # made when the loop started, before any batch
            try:
                await slots.acquire()
                flight = _Flight(loop.time() + self.straggler_after)
                self._flights.add(flight)
                try:
                    outcome = await self._send_one(endpoint, item, authorization)
                finally:
                    self._flights.discard(flight)
                    if flight.demoted:
                        self._demoted -= 1
                    else:
                        slots.release()
            finally:
                gate.release()
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
        try:  # the guard, at send time: also when a kept-alive connection is at hand
            addresses = self._dns.cached(endpoint.host, endpoint.port) or await self._dns.addresses(endpoint.host, endpoint.port)
        except ssrf.BlockedEndpoint as error:
            kind = RETRY if isinstance(error, ssrf.UnresolvableHost) else BLOCKED
            return Outcome(item.subscription_id, kind, detail=str(error))
        try:
            body = item.make_body()
        except Exception as error:  # a key that passed validation but cannot encrypt
            return Outcome(item.subscription_id, REJECTED, detail=f"encryption failed: {type(error).__name__}")
        forwarded = self.proxy is not None and endpoint.scheme == "http"  # no tunnel: the proxy reads the request
        try:
            request = request_bytes(item.endpoint, item.headers, authorization, body, absolute_form=forwarded,
                                    proxy_authorization=self.proxy.authorization if forwarded and self.proxy else None)
        except (ValueError, UnicodeError) as error:
            return Outcome(item.subscription_id, REJECTED, detail=f"cannot build the request: {error}")
        conn = self._take_idle(endpoint.origin)
        try:
            if conn is None:
                conn = await self._connect(endpoint, addresses)
            conn.deadline = conn.loop.time() + self.read_timeout
            self._waiting.add(conn)
            if self._sweeper is None:
                self._sweeper = conn.loop.call_later(SWEEP_SECONDS, self._sweep)
            try:
                conn.transport.write(request)
                status, retry_after_header, reusable = await read_answer(conn)
            finally:
                self._waiting.discard(conn)
            if status == 407 and forwarded:  # the proxy's answer, not the push service's
                conn.close()
                return Outcome(item.subscription_id, RETRY, detail="ProxyError 407")
            kind = classify(status)
            retry_after = parse_retry_after(retry_after_header) if kind == RETRY else None
        except (NamedFailure, ProtocolError, OSError) as error:
            if conn is not None:
                conn.close()
            return Outcome(item.subscription_id, RETRY, detail=error_name(error))
        except BaseException:  # anything else: the connection is not trusted again (see _send_one)
            if conn is not None:
                conn.close()
            raise
        if reusable and conn.usable():
            self._keep_idle(endpoint.origin, conn)
        else:
            conn.close()
        return Outcome(item.subscription_id, kind, status, retry_after)

    # -- timers: read timeouts, stragglers, idle connections -------------------------------------

    def _sweep(self) -> None:
        """Read timeouts and stragglers: one timer for all requests instead of one per request."""
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
                assert self._slots is not None  # made when the loop started, before any batch
                self._slots.release()

    def _keep_idle(self, origin: str, conn: Connection) -> None:
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = deque()
        if len(idle) >= self.limit_for(origin):
            conn.close()
            return
        idle.append((conn, conn.loop.time()))
        if self._reaper is None:
            self._reaper = conn.loop.call_later(self.keepalive_timeout, self._reap)

    def _take_idle(self, origin: str) -> Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest_allowed = asyncio.get_running_loop().time() - self.keepalive_timeout
        while idle:
            conn, since = idle.pop()  # most recently used first
            if since > oldest_allowed and conn.usable():
                return conn
            conn.close()
        return None

    def _reap(self) -> None:
        """Close connections idle for longer than the keep-alive timeout (oldest are leftmost)."""
        self._reaper = None
        loop = asyncio.get_running_loop()
        oldest_allowed = loop.time() - self.keepalive_timeout
        next_due = None
        for origin in list(self._idle):
            idle = self._idle[origin]
            while idle and (idle[0][1] <= oldest_allowed or not idle[0][0].usable()):
                idle.popleft()[0].close()
            if idle:
                due = idle[0][1] + self.keepalive_timeout
                next_due = due if next_due is None else min(next_due, due)
            else:
                del self._idle[origin]
        if next_due is not None:
            self._reaper = loop.call_at(next_due, self._reap)

    # -- connections -----------------------------------------------------------------------

    async def _connect(self, endpoint: ssrf.Endpoint, addresses: list[str]) -> Connection:
        """A new connection to one of the checked addresses (never to the host name), or through the proxy."""
        loop = asyncio.get_running_loop()
        tls = endpoint.scheme == "https"
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.proxy is not None:
                    return await self._through_proxy(endpoint)
                sock = await _first_to_connect(addresses, endpoint.port, loop)
                _, conn = await loop.create_connection(
                    lambda: Connection(loop), sock=sock, ssl=self.ssl_context if tls else None,
                    server_hostname=endpoint.host if tls else None,
                    ssl_handshake_timeout=self.connect_timeout if tls else None,
                )
                return conn
        except TimeoutError:
            raise NamedFailure("ConnectTimeoutError") from None
        except (ssl.SSLError, ssl.CertificateError):
            raise NamedFailure("SSLError") from None
        except OSError:
            raise NamedFailure("NewConnectionError") from None

    async def _through_proxy(self, endpoint: ssrf.Endpoint) -> Connection:
        loop = asyncio.get_running_loop()
        assert self.proxy is not None  # only called when PUSH_PROXY is set
        setting = self.proxy
        proxy = urlsplit(setting.url)
        proxy_tls = proxy.scheme == "https"
        proxy_host, proxy_port = proxy.hostname or "", proxy.port or 0  # parse_proxy_url checked both
        try:
            addresses = await self._dns.unguarded(proxy_host, proxy_port)
            sock = await _first_to_connect(addresses, proxy_port, loop)
            _, conn = await loop.create_connection(
                lambda: Connection(loop), sock=sock, ssl=self.ssl_context if proxy_tls else None,
                server_hostname=proxy.hostname if proxy_tls else None,
                ssl_handshake_timeout=self.connect_timeout if proxy_tls else None,
            )
        except OSError:  # the proxy itself cannot be reached (TLS with it included)
            raise NamedFailure("ProxyError") from None
        if endpoint.scheme == "http":
            return conn  # requests go to the proxy in absolute form
        try:
            host = endpoint.host.encode("idna").decode("ascii") if not endpoint.host.isascii() else endpoint.host
            authority = f"[{host}]:{endpoint.port}" if ":" in host else f"{host}:{endpoint.port}"
            credentials = f"Proxy-Authorization: {setting.authorization}\r\n" if setting.authorization else ""
            conn.transport.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{credentials}\r\n".encode("ascii"))
            _, status, _ = await read_head(conn)
            if status != 200:
                raise NamedFailure(f"ProxyError {status}")  # its policy refused the tunnel, or 407: credentials
            if conn.buffer:
                raise ProtocolError("bytes after the proxy's answer to CONNECT")
            conn.transport = await loop.start_tls(conn.transport, conn, self.ssl_context, server_hostname=endpoint.host,
                                                  ssl_handshake_timeout=self.connect_timeout)
        except BaseException:
            conn.close()
            raise
        return conn


async def _first_to_connect(addresses: list[str], port: int, loop: asyncio.AbstractEventLoop) -> socket.socket:
    """A connected socket to the first of `addresses` that answers (RFC 8305 Happy Eyeballs)."""
    infos = [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port, 0, 0)) if ":" in address
             else (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))
             for address in addresses]
    return await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1, loop=loop)


def _default_ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()  # CERT_REQUIRED, host name checked, system CAs
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context
