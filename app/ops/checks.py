"""Readiness checks shared by `davpush check` and GET /push/healthz."""
from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING

import redis

from ..core.config import ConfigError, load_settings
from ..gateway.upstream import UpstreamLoop, UpstreamUnavailable

if TYPE_CHECKING:
    from ..core.services import Services

WORKER_STALE_SECONDS = 60
CHECK_SECONDS = 1.5  # each check's bound; /push/healthz answers within about that


def check_redis(services: Services) -> tuple[bool, str]:
    from ..core.redis_connect import redis_address, redis_cause

    where = redis_address(services.settings.redis_url)
    try:
        services.redis.ping()
        return True, f"ok ({where})"
    except redis.RedisError as error:
        return False, f"{where} unreachable: {redis_cause(error)}"


def check_vapid(services: Services) -> tuple[bool, str]:
    key = services.signer.public_key
    return len(key) == 87, f"public key {key[:12]}…"


def check_upstream(services: Services) -> tuple[bool, str]:
    where = services.settings.upstream_url
    root = (services.settings.dav_prefix or "") + "/"
    try:
        response = services.upstream.send("OPTIONS", root, {}, None, timeout=CHECK_SECONDS)
        response.close()
    except UpstreamLoop:
        return False, (
            f"{where} loops back to davpush (UPSTREAM_URL must be Nextcloud's internal address, "
            f"not the public vhost that routes {root} to davpush)"
        )
    except UpstreamUnavailable as error:
        return False, f"{where} did not answer in time" if error.status == 504 else f"{where} is unreachable"
    except Exception as error:  # anything else the HTTP stack raises
        return False, f"{where} failed: {error or type(error).__name__}"
    if response.status >= 500:
        return False, f"{where} answers {response.status}"
    return True, f"{where} answers {response.status}"


def check_push_proxy(services: Services) -> tuple[bool, str]:
    """PUSH_PROXY, when set, accepts a TCP connection (what it allows beyond that is its own policy)."""
    from ..delivery.egress_proxy import parse_proxy_url

    proxy = parse_proxy_url(services.settings.push_proxy)  # validated when the settings were loaded
    if proxy is None:
        return True, "not set (pushes go out directly)"
    host, _, port = proxy.url.split("://", 1)[1].rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CHECK_SECONDS).close()
    except OSError as error:
        return False, f"{proxy.label} unreachable: {error.strerror or type(error).__name__}"
    return True, f"{proxy.label} accepts connections"


def check_workers(services: Services) -> tuple[bool, str]:
    try:
        beats = services.store.heartbeats()
    except redis.RedisError:
        return False, "unknown (Redis unreachable)"
    fresh = [name for name, at in beats.items() if time.time() - at < WORKER_STALE_SECONDS]
    return bool(fresh), f"{len(fresh)} alive" if fresh else "no worker heartbeat in the last minute"


CHECKS = (("redis", check_redis), ("vapid_key", check_vapid), ("upstream", check_upstream),
          ("push_proxy", check_push_proxy), ("workers", check_workers))


def collect(services: Services, only: tuple = ()) -> dict:
    """Every check at once, each bounded: the answer comes within CHECK_SECONDS (plus a little)
    whatever hangs (Redis, upstream); a check that did not finish in time fails as "timed out"."""
    chosen = [(name, check) for name, check in CHECKS if not only or name in only]
    pool = ThreadPoolExecutor(max_workers=len(chosen) or 1, thread_name_prefix="check")
    futures = {name: pool.submit(check, services) for name, check in chosen}
    deadline = time.monotonic() + CHECK_SECONDS
    results = {}
    for name, future in futures.items():
        try:
            ok, detail = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            ok, detail = False, f"timed out after {CHECK_SECONDS:g} s"
        except Exception as error:
            ok, detail = False, f"failed: {type(error).__name__}"
        results[name] = {"ok": ok, "detail": detail}
    pool.shutdown(wait=False)
    return results


RELEASE_CHECKS = ("redis", "vapid_key")
# Reported by `davpush check` but not failing it: the check usually runs before the worker starts.
ADVISORY_CHECKS = ("workers",)


def run_checks(out, only: tuple = ()) -> int:
    """`davpush check`: one line per check; exit 0 only when every required check passes."""
    from ..core.services import build_services

    try:
        settings = load_settings()
        services = build_services(settings)
    except ConfigError as error:
        out(f"FAIL settings: {error}")
        return 1
    except Exception as error:  # e.g. an unreadable key
        out(f"FAIL settings: {error}")
        return 1
    out("ok   settings")
    failed = False
    for name, result in collect(services, only).items():
        advisory = name in ADVISORY_CHECKS
        label = "ok  " if result["ok"] else ("warn" if advisory else "FAIL")
        out(f"{label} {name}: {result['detail']}")
        failed |= not result["ok"] and not advisory
    return 1 if failed else 0
