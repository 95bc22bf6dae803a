"""PUSH_COALESCE_MS: the first change of a topic waits in RQ's scheduled registry and later ones merge into it.

Real Redis and RQ registries. RQ's scheduler reads its clock from rq.scheduler.current_timestamp;
advancing that clock stands in for waiting out the window.
"""
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from app.changes.ingest import MERGED, QUEUED, ChangeIngestor
from app.protocol.subscription import Change, Subscription
from app.protocol.topics import topic_for_collection
from app.protocol.triggers import Triggers
from support.push_receiver import ClientKeys

PUSH_NS = "https://bitfire.at/webdav-push"
WINDOW_MS = 60_000
TOKEN = "http://sabre.io/ns/sync/{}"


class FakeClock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


@pytest.fixture
def setup(make_services, receiver):
    """Services with the given settings, a subscription (content + property triggers) per collection."""

    def build(**settings):
        services = make_services(**settings)
        keys = ClientKeys.generate()

        def subscribe(collection: str) -> str:
            topic = topic_for_collection(services.settings.secret_key, collection)
            services.store.upsert(Subscription(
                id=f"sub-{collection.replace('/', '-')}", user="/u/alice", collection=collection, topic=topic,
                href=f"/{collection}/", push_resource=receiver.endpoint(f"/{collection}"), public_key=keys.p256dh,
                auth_secret=keys.auth, triggers=Triggers(content_depth="1", property_depth="0"),
                expires=int(time.time()) + 3600, created=0, location=collection))
            return topic

        return services, ChangeIngestor(services, clock=FakeClock()), subscribe, keys

    return build


def scheduled(services) -> ScheduledJobRegistry:
    return ScheduledJobRegistry(queue=services.queue)


def read(push, keys) -> dict:
    root = ET.fromstring(push.decrypt(keys))
    token = root.find(f"{{{PUSH_NS}}}content-update/{{DAV:}}sync-token")
    return {
        "content": root.find(f"{{{PUSH_NS}}}content-update") is not None,
        "property": root.find(f"{{{PUSH_NS}}}property-update") is not None,
        "token": None if token is None else token.text,
    }


def advance_rq_scheduler(monkeypatch, seconds: float) -> None:
    import rq.scheduler

    later = int(time.time() + seconds)
    monkeypatch.setattr(rq.scheduler, "current_timestamp", lambda: later)


def test_default_window_is_zero_and_the_job_goes_straight_to_the_queue(setup):
    services, ingestor, subscribe, _ = setup()
    assert services.settings.push_coalesce_ms == 0
    topic = subscribe("calendars/alice/work")
    assert ingestor.submit(Change(topic, content_depth="1", sync_token=TOKEN.format(10))) == QUEUED
    [job_id] = services.queue.job_ids
    assert scheduled(services).count == 0
    job = Job.fetch(job_id, connection=services.redis, serializer=JSONSerializer)
    assert job.func_name == "app.jobs.deliver_topic" and list(job.args) == [topic]
    assert job.get_status() == "queued"


def test_default_window_still_merges_changes_into_the_queued_job(setup, run_worker, receiver):
    services, ingestor, subscribe, keys = setup()
    topic = subscribe("calendars/alice/work")
    assert ingestor.submit(Change(topic, content_depth="1", sync_token=TOKEN.format(10))) == QUEUED
    assert ingestor.submit(Change(topic, content_depth="1", sync_token=TOKEN.format(11))) == MERGED
    assert services.queue.count == 1
    run_worker(services)
    [push] = receiver.wait_for(1)
    assert read(push, keys)["token"] == TOKEN.format(11)


def test_with_a_window_the_first_change_is_scheduled_not_queued(setup):
    services, ingestor, subscribe, _ = setup(PUSH_COALESCE_MS=WINDOW_MS)
    topic = subscribe("calendars/alice/work")
    before = datetime.now(UTC).timestamp()
    assert ingestor.submit(Change(topic, content_depth="1", sync_token=TOKEN.format(10))) == QUEUED
    after = datetime.now(UTC).timestamp()
    assert services.queue.count == 0 and services.queue.job_ids == []
    [job_id] = scheduled(services).get_job_ids()
    job = Job.fetch(job_id, connection=services.redis, serializer=JSONSerializer)
    assert job.func_name == "app.jobs.deliver_topic" and list(job.args) == [topic]
    assert job.get_status() == "scheduled"
    due = scheduled(services).get_scheduled_time(job_id).timestamp()
    assert before + WINDOW_MS / 1000 - 1 <= due <= after + WINDOW_MS / 1000 + 1


def test_changes_within_the_window_merge_into_the_one_scheduled_job(setup):
    services, ingestor, subscribe, _ = setup(PUSH_COALESCE_MS=WINDOW_MS)
    work, home = subscribe("calendars/alice/work"), subscribe("calendars/alice/home")
    outcomes = [
        ingestor.submit(Change(work, content_depth="1", sync_token=TOKEN.format(10))),
        ingestor.submit(Change(work, content_depth="1", sync_token=TOKEN.format(12))),
        ingestor.submit(Change(work, content_depth="1", sync_token=TOKEN.format(11))),  # late, older
        ingestor.submit(Change(work, property_update=True)),
    ]
    assert outcomes == [QUEUED, MERGED, MERGED, MERGED]
    assert ingestor.submit(Change(home, content_depth="1", sync_token=TOKEN.format(3))) == QUEUED  # its own job
    assert services.queue.count == 0
    jobs = Job.fetch_many(scheduled(services).get_job_ids(), connection=services.redis, serializer=JSONSerializer)
    assert sorted(tuple(job.args) for job in jobs) == sorted([(work,), (home,)])


def test_the_merged_job_waits_out_the_window_then_sends_one_push_with_everything(setup, run_worker, receiver,
                                                                                 monkeypatch):
    services, ingestor, subscribe, keys = setup(PUSH_COALESCE_MS=WINDOW_MS)
    topic = subscribe("calendars/alice/work")
    for change in (Change(topic, content_depth="1", sync_token=TOKEN.format(10)),
                   Change(topic, property_update=True),
                   Change(topic, content_depth="1", sync_token=TOKEN.format(12)),
                   Change(topic, content_depth="1", sync_token=TOKEN.format(11))):
        ingestor.submit(change)

    run_worker(services)  # within the window a worker (with its scheduler) leaves the job alone
    assert receiver.pushes == [] and scheduled(services).count == 1

    advance_rq_scheduler(monkeypatch, WINDOW_MS / 1000 + 1)
    run_worker(services)
    [push] = receiver.wait_for(1)
    assert read(push, keys) == {"content": True, "property": True, "token": TOKEN.format(12)}
    assert scheduled(services).count == 0 and services.queue.count == 0
    [job_id] = services.queue.finished_job_registry.get_job_ids()
    result = Job.fetch(job_id, connection=services.redis, serializer=JSONSerializer).return_value()
    assert result["merged"] == 4 and result["pushes"] == 1
