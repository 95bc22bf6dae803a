"""Shared fixtures. Tests run against a real Redis (TEST_REDIS_URL, default DB 14 on localhost)."""
from __future__ import annotations

import os

import pytest
import redis

from support.env import service_settings

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.exit(f"tests need a Redis at {TEST_REDIS_URL} (set TEST_REDIS_URL or start redis-server)", returncode=3)
    return TEST_REDIS_URL


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def vapid_key_file(tmp_path_factory) -> str:
    from app.delivery.vapid import generate_key_file

    path = tmp_path_factory.mktemp("vapid") / "vapid.pem"
    generate_key_file(str(path))
    return str(path)




@pytest.fixture
def make_env(redis_url, vapid_key_file):
    """Environment dicts for load_settings(); keyword overrides win."""

    def build(upstream_url: str = "http://127.0.0.1:9", **overrides) -> dict:
        env = {
            **service_settings(redis_url, upstream_url, vapid_key_file),
            # a job waits for every answer unless a test is about slow push services (the machine may be busy)
            "PUSH_STRAGGLER_SECONDS": "5",
        }
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    return build


@pytest.fixture
def make_services(make_env, redis_client):
    """Services built from settings (Redis DB flushed for each test)."""
    from app.core.config import load_settings
    from app.core.services import build_services

    def build(upstream_url: str = "http://127.0.0.1:9", **overrides):
        return build_services(load_settings(make_env(upstream_url, **overrides)))

    return build


@pytest.fixture
def nextcloud():
    from support.nextcloud_stub import NextcloudStub

    stub = NextcloudStub().start()
    yield stub
    stub.stop()


@pytest.fixture
def receiver():
    from support.push_receiver import PushReceiver

    push_receiver = PushReceiver().start()
    yield push_receiver
    push_receiver.stop()


class Gateway:
    """davpush's web app served on a real port in front of an upstream."""

    def __init__(self, services, handle):
        self.services = services
        self.url = handle.url
        self._handle = handle

    def dav(self, path: str = "/") -> str:
        return self.url + self.services.settings.dav_prefix + path

    def location_to_local(self, location: str) -> str:
        return location.replace(self.services.settings.public_base, self.url)

    def stop(self):
        self._handle.stop()


@pytest.fixture
def start_gateway(make_services):
    from app import create_app
    from support.servers import serve_wsgi

    started = []

    def start(upstream_url: str, **overrides) -> Gateway:
        services = make_services(upstream_url, **overrides)
        gateway = Gateway(services, serve_wsgi(create_app(services.settings, services)))
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def gateway(nextcloud, start_gateway) -> Gateway:
    return start_gateway(nextcloud.url)


@pytest.fixture
def run_worker():
    """Run queued jobs in this process (burst), as a SimpleWorker with the scheduler would."""
    from app.jobs import runtime
    from app.jobs.worker import run_worker as run

    def drain(services):
        runtime.use_context(services)
        run(burst=True)

    return drain
