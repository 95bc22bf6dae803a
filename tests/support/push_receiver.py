"""A Web Push receiver (push service double) and an independent RFC 8291 / RFC 8292 toolkit.

The toolkit deliberately uses only `cryptography` primitives (no pywebpush, no http_ece) so that it
can check the service's own encryption and VAPID signing.
"""
from __future__ import annotations

import base64
import json
import os
import struct
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .servers import Served, read_body, request_headers

# ---------------------------------------------------------------- receiver


@dataclass
class Push:
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    received_at: float  # time.monotonic() on arrival
    client_port: int | None = None

    def header(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return default

    def decrypt(self, keys: ClientKeys) -> bytes:
        return decrypt_aes128gcm(self.body, keys)


class PushReceiver(Served):
    """WSGI app recording every POST; other methods get 405.

    Answers: scripted ones per path first (`script(path, [(status, headers), ...])`, a third tuple
    item may give a body), then 201 with a Location. `latency_ms` delays every answer; a push is
    recorded on arrival, before that delay.
    """

    def __init__(self, latency_ms: float = 0):
        self.latency_ms = latency_ms
        self._pushes: list[Push] = []
        self._scripts: dict[str, list[tuple]] = {}
        self._cond = threading.Condition()
        self._server = None
        self._in_flight = 0
        self.peak_in_flight = 0  # most requests being answered at the same time


    def endpoint(self, path: str = "/push/1") -> str:
        """Absolute push endpoint URL for `path` on this receiver."""
        return self.url + path

    # scripting and inspection
    def script(self, path: str, answers) -> None:
        with self._cond:
            self._scripts.setdefault(path, []).extend(tuple(a) for a in answers)

    @property
    def pushes(self) -> list[Push]:
        with self._cond:
            return list(self._pushes)

    def pushes_to(self, path: str) -> list[Push]:
        return [p for p in self.pushes if p.path == path]

    def clear(self) -> None:
        with self._cond:
            self._pushes.clear()
            self._scripts.clear()
            self.peak_in_flight = 0

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Push]:
        """Block until at least `count` pushes arrived; returns them all. AssertionError on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._pushes) >= count, timeout):
                got = [(p.path, len(p.body)) for p in self._pushes]
                raise AssertionError(f"expected at least {count} push(es) within {timeout} s, got {len(got)}: {got}")
            return list(self._pushes)

    def __call__(self, environ, start_response):
        if environ["REQUEST_METHOD"] != "POST":
            start_response("405 Method Not Allowed", [("Allow", "POST"), ("Content-Length", "0")])
            return [b""]
        body = read_body(environ)
        path = environ.get("PATH_INFO", "")
        port = environ.get("REMOTE_PORT")
        push = Push(path, request_headers(environ), body, time.monotonic(), int(port) if port else None)
        with self._cond:
            self._pushes.append(push)
            number = len(self._pushes)
            queue = self._scripts.get(path)
            answer = queue.pop(0) if queue else None
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
            self._cond.notify_all()
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        with self._cond:
            self._in_flight -= 1
        if answer is None:
            host = environ.get("HTTP_HOST", "127.0.0.1")
            status, headers, payload = 201, {"Location": f"http://{host}/messages/{number}"}, b""
        else:
            status, headers = answer[0], dict(answer[1] or {})
            payload = answer[2] if len(answer) > 2 else b""
            payload = payload.encode() if isinstance(payload, str) else payload
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        start_response(f"{status} {reason}", list(headers.items()) + [("Content-Length", str(len(payload)))])
        return [payload]


# ---------------------------------------------------------------- RFC 8291 (aes128gcm) decryption


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(value: str) -> bytes:
    value = value.strip()
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def _public_bytes(key) -> bytes:
    return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)


@dataclass
class ClientKeys:
    """A user agent's subscription keys: `.private_key`, `.p256dh`, `.auth` (base64url strings)."""

    private_key: ec.EllipticCurvePrivateKey
    p256dh: str
    auth: str

    @classmethod
    def generate(cls) -> ClientKeys:
        private_key = ec.generate_private_key(ec.SECP256R1())
        return cls(private_key, b64url_encode(_public_bytes(private_key.public_key())), b64url_encode(os.urandom(16)))

    @classmethod
    def from_private(cls, private_b64: str, auth_b64: str) -> ClientKeys:
        """Rebuild keys from a raw 32-byte private scalar (base64url), e.g. a published test vector."""
        private_key = ec.derive_private_key(int.from_bytes(b64url_decode(private_b64), "big"), ec.SECP256R1())
        return cls(private_key, b64url_encode(_public_bytes(private_key.public_key())), auth_b64)

    def subscription(self, endpoint: str) -> dict:
        """The PushSubscription JSON shape (also what pywebpush expects)."""
        return {"endpoint": endpoint, "keys": {"p256dh": self.p256dh, "auth": self.auth}}


def _hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def derive_cek_and_nonce(ecdh_secret: bytes, auth_secret: bytes, ua_public: bytes, as_public: bytes,
                         salt: bytes) -> tuple[bytes, bytes]:
    """RFC 8291 §3.4 key combination followed by RFC 8188 §2.2/§2.3 CEK and NONCE derivation."""
    ikm = _hkdf(auth_secret, ecdh_secret, b"WebPush: info\x00" + ua_public + as_public, 32)
    cek = _hkdf(salt, ikm, b"Content-Encoding: aes128gcm\x00", 16)
    nonce = _hkdf(salt, ikm, b"Content-Encoding: nonce\x00", 12)
    return cek, nonce


def decrypt_aes128gcm(body: bytes, keys: ClientKeys) -> bytes:
    """Decrypt a single-record aes128gcm Web Push message body; ValueError on any violation."""
    if len(body) < 21:
        raise ValueError(f"body of {len(body)} bytes is shorter than the aes128gcm header")
    salt, (record_size,), id_length = body[:16], struct.unpack("!I", body[16:20]), body[20]
    if id_length != 65:
        raise ValueError(f"keyid must be the 65-byte sender public key, idlen is {id_length}")
    as_public, ciphertext = body[21:86], body[86:]
    if len(as_public) != 65 or as_public[0] != 0x04:
        raise ValueError("keyid is not an uncompressed P-256 point")
    if record_size < 18:
        raise ValueError(f"record size {record_size} is below the minimum of 18")
    if len(ciphertext) > record_size:
        raise ValueError(f"{len(ciphertext)} ciphertext bytes exceed rs={record_size}: more than one record")
    if len(ciphertext) < 17:
        raise ValueError("record too short to hold a delimiter and the 16-byte tag")
    try:
        sender = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), as_public)
    except ValueError as err:
        raise ValueError(f"sender public key is not on P-256: {err}") from None
    ecdh_secret = keys.private_key.exchange(ec.ECDH(), sender)
    ua_public = _public_bytes(keys.private_key.public_key())
    cek, nonce = derive_cek_and_nonce(ecdh_secret, b64url_decode(keys.auth), ua_public, as_public, salt)
    try:
        plaintext = AESGCM(cek).decrypt(nonce, ciphertext, None)  # record 0: nonce XOR 0
    except InvalidTag:
        raise ValueError("authentication tag does not verify (wrong keys or corrupted body)") from None
    unpadded = plaintext.rstrip(b"\x00")
    if not unpadded:
        raise ValueError("record holds no padding delimiter")
    if unpadded[-1] != 0x02:
        raise ValueError(f"padding delimiter is {unpadded[-1]:#04x}, expected 0x02 (single, last record)")
    return unpadded[:-1]


# ---------------------------------------------------------------- RFC 8292 (VAPID) verification


def parse_vapid_header(authorization: str) -> dict[str, str]:
    """'vapid t=<jwt>, k=<key>' → {'t': ..., 'k': ...}."""
    scheme, _, params = authorization.strip().partition(" ")
    if scheme.lower() != "vapid":
        raise ValueError(f"authorization scheme is {scheme!r}, expected 'vapid'")
    parts = {}
    for item in params.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise ValueError(f"malformed vapid parameter {item!r}")
        parts[name.strip().lower()] = value.strip()
    if "t" not in parts or "k" not in parts:
        raise ValueError("vapid authorization needs both t= and k=")
    return parts


def verify_vapid(authorization_header: str, *, expected_public_key: str | None = None,
                 audience: str | None = None, check_exp: bool = False) -> dict:
    """Verify an RFC 8292 `vapid t=..., k=...` header; returns the JWT claims. ValueError on mismatch.

    `audience` checks the `aud` claim; `check_exp` requires now < exp <= now + 24 h.
    """
    parts = parse_vapid_header(authorization_header)
    key_bytes = b64url_decode(parts["k"])
    if len(key_bytes) != 65 or key_bytes[0] != 0x04:
        raise ValueError("k is not a base64url uncompressed P-256 point")
    if expected_public_key is not None and b64url_decode(expected_public_key) != key_bytes:
        raise ValueError("k differs from the expected VAPID public key")
    try:
        header_b64, claims_b64, signature_b64 = parts["t"].split(".")
        header = json.loads(b64url_decode(header_b64))
        claims = json.loads(b64url_decode(claims_b64))
        signature = b64url_decode(signature_b64)
    except (ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"t is not a compact JWS: {err}") from None
    if header.get("alg") != "ES256":
        raise ValueError(f"JWT alg is {header.get('alg')!r}, expected ES256")
    if len(signature) != 64:
        raise ValueError(f"ES256 signature must be 64 bytes (r||s), got {len(signature)}")
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
    public_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key_bytes)
    try:
        public_key.verify(der, f"{header_b64}.{claims_b64}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise ValueError("VAPID JWT signature does not verify against k") from None
    if not isinstance(claims, dict):
        raise ValueError("JWT claims are not an object")
    if audience is not None and claims.get("aud") != audience:
        raise ValueError(f"aud is {claims.get('aud')!r}, expected {audience!r}")
    if check_exp:
        now, exp = time.time(), claims.get("exp")
        if not isinstance(exp, int) or not now < exp <= now + 24 * 3600:
            raise ValueError(f"exp {exp!r} is not within the next 24 hours")
    return claims
