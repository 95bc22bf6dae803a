"""The long-lived objects a process needs, built once from the settings."""
from __future__ import annotations

from dataclasses import dataclass

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from ..delivery.vapid import VapidSigner, parse_key
from ..gateway.collections import CollectionResolver
from ..gateway.loop import LoopMark
from ..gateway.upstream import Upstream
from ..store import Store
from .config import Settings
from .redis_connect import redis_client


@dataclass
class Services:
    settings: Settings
    redis: redis.Redis
    store: Store
    signer: VapidSigner
    resolver: CollectionResolver
    upstream: Upstream
    queue: Queue


def build_services(settings: Settings) -> Services:
    client = redis_client(settings.redis_url, settings.redis_socket_timeout, settings.redis_ssl_cert_reqs,
                          settings.redis_sentinel_password)
    return Services(
        settings=settings,
        redis=client,
        store=Store(client, settings.redis_prefix),
        signer=VapidSigner(parse_key(settings.vapid_private_key_pem.encode(), "the VAPID key"), settings.vapid_subject),
        resolver=CollectionResolver(settings.dav_prefix, settings.upstream_flavor),
        upstream=Upstream(settings.upstream_url, timeout=settings.upstream_timeout, verify_tls=settings.upstream_verify_tls,
                          mark=LoopMark(settings.secret_key)),
        queue=Queue(settings.queue_name, connection=client, serializer=JSONSerializer),
    )
