"""At most N requests in flight to one push service, across every worker process.

Each sender has one gate per origin. Without a lease the gate admits the origin's limit; with one
(the worker's case) it admits what the lease grants this process out of that limit — a Redis
record shared by all workers (Store.lease_origin_slots) — so three workers sending to a small
self-hosted ntfy limited to 8 never have more than 8 requests open there together. While the gate
has demand it renews its grant every RENEW_SECONDS; a dead worker's slots come back when its lease
(LEASE_SECONDS) runs out. The lease call blocks (Redis), so it runs in an executor.
"""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor

from ..core.logs import log

logger = logging.getLogger("davpush.sender")
LEASE_SECONDS = 5.0
RENEW_SECONDS = 1.0
RETRY_SECONDS = 0.2  # asking again while requests wait for slots other workers hold

# (origin, wanted, limit) -> granted
SlotLease = Callable[[str, int, int], int]


class OriginGate:
    def __init__(self, origin: str, limit: int, lease: SlotLease | None, executor: Executor | None = None):
        self.origin = origin
        self.limit = limit
        self.lease = lease
        self.executor = executor
        self.granted = limit if lease is None else 0
        self.in_use = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._renewer: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._failing = False

    async def acquire(self) -> None:
        if self.in_use < self.granted and not self._waiters:
            self.in_use += 1
            self._ensure_renewer()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._ensure_renewer()
        if self._wake is not None:
            self._wake.set()  # ask for more now, not at the next renewal
        try:
            await waiter  # the slot is counted in in_use by whoever resolved it
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted just as we were cancelled: hand it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        self.in_use -= 1
        self._admit()

    def _admit(self) -> None:
        while self._waiters and self.in_use < self.granted:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_use += 1
                waiter.set_result(None)

    def _ensure_renewer(self) -> None:
        if self.lease is not None and (self._renewer is None or self._renewer.done()):
            self._renewer = asyncio.ensure_future(self._renew())

    async def _renew(self) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            self._wake.clear()
            wanted = min(self.limit, self.in_use + len(self._waiters))
            try:
                assert self.lease is not None  # the renewer runs only for a gate with a lease
                granted = await loop.run_in_executor(self.executor, self.lease, self.origin, wanted, self.limit)
                self._failing = False
            except Exception as error:  # Redis away: keep what we hold, ask again soon
                if not self._failing:
                    log(logger, logging.WARNING, "cannot lease push-service slots; retrying",
                        origin=self.origin, error=type(error).__name__)
                self._failing = True
                granted = self.granted if wanted else 0
            self.granted = granted
            self._admit()
            if wanted == 0 and self.in_use == 0 and not self._waiters:
                return  # nothing in flight or waiting: the grant was given back
            pause = RETRY_SECONDS if self._waiters and granted < self.limit else RENEW_SECONDS
            try:
                await asyncio.wait_for(self._wake.wait(), pause)
            except TimeoutError:
                pass
