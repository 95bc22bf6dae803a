"""The stored subscription and the change events that are delivered to it."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from .triggers import Triggers, covers


@lru_cache(maxsize=1024)
def _triggers_from_json(text: str) -> Triggers:
    """Stored triggers are a handful of distinct JSON texts, and Triggers is immutable: parse each once."""
    return Triggers.from_dict(json.loads(text))


@dataclass(frozen=True)
class Subscription:
    id: str
    user: str
    collection: str  # canonical collection key
    topic: str
    href: str  # the collection path the client registered at
    push_resource: str
    public_key: str
    auth_secret: str
    triggers: Triggers
    expires: int  # Unix seconds
    created: int
    location: str
    last_success: int = 0

    def to_fields(self) -> dict[str, str]:
        return {
            "id": self.id,
            "user": self.user,
            "collection": self.collection,
            "topic": self.topic,
            "href": self.href,
            "push_resource": self.push_resource,
            "public_key": self.public_key,
            "auth_secret": self.auth_secret,
            "triggers": json.dumps(self.triggers.to_dict(), separators=(",", ":")),
            "expires": str(self.expires),
            "created": str(self.created),
            "location": self.location,
            "last_success": str(self.last_success),
        }

    # The stored fields in a fixed order: a worker loads thousands of subscriptions for one
    # fan-out, and reading these as a list (HMGET) is about twice as fast as a dict per hash.
    FIELDS: ClassVar[tuple[str, ...]] = (
        "id", "user", "collection", "topic", "href", "push_resource", "public_key", "auth_secret", "triggers",
        "expires", "created", "location", "last_success",
    )  # fmt: skip

    @classmethod
    def from_values(cls, values: list[Any]) -> Subscription | None:
        """From the values of FIELDS, in that order (bytes or str; None where missing): None when
        there is no such subscription."""
        if any(values[i] is None for i in _REQUIRED):
            return None  # no such hash (or a damaged one: skipped rather than failing a whole fan-out)
        (sub_id, user, collection, topic, href, push_resource, public_key, auth_secret, triggers, expires, created,
         location, last_success) = (v.decode() if isinstance(v, bytes) else v for v in values)
        return cls(
            id=sub_id, user=user, collection=collection, topic=topic, href=href or "",
            push_resource=push_resource, public_key=public_key, auth_secret=auth_secret,
            triggers=_triggers_from_json(triggers), expires=int(expires), created=int(created or 0),
            location=location, last_success=int(last_success or 0),
        )

    @classmethod
    def from_fields(cls, fields: dict[Any, Any]) -> Subscription:
        f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in fields.items()}
        return cls(
            id=f["id"],
            user=f["user"],
            collection=f["collection"],
            topic=f["topic"],
            href=f.get("href", ""),
            push_resource=f["push_resource"],
            public_key=f["public_key"],
            auth_secret=f["auth_secret"],
            triggers=_triggers_from_json(f["triggers"]),
            expires=int(f["expires"]),
            created=int(f.get("created") or 0),
            location=f["location"],
            last_success=int(f.get("last_success") or 0),
        )


_OPTIONAL = ("href", "created", "last_success")
_REQUIRED = tuple(i for i, name in enumerate(Subscription.FIELDS) if name not in _OPTIONAL)


@dataclass
class Change:
    """What happened to one topic, possibly merged from several events.

    content_depth: the subscription depth a content update needs to be seen
      ("1" for a member change, "0" for a change of the collection itself), or None.
    sync_token: the client-visible sync-token after the change, when known.
    exclude: subscription ids that asked not to be notified (Push-Dont-Notify).
    """

    topic: str
    content_depth: str | None = None
    property_update: bool = False
    collection_deleted: bool = False
    sync_token: str | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)
    accepted_ms: int = 0
    merged: int = 1
    request_id: str = ""  # of the first merged change, to follow it into the worker's log

    def wants(self, subscription: Subscription) -> tuple[bool, bool]:
        """(content, property) parts of the message this subscription should get."""
        if subscription.id in self.exclude:
            return False, False
        content = self.content_depth is not None and covers(subscription.triggers.content_depth, self.content_depth)
        prop = self.property_update and subscription.triggers.property_depth is not None
        return content, prop

    def content_only_token(self) -> int | None:
        """The sync-token number of a change that only announces new content (no property update,
        no deletion): the one kind of change that an earlier push can make redundant."""
        if self.property_update or self.collection_deleted:
            return None
        return sync_token_number(self.sync_token)


def is_stale(change: Change, delivered: int | None) -> bool:
    """The stale-token rule: a content-only change whose sync-token is not newer than the highest
    one already pushed for its topic (`delivered`) is a duplicate or late event, not pushed again.
    Applied when a change arrives (app/changes/ingest.py) and when its delivery starts
    (app/delivery/deliver.py)."""
    number = change.content_only_token()
    return number is not None and delivered is not None and number <= delivered


_SYNC_NUMBER = re.compile(r"/sync/([0-9]+)$")
SABRE_SYNC_PREFIX = "http://sabre.io/ns/sync/"
MAX_SYNC_NUMBER = 2**63 - 1  # a signed 64-bit counter; anything larger is not a real token


def sync_token_number(token: str | None) -> int | None:
    """The counter inside a Sabre-style sync-token (http://sabre.io/ns/sync/<N>), if any;
    None as well when the counter does not fit in 64 bits."""
    if not token:
        return None
    match = _SYNC_NUMBER.search(token)
    if match is None or len(match.group(1)) > len(str(MAX_SYNC_NUMBER)):
        return None
    number = int(match.group(1))
    return number if number <= MAX_SYNC_NUMBER else None


def has_oversized_counter(token: str | None) -> bool:
    """A Sabre-style token whose counter is beyond 64 bits: to be treated as no token at all."""
    return token is not None and _SYNC_NUMBER.search(token) is not None and sync_token_number(token) is None
