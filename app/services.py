"""The long-lived objects a process needs, built once from the settings."""
from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue
from rq.serializers import JSONSerializer

from .collections import CollectionResolver
from .config import Settings
from .delivery.vapid import VapidSigner, load_key
from .gateway.loop import LoopMark
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


def redis_client(url: str, timeout: float | None) -> redis.Redis:
    """A client whose commands fail after `timeout` seconds instead of hanging with Redis.

    One immediate retry on a connection error replaces a pooled connection that died with a
    Redis restart; timeouts are not retried, so a hung Redis costs one timeout, not several.
    `timeout=None` is for RQ's worker connection, whose blocking dequeue RQ sizes itself.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout or 5,
        socket_timeout=timeout,
        health_check_interval=30,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )


def build_services(settings: Settings) -> Services:
    client = redis_client(settings.redis_url, settings.redis_socket_timeout)
    return Services(
        settings=settings,
        redis=client,
        store=Store(client, settings.redis_prefix),
        signer=VapidSigner(load_key(settings.vapid_private_key_file), settings.vapid_subject),
        resolver=CollectionResolver(settings.dav_prefix, settings.upstream_flavor),
        upstream=Upstream(settings.upstream_url, timeout=settings.upstream_timeout, verify_tls=settings.upstream_verify_tls,
                          mark=LoopMark(settings.secret_key)),
        queue=Queue(settings.queue_name, connection=client, serializer=JSONSerializer),
    )
