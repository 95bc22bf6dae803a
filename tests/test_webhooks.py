"""The Nextcloud webhook receiver: authentication, parsing, mapping to topics, queueing."""
import json
import time

import pytest
from rq.registry import ScheduledJobRegistry

from app import create_app
from app.protocol.subscription import Subscription
from app.protocol.topics import topic_for_collection
from app.protocol.triggers import Triggers
from support.env import WEBHOOK_SECRET
from support.payloads import bridge_event, moved_event, object_event

AUTH = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}


@pytest.fixture
def services(make_services):
    return make_services()


@pytest.fixture
def client(services):
    return create_app(services.settings, services).test_client()


def subscribe(services, collection, sub_id="sub1", user="/remote.php/dav/principals/users/alice", **triggers):
    topic = topic_for_collection(services.settings.secret_key, collection)
    services.store.upsert(Subscription(
        id=sub_id, user=user, collection=collection, topic=topic, href="/x/", push_resource=f"http://127.0.0.1:9/{sub_id}",
        public_key="K", auth_secret="A", triggers=Triggers(**(triggers or {"content_depth": "1"})),
        expires=int(time.time()) + 3600, created=0, location=f"https://push.example.test/push/subscriptions/{sub_id}"))
    return topic


def post(client, payload, headers=AUTH, raw=None):
    # Nextcloud sends no Content-Type.
    return client.post("/push/webhooks/nextcloud", data=raw if raw is not None else json.dumps(payload), headers=headers)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {WEBHOOK_SECRET}"}])
def test_requires_the_shared_secret(client, services, headers):
    topic = subscribe(services, "calendars/alice/work")
    response = post(client, object_event(), headers=headers)
    assert response.status_code == 401
    assert services.queue.count == 0 and not services.redis.exists(services.store.keys.pending(topic))


def test_created_event_queues_one_job_with_client_visible_token(client, services):
    topic = subscribe(services, "calendars/alice/work")
    response = post(client, object_event(token=9651))
    assert response.status_code == 202 and response.json["outcomes"] == ["queued"]
    assert services.queue.count == 1
    job = services.queue.jobs[0]
    assert job.func_name == "app.jobs.deliver_topic" and job.args == [topic]
    change = services.store.take_pending(topic)
    assert change.sync_token == "http://sabre.io/ns/sync/9651" and change.content_depth == "1"


@pytest.mark.parametrize("kind", ["Deleted", "MovedToTrash"])
def test_delete_events_send_the_corrected_token(client, services, kind):
    topic = subscribe(services, "calendars/alice/work")
    post(client, object_event(kind=kind, token=41))
    assert services.store.take_pending(topic).sync_token == "http://sabre.io/ns/sync/42"


def test_strings_for_ids_and_tokens_and_null_user_are_fine(client, services):
    topic = subscribe(services, "calendars/alice/work")
    payload = object_event(user=None, token=77)
    payload["event"]["calendarId"] = "9"
    payload["event"]["calendarData"]["{http://sabredav.org/ns}sync-token"] = "77"
    payload["time"] = "1760000001"
    payload["extra"] = {"unexpected": True}
    assert post(client, payload).status_code == 202
    assert services.store.take_pending(topic).sync_token == "http://sabre.io/ns/sync/77"


def test_old_oca_dav_event_names_are_understood(client, services):
    topic = subscribe(services, "calendars/alice/work")
    payload = object_event()
    payload["event"]["class"] = "OCA\\DAV\\Events\\CalendarObjectUpdatedEvent"
    assert post(client, payload).json["outcomes"] == ["queued"]
    assert services.redis.exists(services.store.keys.pending(topic))


def test_move_notifies_both_calendars(client, services):
    work = subscribe(services, "calendars/alice/work", "s1")
    personal = subscribe(services, "calendars/alice/personal", "s2")
    response = post(client, moved_event())
    assert response.json["outcomes"] == ["queued", "queued"]
    assert services.store.take_pending(work).sync_token == "http://sabre.io/ns/sync/100"
    assert services.store.take_pending(personal).sync_token == "http://sabre.io/ns/sync/200"


def test_second_event_merges_into_the_queued_job(client, services):
    topic = subscribe(services, "calendars/alice/work")
    post(client, object_event(token=10, time_=1))
    assert post(client, object_event(token=11, time_=2)).json["outcomes"] == ["merged"]
    assert services.queue.count == 1
    assert services.store.take_pending(topic).sync_token == "http://sabre.io/ns/sync/11"


def test_identical_redelivery_is_ignored(client, services):
    subscribe(services, "calendars/alice/work")
    payload = object_event()
    assert post(client, payload).json["outcomes"] == ["queued"]
    assert post(client, payload).json["status"] == "duplicate"
    assert services.queue.count == 1


def test_event_older_than_what_was_pushed_is_dropped(client, services):
    topic = subscribe(services, "calendars/alice/work")
    services.store.mark_delivered_token(topic, 50)
    assert post(client, object_event(token=49)).json["outcomes"] == ["stale"]
    assert services.queue.count == 0


def test_no_subscribers_nothing_queued(client, services):
    assert post(client, object_event()).json["outcomes"] == ["no-subscribers"]
    assert services.queue.count == 0


def test_unknown_class_is_accepted_ignored_and_counted(client, services):
    response = post(client, {"event": {"class": "OCA\\Files\\Events\\NodeWrittenEvent"}, "user": None, "time": 1})
    assert response.status_code == 202 and response.json["status"] == "ignored"
    assert services.store.counters()["webhook_events|event=unknown|outcome=ignored"] == 1


@pytest.mark.parametrize(
    "raw, message",
    [
        ("not json", "not JSON"),
        ("[1, 2]", "envelope"),
        (json.dumps({"user": None}), "envelope"),
        (json.dumps({"event": {"class": "OCP\\Calendar\\Events\\CalendarObjectCreatedEvent"}}), "calendarData"),
        (json.dumps({"event": {"class": "OCP\\Calendar\\Events\\CalendarObjectCreatedEvent",
                               "calendarData": {"uri": "w", "principaluri": "principals/groups/x"}}}), "principal"),
    ],
)
def test_malformed_bodies_are_400_with_a_message(client, services, raw, message):
    response = post(client, None, raw=raw)
    assert response.status_code == 400 and message in response.json["error"]
    assert services.queue.count == 0


def test_oversized_body_is_413(client):
    assert post(client, None, raw="x" * (600 * 1024)).status_code == 413


def test_bridge_card_event_maps_to_the_address_book(client, services):
    topic = subscribe(services, "addressbooks/users/alice/contacts")
    assert post(client, bridge_event()).json["outcomes"] == ["queued"]
    assert services.store.take_pending(topic).sync_token == "http://sabre.io/ns/sync/318"


def test_bridge_collection_update_is_a_property_update(client, services):
    topic = subscribe(services, "calendars/alice/work", property_depth="0")
    post(client, bridge_event(kind="calendar", op="updated", calendarUri="work", addressBookUri=None, syncToken=None))
    change = services.store.take_pending(topic)
    assert change.property_update and change.content_depth is None


def test_bridge_event_missing_its_collection_is_400(client):
    response = post(client, bridge_event(addressBookUri=None))
    assert response.status_code == 400 and "addressBookUri" in response.json["error"]


def test_min_interval_delays_the_job_after_a_recent_delivery(client, services):
    topic = subscribe(services, "calendars/alice/work")
    services.store.mark_delivery_start(topic, int(time.time() * 1000))
    post(client, object_event())
    assert services.queue.count == 0
    assert ScheduledJobRegistry(queue=services.queue).count == 1


def test_restored_event_queues_the_current_token(client, services):
    # Restoring from the trash bin: addChange runs before the dispatch, so the payload token is already the
    # new one (nextcloud-integration.md §4.6), and objectData is a reduced row (§4.3).
    topic = subscribe(services, "calendars/alice/work")
    payload = object_event(kind="Restored", token=9652)
    payload["event"]["objectData"] = {"calendardata": payload["event"]["objectData"]["calendardata"],
                                      "uri": "3F2504E0-4F89-11D3-9A0C-0305E82C3301.ics", "calendarid": 9,
                                      "calendartype": 0, "component": "vevent"}
    assert payload["event"]["class"] == "OCP\\Calendar\\Events\\CalendarObjectRestoredEvent"
    response = post(client, payload)
    assert response.status_code == 202 and response.json["outcomes"] == ["queued"]
    assert services.queue.count == 1 and services.queue.jobs[0].args == [topic]
    change = services.store.take_pending(topic)
    assert change.sync_token == "http://sabre.io/ns/sync/9652" and change.content_depth == "1"


def test_deeply_nested_json_is_400_and_nothing_is_queued(client, services):
    topic = subscribe(services, "calendars/alice/work")
    depth = 50_000  # under the 512 kB body limit; json.loads gives up with RecursionError
    for raw in ("[" * depth + "]" * depth,
                '{"event": ' + '{"a":' * depth + "1" + "}" * depth + "}"):
        response = post(client, None, raw=raw)
        assert response.status_code == 400 and "nested too deeply" in response.json["error"]
    assert services.queue.count == 0 and not services.redis.exists(services.store.keys.pending(topic))


def _with_calendar_token(value):
    payload = object_event()
    payload["event"]["calendarData"]["{http://sabredav.org/ns}sync-token"] = value
    return payload


def _with_calendar_id(value):
    payload = object_event()
    payload["event"]["calendarId"] = value
    return payload


def _with_time(value):
    payload = object_event()
    payload["time"] = value
    return payload


def _with_moved_token(value):
    payload = moved_event()
    payload["event"]["targetCalendarData"]["{http://sabredav.org/ns}sync-token"] = value
    return payload


@pytest.mark.parametrize(
    "payload, message",
    [
        (_with_calendar_token("\u00b2"), "integer"),  # "²".isdigit() is true, int("²") fails
        (_with_calendar_token("1\u00b2"), "integer"),
        (_with_calendar_token("\u0663"), "integer"),  # ARABIC-INDIC DIGIT THREE: int() would accept it
        (_with_calendar_token("--5"), "integer"),
        (_with_calendar_token("9" * 5000), "integer"),  # int() refuses over 4300 digits
        (_with_calendar_id("\u00b9"), "integer"),
        (_with_moved_token("\u00b2"), "integer"),
        (bridge_event(syncToken="\u00b2"), "integer"),
        (_with_time("\u00b2"), "envelope"),
    ],
    ids=["token-superscript", "token-digit-superscript", "token-arabic-indic", "token-double-minus",
         "token-5000-digits", "calendar-id", "moved-target-token", "bridge-token", "envelope-time"],
)
def test_numbers_that_are_not_ascii_digits_are_400_and_nothing_is_queued(client, services, payload, message):
    work = subscribe(services, "calendars/alice/work", "s1")
    personal = subscribe(services, "calendars/alice/personal", "s2")
    contacts = subscribe(services, "addressbooks/users/alice/contacts", "s3")
    response = post(client, payload)
    assert response.status_code == 400 and message in response.json["error"]
    assert services.queue.count == 0
    assert not any(services.redis.exists(services.store.keys.pending(topic)) for topic in (work, personal, contacts))


def test_a_principal_that_is_not_a_url_is_400(client, services):
    payload = object_event()
    payload["event"]["calendarData"]["principaluri"] = "//[principals/users/alice"  # urlsplit: "Invalid IPv6 URL"
    response = post(client, payload)
    assert response.status_code == 400 and "principal" in response.json["error"]
    assert services.queue.count == 0


def test_ascii_digit_strings_with_spaces_and_a_minus_are_still_fine(client, services):
    topic = subscribe(services, "calendars/alice/work")
    payload = _with_calendar_token(" 0077 ")
    payload["event"]["calendarId"] = "-1"
    assert post(client, payload).status_code == 202
    assert services.store.take_pending(topic).sync_token == "http://sabre.io/ns/sync/77"
