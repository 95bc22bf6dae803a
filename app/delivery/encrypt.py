"""RFC 8291 aes128gcm encryption of one push message for one subscription.

Written directly against `cryptography` (one ECDH, HMAC-SHA-256 HKDF steps, one
AES-128-GCM record) instead of pywebpush's WebPusher.encode: same wire format,
about half the CPU per message (bench/RESULTS.md), and a single record is
guaranteed (pywebpush silently emits two records at 4080+ bytes).
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct
import threading
from collections import OrderedDict

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..protocol.keys import b64url_decode
from ..protocol.message import MAX_PLAINTEXT, RECORD_SIZE

_KEY_INFO = b"WebPush: info\x00"
_CEK_INFO = b"Content-Encoding: aes128gcm\x00\x01"
_NONCE_INFO = b"Content-Encoding: nonce\x00\x01"
_RS_IDLEN = struct.pack("!IB", RECORD_SIZE, 65)
_CURVE = ec.SECP256R1()
_ECDH = ec.ECDH()
_X962 = serialization.Encoding.X962
_UNCOMPRESSED = serialization.PublicFormat.UncompressedPoint

_SubscriberKeys = tuple[ec.EllipticCurvePublicKey, bytes, bytes]  # public key object, raw point, auth secret
# Parsed subscriber keys (p256dh, auth) -> (public key object, raw point, auth bytes): the same
# subscriptions are encrypted for again and again by a long-lived worker.
_CACHE_SIZE = 65536
_cache: OrderedDict[tuple[str, str], _SubscriberKeys] = OrderedDict()
_cache_lock = threading.Lock()


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.digest(key, data, hashlib.sha256)


def _subscriber_keys(public_key: str, auth_secret: str) -> _SubscriberKeys:
    cache_key = (public_key, auth_secret)
    hit = _cache.get(cache_key)
    if hit is not None:
        return hit
    raw = b64url_decode(public_key)
    if len(raw) != 65 or raw[0] != 0x04:
        raise ValueError("p256dh must be a 65-byte uncompressed P-256 point")
    auth = b64url_decode(auth_secret)
    if len(auth) != 16:
        raise ValueError("auth secret must be 16 bytes (RFC 8291 §3.2)")
    entry = (ec.EllipticCurvePublicKey.from_encoded_point(_CURVE, raw), raw, auth)  # raises if not on the curve
    with _cache_lock:
        _cache[cache_key] = entry
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return entry


def encrypt(plaintext: bytes, public_key: str, auth_secret: str) -> bytes:
    """One record with a fresh ephemeral key and salt, as RFC 8291 requires."""
    if not plaintext:
        raise ValueError("nothing to encrypt")
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError(f"push message of {len(plaintext)} bytes does not fit one {RECORD_SIZE}-byte record")
    ua_public, ua_raw, auth = _subscriber_keys(public_key, auth_secret)
    ephemeral = ec.generate_private_key(_CURVE)
    as_raw = ephemeral.public_key().public_bytes(_X962, _UNCOMPRESSED)
    shared = ephemeral.exchange(_ECDH, ua_public)
    # RFC 8291 §3.3-3.4: IKM = HKDF(auth, ecdh_secret, "WebPush: info" || 0 || ua_public || as_public, 32)
    ikm = _hmac(_hmac(auth, shared), _KEY_INFO + ua_raw + as_raw + b"\x01")
    # RFC 8188 §2.2-2.3: PRK = HKDF-Extract(salt, IKM); CEK and NONCE from one-block HKDF-Expand.
    salt = os.urandom(16)
    prk = _hmac(salt, ikm)
    cek = _hmac(prk, _CEK_INFO)[:16]
    nonce = _hmac(prk, _NONCE_INFO)[:12]
    ciphertext = AESGCM(cek).encrypt(nonce, plaintext + b"\x02", None)  # 0x02: the last (only) record
    return salt + _RS_IDLEN + as_raw + ciphertext
