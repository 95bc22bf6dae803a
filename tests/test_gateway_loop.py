"""Request loops: UPSTREAM_URL pointing back at davpush is answered 508 at once, never forwarded
round and round; every request davpush sends upstream carries its (unforgeable) Via mark."""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from app import create_app
from app.gateway.loop import LoopMark
from support import bodies
from support.env import SECRET_KEY
from support.push_receiver import ClientKeys
from support.servers import free_port, serve_wsgi

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALICE = ("alice", "alice-pw")
HANG = 20  # seconds: only a hang detector; a refused loop answers at once
LOOP_SENTENCE = (
    "loops back to davpush (UPSTREAM_URL must be Nextcloud's internal address, "
    "not the public vhost that routes /remote.php/dav/ to davpush)"
)
PUSH_PROPFIND = bodies.PUSH_PROPFIND_DAVX5


def register_body(endpoint: str) -> bytes:
    keys = ClientKeys.generate()
    return bodies.davx5_old(endpoint, keys.p256dh, keys.auth)


@pytest.fixture
def looping(make_services):
    """davpush whose UPSTREAM_URL is its own address."""
    port = free_port()
    services = make_services(f"http://127.0.0.1:{port}")
    handle = serve_wsgi(create_app(services.settings, services), port=port)
    handle.services = services
    handle.dav = lambda path="/": f"{handle.url}/remote.php/dav{path}"
    yield handle
    handle.stop()


@pytest.mark.parametrize("method, headers, body", [
    ("PROPFIND", {"Depth": "1", "Content-Type": "application/xml"}, PUSH_PROPFIND),
    ("PROPFIND", {"Depth": "0"}, None),
    ("OPTIONS", {}, None),
    ("GET", {}, None),
    ("PUT", {"Content-Type": "text/calendar"}, b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n" * 1000),
    ("POST", {"Content-Type": "application/xml"}, None),  # registration: the access check loops
    ("REPORT", {"Depth": "1", "Content-Type": "application/xml"}, b"<x/>"),
])
def test_every_method_is_refused_with_508_at_once(looping, method, headers, body):
    if method == "POST":
        body = register_body("https://push.example.net/ep")
    response = requests.request(method, looping.dav("/calendars/alice/work/"), data=body, headers=headers,
                                auth=ALICE, timeout=HANG)
    assert response.status_code == 508
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "UPSTREAM_URL must be Nextcloud's internal address" in response.text
    assert "X-Davpush-Loop" not in response.headers  # the sender's own 508, not the inner one relayed


def test_loop_is_logged_once_not_per_request(looping, caplog):
    import app.gateway.lane as lane

    lane._last_loop_warning = float("-inf")
    with caplog.at_level(logging.WARNING, logger="davpush.gateway"):
        for _ in range(3):
            assert requests.request("PROPFIND", looping.dav("/"), auth=ALICE, timeout=HANG).status_code == 508
    warnings = [r for r in caplog.records if r.name == "davpush.gateway" and "request loop" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].fields["upstream"] == looping.services.settings.upstream_url
    assert "Authorization" not in str(warnings[0].fields) and "alice-pw" not in str(warnings[0].fields)


def test_healthz_names_the_loop_at_once(looping):
    looping.services.store.heartbeat("w1")
    response = requests.get(looping.url + "/push/healthz", timeout=HANG)
    assert response.status_code == 503
    upstream = response.json()["checks"]["upstream"]
    assert upstream == {"ok": False, "detail": f"{looping.services.settings.upstream_url} {LOOP_SENTENCE}"}


def test_davpush_check_prints_the_loop_sentence(looping, make_env):
    env = dict(os.environ, **make_env(looping.services.settings.upstream_url))
    result = subprocess.run([sys.executable, "-m", "app.cli", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert f"FAIL upstream: {looping.services.settings.upstream_url} {LOOP_SENTENCE}" in result.stdout.splitlines()


def test_check_names_the_upstream_in_other_failures(make_env, redis_client):
    down = f"http://127.0.0.1:{free_port()}"
    env = dict(os.environ, **make_env(down))
    result = subprocess.run([sys.executable, "-m", "app.cli", "check"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert f"FAIL upstream: {down} is unreachable" in result.stdout.splitlines()


def test_forwarded_requests_and_lookups_carry_the_mark(gateway, nextcloud, receiver):
    mark = LoopMark(SECRET_KEY).via_entry
    requests.get(gateway.dav("/calendars/alice/work/"), auth=ALICE, headers={"Via": "1.0 fred, 1.1 p.example"})
    assert nextcloud.requests_for("GET")[-1].header("Via") == f"1.0 fred, 1.1 p.example, {mark}"
    requests.request("PROPFIND", gateway.dav("/calendars/alice/"), data=PUSH_PROPFIND, auth=ALICE,
                     headers={"Depth": "1", "Content-Type": "application/xml"})
    assert nextcloud.requests_for("PROPFIND")[-1].header("Via") == mark
    nextcloud.clear_requests()
    response = requests.post(gateway.dav("/calendars/alice/work/"), auth=ALICE, data=register_body(receiver.endpoint()),
                             headers={"Content-Type": "application/xml"})
    assert response.status_code == 201
    assert [r.header("Via") for r in nextcloud.requests_for("PROPFIND")] == [mark]  # the access check
    from app.ops.checks import check_upstream

    nextcloud.clear_requests()
    assert check_upstream(gateway.services)[0]
    assert nextcloud.requests_for("OPTIONS")[-1].header("Via") == mark


@pytest.mark.parametrize("via", [
    LoopMark("another installation's secret key, 32+ chars").via_entry,
    "1.1 davpush-0123456789abcdef",
    "1.1 davpush",
    "davpush-" + LoopMark(SECRET_KEY).pseudonym,  # one field only: no received-by
])
def test_a_client_cannot_forge_the_mark(gateway, nextcloud, via):
    response = requests.request("PROPFIND", gateway.dav("/calendars/alice/"), auth=ALICE,
                                headers={"Depth": "0", "Via": via})
    assert response.status_code == 207
    assert nextcloud.requests_for("PROPFIND")[-1].header("Via").startswith(via)


def test_chained_installations_are_no_loop_but_one_installation_twice_is(nextcloud, start_gateway):
    inner = start_gateway(nextcloud.url)
    other = start_gateway(inner.url, SECRET_KEY="a different installation's secret key 0123456789")
    assert requests.request("PROPFIND", other.dav("/calendars/alice/"), auth=ALICE,
                            headers={"Depth": "0"}).status_code == 207
    same = start_gateway(inner.url)  # same SECRET_KEY: its processes recognise each other's requests
    response = requests.request("PROPFIND", same.dav("/calendars/alice/"), auth=ALICE, headers={"Depth": "0"},
                                timeout=HANG)
    assert response.status_code == 508


def test_an_upstream_508_of_its_own_is_passed_on(start_gateway):
    def bind_loop(environ, start_response):
        start_response("508 Loop Detected", [("Content-Type", "application/xml"), ("X-Davpush-Loop", "guess")])
        return [b"<d:error xmlns:d='DAV:'/>"]

    with serve_wsgi(bind_loop) as upstream:
        gateway = start_gateway(upstream.url)
        response = requests.request("PROPFIND", gateway.dav("/calendars/alice/"), auth=ALICE, headers={"Depth": "0"})
        assert response.status_code == 508 and response.content == b"<d:error xmlns:d='DAV:'/>"
        from app.ops.checks import check_upstream

        assert check_upstream(gateway.services) == (False, f"{upstream.url} answers 508")


def test_gunicorn_pointed_at_itself_answers_and_stops_promptly(make_env, redis_client):
    """The deployed server (gunicorn, gevent workers): a loop costs one extra hop, not every connection."""
    port = free_port()
    env = dict(os.environ, **make_env(f"http://127.0.0.1:{port}"), PORT=str(port), BIND_HOST="127.0.0.1",
               WEB_CONCURRENCY="2")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "wsgi:app"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(base, server)
        for _ in range(5):
            response = requests.request("PROPFIND", base + "/remote.php/dav/", auth=ALICE, headers={"Depth": "0"},
                                        timeout=HANG)
            assert response.status_code == 508
        health = requests.get(base + "/push/healthz", timeout=HANG).json()
        assert health["checks"]["upstream"]["detail"] == f"{base} {LOOP_SENTENCE}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            _, log = server.communicate(timeout=HANG)  # well below gunicorn's 30 s graceful timeout
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()
            pytest.fail("gunicorn did not stop: requests were still hanging")
    assert server.returncode == 0
    assert log.count("request loop:") >= 1 and "alice-pw" not in log


def _wait_until_up(base: str, process: subprocess.Popen) -> None:
    for _ in range(300):
        if process.poll() is not None:
            raise AssertionError(f"gunicorn exited: {process.stderr.read()}")
        try:
            requests.get(base + "/push/healthz", timeout=HANG)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not start")
