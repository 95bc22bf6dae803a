"""End to end: registration as DAVx5 does it, a change, a worker, the push a phone receives."""
import dataclasses
import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import requests
from rq.registry import ScheduledJobRegistry

from support import bodies
from support.env import WEBHOOK_SECRET
from support.payloads import moved_event, object_event
from support.push_receiver import ClientKeys, verify_vapid

ALICE, BOB = ("alice", "alice-pw"), ("bob", "bob-pw")
PUSH_NS = "https://bitfire.at/webdav-push"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def discover(gateway, home, auth):
    """What DAVx5 learns: the VAPID key and each collection's topic."""
    response = requests.request("PROPFIND", gateway.dav(home), data=bodies.PUSH_PROPFIND_DAVX5, auth=auth, headers={"Depth": "1"})
    root = ET.fromstring(response.content)
    topics, key = {}, None
    for item in root.iter("{DAV:}response"):
        topic = item.find(f".//{{{PUSH_NS}}}topic")
        if topic is not None and topic.text:
            topics[item.find("{DAV:}href").text] = topic.text
            key = item.find(f".//{{{PUSH_NS}}}vapid-public-key").text
    return key, topics


def subscribe(gateway, receiver, path, auth=ALICE, name="1"):
    keys = ClientKeys.generate()
    response = requests.post(gateway.dav(path), data=bodies.davx5_old(receiver.endpoint(f"/up/{name}"), keys.p256dh, keys.auth),
                             auth=auth, headers={"Content-Type": bodies.XML_UTF8})
    assert response.status_code == 201, response.text
    return keys, response.headers["Location"]


def webhook(gateway, payload):
    response = requests.post(gateway.url + "/push/webhooks/nextcloud", data=json.dumps(payload),
                             headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"})
    assert response.status_code == 202, response.text
    return response.json()


def message(push, keys):
    root = ET.fromstring(push.decrypt(keys))
    assert root.tag == f"{{{PUSH_NS}}}push-message"
    token = root.find(f"{{{PUSH_NS}}}content-update/{{DAV:}}sync-token")
    return {
        "topic": root.find(f"{{{PUSH_NS}}}topic").text,  # a direct child, as DAVx5 requires
        "content": root.find(f"{{{PUSH_NS}}}content-update") is not None,
        "property": root.find(f"{{{PUSH_NS}}}property-update") is not None,
        "token": None if token is None else token.text,
    }


def test_davx5_registration_webhook_and_real_worker_deliver_a_decryptable_signed_push(gateway, receiver, make_env):
    vapid_key, topics = discover(gateway, "/calendars/alice/", ALICE)
    keys, _ = subscribe(gateway, receiver, "/calendars/alice/work/")
    webhook(gateway, object_event(kind="Updated", token=9651))

    env = dict(os.environ, **make_env(gateway.services.settings.upstream_url))
    worker = subprocess.run([sys.executable, "-m", "app.cli", "worker", "--burst"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert worker.returncode == 0, worker.stderr
    [push] = receiver.wait_for(1)

    assert message(push, keys) == {"topic": topics["/remote.php/dav/calendars/alice/work/"], "content": True,
                                   "property": False, "token": "http://sabre.io/ns/sync/9651"}
    claims = verify_vapid(push.header("Authorization"), expected_public_key=vapid_key)
    assert claims["aud"] == receiver.url and claims["sub"] == "mailto:admin@example.test"
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    assert push.header("TTL") == "86400" and push.header("Content-Encoding") == "aes128gcm"
    assert push.header("Content-Type") == 'application/xml; charset="UTF-8"' and push.header("Urgency") == "normal"
    topic_header = push.header("Topic")
    assert len(topic_header) <= 32 and topics["/remote.php/dav/calendars/alice/work/"] not in topic_header
    assert push.path == "/up/1"
    assert receiver.url not in worker.stderr  # endpoints are logged as origin#hash only
    assert "up/1" not in worker.stderr


def test_sharee_gets_the_owners_change_and_a_move_notifies_both_calendars(gateway, receiver, run_worker):
    bob_keys, _ = subscribe(gateway, receiver, "/calendars/bob/work_shared_by_alice/", auth=BOB, name="bob")
    personal_keys, _ = subscribe(gateway, receiver, "/calendars/alice/personal/", name="alice-personal")
    _, topics = discover(gateway, "/calendars/alice/", ALICE)
    webhook(gateway, moved_event(source=("alice", "work", 100), target=("alice", "personal", 200)))
    run_worker(gateway.services)
    receiver.wait_for(2)
    [to_bob] = receiver.pushes_to("/up/bob")
    [to_personal] = receiver.pushes_to("/up/alice-personal")
    assert message(to_bob, bob_keys)["topic"] == topics["/remote.php/dav/calendars/alice/work/"]
    assert message(to_bob, bob_keys)["token"] == "http://sabre.io/ns/sync/100"
    assert message(to_personal, personal_keys)["token"] == "http://sabre.io/ns/sync/200"


def test_410_removes_the_subscription(gateway, receiver, run_worker):
    subscribe(gateway, receiver, "/calendars/alice/work/")
    receiver.script("/up/1", [(410, {})])
    webhook(gateway, object_event())
    run_worker(gateway.services)
    receiver.wait_for(1)
    assert list(gateway.services.store.iter_subscriptions()) == []


def test_429_with_retry_after_is_retried_once_later_for_that_subscription_only(gateway, receiver, run_worker):
    subscribe(gateway, receiver, "/calendars/alice/work/", name="limited")
    other_keys, _ = subscribe(gateway, receiver, "/calendars/alice/work/", name="fine")
    receiver.script("/up/limited", [(429, {"Retry-After": "1"})])
    webhook(gateway, object_event(token=5))
    run_worker(gateway.services)
    receiver.wait_for(2)
    scheduled = ScheduledJobRegistry(queue=gateway.services.queue)
    assert scheduled.count == 1
    deadline = time.time() + 10
    while time.time() < deadline and len(receiver.pushes_to("/up/limited")) < 2:
        time.sleep(0.3)
        run_worker(gateway.services)  # its scheduler moves the retry into the queue once due
    first, second = receiver.pushes_to("/up/limited")
    assert second.received_at > first.received_at
    assert len(receiver.pushes_to("/up/fine")) == 1
    assert scheduled.count == 0


def wait_until_quiet(services, seconds: float = 10):
    """Until nothing is pending, queued, scheduled or running for this queue."""
    from rq.registry import StartedJobRegistry

    deadline = time.time() + seconds
    while time.time() < deadline:
        busy = (services.queue.count or ScheduledJobRegistry(queue=services.queue).count
                or StartedJobRegistry(queue=services.queue).count
                or any(services.redis.scan_iter(match=services.store.keys.pending("*"), count=1000)))
        if not busy:
            return
        time.sleep(0.1)
    raise AssertionError("deliveries still pending")


def test_burst_of_100_events_gives_at_most_two_pushes_with_the_final_token_last(nextcloud, start_gateway, receiver, make_env):
    gateway = start_gateway(nextcloud.url, PUSH_MIN_INTERVAL_MS=3000)
    keys, _ = subscribe(gateway, receiver, "/calendars/alice/work/")
    env = dict(os.environ, **make_env(nextcloud.url, PUSH_MIN_INTERVAL_MS=3000))
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tokens = list(range(1001, 1101))
        tokens[40], tokens[99] = tokens[99], tokens[40]  # out of order: the highest arrives mid-burst
        for number, token in enumerate(tokens):
            webhook(gateway, object_event(token=token, time_=1760000000 + number))
        receiver.wait_for(1, timeout=10)
        wait_until_quiet(gateway.services)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    pushes = receiver.pushes_to("/up/1")
    assert 1 <= len(pushes) <= 2
    assert message(pushes[-1], keys)["token"] == "http://sabre.io/ns/sync/1100"


def test_expired_subscriptions_get_nothing(gateway, receiver, run_worker):
    subscribe(gateway, receiver, "/calendars/alice/work/")
    store = gateway.services.store
    [subscription] = list(store.iter_subscriptions())
    store.upsert(dataclasses.replace(subscription, expires=int(time.time()) - 1))  # a renewal into the past
    assert webhook(gateway, object_event())["outcomes"] == ["no-subscribers"]
    run_worker(gateway.services)
    assert receiver.pushes == []
    assert store.purge_expired() == 1
