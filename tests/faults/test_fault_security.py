"""Issue 8 §6, the security fixes end-to-end through the real web process (gunicorn) and worker:
log injection, IPv4 embedded in IPv6 push endpoints, the per-user subscription cap, the spoofed
`_shared_by_` name, sync-tokens beyond 64 bits.

Upstream is tests/support/nextcloud_stub.py: it already models a user's *own* calendar whose name
looks like a share (`bob`'s calendar `personal_shared_by_alice`: the stub resolves a user's own
collections before shares and answers `oc:owner-principal` = bob for it).
"""
from __future__ import annotations

import json
import re
import secrets
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from support import bodies
from support.nextcloud_stub import NextcloudStub
from support.payloads import object_event
from support.push_receiver import ClientKeys

pytestmark = pytest.mark.faults

ALICE, BOB = ("alice", "alice-pw"), ("bob", "bob-pw")
PUSH_NS = "{https://bitfire.at/webdav-push}"
EXPIRES = "Thu, 27 Aug 2099 19:17:11 GMT"


@pytest.fixture
def nextcloud():
    stub = NextcloudStub()
    stub.add_calendar("bob", "personal_shared_by_alice")  # bob's own calendar, named like a share
    stub.start()
    yield stub
    stub.stop()


def register(stack, path: str, endpoint: str, keys, auth=ALICE) -> requests.Response:
    body = bodies.davx5_current(endpoint, keys.p256dh, keys.auth, EXPIRES)
    return requests.post(stack.web.url + "/remote.php/dav" + path, data=body, auth=auth,
                         headers={"Content-Type": bodies.XML_UTF8}, timeout=15, allow_redirects=False)


def topic_seen_by(stack, path: str, auth) -> str | None:
    response = requests.request("PROPFIND", stack.web.url + "/remote.php/dav" + path, data=bodies.PUSH_PROPFIND_TSDAV,
                                auth=auth, headers={"Depth": "0", "Content-Type": bodies.XML_UTF8}, timeout=15)
    assert response.status_code == 207, response.text
    element = ET.fromstring(response.content).find(f".//{PUSH_NS}topic")
    return None if element is None else element.text


def stored(stack) -> list:
    return list(stack.store().iter_subscriptions(include_expired=True))


def dav_error_root(response) -> str | None:
    try:
        return ET.fromstring(response.content).tag
    except ET.ParseError:
        return None


# -------------------------------------------------------------------------------- log injection


def test_log_lines_cannot_be_forged_through_request_paths(make_stack, nextcloud, figures):
    stack = make_stack(upstream_url=nextcloud.url, workers=0)
    marker = f"FORGED{secrets.token_hex(4)}"
    forged = f"2026-01-01 00:00:00,000 INFO    davpush.access [-] {marker} request method=GET status=200"
    encoded = requests.utils.quote(forged, safe="")
    targets = [
        f"/remote.php/dav/x%0d%0a{encoded}",
        f"/remote.php/dav/calendars/alice/%0a{encoded}/",
        f"/push/x%0d%0a{encoded}",
        f"/push/subscriptions/x%0d{encoded}",
        f"/remote.php/dav/x%1b%5b2K%0d{encoded}",  # ESC[2K + CR: rewrites the line on a terminal
    ]
    statuses = [stack.request("GET", target, timeout=15).status for target in targets]
    time.sleep(1)
    log = stack.web.stderr_text() + stack.web.stdout_text()
    lines = re.split(r"[\r\n]", log)
    forged_lines = [line for line in lines if line.startswith(marker) or line.startswith(forged[:30])]
    figures.record("log_injection", requests=len(targets), forged_lines=len(forged_lines),
                   raw_control_chars="\x1b" in log)
    assert all(s is not None for s in statuses), statuses
    assert marker in log, "the requests were not logged at all (nothing to check)"
    assert not forged_lines, f"{len(forged_lines)} forged log line(s), e.g. {forged_lines[0]!r}"
    assert "\x1b" not in log, "a raw ESC from a request path reached the log"


# -------------------------------------------------------------------------------- SSRF guard


EMBEDDED_FORMS = (
    "https://[::7f00:1]/push/x",  # IPv4-compatible ::127.0.0.1
    "https://[::ffff:0:7f00:1]/push/x",  # IPv4-translated (SIIT) 127.0.0.1
    "https://[::a9fe:a9fe]/push/x",  # ::169.254.169.254, the cloud metadata address
    "https://[fec0::1]/push/x",  # deprecated site-local
)


def test_ipv4_embedded_in_ipv6_is_refused_at_registration(make_stack, nextcloud, figures):
    # no loopback allowance here: the guard's own rules decide
    stack = make_stack(upstream_url=nextcloud.url, workers=0, PUSH_ALLOWED_NETWORKS=None, PUSH_ALLOW_HTTP=None)
    keys = ClientKeys.generate()
    answers = {endpoint: register(stack, "/calendars/alice/work/", endpoint, keys).status_code for endpoint in EMBEDDED_FORMS}
    kept = [s.push_resource for s in stored(stack)]
    control = register(stack, "/calendars/alice/work/", "https://[2606:4700:4700::1111]/push/x", keys)
    figures.record("ipv6_embedded_ipv4", refused=sum(1 for s in answers.values() if 400 <= s < 500), forms=len(answers))
    assert all(400 <= status < 500 for status in answers.values()), answers
    assert kept == [], f"stored: {kept}"
    assert control.status_code == 201, f"a public IPv6 endpoint: {control.status_code} {control.text[:300]}"


# -------------------------------------------------------------------------------- cap per user


def test_subscription_cap_per_user(make_stack, nextcloud, fault_server, figures):
    receiver = fault_server()
    stack = make_stack(upstream_url=nextcloud.url, workers=0, PUSH_MAX_SUBSCRIPTIONS_PER_USER=3)
    keys = ClientKeys.generate()
    made = [register(stack, path, receiver.endpoint(f"/cap/{n}"), keys)
            for n, path in enumerate(["/calendars/alice/work/", "/calendars/alice/work/", "/calendars/alice/personal/"])]
    fourth = register(stack, "/addressbooks/users/alice/contacts/", receiver.endpoint("/cap/3"), keys)
    renewal = register(stack, "/calendars/alice/work/", receiver.endpoint("/cap/0"), keys)
    other_user = register(stack, "/calendars/bob/personal/", receiver.endpoint("/cap/bob"), keys, auth=BOB)
    figures.record("subscription_cap", cap=3, fourth_status=fourth.status_code, renewal_status=renewal.status_code)
    assert [r.status_code for r in made] == [201, 201, 201], [r.text[:200] for r in made]
    assert fourth.status_code == 403, f"4th registration past PUSH_MAX_SUBSCRIPTIONS_PER_USER=3: {fourth.status_code}"
    assert dav_error_root(fourth) == "{DAV:}error", fourth.text[:300]
    assert renewal.status_code == 204, f"renewal at the cap: {renewal.status_code} {renewal.text[:200]}"
    assert other_user.status_code == 201, "the cap is per user"
    assert sorted(s.push_resource.rsplit("/", 1)[1] for s in stored(stack)) == ["0", "1", "2", "bob"]


# -------------------------------------------------------------------------------- spoofed share


def test_lookalike_shared_by_name_gets_its_own_topic(make_stack, nextcloud, fault_server, figures):
    receiver = fault_server()
    stack = make_stack(upstream_url=nextcloud.url)
    keys = ClientKeys.generate()
    alice_topic = topic_seen_by(stack, "/calendars/alice/personal/", ALICE)
    spoof_topic = topic_seen_by(stack, "/calendars/bob/personal_shared_by_alice/", BOB)
    real_share = topic_seen_by(stack, "/calendars/bob/work_shared_by_alice/", BOB)
    alice_work = topic_seen_by(stack, "/calendars/alice/work/", ALICE)
    assert register(stack, "/calendars/alice/personal/", receiver.endpoint("/alice"), keys).status_code == 201
    assert register(stack, "/calendars/bob/personal_shared_by_alice/", receiver.endpoint("/bob"), keys,
                    auth=BOB).status_code == 201

    alice_change = stack.webhook(object_event(owner="alice", uri="personal", token=500, user="alice"))
    assert alice_change.status == 202, alice_change
    got_alice = receiver.wait_until(lambda s: s.copies()["/alice"] >= 1, 20)
    time.sleep(2)  # a push to bob would have come with alice's
    leaked = receiver.copies()["/bob"]
    bob_change = stack.webhook(object_event(owner="bob", uri="personal_shared_by_alice", token=7, user="bob"))
    got_bob = receiver.wait_until(lambda s: s.copies()["/bob"] > leaked, 20)
    figures.record("spoofed_share", same_topic=alice_topic == spoof_topic, pushes_leaked_to_bob=leaked)
    assert real_share == alice_work, "a real sharee must keep the owner's topic"
    assert alice_topic != spoof_topic, "bob's own calendar named personal_shared_by_alice got alice's topic"
    assert got_alice, f"alice got no push for her own change\n{stack.logs()}"
    assert leaked == 0, "a change of alice's calendar was pushed to bob's look-alike calendar"
    assert bob_change.status == 202 and got_bob, f"bob got no push for a change of his own calendar\n{stack.logs()}"


# -------------------------------------------------------------------------------- sync-tokens


def test_sync_tokens_beyond_64_bits_are_refused_and_never_stored(make_stack, fault_server, figures):
    receiver = fault_server()
    stack = make_stack()
    keys = ClientKeys.generate()
    stack.subscribe("calendars/alice/work", [("tok-1", receiver.endpoint("/tok-1"))], keys)
    huge = int("31415926535897932384" * 200)  # 4,000 digits
    statuses = {}
    for name, token in (("4000 digits", huge), ("2**64", 2 ** 64), ("2**63", 2 ** 63)):
        body = json.dumps(object_event(owner="alice", uri="work", token=token)).encode()
        statuses[name] = stack.webhook(None, body=body).status
    time.sleep(1)
    long_numbers = []
    for key in stack.client.scan_iter(count=1000):
        kind = stack.client.type(key).decode()
        if kind == "string":
            values = [stack.client.get(key)]
        elif kind == "hash":
            values = list(stack.client.hgetall(key).values())
        elif kind == "list":
            values = stack.client.lrange(key, 0, -1)
        elif kind == "set":
            values = list(stack.client.smembers(key))
        elif kind == "zset":
            values = [m for m, _ in stack.client.zrange(key, 0, -1, withscores=True)]
        else:
            values = []
        long_numbers += [key for v in values if v and re.search(rb"\d{20,}", v)]

    normal = stack.webhook(object_event(owner="alice", uri="work", token=9652))
    delivered = receiver.wait_until(lambda s: any(b"/sync/9652" in a.push().decrypt(keys) for a in s.deliveries("/tok-1")), 20)
    figures.record("huge_sync_token", statuses=statuses, stored_long_numbers=len(long_numbers),
                   normal_change_delivered=delivered)
    assert statuses["4000 digits"] == 400 and statuses["2**64"] == 400, statuses  # 2**63: recorded only
    assert not long_numbers, f"a sync-token beyond 64 bits was stored under {long_numbers[:3]}"
    assert normal.status == 202, normal
    assert delivered, f"a normal change after the huge tokens was not delivered\n{stack.logs()}"
