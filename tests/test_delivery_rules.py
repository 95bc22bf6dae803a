"""Sending rules: SSRF at send time, no redirects, timeouts, and what each answer leads to."""
import ipaddress
import time
from datetime import UTC, datetime

import pytest

from app.delivery import outcomes
from app.delivery.deliver import Deliverer
from app.delivery.sender import PushRequest, PushSender
from app.protocol.subscription import Change, Subscription
from app.protocol.topics import topic_for_collection
from app.protocol.triggers import Triggers
from support.push_receiver import ClientKeys

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def sender(**overrides):
    options = dict(concurrency=8, per_origin=4, connect_timeout=2, read_timeout=2, allow_http=True, allowed_networks=LOOPBACK)
    options.update(overrides)
    return PushSender(**options)


def request(url, sub_id="s1"):
    return PushRequest(sub_id, url, lambda: b"ciphertext", {"TTL": "60"})


def test_send_time_guard_checks_the_address_actually_connected_to(receiver):
    port = receiver.url.rsplit(":", 1)[1]

    def rebinding_resolver(host, port_, type=None):  # the name now points somewhere private
        return [(2, 1, 6, "", ("10.0.0.7", int(port_)))]

    [outcome] = sender(resolver=rebinding_resolver).send_all([request(f"http://push.example:{port}/x")], lambda origin: "vapid t=x")
    assert outcome.kind == outcomes.BLOCKED and receiver.pushes == []


def test_loopback_blocked_unless_allowed(receiver):
    [outcome] = sender(allowed_networks=()).send_all([request(receiver.endpoint())], lambda o: "vapid")
    assert outcome.kind == outcomes.BLOCKED and receiver.pushes == []


def test_redirects_are_not_followed(receiver):
    receiver.script("/x", [(307, {"Location": receiver.endpoint("/elsewhere")})])
    [outcome] = sender().send_all([request(receiver.endpoint("/x"))], lambda o: "vapid")
    assert (outcome.kind, outcome.status) == (outcomes.REJECTED, 307)
    assert [p.path for p in receiver.pushes] == ["/x"]


def test_read_timeout_is_a_retry_not_a_hang():
    from support.push_receiver import PushReceiver

    with PushReceiver(latency_ms=3000) as slow:
        started = time.monotonic()
        [outcome] = sender(read_timeout=0.3).send_all([request(slow.endpoint())], lambda o: "vapid")
    assert outcome.kind == outcomes.RETRY and time.monotonic() - started < 2.5


def test_connection_refused_is_a_retry():
    from support.servers import free_port

    [outcome] = sender().send_all([request(f"http://127.0.0.1:{free_port()}/x")], lambda o: "vapid")
    assert outcome.kind == outcomes.RETRY


def test_headers_and_authorization_per_origin(receiver):
    asked = []
    sender().send_all([request(receiver.endpoint("/a"), "a"), request(receiver.endpoint("/b"), "b")],
                      lambda origin: asked.append(origin) or f"vapid t={origin}")
    assert asked == [receiver.url]
    assert {p.header("Authorization") for p in receiver.wait_for(2)} == {f"vapid t={receiver.url}"}
    assert {p.header("TTL") for p in receiver.pushes} == {"60"}


@pytest.mark.parametrize(
    "status, kind",
    [(201, "success"), (200, "success"), (202, "success"), (404, "gone"), (410, "gone"), (429, "retry"), (503, "retry"),
     (500, "retry"), (502, "retry"), (507, "rejected"), (400, "rejected"), (413, "rejected"), (401, "auth"), (403, "auth"),
     (301, "rejected")],
)
def test_classification(status, kind):
    assert outcomes.classify(status) == kind


def test_retry_after_forms():
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert outcomes.parse_retry_after("120") == 120
    assert outcomes.parse_retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now) == 30
    assert outcomes.parse_retry_after("0") == outcomes.MIN_RETRY_AFTER
    assert outcomes.parse_retry_after("99999999") == outcomes.MAX_RETRY_AFTER
    assert outcomes.parse_retry_after("soon") is None


@pytest.mark.parametrize("value", ["\u00b2", "1\u00b2", "\u00b9\u00b2\u00b3", "\u0663", "\uff11\uff12", "-5", "+5", "1.5"],
                         ids=["superscript", "digit-and-superscript", "superscripts", "arabic-indic", "fullwidth",
                              "negative", "plus", "fraction"])
def test_retry_after_that_is_not_ascii_digits_or_a_date_counts_as_absent(value):
    assert outcomes.parse_retry_after(value) is None


def test_backoff_grows_with_jitter_and_is_capped():
    assert 2.5 <= outcomes.backoff(1, rng=lambda: 0.0) <= 2.5
    assert outcomes.backoff(3, rng=lambda: 0.5) == 20
    assert outcomes.backoff(30, rng=lambda: 1.0) == 900  # 600 cap × 1.5 jitter


# -- what the deliverer does with each outcome -------------------------------------------------------


@pytest.fixture
def delivery(make_services, receiver):
    services = make_services()
    keys = ClientKeys.generate()
    topic = topic_for_collection(services.settings.secret_key, "calendars/alice/work")

    def add(name, **triggers):
        services.store.upsert(Subscription(
            id=name, user="/u/alice", collection="calendars/alice/work", topic=topic, href="/c/",
            push_resource=receiver.endpoint(f"/{name}"), public_key=keys.p256dh, auth_secret=keys.auth,
            triggers=Triggers(**(triggers or {"content_depth": "1"})), expires=int(time.time()) + 3600, created=0, location=name))

    deliverer = Deliverer(services, sender())
    return services, deliverer, topic, add, keys


def deliver(services, deliverer, change):
    services.store.merge_pending(change)
    return deliverer.deliver_topic(change.topic)


def test_each_answer_leads_to_the_right_action(delivery, receiver):
    services, deliverer, topic, add, _ = delivery
    for name, status in (("ok", 201), ("gone", 404), ("busy", 503), ("bad", 400), ("auth", 403)):
        add(name)
        receiver.script(f"/{name}", [(status, {})])
    result = deliver(services, deliverer, Change(topic, content_depth="1", accepted_ms=int(time.time() * 1000)))
    assert result["outcomes"] == {"success": 1, "gone": 1, "retry": 1, "rejected": 1, "auth": 1}
    remaining = {s.id for s in services.store.iter_subscriptions()}
    assert remaining == {"ok", "busy", "bad", "auth"}
    assert services.store.get("ok").last_success > 0 and services.store.get("bad").last_success == 0
    from rq.registry import ScheduledJobRegistry

    [retry_id] = ScheduledJobRegistry(queue=services.queue).get_job_ids()
    job = services.queue.fetch_job(retry_id)
    assert job.func_name == "app.jobs.retry_pushes" and job.args[2] == ["busy"] and job.args[3] == 2
    counters = services.store.counters()
    assert counters["pushes|origin=other|outcome=auth"] == 1
    assert counters["push_latency_count"] == 1


def test_retries_stop_after_the_last_attempt(delivery, receiver):
    services, deliverer, topic, add, _ = delivery
    add("busy")
    receiver.script("/busy", [(500, {})])
    plaintext = "<x/>"
    result = deliverer.retry(topic, plaintext, ["busy"], services.settings.push_max_attempts, 0, int(time.time() * 1000))
    assert result["outcomes"] == {"retry": 1}
    from rq.registry import ScheduledJobRegistry

    assert ScheduledJobRegistry(queue=services.queue).count == 0


def test_retry_skips_subscriptions_a_newer_push_reached(delivery, receiver):
    services, deliverer, topic, add, _ = delivery
    add("busy")
    queued_ms = int(time.time() * 1000) - 5000
    services.store.record_success(["busy"], int(time.time()))
    assert deliverer.retry(topic, "<x/>", ["busy"], 2, 0, queued_ms)["pushes"] == 0
    assert receiver.pushes == []


def test_trigger_selection_and_message_variants(delivery, receiver):
    services, deliverer, topic, add, keys = delivery
    add("content")
    add("property", property_depth="0")
    add("both", content_depth="1", property_depth="0")
    add("self-only", content_depth="0")
    deliver(services, deliverer, Change(topic, content_depth="1", sync_token="http://sabre.io/ns/sync/3"))
    assert sorted(p.path for p in receiver.wait_for(2)) == ["/both", "/content"]
    receiver.clear()
    deliver(services, deliverer, Change(topic, property_update=True))
    pushes = receiver.wait_for(2)
    assert sorted(p.path for p in pushes) == ["/both", "/property"]
    assert all(b"property-update" in p.decrypt(keys) and b"content-update" not in p.decrypt(keys) for p in pushes)


def test_topic_header_differs_for_property_messages(delivery, receiver):
    services, deliverer, topic, add, _ = delivery
    add("both", content_depth="1", property_depth="0")
    deliver(services, deliverer, Change(topic, content_depth="1"))
    deliver(services, deliverer, Change(topic, property_update=True))
    first, second = receiver.wait_for(2)
    assert first.header("Topic") != second.header("Topic")


def test_an_older_token_than_already_pushed_is_not_sent(delivery, receiver):
    services, deliverer, topic, add, _ = delivery
    add("ok")
    deliver(services, deliverer, Change(topic, content_depth="1", sync_token="http://sabre.io/ns/sync/9"))
    result = deliver(services, deliverer, Change(topic, content_depth="1", sync_token="http://sabre.io/ns/sync/8"))
    assert result["pushes"] == 0 and len(receiver.wait_for(1)) == 1


def test_exclusions_and_deleted_collections(delivery, receiver):
    services, deliverer, topic, add, _ = delivery
    add("a")
    add("b")
    deliver(services, deliverer, Change(topic, content_depth="0", collection_deleted=True, exclude=frozenset({"a"})))
    assert [p.path for p in receiver.wait_for(1)] == ["/b"]
    assert list(services.store.iter_subscriptions()) == []


def test_per_origin_limit_and_override_bound_the_requests_in_flight_to_one_service():
    from support.push_receiver import PushReceiver

    with PushReceiver(latency_ms=150) as service:
        items = [request(service.endpoint(f"/p{i}"), f"s{i}") for i in range(24)]
        default = sender(concurrency=64, per_origin=2).send_all(items, lambda o: "vapid")
        peak_default = service.peak_in_flight
        service.clear()
        origin = service.url.rstrip("/")
        raised = sender(concurrency=64, per_origin=2, origin_limits={origin: 6}).send_all(items, lambda o: "vapid")
        peak_raised = service.peak_in_flight
    assert [o.kind for o in default + raised] == [outcomes.SUCCESS] * 48
    assert peak_default == 2
    assert peak_raised == 6
