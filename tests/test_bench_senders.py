"""The benchmark's aiohttp sender (bench/aiohttp_sender.py) must keep fitting the worker it is
compared with, or bench/delivery.py's side-by-side run fails before it measures anything."""
import sys
import time
from pathlib import Path

from app.protocol.subscription import Change, Subscription
from app.protocol.topics import topic_for_collection
from app.protocol.triggers import Triggers
from support.push_receiver import ClientKeys

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_a_worker_sending_with_the_benchmarks_aiohttp_sender_delivers_a_decryptable_push(
        make_services, receiver, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import aiohttp_sender
    from app.jobs import runtime

    monkeypatch.setattr(runtime, "PushSender", aiohttp_sender.PushSender)  # as bench/aiohttp_worker.py does
    services = make_services()
    keys = ClientKeys.generate()
    topic = topic_for_collection(services.settings.secret_key, "calendars/alice/work")
    services.store.upsert(Subscription(
        id="s1", user="/u/alice", collection="calendars/alice/work", topic=topic, href="/c/",
        push_resource=receiver.endpoint("/s1"), public_key=keys.p256dh, auth_secret=keys.auth,
        triggers=Triggers(content_depth="1"), expires=int(time.time()) + 3600, created=0, location="s1"))
    services.store.merge_pending(Change(topic, content_depth="1", sync_token="http://sabre.io/ns/sync/9"))
    context = runtime.use_context(services)
    try:
        assert isinstance(context.sender, aiohttp_sender.PushSender)
        result = context.deliverer.deliver_topic(topic)
    finally:
        context.sender.close()
        sys.modules.pop("aiohttp_sender", None)
    assert result["outcomes"] == {"success": 1}
    [received] = receiver.wait_for(1)
    assert b"sync/9" in received.decrypt(keys)
