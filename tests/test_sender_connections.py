"""How the push sender uses connections: every allowed address of a name is tried (a broken route
to the first one does not turn into retries), idle keep-alive connections are closed after the
keep-alive timeout, and push services that never answer do not hold up the others."""
import threading
import time

import pytest

from app.delivery.outcomes import RETRY, SUCCESS
from support.blackhole import Blackhole
from support.raw_http import RawHTTPServer
from support.senders import VAPID, push_request, resolving_to, sender_maker


@pytest.fixture
def server():
    with RawHTTPServer() as running:
        yield running


@pytest.fixture
def make_sender():
    with sender_maker() as make:
        yield make


push = push_request


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


# -- address fallback -----------------------------------------------------------------------------


def test_a_refused_first_address_falls_back_to_the_next(server, make_sender):
    sender = make_sender(resolver=resolving_to("127.0.0.2", "127.0.0.1"))  # nothing listens on 127.0.0.2
    [outcome] = sender.send_all([push(server.url("/x", host="push.test"))], lambda origin: VAPID)
    assert (outcome.kind, outcome.status) == (SUCCESS, 201)
    assert [r.target for r in server.requests] == ["/x"]


def test_a_first_address_that_never_answers_does_not_use_up_the_connect_timeout(server, make_sender):
    # the broken-IPv6-route case: SYNs to the first address vanish. Trying the addresses one after
    # the other would spend the whole connect timeout on it and report ConnectTimeoutError.
    with Blackhole("127.0.0.2", server.port):
        sender = make_sender(resolver=resolving_to("127.0.0.2", "127.0.0.1"), connect_timeout=2)
        [outcome] = sender.send_all([push(server.url("/x", host="push.test"))], lambda origin: VAPID)
    assert (outcome.kind, outcome.status) == (SUCCESS, 201)


def test_when_no_address_answers_the_push_is_retried(make_sender):
    with Blackhole("127.0.0.2") as hole:
        sender = make_sender(resolver=resolving_to("127.0.0.2", "127.0.0.3"), connect_timeout=0.5)
        [outcome] = sender.send_all([push(f"http://push.test:{hole.port}/x")], lambda origin: VAPID)
    assert (outcome.kind, outcome.status, outcome.detail) == (RETRY, None, "ConnectTimeoutError")


def test_only_allowed_addresses_are_connected_to_and_a_mixed_answer_is_refused(server, make_sender):
    # a name with one private address among public ones is refused whole, before any connection
    sender = make_sender(resolver=resolving_to("127.0.0.1", "10.1.2.3"))
    [outcome] = sender.send_all([push(server.url("/x", host="push.test"))], lambda origin: VAPID)
    assert outcome.kind == "blocked"
    assert server.connections == 0


# -- idle keep-alive connections ------------------------------------------------------------------------


def test_idle_keep_alive_connections_are_closed_after_the_keep_alive_timeout(server, make_sender):
    sender = make_sender(keepalive_timeout=1)
    first = sender.send_all([push(server.url(f"/p{i}"), f"s{i}") for i in range(4)], lambda origin: VAPID)
    assert {o.kind for o in first} == {SUCCESS}
    assert server.open_connections >= 1  # kept for the next push ...
    assert wait_until(lambda: server.open_connections == 0)  # ... until it has been idle too long
    [again] = sender.send_all([push(server.url("/later"))], lambda origin: VAPID)
    assert again.kind == SUCCESS
    assert server.requests[-1].connection > max(r.connection for r in server.requests[:-1])  # a new one


def test_a_connection_in_use_is_kept_while_pushes_keep_coming(server, make_sender):
    sender = make_sender(keepalive_timeout=2, per_origin=1)
    for number in range(6):  # over the timeout in all, never idle for long
        assert sender.send_all([push(server.url(f"/p{number}"))], lambda origin: VAPID)[0].kind == SUCCESS
        time.sleep(0.5)
    assert server.connections == 1


# -- push services that never answer --------------------------------------------------------------------


def test_stragglers_give_their_slots_to_other_push_services(make_sender):
    def never_answer(conn, stopping):
        stopping.wait(30)
        return False

    with RawHTTPServer() as tarpit, RawHTTPServer() as fast:
        tarpit.script("/tarpit", never_answer)
        sender = make_sender(concurrency=2, per_origin=2, straggler_after=0.2, read_timeout=5)
        arrived = []
        all_fast = threading.Event()

        def on_outcome(outcome):
            arrived.append(outcome)
            if sum(o.subscription_id.startswith("fast") for o in arrived) == 6:
                all_fast.set()

        stuck = [push(tarpit.url("/tarpit"), f"stuck{i}") for i in range(2)]  # would hold both slots
        sender.submit(stuck, lambda origin: VAPID, on_outcome)
        assert wait_until(lambda: len(tarpit.requests) == 2)
        sender.submit([push(fast.url(f"/f{i}"), f"fast{i}") for i in range(6)], lambda origin: VAPID, on_outcome)
        assert all_fast.wait(4)  # well before the stragglers' read timeout
        assert {(o.subscription_id[:4], o.kind) for o in arrived} == {("fast", SUCCESS)}
