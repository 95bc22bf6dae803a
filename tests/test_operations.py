"""Operations: health, metrics, dashboard, CLI, and what logs may (not) contain."""
import base64
import json
import logging
import os
import subprocess
import sys
import time

import pytest
import requests

from app import create_app
from app.cli import main
from app.protocol.subscription import Subscription
from app.protocol.triggers import Triggers
from support import bodies
from support.env import ADMIN_PASSWORD, WEBHOOK_SECRET
from support.payloads import object_event
from support.push_receiver import ClientKeys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ADMIN = basic("admin", ADMIN_PASSWORD)


@pytest.fixture
def client(nextcloud, make_services):
    services = make_services(nextcloud.url)
    return create_app(services.settings, services).test_client(), services


def test_healthz_reports_each_check_and_fails_without_workers(client):
    http, services = client
    response = http.get("/push/healthz")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert checks["redis"]["ok"] and checks["vapid_key"]["ok"] and checks["upstream"]["ok"]
    assert not checks["workers"]["ok"]
    services.store.heartbeat("w1")
    response = http.get("/push/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"


def test_healthz_fails_when_upstream_is_down(make_services):
    from support.servers import free_port

    services = make_services(f"http://127.0.0.1:{free_port()}")
    services.store.heartbeat("w1")
    response = create_app(services.settings, services).test_client().get("/push/healthz")
    assert response.status_code == 503 and not response.json["checks"]["upstream"]["ok"]


@pytest.mark.parametrize("headers", [
    {}, basic("admin", "wrong-password!!"), basic("root", ADMIN_PASSWORD), {"Authorization": "Bearer x"},
    {"Authorization": "Basic \u00e9t\u00e9=="}, {"Authorization": "Basic !!!"}, {"Authorization": "Basic /w=="},
])
def test_metrics_and_dashboard_need_the_admin_login(client, headers):
    http, _ = client
    for path in ("/push/metrics", "/push/rq/"):
        response = http.get(path, headers=headers)
        assert response.status_code == 401 and "Basic" in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("value, expected", [
    ("Basic " + base64.b64encode("jos\u00e9:p\u00e4ss:word".encode()).decode(), ("jos\u00e9", "p\u00e4ss:word")),
    ("basic " + base64.b64encode(b"alice:").decode(), ("alice", "")),
    ("Basic \u00e9t\u00e9==", None), ("Basic /w==", None), ("Bearer abc", None), ("", None), (None, None),
])
def test_basic_credentials_never_fail_on_odd_input(value, expected):
    from app.net.http_auth import basic_credentials

    assert basic_credentials(value) == expected


def test_admin_pages_are_off_without_a_password(nextcloud, make_services):
    services = make_services(nextcloud.url, ADMIN_PASSWORD="")
    http = create_app(services.settings, services).test_client()
    assert http.get("/push/metrics", headers=basic("admin", "")).status_code == 403
    assert http.get("/push/rq/", headers=basic("admin", "")).status_code == 403


def test_metrics_expose_the_counters(client):
    http, services = client
    http.post("/push/webhooks/nextcloud", data=json.dumps(object_event()), headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"})
    services.store.upsert(Subscription(id="s", user="u", collection="c", topic="t", href="/", push_resource="https://p/x",
                                       public_key="k", auth_secret="a", triggers=Triggers(content_depth="1"),
                                       expires=int(time.time()) + 60, created=0, location="l"))
    text = http.get("/push/metrics", headers=ADMIN).get_data(as_text=True)
    assert 'davpush_webhook_events_total{event="CalendarObjectCreatedEvent",outcome="no-subscribers"} 1.0' in text
    assert "davpush_subscriptions_live 1.0" in text
    assert "davpush_queue_depth 0.0" in text
    assert 'davpush_push_latency_seconds_bucket{le="+Inf"}' in text


def test_dashboard_works_for_the_admin_and_guards_state_changes(client):
    http, _ = client
    assert http.get("/push/rq/", headers=ADMIN).status_code == 200
    assert http.get("/push/rq/0/data/queues.json", headers=ADMIN).status_code == 200
    same_origin = {"Origin": "http://localhost", **ADMIN}
    assert http.post("/push/rq/queue/davpush/queued/empty", headers=same_origin).status_code == 403  # destructive: off
    assert http.post("/push/rq/job/x/requeue", headers={"Origin": "https://evil.example", **ADMIN}).status_code == 403
    assert http.get("/push/rq/requeue/davpush", headers=ADMIN).status_code == 403  # state change by GET
    assert http.post("/push/rq/requeue/davpush", headers=same_origin).status_code == 200


def test_dashboard_delete_can_be_enabled(nextcloud, make_services):
    services = make_services(nextcloud.url, RQ_DASHBOARD_ALLOW_DELETE="true")
    http = create_app(services.settings, services).test_client()
    assert http.post("/push/rq/queue/davpush/queued/empty", headers={"Origin": "http://localhost", **ADMIN}).status_code == 200


def test_request_log_has_ids_and_no_secrets(gateway, receiver, caplog):
    keys = ClientKeys.generate()
    endpoint = receiver.endpoint("/up/secret-capability-token")
    with caplog.at_level(logging.DEBUG):
        response = requests.post(gateway.dav("/calendars/alice/work/"), data=bodies.davx5_old(endpoint, keys.p256dh, keys.auth),
                                 auth=("alice", "alice-pw"), headers={"Content-Type": bodies.XML_UTF8, "X-Request-Id": "req-123"})
        requests.post(gateway.url + "/push/webhooks/nextcloud", data=json.dumps(object_event()),
                      headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"})
    assert response.headers["X-Request-Id"] == "req-123"
    text = "\n".join(r.getMessage() + " " + json.dumps(getattr(r, "fields", {}), default=str) for r in caplog.records)
    assert "subscription registered" in text and "status" in text
    for secret in ("alice-pw", base64.b64encode(b"alice:alice-pw").decode(), WEBHOOK_SECRET, "secret-capability-token", keys.auth):
        assert secret not in text


def test_json_log_lines(capsys):
    from app.core.logs import log, setup_logging

    setup_logging("json", "INFO")
    log(logging.getLogger("davpush.test"), logging.INFO, "hello", endpoint="https://p#1234")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    entry = json.loads(line)
    assert entry["msg"] == "hello" and entry["endpoint"] == "https://p#1234" and entry["level"] == "info"
    setup_logging("text", "INFO")


# -- CLI -----------------------------------------------------------------------------------------


def cli_env(make_env, upstream, **overrides):
    return dict(os.environ, **make_env(upstream, **overrides))


def run_cli(args, env):
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_check_passes_and_fails_with_clear_lines(nextcloud, make_env, redis_client):
    from app.store import Store

    before_worker = run_cli(["check"], cli_env(make_env, nextcloud.url))  # the README runs it before starting
    assert before_worker.returncode == 0, before_worker.stdout
    assert "warn workers: no worker heartbeat" in before_worker.stdout
    Store(redis_client).heartbeat("w1")
    ok = run_cli(["check"], cli_env(make_env, nextcloud.url))
    assert ok.returncode == 0, ok.stdout
    assert [line.split()[0] for line in ok.stdout.splitlines()] == ["ok"] * 6
    assert "ok   push_proxy: not set" in ok.stdout
    bad = run_cli(["check"], cli_env(make_env, "http://127.0.0.1:9"))
    assert bad.returncode == 1 and "FAIL upstream" in bad.stdout
    release = run_cli(["check", "--release"], cli_env(make_env, "http://127.0.0.1:9"))
    assert release.returncode == 0 and "upstream" not in release.stdout
    config = run_cli(["check"], cli_env(make_env, nextcloud.url, SECRET_KEY="short"))
    assert config.returncode == 1 and config.stdout.startswith("FAIL settings: SECRET_KEY is too short")


def test_subscriptions_list_stats_and_purge(make_env, redis_client, monkeypatch, capsys):
    from app.store import Store

    store = Store(redis_client)
    now = int(time.time())
    for sub_id, expires in (("live1", now + 3600), ("old1", now - 10)):
        store.upsert(Subscription(id=sub_id, user="/u/alice", collection="calendars/alice/work", topic="t", href="/",
                                  push_resource=f"https://push.example/secret-{sub_id}", public_key="k", auth_secret="a",
                                  triggers=Triggers(content_depth="1"), expires=expires, created=0, location=sub_id))
    for key, value in make_env().items():
        monkeypatch.setenv(key, value)
    assert main(["subscriptions", "list"]) == 0
    out = capsys.readouterr().out
    assert "live1" in out and "old1" not in out and "secret-live1" not in out and "https://push.example#" in out
    assert main(["subscriptions", "list", "--all", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["id"] for r in rows} == {"live1", "old1"}
    assert main(["subscriptions", "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["live"] == 1 and stats["expired"] == 1 and stats["by_origin"] == {"https://push.example": 1}
    assert main(["subscriptions", "purge"]) == 0
    assert "removed 1" in capsys.readouterr().out
    assert store.count_all() == 1


def test_housekeeping_beats_and_enqueues_the_purge_once_per_interval(make_services):
    from app.jobs.worker import housekeeping_round

    services = make_services()
    housekeeping_round(services, "w-test")
    housekeeping_round(services, "w-other")  # a second worker in the same interval does not purge again
    assert set(services.store.heartbeats()) == {"w-test", "w-other"}
    assert [job.func_name for job in services.queue.jobs] == ["app.jobs.purge_expired"]  # the dotted name queued jobs keep


def test_rediss_urls_are_accepted(make_env):
    from app.core.config import load_settings
    from app.core.services import build_services

    services = build_services(load_settings(make_env(REDIS_URL="rediss://:pw@redis.example:6380/0")))
    assert services.redis.connection_pool.connection_class.__name__ == "SSLConnection"


def test_redis_outage_is_a_503_not_a_500(nextcloud, make_services):
    services = make_services(nextcloud.url)
    services.store.redis.connection_pool.reset()
    services.store.redis.connection_pool.connection_kwargs.update(port=1, host="127.0.0.1", socket_connect_timeout=0.5)
    http = create_app(services.settings, services).test_client()
    response = http.post("/push/webhooks/nextcloud", data=json.dumps(object_event()), headers={"Authorization": f"Bearer {WEBHOOK_SECRET}"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"


def test_unsafe_request_ids_are_replaced(client):
    http, _ = client
    response = http.get("/push/healthz", headers={"X-Request-Id": "bad id\" injected=1"})
    assert response.headers["X-Request-Id"] != "bad id\" injected=1" and len(response.headers["X-Request-Id"]) == 16


def test_delivery_log_carries_the_request_id_of_the_change(gateway, receiver, run_worker, caplog):
    keys = ClientKeys.generate()
    requests.post(gateway.dav("/calendars/alice/work/"), data=bodies.davx5_old(receiver.endpoint(), keys.p256dh, keys.auth),
                  auth=("alice", "alice-pw"), headers={"Content-Type": bodies.XML_UTF8})
    requests.post(gateway.url + "/push/webhooks/nextcloud", data=json.dumps(object_event()),
                  headers={"Authorization": f"Bearer {WEBHOOK_SECRET}", "X-Request-Id": "nc-webhook-42"})
    with caplog.at_level(logging.INFO, logger="davpush.delivery"):
        run_worker(gateway.services)
    from app.core.logs import request_id

    assert request_id.get() == "nc-webhook-42"
    assert any(r.getMessage() == "topic delivered" for r in caplog.records)


def test_demo_runs_end_to_end(redis_url):
    env = dict(os.environ, REDIS_URL=redis_url)
    result = subprocess.run([sys.executable, "-m", "app.cli", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<P:push-message" in result.stdout and "http://radicale.org/ns/sync/" in result.stdout
    assert "push received" in result.stdout


def test_check_and_healthz_say_whether_the_push_proxy_accepts_connections(nextcloud, make_env, make_services, redis_client):
    import socket

    from app.store import Store
    from support.servers import free_port

    Store(redis_client).heartbeat("w1")
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        up = f"http://proxyuser:proxy-secret@127.0.0.1:{listener.getsockname()[1]}"
        ok = run_cli(["check"], cli_env(make_env, nextcloud.url, PUSH_PROXY=up))
        assert ok.returncode == 0, ok.stdout
        assert f"ok   push_proxy: http://127.0.0.1:{listener.getsockname()[1]} accepts connections" in ok.stdout
    finally:
        listener.close()
    down = f"http://proxyuser:proxy-secret@127.0.0.1:{free_port()}"
    bad = run_cli(["check"], cli_env(make_env, nextcloud.url, PUSH_PROXY=down))
    assert bad.returncode == 1 and "FAIL push_proxy: http://127.0.0.1:" in bad.stdout and "unreachable" in bad.stdout
    assert "proxy-secret" not in bad.stdout + bad.stderr and "proxyuser" not in bad.stdout + bad.stderr
    services = make_services(nextcloud.url, PUSH_PROXY=down)
    response = create_app(services.settings, services).test_client().get("/push/healthz")
    assert response.status_code == 503 and not response.json["checks"]["push_proxy"]["ok"]
    assert "proxy-secret" not in response.get_data(as_text=True)
