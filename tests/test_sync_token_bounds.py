"""Sync-tokens beyond a 64-bit counter: refused in webhooks (400, nothing recorded), unknown when
learned from upstream, never parsed into a number that poisons a topic's delivered token."""
import json
import time

import pytest
import requests
from rq.registry import ScheduledJobRegistry

from app import create_app
from app.protocol.subscription import MAX_SYNC_NUMBER, Subscription, sync_token_number
from app.protocol.topics import topic_for_collection
from app.protocol.triggers import Triggers
from support.env import WEBHOOK_SECRET
from support.nextcloud_stub import ics_event
from support.payloads import bridge_event, moved_event, object_event
from test_delivery_e2e import ALICE, message, subscribe
from test_gateway_writes import settle

AUTH = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
HUGE = 10**3999  # 4,000 digits: still inside Python's int-parsing limit, so json.loads accepts it


@pytest.fixture
def services(make_services):
    return make_services()


@pytest.fixture
def client(services):
    return create_app(services.settings, services).test_client()


def subscribed_topic(services, collection="calendars/alice/work"):
    topic = topic_for_collection(services.settings.secret_key, collection)
    services.store.upsert(Subscription(
        id="s1", user="/remote.php/dav/principals/users/alice", collection=collection, topic=topic, href="/x/",
        push_resource="http://127.0.0.1:9/s1", public_key="K", auth_secret="A", triggers=Triggers(content_depth="1"),
        expires=int(time.time()) + 3600, created=0, location="https://push.example.test/push/subscriptions/s1"))
    return topic


def post(client, payload):
    return client.post("/push/webhooks/nextcloud", data=json.dumps(payload), headers=AUTH)


def nothing_recorded(services, topic) -> bool:
    return (not services.redis.exists(services.store.keys.pending(topic)) and services.queue.count == 0
            and ScheduledJobRegistry(queue=services.queue).count == 0 and services.store.delivered_token(topic) is None)


def with_calendar_token(payload, value):
    payload["event"]["calendarData"]["{http://sabredav.org/ns}sync-token"] = value
    return payload


OVERSIZED = {
    "4000-digit number": with_calendar_token(object_event(), HUGE),
    "4000-digit string": with_calendar_token(object_event(), str(HUGE)),
    "2^63": with_calendar_token(object_event(), 2**63),
    "negative": with_calendar_token(object_event(), -1),
    "moved target": moved_event(target=("alice", "work", 2**64)),
    "bridge": bridge_event(kind="calendar-object", calendarUri="work", addressBookUri=None, syncToken=HUGE),
}


@pytest.mark.parametrize("payload", OVERSIZED.values(), ids=OVERSIZED.keys())
def test_oversized_token_is_a_400_that_records_nothing(client, services, payload):
    topic = subscribed_topic(services)
    response = post(client, payload)
    assert response.status_code == 400
    error = response.json["error"]
    assert "sync-token" in error.lower() and str(MAX_SYNC_NUMBER) in error and len(error) < 500
    assert nothing_recorded(services, topic)


def test_a_normal_change_afterwards_still_queues(client, services):
    topic = subscribed_topic(services)
    assert post(client, with_calendar_token(object_event(), HUGE)).status_code == 400
    response = post(client, object_event(token=12))
    assert response.status_code == 202 and response.json["outcomes"] == ["queued"]
    assert services.store.take_pending(topic).sync_token == "http://sabre.io/ns/sync/12"


def test_the_refused_body_is_not_remembered_as_seen(client, services):
    """Fixing the sender and sending again must work: the refusal left no duplicate marker."""
    subscribed_topic(services)
    payload = with_calendar_token(object_event(), 2**63)
    assert post(client, payload).status_code == 400
    assert not any(services.store.redis.scan_iter(match=services.store.keys.seen("*")))


def test_the_largest_64_bit_token_is_accepted_and_one_past_it_on_delete_is_unknown(client, services):
    topic = subscribed_topic(services)
    assert post(client, object_event(token=MAX_SYNC_NUMBER)).status_code == 202
    assert services.store.take_pending(topic).sync_token == f"http://sabre.io/ns/sync/{MAX_SYNC_NUMBER}"
    services.queue.empty()
    assert post(client, object_event(kind="Deleted", token=MAX_SYNC_NUMBER)).status_code == 202
    change = services.store.take_pending(topic)
    assert change.content_depth == "1" and change.sync_token is None  # N+1 does not fit: the client just syncs


@pytest.mark.parametrize("token, number", [
    ("http://sabre.io/ns/sync/42", 42),
    (f"http://sabre.io/ns/sync/{MAX_SYNC_NUMBER}", MAX_SYNC_NUMBER),
    (f"http://sabre.io/ns/sync/{MAX_SYNC_NUMBER + 1}", None),
    (f"http://sabre.io/ns/sync/{HUGE}", None),
    ("http://sabre.io/ns/sync/٣", None),  # a non-ASCII digit is not a counter
    ("http://radicale.org/ns/sync/ab12", None),
    (None, None),
])
def test_sync_token_number_only_reads_64_bit_counters(token, number):
    assert sync_token_number(token) == number


def test_an_oversized_token_from_upstream_is_treated_as_unknown(nextcloud, start_gateway, receiver, run_worker):
    gateway = start_gateway(nextcloud.url, PUSH_MIN_INTERVAL_MS=0)
    keys, _ = subscribe(gateway, receiver, "/calendars/alice/work/")
    with nextcloud._lock:
        nextcloud._coll("calendar", "alice", "work").sync = 10**100
    assert requests.put(gateway.dav("/calendars/alice/work/big.ics"), data=ics_event("big"), auth=ALICE).status_code == 201
    settle(gateway, run_worker, receiver, 1)
    [push] = receiver.pushes
    assert message(push, keys)["content"] is True and message(push, keys)["token"] is None
    topic = topic_for_collection(gateway.services.settings.secret_key, "calendars/alice/work")
    assert gateway.services.store.delivered_token(topic) is None
