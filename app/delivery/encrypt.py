"""RFC 8291 aes128gcm encryption of one push message for one subscription (via pywebpush)."""
from __future__ import annotations

from pywebpush import WebPusher


def encrypt(plaintext: bytes, public_key: str, auth_secret: str) -> bytes:
    """One record with a fresh ephemeral key and salt, as RFC 8291 requires."""
    pusher = WebPusher({"endpoint": "unused:", "keys": {"p256dh": public_key, "auth": auth_secret}})
    return pusher.encode(plaintext, content_encoding="aes128gcm")["body"]
