"""VAPID Authorization headers (RFC 8292): one cached, independently verifiable JWT per push-service origin.

The signer takes a clock, so time is simulated: no test waits. ES256 signatures are randomised,
so two signings of the same claims never give the same string; an identical header therefore
proves it came from the cache.
"""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import serialization

from app.delivery.vapid import VapidSigner, load_key
from support.push_receiver import b64url_encode, parse_vapid_header, verify_vapid

SUBJECT = "mailto:admin@example.test"
FCM = "https://fcm.googleapis.com"
MOZILLA = "https://updates.push.services.mozilla.com"
SELF_HOSTED = "https://ntfy.example.org:8443"
HOUR = 3600


class FakeClock:
    """Starts at the real time (so verify_vapid's own exp check still applies) and moves only when told."""

    def __init__(self):
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def public_key(vapid_key_file) -> str:
    """The public key straight from the PEM file, without the service's own helper."""
    with open(vapid_key_file, "rb") as handle:
        private = serialization.load_pem_private_key(handle.read(), password=None)
    raw = private.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return b64url_encode(raw)


@pytest.fixture
def signer(vapid_key_file, clock) -> VapidSigner:
    return VapidSigner(load_key(vapid_key_file), SUBJECT, clock=clock)


def claims_of(header: str, public_key: str, origin: str, check_exp: bool = True) -> dict:
    return verify_vapid(header, expected_public_key=public_key, audience=origin, check_exp=check_exp)


def test_header_verifies_against_the_servers_public_key_with_the_right_claims(signer, clock, public_key):
    header = signer.authorization(FCM)
    assert header.startswith("vapid ")
    assert parse_vapid_header(header)["k"] == public_key == signer.public_key
    claims = claims_of(header, public_key, FCM)
    assert claims["aud"] == FCM and claims["sub"] == SUBJECT
    assert set(claims) == {"aud", "exp", "sub"}


def test_exp_is_twelve_hours_ahead_and_never_beyond_24_hours(signer, clock, public_key):
    claims = claims_of(signer.authorization(FCM), public_key, FCM)
    lifetime = claims["exp"] - int(clock())
    assert 11 * HOUR <= lifetime <= 12 * HOUR + 60
    assert lifetime <= 24 * HOUR


def test_same_origin_reuses_one_header(signer, clock, public_key):
    first = signer.authorization(FCM)
    assert signer.authorization(FCM) == first
    clock.advance(10 * HOUR)  # two hours of validity left: still reused
    assert signer.authorization(FCM) == first
    claims_of(first, public_key, FCM)


def test_equal_headers_really_mean_caching(vapid_key_file, clock):
    """Sanity check of the premise above: two signings of identical claims differ."""
    key = load_key(vapid_key_file)
    one = VapidSigner(key, SUBJECT, clock=clock).authorization(FCM)
    two = VapidSigner(key, SUBJECT, clock=clock).authorization(FCM)
    assert one != two


def test_each_origin_gets_its_own_jwt_with_its_own_audience(signer, clock, public_key):
    headers = {origin: signer.authorization(origin) for origin in (FCM, MOZILLA, SELF_HOSTED)}
    assert len(set(headers.values())) == 3
    for origin, header in headers.items():
        claims = claims_of(header, public_key, origin)
        assert claims["aud"] == origin and claims["sub"] == SUBJECT
    # asking again, interleaved, gives each origin back its own cached header
    for origin in (MOZILLA, FCM, SELF_HOSTED, FCM):
        assert signer.authorization(origin) == headers[origin]


def test_resigned_when_less_than_one_hour_is_left(signer, clock, public_key):
    first = signer.authorization(FCM)
    first_exp = claims_of(first, public_key, FCM)["exp"]
    clock.now = first_exp - HOUR - 1  # a little over an hour left: keep it
    assert signer.authorization(FCM) == first
    clock.now = first_exp - HOUR + 1  # a little under an hour left: sign anew
    second = signer.authorization(FCM)
    assert second != first
    second_claims = claims_of(second, public_key, FCM, check_exp=False)
    assert second_claims["exp"] - int(clock()) == pytest.approx(12 * HOUR, abs=60)
    assert second_claims["exp"] > first_exp and second_claims["sub"] == SUBJECT
    assert signer.authorization(FCM) == second  # and the new one is cached in turn


def test_an_expired_header_is_never_handed_out(signer, clock, public_key):
    first = signer.authorization(FCM)
    clock.advance(13 * HOUR)
    header = signer.authorization(FCM)
    assert header != first
    assert claims_of(header, public_key, FCM, check_exp=False)["exp"] > clock()


def test_resigning_one_origin_leaves_the_others_cached(signer, clock, public_key):
    fcm = signer.authorization(FCM)
    clock.advance(6 * HOUR)
    mozilla = signer.authorization(MOZILLA)
    clock.advance(5 * HOUR + 30 * 60)  # FCM has 30 min left, Mozilla 6.5 h
    new_fcm = signer.authorization(FCM)
    assert new_fcm != fcm and signer.authorization(MOZILLA) == mozilla
    assert claims_of(new_fcm, public_key, FCM, check_exp=False)["aud"] == FCM
    assert claims_of(mozilla, public_key, MOZILLA, check_exp=False)["aud"] == MOZILLA


def test_concurrent_signing_never_mixes_claims_between_origins(signer, public_key):
    origins = [f"https://push{n}.example.org" for n in range(24)]
    barrier = threading.Barrier(8)

    def ask(origin):
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            pass
        return origin, signer.authorization(origin)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(ask, origins * 3))
    by_origin = {}
    for origin, header in results:
        by_origin.setdefault(origin, set()).add(header)
    for origin, headers in by_origin.items():
        assert len(headers) == 1, f"{origin} got {len(headers)} different headers"
        claims = claims_of(headers.pop(), public_key, origin)
        assert claims["aud"] == origin and claims["sub"] == SUBJECT


def test_simultaneous_first_requests_for_one_origin_share_one_signature(signer, public_key):
    real_sign = signer.vapid.sign
    signings = []

    def slow_sign(claims):  # widens the window in which the other threads arrive
        signings.append(claims["aud"])
        time.sleep(0.05)
        return real_sign(claims)

    signer.vapid.sign = slow_sign
    barrier = threading.Barrier(8)

    def ask(_):
        barrier.wait(timeout=5)
        return signer.authorization(SELF_HOSTED)

    with ThreadPoolExecutor(max_workers=8) as pool:
        headers = set(pool.map(ask, range(8)))
    assert len(headers) == 1 and signings == [SELF_HOSTED]
    claims_of(headers.pop(), public_key, SELF_HOSTED)


def services_with_subject(make_env, subject):
    from app.core.config import load_settings
    from app.core.services import build_services

    return build_services(load_settings(make_env(VAPID_SUBJECT=subject)))


@pytest.mark.parametrize("subject", ["mailto:push-admin@example.test", "https://ops.example.test"])
def test_services_sign_with_the_configured_subject(make_env, public_key, subject):
    services = services_with_subject(make_env, subject)
    try:
        for origin in (FCM, MOZILLA):
            claims = claims_of(services.signer.authorization(origin), public_key, origin)
            assert claims["sub"] == subject and claims["aud"] == origin
    finally:
        services.redis.close()


@pytest.mark.parametrize("subject", [
    "https://ops.example.test/contact", "https://ops.example.test:8443", "https://ops.example.test/", "mailto:a@b",
])
def test_a_subject_the_signer_cannot_sign_is_refused_at_start_up(make_env, subject):
    from app.core.config import ConfigError

    with pytest.raises(ConfigError, match="VAPID_SUBJECT"):
        services_with_subject(make_env, subject)
