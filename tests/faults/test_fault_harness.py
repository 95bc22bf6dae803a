"""Self-checks of the fault suite's harness (tests/support/fault_push.py, procs.py): the misbehaving
endpoints and the private Redis do what the fault tests rely on. Fast; no davpush process involved."""
from __future__ import annotations

import socket
import sys
import time

import pytest
import redis
import requests
from redis.backoff import NoBackoff
from redis.retry import Retry

from support.procs import RedisServer, procfile_command
from support.servers import free_port

pytestmark = pytest.mark.faults


def post(server, path="/p", timeout=5.0):
    return requests.post(server.endpoint(path), data=b"x" * 10, timeout=timeout)


def test_ok_and_503_answers_are_recorded_per_path(fault_server):
    server = fault_server(retry_after="7")
    assert post(server, "/a").status_code == 201
    server.set_mode("503")
    answer = post(server, "/a")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "7"
    server.set_mode("ok")
    assert post(server, "/b").status_code == 201
    assert server.copies() == {"/a": 1, "/b": 1}
    assert server.attempts_per_path() == {"/a": 2, "/b": 1}
    assert server.snapshot()[0].body == b"x" * 10


def test_refuse_closes_the_port_and_ok_reopens_it(fault_server):
    server = fault_server("127.0.0.2", free_port("127.0.0.2"))
    session = requests.Session()  # a kept-alive connection must not bypass "refuse"
    assert session.post(server.endpoint("/k"), data=b"1", timeout=5).status_code == 201
    server.set_mode("refuse")
    with pytest.raises(requests.ConnectionError):
        session.post(server.endpoint("/k"), data=b"1", timeout=5)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((server.host, server.port), timeout=2)
    server.set_mode("ok")
    assert session.post(server.endpoint("/k"), data=b"1", timeout=5).status_code == 201
    assert server.copies() == {"/k": 2}


def test_reset_tarpit_and_drip(fault_server):
    reset = fault_server(mode="reset")
    with pytest.raises(requests.ConnectionError):
        post(reset)
    assert reset.connections == 1

    tarpit = fault_server(mode="tarpit")
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        post(tarpit, timeout=0.5)
    assert tarpit.wait_until(lambda s: s.snapshot() and s.snapshot()[0].answered_at is not None, 2)
    assert tarpit.snapshot()[0].status is None and tarpit.snapshot()[0].answered_at - started < 1.5

    drip = fault_server(mode="drip", drip_interval=0.3)
    sock = socket.create_connection((drip.host, drip.port), timeout=5)
    sock.sendall(b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    first = sock.recv(100)
    at = time.monotonic()
    second = sock.recv(100)
    assert first == b"H" and second == b"T" and time.monotonic() - at >= 0.2
    sock.close()


def test_hold_freezes_answers_until_release_and_peak_concurrency(fault_server):
    server = fault_server()
    server.hold_from(2)
    assert post(server, "/1").status_code == 201
    with pytest.raises(requests.ReadTimeout):
        post(server, "/2", timeout=0.5)
    assert server.holding
    server.release()
    assert post(server, "/3").status_code == 201
    assert server.copies() == {"/1": 1, "/3": 1}

    tarpit = fault_server(mode="tarpit")
    socks = []
    for _ in range(3):
        sock = socket.create_connection((tarpit.host, tarpit.port), timeout=5)
        sock.sendall(b"POST /t HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        socks.append(sock)
    assert tarpit.wait_until(lambda s: len(s.snapshot()) == 3, 5)
    time.sleep(0.3)
    for sock in socks:
        sock.close()
    assert tarpit.wait_until(lambda s: all(a.answered_at for a in s.snapshot()), 5)
    assert tarpit.peak_concurrency() == 3
    for _ in range(3):  # one after the other: never more than one open
        with pytest.raises(requests.ReadTimeout):
            post(tarpit, "/seq", timeout=0.3)
        assert tarpit.wait_until(lambda s: all(a.answered_at for a in s.snapshot()), 5)
    assert tarpit.peak_concurrency() == 3  # still the earlier burst
    later = [a for a in tarpit.snapshot() if a.path == "/seq"]
    assert all(b.at >= a.answered_at - 0.1 for a, b in zip(later, later[1:], strict=False))


def test_private_redis_keeps_data_across_a_restart_and_can_be_paused(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    try:
        client = server.client()
        client.set("k", "v")
        port = server.port
        server.restart()
        assert server.port == port and client.get("k") == b"v"
        server.pause()
        slow = server.client(socket_timeout=0.5, retry=Retry(NoBackoff(), 0))
        with pytest.raises(redis.TimeoutError):
            slow.ping()
        server.resume()
        assert slow.ping()
    finally:
        server.stop()


def test_procfile_commands_use_this_interpreter():
    assert procfile_command("web")[:3] == [sys.executable, "-m", "gunicorn"]
    assert procfile_command("worker")[:4] == [sys.executable, "-m", "app.cli", "worker"]
