"""Concurrent, guarded HTTP POSTs of encrypted push messages.

- one keep-alive pool per (push-service origin, resolved address), kept for the
  life of the worker process;
- per origin at most PUSH_PER_ORIGIN_CONCURRENCY requests in flight, overall at
  most PUSH_CONCURRENCY: each origin gets a few "lanes" that drain its queue, so
  a slow service never ties up the threads other services need;
- the SSRF guard runs again at send time and the connection goes to the address
  that was checked (DNS cannot be swapped in between); redirects are never
  followed; connect and read timeouts are always set; at most 4 KiB of an answer
  is read.
"""
from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import urllib3

from . import ssrf
from .outcomes import BLOCKED, REJECTED, RETRY, Outcome, classify, parse_retry_after

RESOLVE_TTL = 30.0


@dataclass
class PushRequest:
    subscription_id: str
    endpoint: str
    make_body: Callable[[], bytes]  # encryption runs in the sending lane, in parallel
    headers: dict


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
    ):
        self.per_origin = per_origin
        self.timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        self.allow_http = allow_http
        self.allowed_networks = allowed_networks
        self.resolver = resolver
        self.executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="push")
        self._pools: dict[tuple, urllib3.HTTPConnectionPool] = {}
        self._resolved: dict[tuple, tuple[float, list[str]]] = {}
        self._lock = threading.Lock()

    def send_all(self, requests: list[PushRequest], authorization: Callable[[str], str]) -> list[Outcome]:
        by_origin: dict[str, deque] = defaultdict(deque)
        outcomes: list[Outcome] = []
        for item in requests:
            try:
                endpoint = ssrf.check_shape(item.endpoint, allow_http=self.allow_http)
            except ssrf.BlockedEndpoint as error:
                outcomes.append(Outcome(item.subscription_id, BLOCKED, detail=str(error)))
                continue
            by_origin[endpoint.origin].append((endpoint, item))
        lanes = []
        for origin, queue in by_origin.items():
            for _ in range(min(self.per_origin, len(queue))):
                lanes.append(self.executor.submit(self._drain, queue, authorization(origin), outcomes))
        wait(lanes)
        for lane in lanes:
            lane.result()  # surface programming errors instead of losing outcomes
        return outcomes

    def _drain(self, queue: deque, authorization: str, outcomes: list) -> None:
        while True:
            try:
                endpoint, item = queue.popleft()
            except IndexError:
                return
            outcomes.append(self._send_one(endpoint, item, authorization))

    def _send_one(self, endpoint: ssrf.Endpoint, item: PushRequest, authorization: str) -> Outcome:
        try:
            address = self._address(endpoint)
        except ssrf.BlockedEndpoint as error:
            kind = RETRY if "does not resolve" in str(error) else BLOCKED
            return Outcome(item.subscription_id, kind, detail=str(error))
        try:
            body = item.make_body()
        except Exception as error:  # a key that passed validation but cannot encrypt
            return Outcome(item.subscription_id, REJECTED, detail=f"encryption failed: {type(error).__name__}")
        parts = urlsplit(item.endpoint)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = dict(item.headers, Authorization=authorization, Host=parts.netloc)
        try:
            response = self._pool(endpoint, address).urlopen(
                "POST", target, body=body, headers=headers, retries=False, redirect=False,
                preload_content=False, timeout=self.timeout, assert_same_host=False,
            )
        except urllib3.exceptions.HTTPError as error:
            return Outcome(item.subscription_id, RETRY, detail=type(error).__name__)
        try:
            response.read(4096)
        except urllib3.exceptions.HTTPError:
            pass
        finally:
            if response.length_remaining == 0:
                response.release_conn()
            else:
                response.close()
        kind = classify(response.status)
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if kind == RETRY else None
        return Outcome(item.subscription_id, kind, response.status, retry_after)

    def _address(self, endpoint: ssrf.Endpoint) -> str:
        key = (endpoint.host, endpoint.port)
        now = time.monotonic()
        cached = self._resolved.get(key)
        if cached and cached[0] > now:
            return cached[1][0]
        addresses = ssrf.resolve(endpoint, self.allowed_networks, self.resolver)
        self._resolved[key] = (now + RESOLVE_TTL, addresses)
        return addresses[0]

    def _pool(self, endpoint: ssrf.Endpoint, address: str):
        key = (endpoint.scheme, endpoint.host, endpoint.port, address)
        pool = self._pools.get(key)
        if pool is None:
            with self._lock:
                pool = self._pools.get(key)
                if pool is None:
                    options = dict(maxsize=self.per_origin, block=False, retries=False, timeout=self.timeout)
                    if endpoint.scheme == "https":
                        pool = urllib3.HTTPSConnectionPool(
                            address, endpoint.port, server_hostname=endpoint.host, assert_hostname=endpoint.host,
                            cert_reqs="CERT_REQUIRED", **options,
                        )
                    else:
                        pool = urllib3.HTTPConnectionPool(address, endpoint.port, **options)
                    self._pools[key] = pool
        return pool

    def close(self) -> None:
        self.executor.shutdown(wait=False)
        for pool in self._pools.values():
            pool.close()
