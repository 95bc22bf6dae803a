"""Expiry, topics, messages, Push-Dont-Notify and the SSRF guard (pure rules)."""
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.net import ssrf
from app.protocol import xmlsafe
from app.protocol.dont_notify import parse_dont_notify
from app.protocol.expiry import format_http_date, grant_expiry, parse_http_date
from app.protocol.message import MessageTooLarge, build_push_message
from app.protocol.topics import topic_for_collection, web_push_topic_header

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
        "Sun, 06 Nov 1994 08:49:37 +0000+",  # nc_ext_dav_push's broken format
    ],
)
def test_http_date_forms(text):
    assert parse_http_date(text) == datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC)


def test_format_is_imf_fixdate_gmt():
    assert format_http_date(datetime(2024, 10, 2, 9, 28, tzinfo=timezone(timedelta(hours=2)))) == "Wed, 02 Oct 2024 07:28:00 GMT"


@pytest.mark.parametrize(
    "requested, granted_days",
    [(None, 7), (NOW - timedelta(days=1), 7), (NOW + timedelta(hours=1), 3), (NOW + timedelta(days=5), 5), (NOW + timedelta(days=400), 7)],
)
def test_expiry_clamped_to_3_days_and_max(requested, granted_days):
    assert grant_expiry(requested, NOW, 7) == NOW + timedelta(days=granted_days)


def test_topic_is_stable_opaque_and_keyed():
    topic = topic_for_collection("s" * 32, "calendars/alice/work")
    assert topic == topic_for_collection("s" * 32, "calendars/alice/work")
    assert topic != topic_for_collection("t" * 32, "calendars/alice/work")
    assert len(topic) == 22 and "alice" not in topic


def test_web_push_topic_header_fits_rfc8030():
    header = web_push_topic_header("s" * 32, "sub1", "cp")
    assert len(header) == 32 and set(header) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert header != web_push_topic_header("s" * 32, "sub1", "c")


def test_push_message_shape():
    body = build_push_message("T0p1c", content=True, property_update=True, sync_token="http://sabre.io/ns/sync/7")
    root = xmlsafe.parse(body, max_bytes=4096)
    assert root.tag == "{https://bitfire.at/webdav-push}push-message"
    children = [c.tag.split("}")[1] for c in root]
    assert children == ["topic", "content-update", "property-update"]
    assert root.find("{https://bitfire.at/webdav-push}content-update/{DAV:}sync-token").text == "http://sabre.io/ns/sync/7"


def test_push_message_size_cap():
    with pytest.raises(MessageTooLarge):
        build_push_message("x" * 4000, content=True, property_update=False)


@pytest.mark.parametrize(
    "values, everything, urls",
    [
        (['"https://h/push/subscriptions/a"'], False, {"https://h/push/subscriptions/a"}),
        (['"https://h/a", "https://h/b"', '"https://h/c"'], False, {"https://h/a", "https://h/b", "https://h/c"}),
        (['"https://h/a,b"'], False, {"https://h/a,b"}),
        (["*"], True, set()),
        (['*, "https://h/a"'], False, {"https://h/a"}),
        (["https://h/unquoted", '"relative/url"', '"unterminated'], False, set()),
    ],
)
def test_push_dont_notify_parsing(values, everything, urls):
    parsed = parse_dont_notify(values)
    assert parsed.everything is everything and set(parsed.urls) == urls


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://push.example.com/x", "https"),
        ("ftp://push.example.com/x", "https"),
        ("https://user:pw@push.example.com/x", "user information"),
        ("https://push.example.com/" + "a" * 1000, "1000 bytes"),
        ("https:///nohost", "no host"),
        ("https://push.example.com/x y", "whitespace"),
    ],
)
def test_endpoint_shape_refusals(url, reason):
    with pytest.raises(ssrf.BlockedEndpoint, match=reason):
        ssrf.check_shape(url, allow_http=False)


@pytest.mark.parametrize(
    "address, allowed",
    [
        ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.1.1", False), ("169.254.169.254", False),
        ("100.64.0.1", False), ("::1", False), ("fd00::1", False), ("fe80::1", False), ("::ffff:127.0.0.1", False),
        ("0.0.0.0", False), ("224.0.0.1", False), ("93.184.215.14", True), ("2606:4700::1111", True),
    ],
)
def test_address_guard(address, allowed):
    assert ssrf.address_allowed(address) is allowed


def test_allowed_networks_open_a_private_range():
    import ipaddress

    assert ssrf.address_allowed("192.168.1.5", (ipaddress.ip_network("192.168.1.0/24"),))
    assert not ssrf.address_allowed("192.168.2.5", (ipaddress.ip_network("192.168.1.0/24"),))


def test_name_resolving_to_any_private_address_is_refused():
    def resolver(host, port, type=None):
        return [(2, 1, 6, "", ("93.184.215.14", port)), (2, 1, 6, "", ("10.0.0.1", port))]

    with pytest.raises(ssrf.BlockedEndpoint, match="private"):
        ssrf.resolve(ssrf.Endpoint("https", "mixed.example", 443), resolver=resolver)


def test_localhost_refused_unless_allowed():
    with pytest.raises(ssrf.BlockedEndpoint):
        ssrf.check_endpoint("https://localhost:8443/push", allow_http=False)
    import ipaddress

    endpoint = ssrf.check_endpoint("http://127.0.0.1:9/p", allow_http=True, allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    assert endpoint.origin == "http://127.0.0.1:9"
