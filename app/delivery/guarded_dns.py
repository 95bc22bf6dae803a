"""DNS for the push sender: every answer passes the SSRF guard before anything may connect to it.

The sender asks before each request, so a name that now resolves to a private address is refused
even while a kept-alive connection to its old address is open, and new connections go only to
the addresses handed back here (TLS still uses the host name for SNI and the certificate check).
Answers are cached for RESOLVE_TTL seconds; concurrent lookups of one name share one getaddrinfo
call, run in a small thread pool off the event loop.
"""
from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..net import ssrf

RESOLVE_TTL = 30.0
MAX_CACHED_NAMES = 10_000  # names are chosen by subscribers: the cache must not grow without bound


def _cache_key(host: str, port: int) -> tuple[str, int]:
    """The sender sees the host as written (maybe Unicode), aiohttp its IDNA form: one key for both."""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass
    return host.lower(), port


class GuardedDNS:
    def __init__(self, *, allowed_networks: tuple[ssrf.IPNetwork, ...] = (), getaddrinfo: Callable[..., Any] = socket.getaddrinfo):
        self._allowed_networks = allowed_networks
        self._getaddrinfo = getaddrinfo
        self._cache: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future[list[str]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="push-dns")

    def cached(self, host: str, port: int) -> list[str] | None:
        """The allowed addresses while they are fresh; no coroutine switch."""
        entry = self._cache.get(_cache_key(host, port))
        return entry[1] if entry is not None and entry[0] > time.monotonic() else None

    async def addresses(self, host: str, port: int) -> list[str]:
        """Every address of host:port, all allowed by the guard; raises ssrf.BlockedEndpoint."""
        key = _cache_key(host, port)
        entry = self._cache.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self._pending.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            endpoint = ssrf.Endpoint("https", host, port)  # the scheme plays no part in resolving
            pending = loop.run_in_executor(self._pool, ssrf.resolve, endpoint, self._allowed_networks, self._getaddrinfo)
            self._pending[key] = pending
            pending.add_done_callback(lambda done: self._store(key, done))
        return await asyncio.shield(pending)  # one caller giving up does not cancel the others' lookup

    def _store(self, key: tuple[str, int], done: asyncio.Future[list[str]]) -> None:
        self._pending.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return  # refusals are not cached: the next push asks DNS again
        if len(self._cache) >= MAX_CACHED_NAMES:
            self._cache.clear()
        self._cache[key] = (time.monotonic() + RESOLVE_TTL, done.result())

    async def unguarded(self, host: str, port: int) -> list[str]:
        """Addresses without the guard: only for the egress proxy, which the operator chose."""
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        infos = await loop.run_in_executor(self._pool, lambda: self._getaddrinfo(host, port, type=socket.SOCK_STREAM))
        return list(dict.fromkeys(info[4][0] for info in infos))

    def close(self) -> None:
        self._pool.shutdown(wait=False)
