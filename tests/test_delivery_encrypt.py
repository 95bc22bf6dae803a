"""The worker's RFC 8291 encryption, checked against the RFC's own example and an independent decrypter."""
import os

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from app.delivery import encrypt as encrypt_module
from app.delivery.encrypt import encrypt
from app.protocol.message import MAX_PLAINTEXT
from support.push_receiver import ClientKeys, b64url_decode, b64url_encode, decrypt_aes128gcm

# RFC 8291 Appendix A: the application server's key pair and salt, the user agent's keys, the result.
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
UA_PUBLIC = "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
BODY = ("DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3"
        "jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN")


def test_rfc8291_example_is_reproduced_byte_for_byte(monkeypatch):
    server_key = ec.derive_private_key(int.from_bytes(b64url_decode(AS_PRIVATE), "big"), ec.SECP256R1())
    monkeypatch.setattr(encrypt_module.ec, "generate_private_key", lambda curve: server_key)
    monkeypatch.setattr(encrypt_module.os, "urandom", lambda n: b64url_decode(SALT))
    body = encrypt(b"When I grow up, I want to be a watermelon", UA_PUBLIC, AUTH)
    assert b64url_encode(body) == BODY


@pytest.mark.parametrize("size", [1, 367, MAX_PLAINTEXT])
def test_an_independent_decrypter_reads_one_record(size):
    keys = ClientKeys.generate()
    message = os.urandom(size)
    body = encrypt(message, keys.p256dh, keys.auth)
    assert len(body) <= 4096
    assert decrypt_aes128gcm(body, keys) == message  # refuses more than one record
    assert http_ece.decrypt(body, private_key=keys.private_key, auth_secret=b64url_decode(keys.auth),
                            version="aes128gcm") == message


def test_every_message_gets_a_fresh_key_and_salt():
    keys = ClientKeys.generate()
    first, second = encrypt(b"same", keys.p256dh, keys.auth), encrypt(b"same", keys.p256dh, keys.auth)
    assert first[:16] != second[:16] and first[21:86] != second[21:86]


@pytest.mark.parametrize("plaintext, public_key, auth, message", [
    (b"x" * (MAX_PLAINTEXT + 1), None, None, "does not fit"),
    (b"", None, None, "nothing to encrypt"),
    (b"x", "BAAA", None, "65-byte"),
    (b"x", None, "c2hvcnQ", "16 bytes"),
    (b"x", "B" + "A" * 86, None, None),  # 65 bytes, but not a point on the curve
])
def test_unusable_input_is_refused(plaintext, public_key, auth, message):
    keys = ClientKeys.generate()
    with pytest.raises(ValueError, match=message):
        encrypt(plaintext, public_key or keys.p256dh, auth or keys.auth)
