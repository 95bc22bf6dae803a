"""Turning change events into coalesced delivery jobs, one topic at a time.

At most one delivery job per topic is queued: a change for a topic that already
has a pending change merges into it. The job takes the pending change when it
starts, so a change arriving while it runs creates a new pending change and a
new job; nothing is lost. Consecutive jobs for one topic are spaced by
PUSH_MIN_INTERVAL_MS (the first push of a burst goes out at once, the rest of
the burst is merged into one trailing push).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ..core.logs import request_id
from ..core.metrics_names import counter
from ..jobs import enqueue_delivery
from ..protocol.subscription import Change, is_stale

if TYPE_CHECKING:
    from ..core.services import Services

logger = logging.getLogger("davpush.changes")

QUEUED, MERGED, NO_SUBSCRIBERS, STALE = "queued", "merged", "no-subscribers", "stale"
# A delivery job that has not claimed its pending change this long after it was due is presumed
# lost (its worker died between dequeue and claim): the worker's watchdog enqueues it again.
CLAIM_GRACE_MS = 30_000


class ChangeIngestor:
    def __init__(self, services: Services, clock=time.time):
        self.services = services
        self.store = services.store
        self.settings = services.settings
        self.clock = clock

    def submit(self, change: Change) -> str:
        if not change.accepted_ms:
            change.accepted_ms = int(self.clock() * 1000)
        if not change.request_id:
            change.request_id = request_id.get()
        if not self.store.has_live(change.topic):
            return NO_SUBSCRIBERS
        if self._is_stale(change):
            self.store.count(counter("events_stale"))
            return STALE
        delay_ms = self._delay_ms(change.topic)
        due_ms = int(self.clock() * 1000) + delay_ms + CLAIM_GRACE_MS
        if not self.store.merge_pending(change, due_ms=due_ms):
            self.store.count(counter("events_merged"))
            return MERGED
        try:
            self._enqueue(change.topic, delay_ms)
        except Exception:
            self.store.take_pending(change.topic)  # no job will ever take it: do not leave it behind
            raise
        return QUEUED

    def _is_stale(self, change: Change) -> bool:
        """A content-only change whose sync-token was already delivered (duplicate or late)."""
        if change.content_only_token() is None:
            return False  # no Redis read for changes the rule never drops
        return is_stale(change, self.store.delivered_token(change.topic))

    def _delay_ms(self, topic: str) -> int:
        now_ms = int(self.clock() * 1000)
        earliest = self.store.last_delivery_ms(topic) + self.settings.push_min_interval_ms
        return max(self.settings.push_coalesce_ms, earliest - now_ms)

    def _enqueue(self, topic: str, delay_ms: int) -> None:
        enqueue_delivery(self.services.queue, topic, delay_ms)

