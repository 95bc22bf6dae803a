"""Opaque topics: keyed hashes that leak nothing about the collection or subscriber."""
from __future__ import annotations

import hashlib
import hmac

from .keys import b64url_encode


def _mac(secret: str, label: str, value: str) -> bytes:
    return hmac.new(secret.encode("utf-8"), f"{label}\x00{value}".encode(), hashlib.sha256).digest()


def topic_for_collection(secret: str, collection_key: str) -> str:
    """The WebDAV-Push topic of a collection: 128 bits of HMAC, 22 base64url characters."""
    return b64url_encode(_mac(secret, "topic", collection_key)[:16])


def web_push_topic_header(secret: str, subscription_id: str, kinds: str) -> str:
    """RFC 8030 Topic header (≤ 32 base64url characters) for one subscription.

    `kinds` names the update types in the message, so a message carrying a
    property update never replaces (or is replaced by) a content-only one.
    Keyed by subscription, so the push service cannot correlate subscribers.
    """
    return b64url_encode(_mac(secret, "web-push-topic", f"{subscription_id}\x00{kinds}")[:24])
