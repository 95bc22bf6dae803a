"""Issue 8 §3, isolation: a push service that never answers (TARPIT) or drips bytes (DRIP) adds no
more than 1 s to other subscribers of the same change nor to other collections' pushes; the
straggler is retried on its own schedule, and per-origin limits still hold.

Every push service is its own origin: the healthy receiver on 127.0.0.1, tarpits and the drip on
127.0.0.2-4. PUSH_READ_TIMEOUT is left at its default (10 s), so without isolation the others wait
~10 s. A baseline round without tarpits, in the same run, gives the latency the others would have.
"""
from __future__ import annotations

import time

import pytest

from support.payloads import object_event
from support.push_receiver import ClientKeys

pytestmark = pytest.mark.faults

BOUND = 1.5  # seconds from webhook sent (accepted a few ms later) to push received, for those not stuck
READ_TIMEOUT = 10.0  # PUSH_READ_TIMEOUT's default, left as it is
DELIVERY_WAIT = 15.0  # how long we wait at most to see a push at all (a stuck worker takes ~10 s)


def arrival(server, path: str, after: float, timeout: float = DELIVERY_WAIT) -> float | None:
    """Seconds from `after` (when the webhook was sent: a push can arrive before the client has read
    the 202) to the first request for `path` received after it (None: none in time)."""
    def seen(s):
        return any(a.path == path and a.at >= after for a in s.snapshot())

    if not server.wait_until(seen, timeout):
        return None
    return min(a.at for a in server.snapshot() if a.path == path and a.at >= after) - after


def baseline(stack, receiver, keys) -> tuple[float | None, float | None]:
    """Same shape as the fault round, without stuck push services: (same change, other collection)."""
    stack.subscribe("calendars/alice/base-x", [("base-b", receiver.endpoint("/base-b"))], keys)
    stack.subscribe("calendars/alice/base-y", [("base-c", receiver.endpoint("/base-c"))], keys)
    x = stack.webhook(object_event(owner="alice", uri="base-x", token=3))
    y = stack.webhook(object_event(owner="alice", uri="base-y", token=3))
    assert x.status == 202 and y.status == 202, (x, y)
    return arrival(receiver, "/base-b", x.sent_at), arrival(receiver, "/base-c", y.sent_at)


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def test_tarpit_does_not_delay_the_others_and_is_retried_on_its_own_schedule(make_stack, fault_server, figures):
    receiver = fault_server("127.0.0.1")
    tarpit = fault_server("127.0.0.2", mode="tarpit")
    stack = make_stack()
    keys = ClientKeys.generate()
    base_b, base_c = baseline(stack, receiver, keys)

    stack.subscribe("calendars/alice/x", [("x-a", tarpit.endpoint("/x-a")), ("x-b", receiver.endpoint("/x-b"))], keys)
    stack.subscribe("calendars/alice/y", [("y-c", receiver.endpoint("/y-c"))], keys)
    x = stack.webhook(object_event(owner="alice", uri="x", token=10))
    y = stack.webhook(object_event(owner="alice", uri="y", token=10))  # another collection, right after
    assert x.status == 202 and y.status == 202, (x, y)
    b = arrival(receiver, "/x-b", x.sent_at)
    c = arrival(receiver, "/y-c", y.sent_at)

    assert tarpit.wait_until(lambda s: len(s.snapshot()) >= 1, 15), f"the tarpit never got its push\n{stack.logs()}"
    first = tarpit.snapshot()[0].at
    retried = tarpit.wait_until(lambda s: len(s.snapshot()) >= 2, max(0.0, first + 32 - time.monotonic()))
    tries = tarpit.snapshot()
    gap = tries[1].at - first if len(tries) >= 2 else None

    figures.record("tarpit_one", baseline_same_change_s=base_b, baseline_other_collection_s=base_c,
                   same_change_s=b, other_collection_s=c,
                   added_same_change_s=None if None in (b, base_b) else b - base_b,
                   added_other_collection_s=None if None in (c, base_c) else c - base_c,
                   tarpit_connections=tarpit.connections, retry_gap_s=gap)
    assert b is not None and b < BOUND, f"same change, healthy subscriber: {seconds(b)} (baseline {seconds(base_b)})"
    assert c is not None and c < BOUND, (f"another collection changed right after: {seconds(c)} "
                                         f"(baseline {seconds(base_c)})\n{stack.logs()}")
    assert retried, f"the tarpit's push was never retried within 32 s\n{stack.logs()}"
    # its own schedule: the first try ends with the read timeout (10 s), then the backoff
    assert gap >= READ_TIMEOUT, f"retried {gap:.2f} s after the first try, before its read timeout ran out"
    assert len(tries) == 2 and tarpit.connections == 2, f"{len(tries)} tries on {tarpit.connections} connections"


def test_several_tarpits_and_a_drip_do_not_delay_the_others_and_origin_limits_hold(make_stack, fault_server, figures):
    receiver = fault_server("127.0.0.1")
    tarpit_one = fault_server("127.0.0.2", mode="tarpit")
    tarpit_two = fault_server("127.0.0.3", mode="tarpit")
    drip = fault_server("127.0.0.4", mode="drip", drip_interval=2.0)
    per_origin = 2
    stack = make_stack(PUSH_PER_ORIGIN_CONCURRENCY=per_origin)
    keys = ClientKeys.generate()
    base_b, base_c = baseline(stack, receiver, keys)

    stuck = [("x-t1", tarpit_one), ("x-t2a", tarpit_two), ("x-t2b", tarpit_two), ("x-t2c", tarpit_two), ("x-d", drip)]
    stack.subscribe("calendars/alice/x", [(sid, server.endpoint("/" + sid)) for sid, server in stuck]
                    + [("x-b", receiver.endpoint("/x-b"))], keys)
    stack.subscribe("calendars/alice/y", [("y-c", receiver.endpoint("/y-c"))], keys)
    x = stack.webhook(object_event(owner="alice", uri="x", token=20))
    y = stack.webhook(object_event(owner="alice", uri="y", token=20))
    assert x.status == 202 and y.status == 202, (x, y)
    # a second change of the same collection while the first pushes still hang (past PUSH_MIN_INTERVAL_MS)
    time.sleep(max(0.0, x.done_at + 2.5 - time.monotonic()))
    x2 = stack.webhook(object_event(owner="alice", uri="x", token=21))
    assert x2.status == 202, x2
    b = arrival(receiver, "/x-b", x.sent_at)  # arrivals are looked up in the receiver's record
    c = arrival(receiver, "/y-c", y.sent_at)
    b2 = arrival(receiver, "/x-b", x2.sent_at)
    time.sleep(max(0.0, x.done_at + 12 - time.monotonic()))  # past the read timeout of the first round

    peak = tarpit_two.peak_concurrency()
    reached = {name: len(server.snapshot()) for name, server in
               (("tarpit_one", tarpit_one), ("tarpit_two", tarpit_two), ("drip", drip))}
    figures.record("tarpit_several_and_drip", baseline_same_change_s=base_b, baseline_other_collection_s=base_c,
                   same_change_s=b, other_collection_s=c, second_change_s=b2,
                   added_same_change_s=None if None in (b, base_b) else b - base_b,
                   added_other_collection_s=None if None in (c, base_c) else c - base_c,
                   peak_open_at_one_origin=peak, per_origin_limit=per_origin, **reached)
    assert b is not None and b < BOUND, f"same change, healthy subscriber: {seconds(b)} (baseline {seconds(base_b)})"
    assert c is not None and c < BOUND, (f"another collection changed right after: {seconds(c)} "
                                         f"(baseline {seconds(base_c)})\n{stack.logs()}")
    assert b2 is not None and b2 < BOUND, f"the next change of the same collection: {seconds(b2)}\n{stack.logs()}"
    assert reached["tarpit_one"] >= 1 and reached["drip"] >= 1 and reached["tarpit_two"] >= 1, reached
    assert peak <= per_origin, (
        f"{peak} requests open at once at one push service "
        f"(PUSH_PER_ORIGIN_CONCURRENCY={per_origin})")
