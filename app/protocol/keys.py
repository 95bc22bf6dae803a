"""Validation of the client's Web Push encryption keys (RFC 8291)."""
from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric import ec


class InvalidKey(ValueError):
    pass


def b64url_decode(value: str) -> bytes:
    """Decode base64url, tolerating missing or present padding and surrounding space.

    The standard alphabet ('+' and '/') is rejected: the draft requires base64url.
    """
    text = "".join(value.split())
    if not text or any(c in text for c in "+/"):
        raise InvalidKey("not base64url")
    text = text.rstrip("=")
    if len(text) % 4 == 1:
        raise InvalidKey("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidKey("not base64url") from None


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def validate_p256dh(value: str) -> str:
    """Return the canonical (unpadded base64url) form of a valid P-256 public key."""
    raw = b64url_decode(value)
    if len(raw) != 65 or raw[0] != 0x04:
        raise InvalidKey("subscription-public-key must be a 65-byte uncompressed P-256 point")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise InvalidKey("subscription-public-key is not a point on the P-256 curve") from None
    return b64url_encode(raw)


def validate_auth_secret(value: str) -> str:
    raw = b64url_decode(value)
    if len(raw) != 16:
        raise InvalidKey(f"auth-secret must be 16 bytes, got {len(raw)}")
    return b64url_encode(raw)
