"""The push-message body sent to subscribers (WebDAV-Push §Push Message)."""
from __future__ import annotations

from xml.sax.saxutils import escape

from .names import DAV, PUSH

# RFC 8291 §4 / RFC 8188: the encrypted body is one aes128gcm record of RECORD_SIZE bytes: an
# 86-byte header (salt 16, record size 4, key-id length 1, key id 65), the 16-byte AEAD tag and one
# padding delimiter byte leave 3993 bytes for the message.
RECORD_SIZE = 4096
HEADER_SIZE, TAG_SIZE, DELIMITER_SIZE = 86, 16, 1
MAX_PLAINTEXT = RECORD_SIZE - HEADER_SIZE - TAG_SIZE - DELIMITER_SIZE


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
