"""The push sender on aiohttp: the alternative measured for issue 10, kept for bench/delivery.py.

Same public API, lanes, straggler demotion, SSRF guard and outcome rules as the service's
app/delivery/sender.py; the HTTP exchange is aiohttp's. It reached 68–79 % of the hand-written
sender's throughput (bench/RESULTS.md), below the 85 % the issue required for adoption, so the
service kept its own HTTP/1.1 client. bench/aiohttp_worker.py runs a worker with this sender.

- one event loop per worker process, in a daemon thread that lives as long as the process, with
  one aiohttp ClientSession on it: keep-alive connections (closed after PUSH_KEEPALIVE_SECONDS
  idle) and the VAPID header cache are reused across jobs;
- per origin at most PUSH_PER_ORIGIN_CONCURRENCY requests in flight (or the origin's own limit
  from PUSH_ORIGIN_CONCURRENCY), overall at most PUSH_CONCURRENCY: each origin gets a few "lanes"
  that drain its queue, so a slow service never ties up the capacity other services need. These
  bounds are our own semaphores; the connector's limits are only a backstop, set so that they
  never make a request wait (see _new_connector);
- requests slower than straggler_after give their PUSH_CONCURRENCY slot back (their origin's
  bound still holds them), so a few push services that never answer cannot hold every slot;
- the SSRF guard runs before every request and inside the connector's resolver (_GuardedResolver):
  connections only go to checked addresses, with every allowed address of a name tried in turn
  (Happy Eyeballs); redirects are never followed; connect and total timeouts always apply; at
  most 4 KiB of an answer body is read (read_bounded);
- with PUSH_PROXY every push goes through that proxy (CONNECT for https endpoints); the guard
  still checks the endpoint's name first, the proxy's own policy applies after that.

Encryption (make_body) runs in the loop thread just before each request.
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
import traceback
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from app.core.logs import endpoint_label, log
from app.delivery.egress_proxy import parse_proxy_url
from app.delivery.guarded_dns import GuardedDNS
from app.delivery.http1 import MAX_ANSWER_BODY, USER_AGENT
from app.delivery.origin_gate import OriginGate
from app.delivery.outcomes import BLOCKED, REJECTED, RETRY, Outcome, classify, parse_retry_after
from app.delivery.sender import PushRequest
from app.net import ssrf

SWEEP_SECONDS = 0.1  # how often stragglers are looked for
SHAPE_CACHE_SIZE = 200_000
MAX_DEMOTED_FACTOR = 4  # stragglers outside PUSH_CONCURRENCY, as a multiple of it
HAPPY_EYEBALLS_DELAY = 0.25  # RFC 8305's connection attempt delay: the next address is tried this soon
logger = logging.getLogger("davpush.aiohttp_sender")
_TARGET_SAFE = string.punctuation  # keeps existing %-escapes; only non-ASCII gets encoded
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")
_OURS = frozenset(("host", "content-length", "connection", "transfer-encoding", "authorization",
                   "proxy-authorization"))


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
        proxy: str = "",
        keepalive_timeout: float = 30.0,
        slot_lease=None,
    ):
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
        self.slot_lease = slot_lease  # per-origin limits across all workers, as in the service's sender
        self._lease_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="push-slots")
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._reset_loop_state()

    def _reset_loop_state(self) -> None:
        # Everything below belongs to one event loop and is only touched from its thread.
        self._session: aiohttp.ClientSession | None = None
        self._dns = GuardedDNS(allowed_networks=self.allowed_networks, getaddrinfo=self.resolver)
        self._slots = None  # asyncio.Semaphore(concurrency), made in the loop
        self._gates: dict[str, OriginGate] = {}
        self._flights: set[_Flight] = set()  # requests holding a PUSH_CONCURRENCY slot
        self._demoted = 0
        self._sweeper = None
        self._shapes: dict[str, ssrf.Endpoint] = {}  # check_shape() is a pure function of the URL

    def _proxy_address(self) -> frozenset:
        if self.proxy is None:
            return frozenset()
        url = URL(self.proxy.url)
        return frozenset({(url.raw_host, url.port)})

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
            asyncio.run_coroutine_threadsafe(self._close_session(), loop).result(timeout=5)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    # -- the loop thread -----------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None or self._pid != os.getpid():  # a forked child needs its own loop
                self._pid = os.getpid()
                self._reset_loop_state()  # sessions, connections and semaphores belong to one loop
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

    def _session_in_loop(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = new_session(self._new_connector(), connect_timeout=self.connect_timeout,
                                        read_timeout=self.read_timeout)
        return self._session

    def _new_connector(self) -> aiohttp.TCPConnector:
        # Our semaphores bound requests in flight: at most concurrency plus the demoted stragglers
        # overall, and limit_for(origin) per origin. The connector's limits sit at those maxima so
        # they never hold back a request our bounds let through (its wait would eat into the
        # connect timeout), yet still cap connections should anything leak.
        largest_origin = max([self.per_origin, *self.origin_limits.values()])
        return aiohttp.TCPConnector(
            resolver=_GuardedResolver(self._dns, self._proxy_address()), use_dns_cache=False, ssl=self.ssl_context,
            limit=self.concurrency * (1 + MAX_DEMOTED_FACTOR), limit_per_host=largest_origin,
            keepalive_timeout=self.keepalive_timeout, happy_eyeballs_delay=HAPPY_EYEBALLS_DELAY, interleave=1,
        )

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._dns.close()

    async def _send_groups(self, by_origin: dict, headers: dict, on_outcome: Callable[[Outcome], None]) -> None:
        session = self._session_in_loop()
        lanes = [
            asyncio.ensure_future(self._drain(session, origin, queue, headers[origin], on_outcome))
            for origin, queue in by_origin.items()
            for _ in range(min(self.limit_for(origin), len(queue)))
        ]
        try:
            await asyncio.gather(*lanes)
        finally:
            for lane in lanes:
                lane.cancel()

    async def _drain(self, session: aiohttp.ClientSession, origin: str, queue: deque, authorization: str,
                     on_outcome: Callable[[Outcome], None]) -> None:
        gate = self._gates.get(origin)
        if gate is None:
            gate = self._gates[origin] = OriginGate(origin, self.limit_for(origin), self.slot_lease, self._lease_pool)
        loop = asyncio.get_running_loop()
        while queue:
            endpoint, item = queue.popleft()
            await gate.acquire()
            try:
                await self._slots.acquire()
                flight = _Flight(loop.time() + self.straggler_after)
                self._flights.add(flight)
                if self._sweeper is None:
                    self._sweeper = loop.call_later(SWEEP_SECONDS, self._sweep)
                try:
                    outcome = await self._send_one(session, endpoint, item, authorization)
                finally:
                    self._flights.discard(flight)
                    if flight.demoted:
                        self._demoted -= 1
                    else:
                        self._slots.release()
            finally:
                gate.release()
            on_outcome(outcome)

    async def _send_one(self, session: aiohttp.ClientSession, endpoint: ssrf.Endpoint, item: PushRequest,
                        authorization: str) -> Outcome:
        """One push, one outcome. Whatever goes wrong costs this push only, never the batch:
        an exception escaping here would cancel the other pushes in flight and fail send_all()."""
        try:
            return await self._attempt(session, endpoint, item, authorization)
        except Exception as error:  # not BaseException: cancellation still propagates
            where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
            log(logger, logging.ERROR, "unexpected error while sending a push", error=type(error).__name__,
                where=f"{os.path.basename(where.filename)}:{where.lineno}" if where else "-",
                endpoint=endpoint_label(item.endpoint))
            return Outcome(item.subscription_id, RETRY, detail=type(error).__name__)

    async def _attempt(self, session: aiohttp.ClientSession, endpoint: ssrf.Endpoint, item: PushRequest,
                       authorization: str) -> Outcome:
        try:  # the guard, again at send time: also when a kept-alive connection is at hand
            self._dns.cached(endpoint.host, endpoint.port) or await self._dns.addresses(endpoint.host, endpoint.port)
        except ssrf.BlockedEndpoint as error:
            kind = RETRY if isinstance(error, ssrf.UnresolvableHost) else BLOCKED
            return Outcome(item.subscription_id, kind, detail=str(error))
        try:
            body = item.make_body()
        except Exception as error:  # a key that passed validation but cannot encrypt
            return Outcome(item.subscription_id, REJECTED, detail=f"encryption failed: {type(error).__name__}")
        try:
            url = request_url(item.endpoint)
            headers = request_headers(item.headers, authorization)
        except (ValueError, UnicodeError) as error:
            return Outcome(item.subscription_id, REJECTED, detail=f"cannot build the request: {error}")
        proxy = self.proxy
        proxy_headers = None
        if proxy is not None and proxy.authorization is not None:
            if endpoint.scheme == "https":
                proxy_headers = {"Proxy-Authorization": proxy.authorization}  # on CONNECT only, not in the tunnel
            else:
                headers["Proxy-Authorization"] = proxy.authorization
        try:
            response = await session.post(url, data=body, headers=headers, allow_redirects=False,
                                          proxy=proxy.url if proxy else None, proxy_headers=proxy_headers)
        except aiohttp.InvalidURL as error:
            return Outcome(item.subscription_id, REJECTED, detail=f"cannot build the request: {type(error).__name__}")
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            return Outcome(item.subscription_id, RETRY, detail=failure_name(error))
        try:
            if response.status == 407 and proxy is not None:  # from the proxy (http endpoints): not the push service's answer
                response.close()
                return Outcome(item.subscription_id, RETRY, detail="ProxyError 407")
            status = response.status
            kind = classify(status)
            retry_after = parse_retry_after(response.headers.get("Retry-After")) if kind == RETRY else None
            await read_bounded(response)
        except (aiohttp.ClientError, OSError, TimeoutError) as error:
            response.close()
            return Outcome(item.subscription_id, RETRY, detail=failure_name(error))
        except BaseException:  # see _send_one; the connection is not trusted again
            response.close()
            raise
        return Outcome(item.subscription_id, kind, status, retry_after)

    # -- stragglers ------------------------------------------------------------------------

    def _sweep(self) -> None:
        self._sweeper = None
        if not self._flights:
            return
        loop = asyncio.get_running_loop()
        self._demote_stragglers(loop.time())
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


class _GuardedResolver(AbstractResolver):
    """aiohttp's connector connects only to what this hands back: addresses the SSRF guard allowed
    (the egress proxy's own name excepted, which the operator chose)."""

    def __init__(self, dns: GuardedDNS, unguarded: frozenset):
        self._dns = dns
        self._unguarded = unguarded

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if (host, port) in self._unguarded:
            found = await self._dns.unguarded(host, port)
        else:
            try:
                found = await self._dns.addresses(host, port)
            except ssrf.BlockedEndpoint as error:
                raise OSError(str(error)) from None  # aiohttp reports it as a failed connection
        return [
            ResolveResult(hostname=host, host=address, port=port,
                          family=socket.AF_INET6 if ":" in address else socket.AF_INET, proto=0,
                          flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV)
            for address in found
        ]

    async def close(self) -> None:
        self._dns.close()


_TARGET_SAFE = string.punctuation  # keeps existing %-escapes; only non-ASCII gets encoded
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_BAD_HEADER_VALUE = re.compile(r"[\r\n\x00]")
_OURS = frozenset(("host", "content-length", "connection", "transfer-encoding", "authorization",
                   "proxy-authorization"))


def request_url(url: str) -> URL:
    """The URL as it goes on the wire. It passed ssrf.check_shape: absolute, no fragment, no user
    information, no whitespace or control characters."""
    scheme, rest = url.split("://", 1)
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
    return URL(f"{scheme}://{netloc}{target}", encoded=True)


def request_headers(headers: dict, authorization: str) -> dict[str, str]:
    """The push's headers plus Authorization; ValueError for a name or value that would break the head."""
    result = {"Authorization": authorization}
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"invalid header name {name!r}")
        if name.lower() in _OURS:
            continue
        result[name] = str(value)
    if _BAD_HEADER_VALUE.search("".join(result.values())):
        raise ValueError("a header value contains CR, LF or NUL")
    return result


def new_session(connector: aiohttp.BaseConnector, *, connect_timeout: float, read_timeout: float) -> aiohttp.ClientSession:
    """A session for pushes only: no cookies, no decompression, no proxy from the environment.

    Connecting (TLS included, every address tried) must end within connect_timeout, and the whole
    exchange within connect_timeout + read_timeout: a server dripping bytes cannot hold a request
    longer than that. (No separate per-read timeout: aiohttp re-arms its timer on every read,
    which cost ~40 µs per push.)"""
    timeout = aiohttp.ClientTimeout(total=connect_timeout + read_timeout, connect=connect_timeout,
                                    sock_connect=connect_timeout)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(), headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"},
        skip_auto_headers=("Accept", "Content-Type"), raise_for_status=False,
    )


async def read_bounded(response: aiohttp.ClientResponse) -> None:
    """Read what is left of the answer, at most MAX_ANSWER_BODY bytes, and hand the connection back
    to the pool, or close it when the answer was longer (the rest is never read)."""
    if response.content_length is not None and response.content_length > MAX_ANSWER_BODY:
        response.close()
        return
    received = 0
    while received <= MAX_ANSWER_BODY:
        chunk = await response.content.read(MAX_ANSWER_BODY + 1 - received)
        if not chunk:
            response.release()
            return
        received += len(chunk)
    response.close()


def failure_name(error: BaseException) -> str:
    """The outcome detail for a push that got no usable answer."""
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return "ConnectTimeoutError"
    if isinstance(error, (aiohttp.ClientSSLError, ssl.SSLError, ssl.CertificateError)):
        return "SSLError"
    if isinstance(error, aiohttp.ClientHttpProxyError):
        return f"ProxyError {error.status}"  # the proxy refused the tunnel (its policy, or 407: credentials)
    if isinstance(error, aiohttp.ClientProxyConnectionError):
        return "ProxyError"
    if isinstance(error, aiohttp.ClientConnectorError):
        return "NewConnectionError"
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "RemoteDisconnected"
    if isinstance(error, TimeoutError):  # the answer did not start, or did not end, in time
        return "ReadTimeoutError"
    if isinstance(error, (aiohttp.ClientResponseError, aiohttp.ClientPayloadError)):
        return "ProtocolError"
    if isinstance(error, aiohttp.ClientConnectionResetError):
        return "ConnectionResetError"
    if isinstance(error, (aiohttp.ClientOSError, aiohttp.ClientConnectionError)):
        return "ProtocolError"
    return type(error).__name__


def _default_ssl_context() -> ssl.SSLContext:
    context = ssl.create_default_context()  # CERT_REQUIRED, host name checked, system CAs
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context
