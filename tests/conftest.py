"""Shared fixtures. Tests run against a real Redis (TEST_REDIS_URL, default DB 14 on localhost)."""
from __future__ import annotations

import os

import pytest
import redis

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


WEBHOOK_SECRET = "webhook-secret-for-tests-0123456789"
ADMIN_PASSWORD = "admin-password-for-tests"


@pytest.fixture
def make_env(redis_url, vapid_key_file):
    """Environment dicts for load_settings(); keyword overrides win."""

    def build(upstream_url: str = "http://127.0.0.1:9", **overrides) -> dict:
        env = {
            "REDIS_URL": redis_url,
            "UPSTREAM_URL": upstream_url,
            "PUBLIC_URL": "https://push.example.test",
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "VAPID_PRIVATE_KEY_FILE": vapid_key_file,
            "VAPID_SUBJECT": "mailto:admin@example.test",
            "SECRET_KEY": "secret-key-for-tests-0123456789abcdefghij",
            "ADMIN_PASSWORD": ADMIN_PASSWORD,
            "PUSH_ALLOW_HTTP": "true",
            "PUSH_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        }
        env.update({k: str(v) for k, v in overrides.items()})
        return env

    return build


@pytest.fixture
def make_services(make_env, redis_client):
    """Services built from settings (Redis DB flushed for each test)."""
    from app.config import load_settings
    from app.services import build_services

    def build(upstream_url: str = "http://127.0.0.1:9", **overrides):
        return build_services(load_settings(make_env(upstream_url, **overrides)))

    return build
