"""The benchmark's aiohttp sender (bench/aiohttp_sender.py) must keep fitting the worker it is
compared with, or bench/delivery.py's side-by-side run fails before it measures anything."""
import sys
from pathlib import Path

from support.push_receiver import ClientKeys
from support.stored import one_pending_push

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_a_worker_sending_with_the_benchmarks_aiohttp_sender_delivers_a_decryptable_push(
        make_services, receiver, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import aiohttp_sender
    from app.jobs import runtime

    monkeypatch.setattr(runtime, "PushSender", aiohttp_sender.PushSender)  # as bench/aiohttp_worker.py does
    services = make_services()
    keys = ClientKeys.generate()
    topic = one_pending_push(services, receiver.endpoint("/s1"), keys, token=9)
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
