"""The delivery worker: an RQ SimpleWorker that lives as long as it is not asked to stop.

Beside RQ's work loop the process runs two threads:
- housekeeping (every HOUSEKEEPING_SECONDS): the heartbeat /push/healthz reads, the leases of the
  fan-outs this process delivers, the watchdogs that resume fan-outs of dead workers and re-enqueue
  pending changes no job claimed, and (once per PURGE_INTERVAL across all workers) the purge;
- the RQ scheduler (delayed and retry jobs), in this process rather than RQ's forked child, so an
  outage cannot kill it for good.
Both survive Redis outages: each round that fails is logged and the next one tries again. RQ's
own loop gives up on some Redis errors; it is started again after a pause. The process exits 0
only on a requested shutdown (SIGTERM/SIGINT).
"""
from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

import redis
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.scheduler import RQScheduler
from rq.scripts import acquire_or_refresh_lock, release_lock
from rq.serializers import JSONSerializer

from ..changes.ingest import CLAIM_GRACE_MS
from ..core.logs import log
from ..core.redis_connect import redis_client
from . import enqueue_delivery, enqueue_purge, enqueue_resume, runtime

if TYPE_CHECKING:
    from ..core.services import Services
    from ..delivery.deliver import Deliverer

logger = logging.getLogger("davpush.worker")
HOUSEKEEPING_SECONDS = 2
HEARTBEAT_TTL = 60
SCHEDULER_SECONDS = 1
SCHEDULER_LOCK_SECONDS = 10
RESUME_HANDOVER_MS = 60_000  # how long a resume job may wait in the queue before it is handed out again
MAX_RESUMES = 5  # a fan-out whose deliveries died this often is given up (and logged)
MAX_LOOP_PAUSE = 10.0


class DavpushWorker(SimpleWorker):
    """RQ's SimpleWorker that records a requested stop (SIGTERM/SIGINT), so that a work loop
    ended by RQ itself (a Redis error) can be told from one that was asked to end."""

    stop_requested = False

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)


def housekeeping_round(services: Services, name: str, deliverer: Deliverer | None = None) -> None:
    """One round: heartbeat, leases, watchdogs, purge."""
    store = services.store
    store.heartbeat(name, seconds=HEARTBEAT_TTL)
    if deliverer is not None:
        deliverer.renew_leases()
    resume_abandoned(services)
    requeue_overdue(services)
    interval = services.settings.purge_interval
    if store.try_lock("purge", max(1, interval - 1)):
        enqueue_purge(services.queue)


def resume_abandoned(services: Services, now_ms: int | None = None) -> list[str]:
    """Enqueue a resume job for each fan-out whose owner stopped renewing its lease."""
    store = services.store
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    resumed = []
    for fanout_id in store.abandoned_fanouts(now_ms):
        token = f"resume-{secrets.token_hex(6)}"
        resumes = store.reclaim_fanout(fanout_id, now_ms, token, now_ms + RESUME_HANDOVER_MS)
        if resumes is None:
            continue
        if resumes > MAX_RESUMES:
            log(logger, logging.ERROR, "giving up a fan-out that was resumed too often", fanout=fanout_id, resumes=resumes - 1)
            store.finish_fanout(fanout_id)
            continue
        enqueue_resume(services.queue, fanout_id, token)
        resumed.append(fanout_id)
    return resumed


def requeue_overdue(services: Services, now_ms: int | None = None) -> list[str]:
    """Enqueue the delivery job again for pending changes that no job claimed in time."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    topics = services.store.overdue_pending(now_ms, now_ms + CLAIM_GRACE_MS)
    for topic in topics:
        log(logger, logging.WARNING, "re-enqueuing a delivery nobody claimed", topic=topic[:8])
        enqueue_delivery(services.queue, topic)
    return topics


def _housekeeping(stop: threading.Event, services: Services, name: str, deliverer: Deliverer | None) -> None:
    failing = False
    while not stop.is_set():
        try:
            housekeeping_round(services, name, deliverer)
            if failing:
                log(logger, logging.INFO, "housekeeping works again")
            failing = False
        except redis.RedisError as error:
            if not failing:  # one line per outage, not one per round
                log(logger, logging.WARNING, "housekeeping cannot reach Redis; retrying", error=type(error).__name__)
            failing = True
        except Exception:
            logger.exception("housekeeping failed")
        stop.wait(HOUSEKEEPING_SECONDS)


def enqueue_due_jobs(queue) -> int:
    """Move delayed and retry jobs whose time has come from the scheduled registry into the queue."""
    registry = ScheduledJobRegistry(queue=queue)
    job_ids = registry.get_jobs_to_schedule()
    if not job_ids:
        return 0
    with queue.connection.pipeline() as pipe:
        for job in Job.fetch_many(job_ids, connection=queue.connection, serializer=queue.serializer):
            if job is not None:
                queue.enqueue_job(job, pipeline=pipe)
        for job_id in job_ids:
            registry.remove(job_id, pipeline=pipe)
        pipe.execute()
    return len(job_ids)


def _scheduler(stop: threading.Event, services: Services, name: str) -> None:
    """Enqueue due delayed jobs, one worker at a time: the one holding RQ's scheduler lock for the
    queue. The lock lives SCHEDULER_LOCK_SECONDS (RQ's own scheduler keeps it 61 s), so when its
    holder dies another worker (or the restarted one) takes over within seconds."""
    lock = RQScheduler.get_locking_key(services.queue.name)
    failing = False
    while not stop.is_set():
        try:
            if acquire_or_refresh_lock(services.redis, lock, name, SCHEDULER_LOCK_SECONDS) != "taken":
                enqueue_due_jobs(services.queue)
            failing = False
        except redis.RedisError as error:
            if not failing:
                log(logger, logging.WARNING, "scheduler cannot reach Redis; retrying", error=type(error).__name__)
            failing = True
        except Exception:
            logger.exception("scheduler round failed")
        stop.wait(SCHEDULER_SECONDS)
    try:
        release_lock(services.redis, lock, name)  # another worker's scheduler takes over at once
    except redis.RedisError:
        pass


def run_worker(burst: bool = False, max_jobs: int | None = None) -> int:
    """Work until asked to stop; the exit status (0 only for a requested stop or a finished burst)."""
    context = runtime.context()
    services = context.services
    name = runtime.process_name()
    # RQ raises this connection's socket timeout for its blocking dequeue; the short
    # REDIS_SOCKET_TIMEOUT of every other client must not end up on it.
    settings = services.settings
    connection = redis_client(settings.redis_url, None, settings.redis_ssl_cert_reqs, settings.redis_sentinel_password)
    queue = Queue(services.queue.name, connection=connection, serializer=JSONSerializer)
    level = services.settings.log_level
    if burst or max_jobs is not None:
        worker = DavpushWorker([queue], connection=connection, serializer=JSONSerializer, name=name)
        worker.work(with_scheduler=True, burst=burst, max_jobs=max_jobs, logging_level=level)
        return 0
    stop = threading.Event()
    threads = [
        threading.Thread(target=_housekeeping, args=(stop, services, name, context.deliverer), daemon=True, name="housekeeping"),
        threading.Thread(target=_scheduler, args=(stop, services, name), daemon=True, name="scheduler"),
    ]
    for thread in threads:
        thread.start()
    try:
        return _work_until_stopped(queue, connection, name, level, stop)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)


def _work_until_stopped(queue, connection, name: str, level: str, stop: threading.Event) -> int:
    pause = 1.0
    generation = 0
    while True:
        worker = DavpushWorker([queue], connection=connection, serializer=JSONSerializer,
                              name=name if generation == 0 else f"{name}.{generation}")
        worker.max_connection_wait_time = 5.0  # RQ's dequeue retries; reconnect soon after an outage
        started = time.monotonic()
        try:
            worker.work(burst=False, logging_level=level)
        except redis.RedisError as error:  # e.g. from RQ's teardown while Redis is away
            log(logger, logging.WARNING, "the work loop lost Redis", error=type(error).__name__)
        if worker.stop_requested or stop.is_set():
            return 0
        # RQ ended its loop by itself (a Redis timeout or error): not a reason to exit.
        _stop_on_signals(stop)
        pause = 1.0 if time.monotonic() - started > 60 else min(pause * 2, MAX_LOOP_PAUSE)
        log(logger, logging.WARNING, "the RQ work loop ended without a stop request; starting it again", pause_s=pause)
        if stop.wait(pause):
            return 0
        generation += 1


def _stop_on_signals(stop: threading.Event) -> None:
    """Between work loops RQ's handlers are stale: SIGTERM/SIGINT just set `stop`."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
