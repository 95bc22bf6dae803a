"""The delivery worker: an RQ SimpleWorker with the scheduler, a heartbeat and the periodic purge."""
from __future__ import annotations

import logging
import os
import socket
import threading

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from . import jobs

logger = logging.getLogger("davpush.worker")
HEARTBEAT_SECONDS = 15
PURGE_JOB = "app.jobs.purge_expired"


def worker_name() -> str:
    return f"davpush-{socket.gethostname()}-{os.getpid()}"


def housekeeping_round(services, name: str) -> None:
    """Heartbeat for /push/healthz; once per PURGE_INTERVAL one worker enqueues the purge."""
    services.store.heartbeat(name, seconds=HEARTBEAT_SECONDS * 4)
    interval = services.settings.purge_interval
    if services.store.try_lock("purge", max(1, interval - 1)):
        services.queue.enqueue(PURGE_JOB, result_ttl=300, failure_ttl=86400, job_timeout=600)


def _housekeeping(stop: threading.Event, name: str) -> None:
    services = jobs.context().services
    while True:
        try:
            housekeeping_round(services, name)
        except Exception:  # Redis hiccups must not kill the worker; the next beat retries
            logger.exception("housekeeping failed")
        if stop.wait(HEARTBEAT_SECONDS):
            return


def run_worker(burst: bool = False, max_jobs: int | None = None) -> bool:
    services = jobs.context().services
    name = worker_name()
    stop = threading.Event()
    thread = threading.Thread(target=_housekeeping, args=(stop, name), daemon=True, name="housekeeping")
    if not burst:
        thread.start()
    worker = SimpleWorker([services.queue], connection=services.redis, serializer=JSONSerializer, name=name)
    try:
        return worker.work(with_scheduler=True, burst=burst, max_jobs=max_jobs, logging_level=services.settings.log_level)
    finally:
        stop.set()
