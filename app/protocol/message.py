"""The push-message body sent to subscribers (WebDAV-Push §Push Message)."""
from __future__ import annotations

from xml.sax.saxutils import escape

from .names import DAV, PUSH

MAX_PLAINTEXT = 3993  # RFC 8291 §4: one record in a 4096-byte body


class MessageTooLarge(ValueError):
    pass


def build_push_message(topic: str, *, content: bool, property_update: bool, sync_token: str | None = None) -> bytes:
    parts = [
        f'<?xml version="1.0" encoding="utf-8"?><P:push-message xmlns:P="{PUSH}" xmlns:D="{DAV}">',
        f"<P:topic>{escape(topic)}</P:topic>",
    ]
    if content:
        if sync_token:
            parts.append(f"<P:content-update><D:sync-token>{escape(sync_token)}</D:sync-token></P:content-update>")
        else:
            parts.append("<P:content-update/>")
    if property_update:
        parts.append("<P:property-update/>")
    parts.append("</P:push-message>")
    body = "".join(parts).encode("utf-8")
    if len(body) > MAX_PLAINTEXT:
        raise MessageTooLarge(f"push message of {len(body)} bytes exceeds {MAX_PLAINTEXT}")
    return body
