"""Delivery jobs: a topic's pending change (or a retry batch) → one push per matching subscription.

Every fan-out is a record in Redis (store.py: fan-out records) owned by one worker under a lease:
the change leaves the pending hash and becomes the record in one step, each push's outcome is
added to the record's done-set as it comes, and the record goes when every push has an outcome.
A worker that dies stops renewing its lease; any live worker then resumes the record and sends to
the subscriptions that are not done yet (so a subscriber gets a push at least once, and at most
twice when the worker died between sending and recording).

A job waits for the answers only while they keep coming: once nothing has been answered for
PUSH_STRAGGLER_SECONDS, the job ends and the remaining requests finish in the background (their
outcomes are applied when they arrive), so a push service that never answers delays no one else.
"""
from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import redis

from ..core.logs import endpoint_label, log, request_id, short_id
from ..core.metrics_names import counter, latency_bucket, push_service_label
from ..jobs import enqueue_retry
from ..protocol.message import build_push_message
from ..protocol.subscription import Change, Subscription, is_stale, sync_token_number
from ..protocol.topics import web_push_topic_header
from ..store import change_from_fields
from .encrypt import encrypt
from .outcomes import AUTH, BLOCKED, GONE, REJECTED, RETRY, SUCCESS, Outcome, backoff
from .sender import PushRequest, PushSender

if TYPE_CHECKING:
    from ..core.services import Services

logger = logging.getLogger("davpush.delivery")
APPLY_BATCH = 2000  # outcomes applied to Redis at once
APPLY_WINDOW = 0.05  # seconds outcomes gather before they are applied (a worker killed meanwhile resends them)
MAX_RESUMES = 5  # a fan-out that killed its worker this often is given up (logged)


@dataclass
class Fanout:
    """One fan-out this process is delivering."""

    id: str
    topic: str
    accepted_ms: int
    attempt: int
    targets: dict[str, tuple[Subscription, bytes]]  # subscription id → (subscription, plaintext)
    outstanding: set[str] = field(default_factory=set)
    tallies: Counter[str] = field(default_factory=Counter)
    note: dict[str, int] = field(default_factory=dict)
    last_answer: float = field(default_factory=time.monotonic)
    changed: threading.Condition = field(default_factory=threading.Condition)

    @property
    def complete(self) -> bool:
        return not self.outstanding


class Deliverer:
    def __init__(self, services: Services, sender: PushSender, clock: Callable[[], float] = time.time,
                 owner: str | None = None):
        self.services = services
        self.store = services.store
        self.settings = services.settings
        self.sender = sender
        self.clock = clock
        self.owner = owner or f"deliverer-{secrets.token_hex(6)}"
        self.active: dict[str, Fanout] = {}  # fan-outs of this process, whose leases it renews
        self._inbox: queue.SimpleQueue[tuple[Fanout, Outcome]] = queue.SimpleQueue()
        self._applier: threading.Thread | None = None
        self._applier_lock = threading.Lock()

    # -- entry points (RQ jobs) ---------------------------------------------------------

    def deliver_topic(self, topic: str) -> dict[str, Any]:
        started_ms = int(self.clock() * 1000)
        fanout_id = _new_id()
        change = self.store.claim_pending(topic, fanout_id, self.owner, self._lease_end())
        if change is None:
            return {"topic": topic, "pushes": 0, "note": "nothing pending"}
        self.store.mark_delivery_start(topic, started_ms)
        request_id.set(change.request_id or "-")
        if self._already_announced(change):
            self.store.finish_fanout(fanout_id)
            self.store.count(counter("events_stale"), change.merged)
            return {"topic": topic, "pushes": 0, "note": "a newer sync-token was already pushed"}
        targets = self._targets_for_change(change, done=set())
        result = self._run(Fanout(fanout_id, topic, change.accepted_ms, 1, targets), change)
        if change.collection_deleted:
            self.store.drop_topic(topic)
        return {**result, "merged": change.merged}

    def retry(self, topic: str, plaintext: str, subscription_ids: list[str], attempt: int, accepted_ms: int,
              queued_ms: int) -> dict[str, Any]:
        """Resend one message to the subscriptions that asked to be retried, unless a
        newer push reached them in the meantime."""
        fanout_id = _new_id()
        fields = {"kind": "retry", "topic": topic, "plaintext": plaintext, "ids": ",".join(subscription_ids),
                  "attempt": attempt, "t0": accepted_ms, "queued": queued_ms}
        self.store.start_fanout(fanout_id, fields, self.owner, self._lease_end())
        targets = self._targets_for_retry(topic, plaintext, subscription_ids, queued_ms, done=set())
        return self._run(Fanout(fanout_id, topic, accepted_ms, attempt, targets))

    def resume(self, fanout_id: str, token: str) -> dict[str, Any]:
        """Finish a fan-out whose worker died (handed to this job as `token` by a watchdog)."""
        record = self.store.take_over_fanout(fanout_id, token, self.owner, self._lease_end())
        if record is None:
            return {"fanout": fanout_id, "pushes": 0, "note": "already resumed elsewhere or finished"}
        topic = record.get("topic", "")
        done = self.store.fanout_done(fanout_id)
        request_id.set(record.get("r") or "-")
        if record.get("kind") == "retry":
            ids = [i for i in record.get("ids", "").split(",") if i]
            targets = self._targets_for_retry(topic, record.get("plaintext", ""), ids, int(record.get("queued") or 0), done)
            fanout = Fanout(fanout_id, topic, int(record.get("t0") or 0), int(record.get("attempt") or 1), targets)
            change = None
        else:
            change = change_from_fields(topic, record)
            fanout = Fanout(fanout_id, topic, change.accepted_ms, 1, self._targets_for_change(change, done))
        log(logger, logging.WARNING, "resuming an abandoned fan-out", topic=topic[:8], done=len(done),
            remaining=len(fanout.targets), resumes=record.get("resumes"))
        result = self._run(fanout, change)
        if change is not None and change.collection_deleted:
            self.store.drop_topic(topic)
        return {**result, "resumed": True}

    # -- targets -------------------------------------------------------------------------

    def _targets_for_change(self, change: Change, done: set[str]) -> dict[str, tuple[Subscription, bytes]]:
        messages: dict[tuple[bool, bool], bytes] = {}
        targets = {}
        for subscription in self.store.live_for_topic(change.topic):
            if subscription.id in done:
                continue
            content, prop = change.wants(subscription)
            if not (content or prop):
                continue
            plaintext = messages.get((content, prop))
            if plaintext is None:
                plaintext = messages[(content, prop)] = build_push_message(
                    change.topic, content=content, property_update=prop, sync_token=change.sync_token if content else None
                )
            targets[subscription.id] = (subscription, plaintext)
        return targets

    def _targets_for_retry(self, topic: str, plaintext: str, ids: list[str], queued_ms: int,
                           done: set[str]) -> dict[str, tuple[Subscription, bytes]]:
        body = plaintext.encode("utf-8")
        return {
            s.id: (s, body)
            for s in self.store.by_ids([i for i in ids if i not in done])
            if s.last_success * 1000 < queued_ms and s.topic == topic
        }

    def _already_announced(self, change: Change) -> bool:
        """Record the change's sync-token as pushed; True when a newer one already was.

        Recording it before sending lets changes with older tokens that arrive
        meanwhile be dropped at once (out-of-order or duplicated webhooks)."""
        number = sync_token_number(change.sync_token)
        if number is None:
            return False
        if is_stale(change, self.store.delivered_token(change.topic)):
            return True
        self.store.mark_delivered_token(change.topic, number, keep_seconds=3600)
        return False

    # -- sending and waiting -------------------------------------------------------------

    def _run(self, fanout: Fanout, change: Change | None = None) -> dict[str, Any]:
        summary = {"topic": fanout.topic, "fanout": fanout.id}
        if not fanout.targets:
            self.store.finish_fanout(fanout.id)
            return {**summary, "pushes": 0, "outcomes": {}}
        fanout.outstanding = set(fanout.targets)
        fanout.note = {"merged": change.merged} if change is not None else {"attempt": fanout.attempt}
        self.active[fanout.id] = fanout
        self._ensure_applier()
        self.sender.submit(self._requests(fanout), self.services.signer.authorization,
                           lambda outcome: self._inbox.put((fanout, outcome)))
        self._wait(fanout)
        with fanout.changed:
            outcomes = dict(fanout.tallies)
            pending = len(fanout.outstanding)
        result = {**summary, "pushes": sum(outcomes.values()), "outcomes": outcomes}
        if pending:
            result["answers_pending"] = pending
            log(logger, logging.INFO, "moving on; slow push services answer in the background",
                topic=fanout.topic[:8], pending=pending)
        return result

    def _wait(self, fanout: Fanout) -> None:
        """Until every push has an outcome, or none came for PUSH_STRAGGLER_SECONDS."""
        patience = self.settings.push_straggler_seconds
        with fanout.changed:
            while not fanout.complete:
                quiet = time.monotonic() - fanout.last_answer
                if quiet >= patience:
                    return
                fanout.changed.wait(patience - quiet)

    def _requests(self, fanout: Fanout) -> list[PushRequest]:
        settings = self.settings
        requests = []
        kinds_of: dict[bytes, str] = {}
        for subscription, plaintext in fanout.targets.values():
            kinds = kinds_of.get(plaintext)
            if kinds is None:
                kinds = kinds_of[plaintext] = _kinds(plaintext)
            requests.append(
                PushRequest(
                    subscription.id,
                    subscription.push_resource,
                    partial(encrypt, plaintext, subscription.public_key, subscription.auth_secret),
                    {
                        "TTL": str(settings.push_ttl),
                        "Urgency": settings.push_urgency,
                        "Topic": web_push_topic_header(settings.secret_key, subscription.id, kinds),
                        "Content-Encoding": "aes128gcm",
                        "Content-Type": 'application/xml; charset="UTF-8"',
                    },
                )
            )
        return requests

    # -- applying outcomes (one background thread per process) ------------------------------

    def _ensure_applier(self) -> None:
        with self._applier_lock:
            if self._applier is None or not self._applier.is_alive():
                self._applier = threading.Thread(target=self._apply_forever, name="push-outcomes", daemon=True)
                self._applier.start()

    def _apply_forever(self) -> None:
        while True:
            batch = [self._inbox.get()]
            self._gather(batch)
            if len(batch) < APPLY_BATCH and _more_coming(batch):
                time.sleep(APPLY_WINDOW)  # a large fan-out: one Redis round per batch, not per push
                self._gather(batch)
            delay = 0.5
            while True:
                try:
                    self._apply(batch)
                    break
                except redis.RedisError as error:  # keep the outcomes; Redis comes back
                    log(logger, logging.WARNING, "cannot record push outcomes; retrying", error=type(error).__name__)
                    time.sleep(delay)
                    delay = min(delay * 2, 5.0)
                except Exception:
                    logger.exception("could not apply push outcomes")
                    break

    def _gather(self, batch: list[tuple[Fanout, Outcome]]) -> None:
        while len(batch) < APPLY_BATCH:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                return

    def _apply(self, batch: list[tuple[Fanout, Outcome]]) -> None:
        by_fanout: dict[str, tuple[Fanout, list[Outcome]]] = {}
        for fanout, outcome in batch:
            by_fanout.setdefault(fanout.id, (fanout, []))[1].append(outcome)
        for fanout, outcomes in by_fanout.values():
            self._act(fanout, outcomes)
            self.store.fanout_progress(fanout.id, (o.subscription_id for o in outcomes))
            with fanout.changed:
                for outcome in outcomes:
                    fanout.outstanding.discard(outcome.subscription_id)
                    fanout.tallies[outcome.kind] += 1
                fanout.last_answer = time.monotonic()
                complete = fanout.complete
                fanout.changed.notify_all()
            if complete:
                self.store.finish_fanout(fanout.id)
                self.active.pop(fanout.id, None)
                log(logger, logging.INFO, "topic delivered", topic=fanout.topic[:8], **fanout.note, **dict(fanout.tallies))

    def _act(self, fanout: Fanout, outcomes: list[Outcome]) -> None:
        now = self.clock()
        accepted_ms = fanout.accepted_ms
        succeeded: list[str] = []
        retries: dict[tuple[bytes, int], list[str]] = {}
        tallies: Counter[str] = Counter()
        for outcome in outcomes:
            subscription, plaintext = fanout.targets[outcome.subscription_id]
            tallies[counter("pushes", outcome=outcome.kind, origin=push_service_label(subscription.push_resource))] += 1
            if outcome.kind == SUCCESS:
                succeeded.append(subscription.id)
                if accepted_ms:
                    tallies[counter("push_latency_bucket", le=latency_bucket(now - accepted_ms / 1000))] += 1
                    tallies[counter("push_latency_sum_ms")] += int(now * 1000 - accepted_ms)
                    tallies[counter("push_latency_count")] += 1
            elif outcome.kind == GONE:
                self.store.delete(subscription.id)
                _log_outcome(logging.INFO, "subscription gone at the push service; removed", subscription, outcome)
            elif outcome.kind == RETRY and fanout.attempt < self.settings.push_max_attempts:
                delay = outcome.retry_after if outcome.retry_after is not None else backoff(fanout.attempt)
                retries.setdefault((plaintext, round(delay)), []).append(subscription.id)
            elif outcome.kind in (RETRY, REJECTED, AUTH, BLOCKED):
                level = logging.INFO if outcome.kind == REJECTED else logging.WARNING
                _log_outcome(level, f"push not delivered ({outcome.kind})", subscription, outcome)
        self.store.record_success(succeeded, int(now))
        if tallies:
            self.store.count_many(tallies)
        for (plaintext, delay), ids in retries.items():
            enqueue_retry(self.services.queue, delay, fanout.topic, plaintext.decode("utf-8"), ids,
                          fanout.attempt + 1, accepted_ms, int(now * 1000))

    # -- leases ------------------------------------------------------------------------------

    def _lease_end(self) -> int:
        return int((self.clock() + self.settings.fanout_lease_seconds) * 1000)

    def renew_leases(self) -> None:
        """Called by the worker's housekeeping well within FANOUT_LEASE_SECONDS."""
        self.store.renew_fanouts(list(self.active), self.owner, self._lease_end())


def _more_coming(batch: list[tuple[Fanout, Outcome]]) -> bool:
    """Whether a fan-out in the batch still waits for more answers than the batch holds (only
    then is waiting APPLY_WINDOW worth it: a small fan-out's job must not wait for nothing)."""
    counts = Counter(fanout.id for fanout, _ in batch)
    fanouts = {fanout.id: fanout for fanout, _ in batch}
    return any(len(fanouts[i].outstanding) > n for i, n in counts.items())


def _new_id() -> str:
    return secrets.token_urlsafe(12)


def _kinds(plaintext: bytes) -> str:
    return ("c" if b"content-update" in plaintext else "") + ("p" if b"property-update" in plaintext else "")


def _log_outcome(level: int, message: str, subscription: Subscription, outcome: Outcome) -> None:
    log(
        logger,
        level,
        message,
        subscription=short_id(subscription.id),
        endpoint=endpoint_label(subscription.push_resource),
        status=outcome.status,
        detail=outcome.detail,
    )
