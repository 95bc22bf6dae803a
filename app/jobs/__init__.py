"""RQ jobs: the entry points a worker runs, and the one place that enqueues them.

RQ stores a job's function as a dotted path (`app.jobs.deliver_topic`), and delayed or retry
jobs can wait in Redis across an upgrade: the entry points are defined here, under these names,
so that jobs queued by an older release still find them. Rename or move one only with an alias
left behind.

Code that enqueues (change ingestion, delivery retries, the worker's watchdogs) calls the
`enqueue_*` functions, which pass the entry points themselves to RQ, never strings. The entry
points look up the worker's context (app/jobs/runtime.py: sender, deliverer) when they run, so
importing this module to enqueue does not import the delivery machinery: delivery enqueues its
own retries from here without an import cycle.
"""
from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from rq import Queue

logger = logging.getLogger("davpush.jobs")

# How long RQ keeps results and failures of our jobs, and how long one may run.
JOB_OPTIONS: dict[str, Any] = dict(result_ttl=300, failure_ttl=7 * 86400, job_timeout=300)
PURGE_OPTIONS: dict[str, Any] = dict(result_ttl=300, failure_ttl=86400, job_timeout=600)


# -- entry points (run by the worker; their dotted names are stored in Redis) ------------------


def deliver_topic(topic: str) -> dict[str, Any]:
    """Deliver a topic's pending change."""
    from .runtime import context

    return context().deliverer.deliver_topic(topic)


def retry_pushes(topic: str, plaintext: str, subscription_ids: list[str], attempt: int, accepted_ms: int,
                 queued_ms: int) -> dict[str, Any]:
    """Resend one message to the subscriptions whose push service asked to be retried."""
    from .runtime import context

    return context().deliverer.retry(topic, plaintext, subscription_ids, attempt, accepted_ms, queued_ms)


def resume_fanout(fanout_id: str, token: str) -> dict[str, Any]:
    """Finish a fan-out whose worker died (handed over by a watchdog as `token`)."""
    from .runtime import context

    return context().deliverer.resume(fanout_id, token)


def purge_expired() -> dict[str, Any]:
    """Remove expired subscriptions."""
    from .runtime import context

    removed = context().services.store.purge_expired()
    if removed:
        logger.info("purged %d expired subscriptions", removed)
    return {"removed": removed}


# -- enqueueing -----------------------------------------------------------------------------------


def enqueue_delivery(queue: Queue, topic: str, delay_ms: int = 0) -> None:
    """The delivery job of a topic's pending change, now or after delay_ms."""
    job_id = f"deliver-{topic}-{secrets.token_hex(4)}"
    if delay_ms > 0:
        queue.enqueue_in(timedelta(milliseconds=delay_ms), deliver_topic, topic, job_id=job_id, **JOB_OPTIONS)
    else:
        queue.enqueue(deliver_topic, topic, job_id=job_id, **JOB_OPTIONS)


def enqueue_retry(queue: Queue, delay_seconds: float, topic: str, plaintext: str, subscription_ids: list[str],
                  attempt: int, accepted_ms: int, queued_ms: int) -> None:
    """A retry of one message for the given subscriptions, after delay_seconds (at least 1)."""
    queue.enqueue_in(timedelta(seconds=max(1, delay_seconds)), retry_pushes, topic, plaintext, subscription_ids,
                     attempt, accepted_ms, queued_ms, **JOB_OPTIONS)


def enqueue_resume(queue: Queue, fanout_id: str, token: str) -> None:
    """A resume job for an abandoned fan-out, ahead of everything else in the queue."""
    queue.enqueue(resume_fanout, fanout_id, token, at_front=True, **JOB_OPTIONS)


def enqueue_purge(queue: Queue) -> None:
    queue.enqueue(purge_expired, **PURGE_OPTIONS)
