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
