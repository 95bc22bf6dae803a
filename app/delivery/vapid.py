"""The server's VAPID key (RFC 8292): loading, generating, and signed headers per origin."""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException

from ..protocol.keys import b64url_decode, b64url_encode

TOKEN_LIFETIME = 12 * 3600  # well under RFC 8292's 24 h, robust to clock skew
RESIGN_WHEN_LEFT = 3600  # Apple asks for no more than one new token per hour


class VapidKeyError(Exception):
    pass


def load_key(path: str) -> Vapid02:
    """Parse the PEM key file. Never creates a key (py_vapid's from_file would)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise VapidKeyError(f"cannot read VAPID key file {path}: {error.strerror}") from None
    return parse_key(data, path)


def parse_key(data: bytes, source: str) -> Vapid02:
    """A P-256 private key as PEM (PKCS#8 or SEC1) or as the base64url raw 32-byte scalar
    (what `davpush vapid generate --stdout` and most Web Push tools print)."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError):
            raise VapidKeyError(f"{source} is not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise VapidKeyError(f"{source} does not hold a P-256 (prime256v1) key")
        return Vapid02(private_key=key)
    try:
        raw = b64url_decode(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raw = b""
    if len(raw) != 32:
        raise VapidKeyError(f"{source} is neither a PEM private key nor a base64url raw 32-byte P-256 key")
    try:
        key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except ValueError:
        raise VapidKeyError(f"{source} is not a valid P-256 private key") from None
    return Vapid02(private_key=key)


def key_pem(vapid: Vapid02) -> str:
    private_key: ec.EllipticCurvePrivateKey = vapid.private_key
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def key_raw_b64(vapid: Vapid02) -> str:
    """The base64url raw private scalar: one line, for an environment variable."""
    return b64url_encode(vapid.private_key.private_numbers().private_value.to_bytes(32, "big"))


def new_key() -> Vapid02:
    return Vapid02(private_key=ec.generate_private_key(ec.SECP256R1()))


def generate_key_file(path: str) -> Vapid02:
    """Write a new PKCS#8 PEM key; refuses to overwrite an existing file."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise VapidKeyError(f"{path} already exists; refusing to overwrite the server's VAPID key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return Vapid02(private_key=key)


def subject_accepted(subject: str) -> bool:
    """Whether the signer accepts this `sub` claim (py_vapid allows mailto: and a bare https://host)."""
    try:
        Vapid02(private_key=ec.generate_private_key(ec.SECP256R1())).sign({"aud": "https://push.example", "sub": subject})
    except VapidException:
        return False
    return True


def public_key_b64(vapid: Vapid02) -> str:
    """The 87-character base64url uncompressed point that clients receive."""
    raw = vapid.public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url_encode(raw)


class VapidSigner:
    """Authorization headers cached per push-service origin, re-signed when < 1 h is left.

    Every signature gets a fresh claims dict: py_vapid and pywebpush mutate the
    claims they are given, which would leak one origin's `aud` to another.
    """

    def __init__(self, vapid: Vapid02, subject: str, clock: Callable[[], float] = time.time):
        self.vapid = vapid
        self.subject = subject
        self.public_key = public_key_b64(vapid)
        self._clock = clock
        self._cache: dict[str, tuple[int, str]] = {}
        self._lock = threading.Lock()

    def authorization(self, origin: str) -> str:
        now = int(self._clock())
        cached = self._cache.get(origin)
        if cached and cached[0] - now > RESIGN_WHEN_LEFT:
            return cached[1]
        with self._lock:
            cached = self._cache.get(origin)
            if cached and cached[0] - now > RESIGN_WHEN_LEFT:
                return cached[1]
            expires = now + TOKEN_LIFETIME
            headers = self.vapid.sign({"aud": origin, "exp": expires, "sub": self.subject})
            value: str = headers["Authorization"]
            self._cache[origin] = (expires, value)
            return value
