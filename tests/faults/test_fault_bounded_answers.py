"""Issue 8 §4, bounded answers: webhooks answer within 1 s and /push/healthz within 2 s while 150 DAV
requests hang upstream; a paused Redis (SIGSTOP) gives a 503 within 2 s, not 30 s.

The web process is gunicorn as the Procfile starts it, with its default worker settings. Clients wait
at most CLIENT_TIMEOUT: a longer wait is recorded as "no answer" (None).
"""
from __future__ import annotations

import base64
import socket
import time

import pytest

from support.payloads import object_event

pytestmark = pytest.mark.faults

HANGING = 150
WEBHOOK_BOUND = 1.0
HEALTHZ_BOUND = 2.0
REDIS_HANG_BOUND = 2.0
CLIENT_TIMEOUT = 6.0


def open_hanging_propfinds(port: int, count: int) -> list[socket.socket]:
    """`count` PROPFINDs sent and left waiting for their answers (the sockets stay open)."""
    auth = base64.b64encode(b"alice:alice-pw").decode()
    sockets = []
    for i in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall((f"PROPFIND /remote.php/dav/calendars/alice/c{i}/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      f"Authorization: Basic {auth}\r\nDepth: 1\r\nContent-Length: 0\r\n\r\n").encode())
        sockets.append(sock)
    return sockets


def took(answer) -> float | None:
    return None if answer.status is None else answer.seconds


def test_webhook_and_healthz_answer_while_150_dav_requests_hang_upstream(make_stack, fault_server, figures):
    upstream = fault_server("127.0.0.1", mode="tarpit")  # accepts, reads the request, never answers
    stack = make_stack(upstream_url=upstream.url, workers=1)
    clients = open_hanging_propfinds(stack.web.port, HANGING)
    try:
        upstream.wait_until(lambda s: len(s.snapshot()) >= HANGING, 15)
        hanging = len(upstream.snapshot())
        webhooks = [stack.webhook(object_event(owner="alice", uri="work", token=100 + n), timeout=CLIENT_TIMEOUT)
                    for n in range(3)]
        healthz = stack.request("GET", "/push/healthz", timeout=CLIENT_TIMEOUT)
    finally:
        for sock in clients:
            sock.close()
    slowest = None if any(w.status is None for w in webhooks) else max(w.seconds for w in webhooks)
    figures.record("hung_upstream", hanging_requests_upstream=hanging, webhook_max_s=slowest,
                   webhook_statuses=[w.status for w in webhooks], healthz_s=took(healthz), healthz_status=healthz.status)
    assert all(w.status is not None and 200 <= w.status < 300 for w in webhooks), (
        f"webhooks while {hanging} DAV requests hang upstream: {[(w.status, round(w.seconds, 2)) for w in webhooks]}")
    assert slowest <= WEBHOOK_BOUND, f"a webhook took {slowest:.2f} s (bound {WEBHOOK_BOUND} s)"
    assert healthz.status is not None and healthz.seconds <= HEALTHZ_BOUND, (
        f"/push/healthz: {healthz.status} after {healthz.seconds:.2f} s (bound {HEALTHZ_BOUND} s)")
    assert hanging >= HANGING, (f"only {hanging} of {HANGING} DAV requests reached the upstream: the web process "
                                f"cannot hold {HANGING} hanging requests at once\n{stack.logs()}")


def test_paused_redis_gives_a_503_within_2_s(make_stack, figures):
    stack = make_stack(workers=0)
    warm = stack.webhook(object_event(owner="alice", uri="work", token=1))  # pooled connections exist
    assert warm.status == 202, warm
    stack.redis.pause()
    try:
        paused_webhook = stack.webhook(object_event(owner="alice", uri="work", token=2), timeout=CLIENT_TIMEOUT)
        paused_healthz = stack.request("GET", "/push/healthz", timeout=CLIENT_TIMEOUT)
    finally:
        stack.redis.resume()
    after = None
    deadline = time.monotonic() + 40  # answers stuck behind the pause drain first
    while time.monotonic() < deadline:
        after = stack.webhook(object_event(owner="alice", uri="work", token=3), timeout=CLIENT_TIMEOUT)
        if after.status == 202:
            break
        time.sleep(0.5)
    figures.record("redis_paused_answers", webhook_s=took(paused_webhook), webhook_status=paused_webhook.status,
                   healthz_s=took(paused_healthz), healthz_status=paused_healthz.status,
                   webhook_after_resume_status=after.status if after else None)
    assert paused_webhook.status == 503 and paused_webhook.seconds <= REDIS_HANG_BOUND, (
        f"webhook while Redis is paused: {paused_webhook.status} after {paused_webhook.seconds:.2f} s "
        f"(expected 503 within {REDIS_HANG_BOUND} s)")
    assert paused_healthz.status is not None and paused_healthz.seconds <= HEALTHZ_BOUND, (
        f"/push/healthz while Redis is paused: {paused_healthz.status} after {paused_healthz.seconds:.2f} s")
    assert paused_healthz.status == 503, paused_healthz
    assert after is not None and after.status == 202, f"webhooks are not accepted again after the pause: {after}"
