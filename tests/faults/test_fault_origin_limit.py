"""Issue 11 §4: the concurrency bound per push service holds across all worker processes together.

Three `davpush worker` processes each take one calendar's fan-out at the same time; all subscribers
are on one push service limited to 8 (PUSH_ORIGIN_CONCURRENCY). Each worker alone may send 8 at once,
so without a shared bound the service would see up to 24; with it, never more than 8.
"""
from __future__ import annotations

import pytest

from support.payloads import object_event
from support.push_receiver import ClientKeys

pytestmark = pytest.mark.faults

LIMIT = 8
PER_CALENDAR = 60
ANSWER_SECONDS = 0.3  # long enough for overlapping requests to be seen as such


def test_three_workers_never_exceed_one_origins_limit_together(make_stack, fault_server, figures):
    service = fault_server("127.0.0.1", latency=ANSWER_SECONDS)
    stack = make_stack(workers=3, PUSH_ORIGIN_CONCURRENCY=f"{service.url}={LIMIT}", PUSH_MIN_INTERVAL_MS=0)
    keys = ClientKeys.generate()
    calendars = ("one", "two", "three")
    for name in calendars:
        stack.subscribe(f"calendars/alice/{name}",
                        [(f"{name}-{n}", service.endpoint(f"/{name}/{n}")) for n in range(PER_CALENDAR)], keys)
    answers = [stack.webhook(object_event(owner="alice", uri=name, token=7)) for name in calendars]
    assert [a.status for a in answers] == [202] * 3, answers

    total = PER_CALENDAR * len(calendars)
    delivered = service.wait_until(lambda s: len(s.deliveries()) >= total, 90)
    peak = service.peak_concurrency()
    workers_used = len({w for w in stack.store().redis.smembers("rq:workers")})
    figures.record("origin_limit_across_workers", workers=3, limit=LIMIT, peak_in_flight=peak,
                   delivered=len(service.deliveries()), expected=total, registered_workers=workers_used)
    assert delivered, f"{len(service.deliveries())} of {total} delivered\n{stack.logs()}"
    assert peak <= LIMIT, f"{peak} requests in flight at a push service limited to {LIMIT}"
    assert peak >= LIMIT // 2, f"only {peak} at once: the shared bound should still let {LIMIT} through"
    assert max(service.copies().values()) == 1
