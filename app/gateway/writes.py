"""Successful DAV writes seen by the gateway become change events.

This is how address books, collection-level changes and non-Nextcloud upstreams
get push. It runs after the response has been sent to the client, so the
client's write never waits for it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..changes.ingest import ChangeIngestor
from ..core.logs import log, request_id
from ..core.metrics_names import counter
from ..protocol.dont_notify import DontNotify, parse_dont_notify
from ..protocol.subscription import Change
from ..protocol.topics import topic_for_collection
from .identity import identity

if TYPE_CHECKING:
    from ..core.services import Services

logger = logging.getLogger("davpush.writes")
WRITE_METHODS = frozenset(("PUT", "DELETE", "MOVE", "COPY", "PROPPATCH", "MKCOL", "MKCALENDAR", "POST"))


@dataclass(frozen=True)
class ObservedChange:
    path: str  # raw URL path of the changed collection, as the client addressed it
    content_depth: str | None = "1"
    property_update: bool = False
    collection_deleted: bool = False


def _parent(path: str) -> str | None:
    trimmed = path.rstrip("/")
    if "/" not in trimmed:
        return None
    return trimmed.rsplit("/", 1)[0] + "/"


def affected(method: str, path: str, destination: str | None) -> list[ObservedChange]:
    """Which collections a successful write changed, and how (pure)."""
    member_of = lambda p: [ObservedChange(parent)] if (parent := _parent(p)) else []  # noqa: E731
    deleted = lambda p: [ObservedChange(p, content_depth="0", collection_deleted=True)]  # noqa: E731
    if method in ("PUT", "MKCOL", "MKCALENDAR"):
        return member_of(path)
    if method == "DELETE":
        return deleted(path) + member_of(path)
    if method == "MOVE":
        return deleted(path) + member_of(path) + (member_of(destination) if destination else [])
    if method == "COPY":
        return member_of(destination) if destination else []
    # PROPPATCH and POST may target the collection itself or one of its members; a
    # path without a trailing slash may be either, and only a collection has subscribers.
    maybe_member_of = lambda p: [] if p.endswith("/") else member_of(p)  # noqa: E731
    if method == "PROPPATCH":
        return [ObservedChange(path, content_depth=None, property_update=True)] + maybe_member_of(path)
    if method == "POST":
        return [ObservedChange(path)] + maybe_member_of(path)
    return []


@dataclass
class WriteObservation:
    """Everything needed after the request context is gone."""

    changes: list[ObservedChange]
    authorization: str | None
    forwarded: dict  # the writer's X-Forwarded-* headers, for the look-ups made on their behalf
    dont_notify: DontNotify
    accepted_ms: int
    request_id: str


def observation(method: str, raw_path: str, environ, forwarded: dict) -> WriteObservation:
    """What a write request (its WSGI environ) needs once answered."""
    try:
        destination_path = urlsplit(environ.get("HTTP_DESTINATION") or "").path or None
    except ValueError:  # unparsable: upstream accepted the write anyway, so only the source is known
        destination_path = None
    return WriteObservation(
        changes=affected(method, raw_path, destination_path),
        authorization=environ.get("HTTP_AUTHORIZATION"),
        forwarded=forwarded,
        dont_notify=parse_dont_notify([value] if (value := environ.get("HTTP_PUSH_DONT_NOTIFY")) else []),
        accepted_ms=int(time.time() * 1000),
        request_id=request_id.get(),
    )


def process(services: Services, observed: WriteObservation) -> None:
    """Find each changed collection's topic, sync-token and the writer's identity (asking
    upstream with the writer's own credentials), then submit the change."""
    ingestor = ChangeIngestor(services)
    writer = WriterIdentity(services, observed)
    for item in observed.changes:
        if item.collection_deleted:
            target = deleted_collection(services, item.path, writer)
        else:
            target = changed_collection(services, item.path, observed)
        if target is None:
            continue
        key, topic, token, user = target
        change = Change(
            topic=topic,
            content_depth=item.content_depth,
            property_update=item.property_update,
            collection_deleted=item.collection_deleted,
            sync_token=token,
            exclude=excluded_ids(services, topic, user, observed.dont_notify),
            accepted_ms=observed.accepted_ms,
            request_id=observed.request_id,
        )
        outcome = ingestor.submit(change)
        services.store.count(counter("gateway_writes", outcome=outcome))
        log(logger, logging.DEBUG, "write observed", collection=key, outcome=outcome)


class WriterIdentity:
    """Who wrote, asked of upstream at most once per observed write."""

    def __init__(self, services: Services, observed: WriteObservation):
        self.services, self.observed = services, observed
        self._user: str | None = None
        self._asked = False

    def user(self) -> str | None:
        if not self._asked:
            self._asked = True
            root = (self.services.settings.dav_prefix or "") + "/"
            facts = self.services.upstream.lookup(root, self.observed.authorization, self.observed.forwarded)
            self._user = identity(facts, self.observed.authorization)
        return self._user


def _topic(services: Services, key: str) -> str:
    return topic_for_collection(services.settings.secret_key, key)


def changed_collection(services: Services, path: str, observed: WriteObservation):
    """(key, topic, sync-token, writer) of a collection whose content or properties changed,
    or None when it has no subscribers.

    A `<uri>_shared_by_<x>` name may be x's calendar seen by a sharee, or the writer's own
    calendar that happens to be named so: only upstream's answer tells, so such a collection
    is looked up before its topic is chosen; without an answer the name is taken literally."""
    resolver, store = services.resolver, services.store
    literal = resolver.collection_key(path)
    if literal is None:
        return None
    claimed = resolver.claimed_key(path)
    if not any(store.has_live(_topic(services, key)) for key in (literal, claimed) if key):
        return None
    facts = services.upstream.lookup(path, observed.authorization, observed.forwarded)
    if facts.status != 207:
        return literal, _topic(services, literal), None, None
    key = resolver.collection_key(path, facts.owner_principal) or literal
    topic = _topic(services, key)
    if key != literal and not store.has_live(topic):
        return None
    return key, topic, facts.sync_token, identity(facts, observed.authorization)


def deleted_collection(services: Services, path: str, writer: WriterIdentity):
    """(key, topic, None, writer) of a deleted collection with subscribers, or None.

    A deleted collection cannot be asked about. Deleting a sharee's view only removes the
    share from that account, so the writer's own registrations on the owner's topic the
    name claims are dropped (nobody else's, and nothing is pushed there). Subscribers of
    the literal collection get the final push: it is the writer's own calendar."""
    resolver, store = services.resolver, services.store
    claimed = resolver.claimed_key(path)
    if claimed is not None:
        claimed_topic = _topic(services, claimed)
        if store.has_live(claimed_topic) and writer.user():
            for subscription in store.live_for_topic(claimed_topic):
                if subscription.user == writer.user():
                    store.delete(subscription.id)
    literal = resolver.collection_key(path)
    if literal is None or not store.has_live(literal_topic := _topic(services, literal)):
        return None
    return literal, literal_topic, None, writer.user()


def excluded_ids(services: Services, topic: str, user: str | None, dont_notify: DontNotify) -> frozenset:
    """Registrations of the writing user named by Push-Dont-Notify (never anyone else's)."""
    if user is None or dont_notify.empty:
        return frozenset()
    store = services.store
    if dont_notify.everything:
        return frozenset(s.id for s in store.live_for_topic(topic) if s.user == user)
    prefix = f"{services.settings.public_base}/push/subscriptions/"
    ids = set()
    for url in dont_notify.urls:
        if not url.startswith(prefix):
            continue
        subscription = store.get(url[len(prefix):])
        if subscription and subscription.location == url and subscription.user == user and subscription.topic == topic:
            ids.add(subscription.id)
    return frozenset(ids)


def run_safely(services: Services, observed: WriteObservation) -> None:
    try:
        process(services, observed)
    except Exception:  # never let a push problem surface in the client's connection
        logger.exception("could not process an observed write")
