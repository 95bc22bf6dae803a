"""State written straight through the store, for tests that start at the worker."""
from __future__ import annotations

import time

from app.protocol.subscription import Change, Subscription
from app.protocol.topics import topic_for_collection
from app.protocol.triggers import Triggers


def one_pending_push(services, endpoint: str, keys, token: int, collection: str = "calendars/alice/work") -> str:
    """Subscription "s1" of /u/alice on `collection` at `endpoint`, and a pending content change
    with sync-token `token` for it; returns the topic (for Deliverer.deliver_topic)."""
    topic = topic_for_collection(services.settings.secret_key, collection)
    services.store.upsert(Subscription(
        id="s1", user="/u/alice", collection=collection, topic=topic, href="/c/",
        push_resource=endpoint, public_key=keys.p256dh, auth_secret=keys.auth,
        triggers=Triggers(content_depth="1"), expires=int(time.time()) + 3600, created=0, location="s1"))
    services.store.merge_pending(Change(topic, content_depth="1", sync_token=f"http://sabre.io/ns/sync/{token}"))
    return topic
