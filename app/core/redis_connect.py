"""Connecting to Redis: one place for the URL forms, timeouts, TLS and Sentinel.

Every process (web, worker, its scheduler thread, the dashboard, the CLI) builds its clients
here, so they all agree on how to reach Redis and how long a command may take.

URL forms: redis://, rediss:// (TLS), unix://, and
redis+sentinel://[:password@]host:port[,host:port…]/<service>[/<db>]: the master of <service> as
the Sentinels name it, found again after a failover without restarting anything.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"
SCHEMES = ("redis", "rediss", "unix", SENTINEL_SCHEME)


class RedisUrlError(ValueError):
    """The URL cannot be used; str() says why without echoing a password."""


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    password: str | None = field(default=None, repr=False)


def parse_sentinel_url(url: str) -> SentinelTarget:
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise RedisUrlError(f"not a {SENTINEL_SCHEME}:// URL")
    credentials, _, hosts = parts.netloc.rpartition("@")
    password = unquote(credentials.partition(":")[2]) if credentials else None
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise RedisUrlError(f"{item.strip()!r} is not host:port (Sentinels listen on 26379 by default)")
        sentinels.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise RedisUrlError("the path must be /<service>[/<db>], the master's name as the Sentinels know it")
    if len(path) == 2 and not path[1].isdigit():
        raise RedisUrlError(f"the database {path[1]!r} is not a number")
    return SentinelTarget(tuple(sentinels), unquote(path[0]), int(path[1]) if len(path) == 2 else 0, password or None)


def check_url(url: str) -> None:
    """Raise RedisUrlError when the URL has an unknown scheme or a malformed Sentinel part."""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise RedisUrlError(f"must start with {', '.join(s + '://' for s in SCHEMES)}")
    if scheme == SENTINEL_SCHEME:
        parse_sentinel_url(url)


def redis_client(url: str, timeout: float | None, ssl_cert_reqs: str = "required",
                 sentinel_password: str | None = None) -> redis.Redis:
    """A client whose commands fail after `timeout` seconds instead of hanging with Redis.

    One immediate retry on a connection error replaces a pooled connection that died with a
    Redis restart (or, with Sentinel, asks the Sentinels for the new master); timeouts are not
    retried, so a hung Redis costs one timeout, not several. `timeout=None` is for RQ's worker
    connection, whose blocking dequeue RQ sizes itself. `ssl_cert_reqs="none"`
    (REDIS_SSL_CERT_REQS) accepts the self-signed certificates of managed Redis (rediss://).
    """
    options: dict[str, Any] = dict(
        socket_connect_timeout=timeout or 5,
        socket_timeout=timeout,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    )
    if not url.startswith("unix://"):  # redis-py's unix-socket connections refuse the option
        options["socket_keepalive"] = True
    if url.startswith(SENTINEL_SCHEME + "://"):
        target = parse_sentinel_url(url)
        sentinel_options: dict[str, Any] = {"socket_timeout": timeout or 5, "socket_connect_timeout": timeout or 5}
        if sentinel_password:
            sentinel_options["password"] = sentinel_password
        sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
        return sentinel.master_for(target.service, db=target.db, password=target.password, **options)
    if url.startswith("rediss://"):
        options["ssl_cert_reqs"] = ssl_cert_reqs
    return redis.Redis.from_url(url, **options)


def redis_address(url: str) -> str:
    """The Redis URL without credentials, for messages and logs."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return f"unix://{parts.path}"
        if parts.scheme == SENTINEL_SCHEME:
            return f"{SENTINEL_SCHEME}://{parts.netloc.rpartition('@')[2]}{parts.path}"
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
