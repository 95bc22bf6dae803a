"""Registration and unregistration through the gateway, against the Nextcloud-like stub."""
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import pytest
import requests

from app.protocol.topics import topic_for_collection
from support import bodies
from support.bodies import XML_UTF8
from support.env import SECRET_KEY
from support.push_receiver import ClientKeys

ALICE, BOB, CAROL = ("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw")
WORK = "/calendars/alice/work/"


def http_date(delta: timedelta) -> str:
    return format_datetime(datetime.now(UTC) + delta, usegmt=True)


@pytest.fixture
def keys():
    return ClientKeys.generate()


def register(gateway, path, body, auth=ALICE, content_type=XML_UTF8):
    return requests.post(gateway.dav(path), data=body, auth=auth, headers={"Content-Type": content_type}, allow_redirects=False)


def stored(gateway):
    return list(gateway.services.store.iter_subscriptions())


def precondition(response):
    root = ET.fromstring(response.content)
    assert root.tag == "{DAV:}error"
    return [child.tag.split("}")[1] for child in root if child.tag.startswith("{https://bitfire.at/webdav-push}")]


def test_davx5_registration_then_renewal_keeps_the_location(gateway, receiver, keys):
    body = bodies.davx5_old(receiver.endpoint("/up/1"), keys.p256dh, keys.auth, expires=http_date(timedelta(days=3)))
    first = register(gateway, WORK, body)
    assert first.status_code == 201
    location = first.headers["Location"]
    assert location.startswith("https://push.example.test/push/subscriptions/")
    assert len(location.rsplit("/", 1)[1]) >= 22  # ≥ 128 random bits
    expires = parsedate_to_datetime(first.headers["Expires"])
    assert first.headers["Expires"].endswith(" GMT")
    assert abs((expires - datetime.now(UTC)) - timedelta(days=3)) < timedelta(minutes=1)

    again = register(gateway, WORK, body)
    assert again.status_code == 204 and again.headers["Location"] == location
    [subscription] = stored(gateway)
    assert subscription.user == "/remote.php/dav/principals/users/alice"
    assert subscription.collection == "calendars/alice/work"
    assert subscription.topic == topic_for_collection(SECRET_KEY, "calendars/alice/work")
    assert subscription.public_key == keys.p256dh and subscription.triggers.content_depth == "1"


def test_renewal_updates_keys_triggers_and_expiry(gateway, receiver, keys):
    endpoint = receiver.endpoint("/up/1")
    register(gateway, WORK, bodies.davx5_old(endpoint, keys.p256dh, keys.auth))
    new_keys = ClientKeys.generate()
    response = register(gateway, WORK, bodies.davx5_current(endpoint, new_keys.p256dh, new_keys.auth, http_date(timedelta(days=5))))
    assert response.status_code == 204
    [subscription] = stored(gateway)
    assert subscription.public_key == new_keys.p256dh and subscription.auth_secret == new_keys.auth
    assert subscription.triggers.property_depth == "0"
    assert abs(subscription.expires - (datetime.now(UTC) + timedelta(days=5)).timestamp()) < 60


@pytest.mark.parametrize(
    "requested, granted",
    [(timedelta(days=30), timedelta(days=7)), (timedelta(hours=2), timedelta(days=3)), (-timedelta(days=1), timedelta(days=7)),
     (None, timedelta(days=7))],
)
def test_expiry_is_clamped(gateway, receiver, keys, requested, granted):
    body = bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth, expires=http_date(requested) if requested is not None else None)
    response = register(gateway, WORK, body)
    expires = parsedate_to_datetime(response.headers["Expires"])
    assert abs((expires - datetime.now(UTC)) - granted) < timedelta(minutes=1)


def test_unparsable_expiry_gets_the_default_not_a_500(gateway, receiver, keys):
    response = register(gateway, WORK, bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth, expires="tomorrow-ish"))
    assert response.status_code == 201


@pytest.mark.parametrize("builder", [bodies.chiri, bodies.tsdav])
def test_other_clients_bodies(gateway, receiver, keys, builder):
    body = builder(receiver.endpoint(), keys.p256dh, keys.auth, http_date(timedelta(days=4)))
    response = register(gateway, WORK, body, content_type="text/xml")
    assert response.status_code == 201 and response.headers["Location"].startswith("https://")
    assert "Expires" in response.headers


def test_same_endpoint_on_two_collections_gives_two_registrations(gateway, receiver, keys):
    endpoint = receiver.endpoint()
    a = register(gateway, WORK, bodies.davx5_old(endpoint, keys.p256dh, keys.auth))
    b = register(gateway, "/calendars/alice/personal/", bodies.davx5_old(endpoint, keys.p256dh, keys.auth))
    assert a.status_code == b.status_code == 201 and a.headers["Location"] != b.headers["Location"]


def test_sharee_registers_on_the_owners_topic(gateway, receiver, keys):
    body = bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth)
    response = register(gateway, "/calendars/bob/work_shared_by_alice/", body, auth=BOB)
    assert response.status_code == 201
    [subscription] = stored(gateway)
    assert subscription.collection == "calendars/alice/work" and subscription.user.endswith("/users/bob")


def test_concurrent_identical_registrations_end_as_one(gateway, receiver, keys):
    body = bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth)
    results = []
    threads = [threading.Thread(target=lambda: results.append(register(gateway, WORK, body))) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(r.status_code for r in results) == [201] + [204] * 7
    assert len({r.headers["Location"] for r in results}) == 1
    assert len(stored(gateway)) == 1


# -- refusals ---------------------------------------------------------------------------------


def test_no_credentials_gets_upstreams_challenge(gateway, receiver, keys):
    response = register(gateway, WORK, bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth), auth=None)
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert stored(gateway) == []


@pytest.mark.parametrize(
    "path, auth",
    [(WORK, CAROL), ("/calendars/alice/inbox/", ALICE), ("/calendars/alice/", ALICE), ("/calendars/alice/nope/", ALICE)],
)
def test_no_access_or_not_a_collection_is_push_not_available(gateway, receiver, keys, path, auth):
    response = register(gateway, path, bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth), auth=auth)
    assert response.status_code == 403 and precondition(response) == ["push-not-available"]
    assert stored(gateway) == []


def test_invalid_subscriptions(gateway, receiver, keys):
    cases = {
        "bad key": bodies.davx5_old(receiver.endpoint(), keys.p256dh[:-4] + "AAAA", keys.auth),
        "short auth": bodies.davx5_old(receiver.endpoint(), keys.p256dh, "c2hvcnQ"),
        "aesgcm": bodies.davx5_current(receiver.endpoint(), keys.p256dh, keys.auth, http_date(timedelta(days=3)))
        .replace(b"aes128gcm", b"aesgcm"),
        "userinfo": bodies.davx5_old(receiver.endpoint().replace("http://", "http://u:p@"), keys.p256dh, keys.auth),
        "ftp": bodies.davx5_old("ftp://127.0.0.1/x", keys.p256dh, keys.auth),
    }
    for name, body in cases.items():
        response = register(gateway, WORK, body)
        assert (response.status_code, precondition(response)) == (403, ["invalid-subscription"]), name
        assert b"message" in response.content
    assert stored(gateway) == []


def test_ssrf_guard_blocks_private_endpoints_unless_allowed(nextcloud, start_gateway, keys):
    strict = start_gateway(nextcloud.url, PUSH_ALLOWED_NETWORKS="", PUSH_ALLOW_HTTP="false")
    for endpoint in ("https://127.0.0.1/x", "https://10.1.2.3/x", "https://[::1]/x", "https://169.254.169.254/latest", "http://93.184.215.14/x"):
        response = register(strict, WORK, bodies.davx5_old(endpoint, keys.p256dh, keys.auth))
        assert (response.status_code, precondition(response)) == (403, ["invalid-subscription"]), endpoint
    assert stored(strict) == []


def test_no_supported_trigger(gateway, receiver, keys):
    body = bodies.chiri(receiver.endpoint(), keys.p256dh, keys.auth).replace(
        b"<P:trigger><P:content-update><d:depth>1</d:depth></P:content-update><P:property-update><d:depth>0</d:depth></P:property-update></P:trigger>",
        b"<P:trigger><P:content-update><d:depth>7</d:depth></P:content-update></P:trigger>")
    response = register(gateway, WORK, body)
    assert response.status_code == 403
    assert precondition(response) == ["no-supported-trigger", "no-trigger-supported"]


@pytest.mark.parametrize("body", [
    b"", b"   ", b"<push-register", b"\xff\xfe garbage",
    b'<?xml version="1.0" encoding="x-unknown"?><push-register xmlns="https://bitfire.at/webdav-push"/>',
])
def test_empty_or_malformed_xml_is_400(gateway, body):
    response = register(gateway, WORK, body)
    assert response.status_code == 400 and ET.fromstring(response.content).tag == "{DAV:}error"


def test_oversized_registration_is_413(gateway, receiver, keys):
    body = bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth).replace(
        b"</n0:push-register>", b"<n0:x>" + b"a" * 70000 + b"</n0:x></n0:push-register>")
    assert register(gateway, WORK, body).status_code == 413
    assert stored(gateway) == []


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_dtd_is_refused(gateway, encoding):
    text = (f'<?xml version="1.0" encoding="{encoding}"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
            '<push-register xmlns="https://bitfire.at/webdav-push">&a;</push-register>')
    response = register(gateway, WORK, text.encode(encoding))
    assert response.status_code == 400 and b"DTD" in response.content
    assert stored(gateway) == []


def test_upstream_down_is_502(start_gateway, receiver, keys):
    from support.servers import free_port

    down = start_gateway(f"http://127.0.0.1:{free_port()}")
    response = register(down, WORK, bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth))
    assert response.status_code == 502 and b"unreachable" in response.content


# -- unregistration ---------------------------------------------------------------------------------


def test_delete_only_by_the_user_who_registered(gateway, receiver, keys):
    location = register(gateway, WORK, bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth)).headers["Location"]
    url = gateway.location_to_local(location)
    assert requests.delete(url).status_code == 401
    assert requests.delete(url, auth=BOB).status_code == 404  # bob can read the calendar, but it is not his registration
    assert requests.delete(url, auth=CAROL).status_code == 404
    assert len(stored(gateway)) == 1
    assert requests.delete(url, auth=ALICE).status_code == 204
    assert stored(gateway) == []
    assert requests.delete(url, auth=ALICE).status_code == 404


def test_access_checks_tell_upstream_who_the_client_is(gateway, nextcloud, receiver, keys):
    """Nextcloud throttles failed logins by client address: it must not see only davpush's."""
    body = bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth)
    requests.post(gateway.dav(WORK), data=body, auth=("alice", "wrong"),
                  headers={"Content-Type": XML_UTF8, "X-Forwarded-For": "203.0.113.9"})
    requests.delete(gateway.url + "/push/subscriptions/nope", auth=("alice", "wrong"), headers={"X-Forwarded-For": "203.0.113.9"})
    lookups = nextcloud.requests_for("PROPFIND")
    assert len(lookups) == 2
    assert {r.header("X-Forwarded-For") for r in lookups} == {"203.0.113.9, 127.0.0.1"}


def test_delete_unknown_is_404_and_unauthenticated_is_401_either_way(gateway):
    assert requests.delete(gateway.url + "/push/subscriptions/nope", auth=ALICE).status_code == 404
    anonymous = requests.delete(gateway.url + "/push/subscriptions/nope")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic")


def test_delete_of_an_expired_registration_is_404(gateway, receiver, keys):
    import dataclasses
    import time

    location = register(gateway, WORK, bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth)).headers["Location"]
    [subscription] = stored(gateway)
    gateway.services.store.upsert(dataclasses.replace(subscription, expires=int(time.time()) - 1))
    assert requests.delete(gateway.location_to_local(location), auth=ALICE).status_code == 404


def test_registering_again_after_expiry_gets_a_new_location(gateway, receiver, keys):
    import dataclasses
    import time

    body = bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth)
    first = register(gateway, WORK, body)
    [subscription] = stored(gateway)
    gateway.services.store.upsert(dataclasses.replace(subscription, expires=int(time.time()) - 1))
    again = register(gateway, WORK, body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["Location"] != first.headers["Location"]
    assert len(stored(gateway)) == 1


# -- other POSTs -----------------------------------------------------------------------------------


def test_non_push_posts_are_forwarded_intact(gateway, nextcloud):
    share = (b'<?xml version="1.0"?><oc:share xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><oc:set><d:href>'
             b"principal:principals/users/carol</d:href></oc:set></oc:share>")
    big = b'<?xml version="1.0"?><x:big xmlns:x="urn:test">' + b"y" * 200_000 + b"</x:big>"
    calendar = b"BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
    import hashlib

    for body, content_type in ((share, "application/xml; charset=utf-8"), (big, "text/xml"), (calendar, "text/calendar")):
        response = requests.post(gateway.dav(WORK), data=body, auth=ALICE, headers={"Content-Type": content_type})
        assert response.status_code == 200
        assert response.headers["X-Received-Sha256"] == hashlib.sha256(body).hexdigest()
        assert response.headers["X-Received-Content-Type"] == content_type
    assert stored(gateway) == []


def test_registration_is_never_forwarded(gateway, nextcloud, receiver, keys):
    register(gateway, WORK, bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth))
    assert nextcloud.requests_for("POST") == []
