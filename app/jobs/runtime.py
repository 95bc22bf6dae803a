"""The worker process's context for RQ jobs: its services, push sender and deliverer.

Workers run jobs in-process (SimpleWorker), so the sender's connection pools and the VAPID header
cache live across jobs. The entry points (app/jobs/__init__.py) look the context up here.
"""
from __future__ import annotations

import logging
import os
import socket
import threading

from ..core.config import load_settings
from ..core.logs import log
from ..core.services import Services, build_services
from ..delivery import origin_gate
from ..delivery.deliver import Deliverer
from ..delivery.egress_proxy import parse_proxy_url
from ..delivery.sender import PushSender

logger = logging.getLogger("davpush.jobs")
_context: WorkerContext | None = None
_context_lock = threading.Lock()


def process_name() -> str:
    """This process in worker lists, heartbeats and fan-out leases."""
    return f"davpush-{socket.gethostname()}-{os.getpid()}"


class WorkerContext:
    def __init__(self, services: Services):
        settings = services.settings
        self.services = services
        self.sender = PushSender(
            concurrency=settings.push_concurrency,
            per_origin=settings.push_per_origin_concurrency,
            origin_limits=dict(settings.push_origin_concurrency),
            connect_timeout=settings.push_connect_timeout,
            read_timeout=settings.push_read_timeout,
            allow_http=settings.push_allow_http,
            allowed_networks=settings.push_allowed_networks,
            straggler_after=settings.push_straggler_seconds,
            proxy=settings.push_proxy,
            keepalive_timeout=settings.push_keepalive_seconds,
            slot_lease=self._lease_slots,
        )
        proxy = parse_proxy_url(settings.push_proxy) if settings.push_proxy else None
        if proxy is not None:
            log(logger, logging.INFO, "pushes go out through an egress proxy", proxy=proxy.label)
        self.deliverer = Deliverer(services, self.sender, owner=process_name())
        self.pid = os.getpid()

    def _lease_slots(self, origin: str, wanted: int, limit: int) -> int:
        """This worker's share of a push service's request slots (limits hold across all workers)."""
        lease_ms = int(origin_gate.LEASE_SECONDS * 1000)
        return self.services.store.lease_origin_slots(origin, process_name(), wanted, limit, lease_ms)


def context() -> WorkerContext:
    """The process-wide context, built on first use (and again after a fork)."""
    global _context
    if _context is None or _context.pid != os.getpid():
        with _context_lock:
            if _context is None or _context.pid != os.getpid():
                _context = WorkerContext(build_services(load_settings()))
    return _context


def use_context(services: Services) -> WorkerContext:
    """Install a context built from existing services (tests, the demo, benchmarks)."""
    global _context
    _context = WorkerContext(services)
    return _context

