"""One delivery job: a topic's pending change → one push per matching subscription."""
from __future__ import annotations

import logging
import time
from collections import Counter
from datetime import timedelta

from ..logs import endpoint_label, log, request_id, short_id
from ..metrics_names import counter, latency_bucket
from ..protocol.message import build_push_message
from ..protocol.subscription import Subscription, sync_token_number
from ..protocol.topics import web_push_topic_header
from .encrypt import encrypt
from .outcomes import AUTH, BLOCKED, GONE, REJECTED, RETRY, SUCCESS, Outcome, backoff
from .sender import PushRequest, PushSender

logger = logging.getLogger("davpush.delivery")
RETRY_JOB = "app.jobs.retry_pushes"


class Deliverer:
    def __init__(self, services, sender: PushSender, clock=time.time):
        self.services = services
        self.store = services.store
        self.settings = services.settings
        self.sender = sender
        self.clock = clock

    def deliver_topic(self, topic: str) -> dict:
        started_ms = int(self.clock() * 1000)
        change = self.store.take_pending(topic)
        if change is None:
            return {"topic": topic, "pushes": 0, "note": "nothing pending"}
        self.store.mark_delivery_start(topic, started_ms)
        request_id.set(change.request_id or "-")
        if self._already_announced(change):
            self.store.count(counter("events_stale"), change.merged)
            return {"topic": topic, "pushes": 0, "note": "a newer sync-token was already pushed"}
        messages: dict[tuple, list[Subscription]] = {}
        for subscription in self.store.live_for_topic(topic):
            content, prop = change.wants(subscription)
            if content or prop:
                messages.setdefault((content, prop), []).append(subscription)
        batch = []
        for (content, prop), subscriptions in messages.items():
            plaintext = build_push_message(
                topic, content=content, property_update=prop, sync_token=change.sync_token if content else None
            )
            batch.append((plaintext, subscriptions))
        outcomes = self._send(batch, accepted_ms=change.accepted_ms, attempt=1)
        if change.collection_deleted:
            self.store.drop_topic(topic)
        summary = dict(Counter(o.kind for o in outcomes))
        log(logger, logging.INFO, "topic delivered", topic=topic[:8], merged=change.merged, **summary)
        return {"topic": topic, "pushes": len(outcomes), "outcomes": summary, "merged": change.merged}

    def _already_announced(self, change) -> bool:
        """Record the change's sync-token as pushed; True when a newer one already was.

        Recording it before sending lets changes with older tokens that arrive
        meanwhile be dropped at once (out-of-order or duplicated webhooks)."""
        number = sync_token_number(change.sync_token)
        if number is None:
            return False
        delivered = self.store.delivered_token(change.topic)
        if delivered is not None and number <= delivered and not (change.property_update or change.collection_deleted):
            return True
        self.store.mark_delivered_token(change.topic, number, keep_seconds=3600)
        return False

    def retry(self, topic: str, plaintext: str, subscription_ids: list, attempt: int, accepted_ms: int, queued_ms: int) -> dict:
        """Resend one message to the subscriptions that asked to be retried, unless a
        newer push reached them in the meantime."""
        subscriptions = [
            s for s in self.store.by_ids(subscription_ids) if s.last_success * 1000 < queued_ms and s.topic == topic
        ]
        outcomes = self._send([(plaintext.encode("utf-8"), subscriptions)], accepted_ms=accepted_ms, attempt=attempt)
        return {"topic": topic, "pushes": len(outcomes), "outcomes": dict(Counter(o.kind for o in outcomes))}

    def _send(self, batch: list, *, accepted_ms: int, attempt: int) -> list[Outcome]:
        settings = self.settings
        by_id: dict[str, tuple[Subscription, bytes]] = {}
        requests = []
        for plaintext, subscriptions in batch:
            kinds = self._kinds(plaintext)
            for subscription in subscriptions:
                by_id[subscription.id] = (subscription, plaintext)
                requests.append(
                    PushRequest(
                        subscription.id,
                        subscription.push_resource,
                        lambda p=plaintext, s=subscription: encrypt(p, s.public_key, s.auth_secret),
                        {
                            "TTL": str(settings.push_ttl),
                            "Urgency": settings.push_urgency,
                            "Topic": web_push_topic_header(settings.secret_key, subscription.id, kinds),
                            "Content-Encoding": "aes128gcm",
                            "Content-Type": 'application/xml; charset="UTF-8"',
                        },
                    )
                )
        if not requests:
            return []
        outcomes = self.sender.send_all(requests, self.services.signer.authorization)
        self._act(outcomes, by_id, accepted_ms, attempt)
        return outcomes

    @staticmethod
    def _kinds(plaintext: bytes) -> str:
        return ("c" if b"content-update" in plaintext else "") + ("p" if b"property-update" in plaintext else "")

    def _act(self, outcomes: list[Outcome], by_id: dict, accepted_ms: int, attempt: int) -> None:
        now = self.clock()
        succeeded, retries, tallies = [], {}, Counter()
        for outcome in outcomes:
            subscription, plaintext = by_id[outcome.subscription_id]
            origin = endpoint_label(subscription.push_resource).split("#")[0]
            tallies[counter("pushes", outcome=outcome.kind, origin=origin)] += 1
            if outcome.kind == SUCCESS:
                succeeded.append(subscription.id)
                if accepted_ms:
                    tallies[counter("push_latency_bucket", le=latency_bucket(now - accepted_ms / 1000))] += 1
                    tallies[counter("push_latency_sum_ms")] += int(now * 1000 - accepted_ms)
                    tallies[counter("push_latency_count")] += 1
            elif outcome.kind == GONE:
                self.store.delete(subscription.id)
                self._log(logging.INFO, "subscription gone at the push service; removed", subscription, outcome)
            elif outcome.kind == RETRY and attempt < self.settings.push_max_attempts:
                delay = outcome.retry_after if outcome.retry_after is not None else backoff(attempt)
                retries.setdefault((plaintext, round(delay)), []).append(subscription.id)
            elif outcome.kind in (RETRY, REJECTED, AUTH, BLOCKED):
                level = logging.INFO if outcome.kind == REJECTED else logging.WARNING
                self._log(level, f"push not delivered ({outcome.kind})", subscription, outcome)
        self.store.record_success(succeeded, int(now))
        if tallies:
            self.store.count_many(tallies)
        for (plaintext, delay), ids in retries.items():
            self.services.queue.enqueue_in(
                timedelta(seconds=max(1, delay)),
                RETRY_JOB,
                by_id[ids[0]][0].topic,
                plaintext.decode("utf-8"),
                ids,
                attempt + 1,
                accepted_ms,
                int(now * 1000),
                result_ttl=300,
                failure_ttl=7 * 86400,
                job_timeout=300,
            )

    @staticmethod
    def _log(level: int, message: str, subscription: Subscription, outcome: Outcome) -> None:
        log(
            logger,
            level,
            message,
            subscription=short_id(subscription.id),
            endpoint=endpoint_label(subscription.push_resource),
            status=outcome.status,
            detail=outcome.detail,
        )
