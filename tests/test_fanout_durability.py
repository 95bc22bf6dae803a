"""At-least-once fan-out: leased fan-out records, resuming abandoned ones, the pending watchdog,
and jobs that do not wait for push services that never answer.

Worker deaths are simulated in-process (a fan-out claimed by an owner that never renews its
lease); tests/faults/ kills real worker processes.
"""
import time

import pytest
from rq.registry import ScheduledJobRegistry

from app.changes.ingest import QUEUED, ChangeIngestor
from app.delivery.deliver import Deliverer
from app.jobs import runtime
from app.jobs.worker import housekeeping_round, requeue_overdue, resume_abandoned
from app.protocol.subscription import Change, Subscription
from app.protocol.topics import topic_for_collection
from app.protocol.triggers import Triggers
from support.push_receiver import ClientKeys
from support.raw_http import RawHTTPServer

COLLECTION = "calendars/alice/work"


def add_subscribers(services, endpoints, keys) -> str:
    topic = topic_for_collection(services.settings.secret_key, COLLECTION)
    for number, endpoint in enumerate(endpoints):
        services.store.upsert(Subscription(
            id=f"s{number}", user="/u/alice", collection=COLLECTION, topic=topic, href="/c/", push_resource=endpoint,
            public_key=keys.p256dh, auth_secret=keys.auth, triggers=Triggers(content_depth="1"),
            expires=int(time.time()) + 3600, created=0, location=f"l{number}"))
    return topic


def test_a_fanout_abandoned_midway_is_resumed_for_the_subscribers_not_yet_done(make_services, receiver, run_worker):
    services = make_services()
    keys = ClientKeys.generate()
    topic = add_subscribers(services, [receiver.endpoint(f"/{n}") for n in range(20)], keys)
    assert ChangeIngestor(services).submit(Change(topic, content_depth="1", sync_token="http://sabre.io/ns/sync/5")) == QUEUED
    services.queue.empty()  # the delivery job dies with its worker ...
    lease_over = int(time.time() * 1000) - 1
    assert services.store.claim_pending(topic, "dead-fanout", "dead-worker", lease_over) is not None
    services.store.fanout_progress("dead-fanout", [f"s{n}" for n in range(8)])  # ... after 8 pushes were recorded

    assert resume_abandoned(services) == ["dead-fanout"]
    assert resume_abandoned(services) == []  # handed out once
    run_worker(services)

    pushes = receiver.wait_for(12)
    assert sorted(p.path for p in pushes) == sorted(f"/{n}" for n in range(8, 20))
    assert all(b"sync/5" in p.decrypt(keys) for p in pushes)
    assert services.store.fanout_count() == 0 and services.store.fanout_done("dead-fanout") == set()


def test_a_fanout_whose_owner_renews_its_lease_is_left_alone(make_services, receiver):
    services = make_services()
    topic = add_subscribers(services, [receiver.endpoint("/a")], ClientKeys.generate())
    services.store.merge_pending(Change(topic, content_depth="1"))
    soon = int(time.time() * 1000) + 200
    services.store.claim_pending(topic, "live", "worker-1", soon)
    assert services.store.renew_fanouts(["live"], "worker-1", soon + 60_000) == 1
    assert services.store.renew_fanouts(["live"], "someone-else", 0) == 0  # only the owner renews
    time.sleep(0.3)
    assert resume_abandoned(services) == []
    assert services.queue.count == 0


def test_a_retry_batch_is_a_fanout_too(make_services, receiver, run_worker):
    services = make_services()
    keys = ClientKeys.generate()
    topic = add_subscribers(services, [receiver.endpoint("/a"), receiver.endpoint("/b")], keys)
    deliverer = Deliverer(services, runtime.use_context(services).sender, owner="doomed")
    original = services.store.start_fanout

    def die_after_recording(fanout_id, fields, owner, lease_until_ms):  # the worker dies right after
        original(fanout_id, fields, owner, int(time.time() * 1000) - 1)
        raise SystemExit

    services.store.start_fanout = die_after_recording
    with pytest.raises(SystemExit):
        deliverer.retry(topic, "<retry/>", ["s0", "s1"], 2, 0, int(time.time() * 1000))
    services.store.start_fanout = original
    assert receiver.pushes == []

    assert len(resume_abandoned(services)) == 1
    run_worker(services)
    pushes = receiver.wait_for(2)
    assert sorted(p.path for p in pushes) == ["/a", "/b"] and {p.decrypt(keys) for p in pushes} == {b"<retry/>"}


def test_a_fanout_that_keeps_killing_workers_is_given_up(make_services):
    services = make_services()
    topic = topic_for_collection(services.settings.secret_key, COLLECTION)
    services.store.merge_pending(Change(topic, content_depth="1"))
    services.store.claim_pending(topic, "poison", "w", 0)
    now_ms = int(time.time() * 1000)
    for _ in range(5):  # each resume job dies too: its lease runs out again
        now_ms += 10 * 60_000
        assert resume_abandoned(services, now_ms=now_ms) == ["poison"]
        services.queue.empty()
    assert resume_abandoned(services, now_ms=now_ms + 10 * 60_000) == []
    assert services.store.fanout_count() == 0


def test_a_pending_change_nobody_claimed_is_enqueued_again(make_services, receiver, run_worker):
    services = make_services()
    keys = ClientKeys.generate()
    topic = add_subscribers(services, [receiver.endpoint("/a")], keys)
    assert ChangeIngestor(services).submit(Change(topic, content_depth="1", sync_token="http://sabre.io/ns/sync/9")) == QUEUED
    services.queue.empty()  # the job was lost (its worker died between dequeue and claim)

    assert requeue_overdue(services) == []  # not overdue yet
    later = int(time.time() * 1000) + 31_000
    assert requeue_overdue(services, now_ms=later) == [topic]
    assert requeue_overdue(services, now_ms=later) == []  # its deadline moved on
    run_worker(services)
    [push] = receiver.wait_for(1)
    assert b"sync/9" in push.decrypt(keys)
    assert requeue_overdue(services, now_ms=later + 60_000) == []  # claimed: off the watchdog's list


def test_housekeeping_renews_the_leases_of_its_own_fanouts(make_services):
    services = make_services()
    topic = topic_for_collection(services.settings.secret_key, COLLECTION)
    services.store.merge_pending(Change(topic, content_depth="1"))
    deliverer = Deliverer(services, runtime.use_context(services).sender, owner="w-1")
    services.store.claim_pending(topic, "f1", "w-1", 0)
    deliverer.active["f1"] = object()  # in flight in this process
    housekeeping_round(services, "w-1", deliverer)
    lease = services.redis.zscore(services.store.keys.fanouts, "f1")
    assert lease > time.time() * 1000 + 10_000
    assert services.queue.count == 1  # only the purge: nothing to resume


@pytest.fixture
def tarpit():
    """A push service that accepts connections and requests and never answers."""
    def never_answer(conn, stopping):
        stopping.wait(30)
        return False

    with RawHTTPServer() as server:
        server.script("/tarpit", never_answer)
        yield server


def test_a_job_moves_on_while_a_push_service_does_not_answer(make_services, receiver, tarpit):
    services = make_services(PUSH_STRAGGLER_SECONDS="0.3", PUSH_READ_TIMEOUT="2")
    keys = ClientKeys.generate()
    topic = add_subscribers(services, [tarpit.url("/tarpit"), receiver.endpoint("/fast")], keys)
    context = runtime.use_context(services)
    services.store.merge_pending(Change(topic, content_depth="1"))

    result = context.deliverer.deliver_topic(topic)

    assert result["outcomes"] == {"success": 1} and result["answers_pending"] == 1
    assert [p.path for p in receiver.pushes] == ["/fast"]
    assert services.store.fanout_count() == 1  # the straggler is still being waited for, in the background
    deadline = time.monotonic() + 10
    while services.store.fanout_count() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert services.store.fanout_count() == 0  # its read timeout ended it ...
    [retry] = ScheduledJobRegistry(queue=services.queue).get_job_ids()  # ... and it is retried on its own
    assert services.queue.fetch_job(retry).args[2] == ["s0"]
