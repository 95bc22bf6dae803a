"""The delivery worker: jobs run in the worker's own process (no fork per job), JSON-serialised, with the scheduler.

`probe` below is an RQ job: it reports the process and the process-wide objects the job saw.
"""
import json
import os
import subprocess
import sys
import time
import zlib
from datetime import UTC, datetime, timedelta

from rq.job import Job
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from app.changes.ingest import QUEUED, ChangeIngestor
from app.jobs import runtime
from app.protocol.subscription import Change, Subscription
from app.protocol.topics import topic_for_collection
from app.protocol.triggers import Triggers
from support.push_receiver import ClientKeys, verify_vapid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
PROBE = f"{__name__}.probe"


def probe() -> dict:
    context = runtime.context()
    return {"pid": os.getpid(), "context": id(context), "sender": id(context.sender), "signer": id(context.services.signer)}


def subscribe(services, receiver, keys, collection: str) -> str:
    topic = topic_for_collection(services.settings.secret_key, collection)
    services.store.upsert(Subscription(
        id=f"sub-{collection.replace('/', '-')}", user="/u/alice", collection=collection, topic=topic, href=f"/{collection}/",
        push_resource=receiver.endpoint(f"/{collection}"), public_key=keys.p256dh, auth_secret=keys.auth,
        triggers=Triggers(content_depth="1"), expires=int(time.time()) + 3600, created=0, location=collection))
    return topic


def results(services, job_ids) -> list:
    fetched = Job.fetch_many(job_ids, connection=services.redis, serializer=JSONSerializer)
    assert [job.get_status() for job in fetched] == ["finished"] * len(job_ids), [job.exc_info for job in fetched]
    return [job.return_value() for job in fetched]


def test_jobs_run_in_the_workers_process_and_share_its_context(make_services, receiver):
    from app.jobs.worker import run_worker

    services = make_services()
    context = runtime.use_context(services)
    keys = ClientKeys.generate()
    ingestor = ChangeIngestor(services)
    probes = [services.queue.enqueue(PROBE).id]
    for n, collection in enumerate(("calendars/alice/work", "calendars/alice/home")):
        assert ingestor.submit(Change(subscribe(services, receiver, keys, collection), content_depth="1",
                                      sync_token=f"http://sabre.io/ns/sync/{n + 1}")) == QUEUED
    probes.append(services.queue.enqueue(PROBE).id)
    assert services.queue.count == 4

    run_worker(burst=True)

    first, second = results(services, probes)
    assert first == second == {"pid": os.getpid(), "context": id(context), "sender": id(context.sender),
                               "signer": id(services.signer)}
    assert runtime.context() is context
    pushes = receiver.wait_for(2)
    assert sorted(p.path for p in pushes) == ["/calendars/alice/home", "/calendars/alice/work"]
    # both delivery jobs used the one cached VAPID header of this origin (a new signature would differ)
    assert pushes[0].header("Authorization") == pushes[1].header("Authorization")


def test_jobs_from_the_ingestor_are_stored_as_json(make_services):
    services = make_services()
    keys = ClientKeys.generate()
    topic = topic_for_collection(services.settings.secret_key, "calendars/alice/work")
    services.store.upsert(Subscription(
        id="s", user="/u/alice", collection="calendars/alice/work", topic=topic, href="/c/", push_resource="https://push.example.org/x",
        public_key=keys.p256dh, auth_secret=keys.auth, triggers=Triggers(content_depth="1"),
        expires=int(time.time()) + 3600, created=0, location="l"))
    assert ChangeIngestor(services).submit(Change(topic, content_depth="1")) == QUEUED
    [job_id] = services.queue.job_ids
    raw = services.redis.hget(f"rq:job:{job_id}", "data")
    assert json.loads(zlib.decompress(raw)) == ["app.jobs.deliver_topic", None, [topic], {}]
    assert Job.fetch(job_id, connection=services.redis, serializer=JSONSerializer).args == [topic]


def test_burst_worker_runs_the_scheduler_and_leaves_jobs_that_are_not_due(make_services, receiver, monkeypatch):
    import rq.scheduler

    from app.jobs.worker import run_worker

    services = make_services(PUSH_COALESCE_MS=30_000)
    runtime.use_context(services)
    keys = ClientKeys.generate()
    topic = subscribe(services, receiver, keys, "calendars/alice/work")
    assert ChangeIngestor(services).submit(Change(topic, content_depth="1", sync_token="http://sabre.io/ns/sync/7")) == QUEUED
    registry = ScheduledJobRegistry(queue=services.queue)
    [job_id] = registry.get_job_ids()

    run_worker(burst=True)
    assert registry.get_job_ids() == [job_id] and receiver.pushes == []

    later = int(time.time()) + 31
    monkeypatch.setattr(rq.scheduler, "current_timestamp", lambda: later)
    run_worker(burst=True)
    [push] = receiver.wait_for(1)
    assert push.path == "/calendars/alice/work"
    assert registry.count == 0
    assert Job.fetch(job_id, connection=services.redis, serializer=JSONSerializer).get_status() == "finished"


def test_davpush_worker_burst_runs_due_scheduled_jobs_and_all_jobs_in_one_process(make_services, make_env, receiver):
    services = make_services(PUSH_COALESCE_MS=60_000)
    keys = ClientKeys.generate()
    ingestor = ChangeIngestor(services)
    registry = ScheduledJobRegistry(queue=services.queue)
    for n, collection in enumerate(("calendars/alice/work", "calendars/alice/home")):
        topic = subscribe(services, receiver, keys, collection)
        assert ingestor.submit(Change(topic, content_depth="1", sync_token=f"http://sabre.io/ns/sync/{n + 1}")) == QUEUED
    a_while_ago = datetime.now(UTC) - timedelta(seconds=5)
    for job in Job.fetch_many(registry.get_job_ids(), connection=services.redis, serializer=JSONSerializer):
        registry.schedule(job, a_while_ago)  # the window has passed
    probes = [services.queue.enqueue(PROBE).id for _ in range(2)]

    env = dict(os.environ, **make_env(PUSH_COALESCE_MS=60_000))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [TESTS, ROOT, env.get("PYTHONPATH")]))
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker", "--burst"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _, stderr = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr

    first, second = results(services, probes)
    assert first["pid"] == second["pid"] == worker.pid != os.getpid()
    assert first["context"] == second["context"] and first["sender"] == second["sender"]
    assert first["signer"] == second["signer"]
    pushes = receiver.wait_for(2)
    assert sorted(p.path for p in pushes) == ["/calendars/alice/home", "/calendars/alice/work"]
    assert registry.count == 0
    header = pushes[0].header("Authorization")
    assert pushes[1].header("Authorization") == header
    assert verify_vapid(header, expected_public_key=services.signer.public_key, audience=receiver.url, check_exp=True)


def test_the_scheduler_thread_takes_over_a_dead_workers_lock_and_moves_due_jobs(make_services):
    import threading

    from rq.scheduler import RQScheduler

    from app.jobs.worker import _scheduler

    services = make_services()
    lock = RQScheduler.get_locking_key(services.queue.name)
    services.redis.set(lock, "dead-worker", ex=2)  # a worker killed while it held the lock
    job = services.queue.enqueue_in(timedelta(seconds=0), PROBE)
    registry = ScheduledJobRegistry(queue=services.queue)
    assert registry.count == 1

    stop = threading.Event()
    thread = threading.Thread(target=_scheduler, args=(stop, services, "me"), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while services.queue.count == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert services.queue.job_ids == [job.id] and registry.count == 0
        assert services.redis.get(lock) == b"me"
        assert 0 < services.redis.ttl(lock) <= 10
    finally:
        stop.set()
        thread.join(timeout=5)
    assert services.redis.get(lock) is None  # released on a clean stop
