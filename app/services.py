"""The long-lived objects a process needs, built once from the settings."""
from __future__ import annotations

from dataclasses import dataclass

from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer

from .collections import CollectionResolver
from .config import Settings
from .delivery.vapid import VapidSigner, parse_key
from .gateway.upstream import Upstream
from .store import Store


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    store: Store
    signer: VapidSigner
    resolver: CollectionResolver
    upstream: Upstream
    queue: Queue


def redis_client(url: str, timeout: float | None, ssl_cert_reqs: str = "required") -> redis.Redis:
    """A client whose commands fail after `timeout` seconds instead of hanging with Redis.

    One immediate retry on a connection error replaces a pooled connection that died with a
    Redis restart; timeouts are not retried, so a hung Redis costs one timeout, not several.
    `timeout=None` is for RQ's worker connection, whose blocking dequeue RQ sizes itself.
    `ssl_cert_reqs="none"` (REDIS_SSL_CERT_REQS) accepts the self-signed certificates of
    managed Redis (rediss://); every process builds its clients here, so all of them agree.
    """
    tls = {"ssl_cert_reqs": ssl_cert_reqs} if url.startswith("rediss://") else {}
    return redis.Redis.from_url(
        url,
        **tls,
        socket_connect_timeout=timeout or 5,
        socket_timeout=timeout,
        health_check_interval=30,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


def redis_address(url: str) -> str:
    """The Redis URL without credentials, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"
    except ValueError:
        return "(unparsable REDIS_URL)"


def redis_cause(error: BaseException) -> str:
    """Why a Redis command failed, in words ('Connection refused', 'timed out', ...)."""
    if isinstance(error, redis.TimeoutError):
        return "timed out (is Redis paused or overloaded?)"
    text = str(error).strip() or type(error).__name__
    return text.split(". ", 1)[-1].rstrip(".") if "connecting to" in text else text


def build_services(settings: Settings) -> Services:
    client = redis_client(settings.redis_url, settings.redis_socket_timeout, settings.redis_ssl_cert_reqs)
    return Services(
        settings=settings,
        redis=client,
        store=Store(client, settings.redis_prefix),
        signer=VapidSigner(parse_key(settings.vapid_private_key_pem.encode(), "the VAPID key"), settings.vapid_subject),
        resolver=CollectionResolver(settings.dav_prefix, settings.upstream_flavor),
        upstream=Upstream(settings.upstream_url, timeout=settings.upstream_timeout, verify_tls=settings.upstream_verify_tls),
        queue=Queue(settings.queue_name, connection=client, serializer=JSONSerializer),
    )
