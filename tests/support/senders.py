"""Building blocks for tests of the push sender (app/delivery/sender.py): senders that are closed
after the test, push requests, and getaddrinfo stand-ins."""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from app.delivery.sender import PushRequest, PushSender

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
VAPID = "vapid t=T,k=K"

Resolver = Callable[..., list[tuple[Any, ...]]]


@contextmanager
def sender_maker(**defaults: Any) -> Iterator[Callable[..., PushSender]]:
    """make(**overrides) builds a PushSender (loopback allowed, plain http allowed, the given
    defaults); every sender made is closed on exit."""
    made: list[PushSender] = []

    def make(**overrides: Any) -> PushSender:
        options = dict(concurrency=8, per_origin=4, connect_timeout=2, read_timeout=2, allow_http=True,
                       allowed_networks=LOOPBACK)
        options.update(defaults)
        options.update(overrides)
        made.append(PushSender(**options))
        return made[-1]

    try:
        yield make
    finally:
        for each in made:
            each.close()


def push_request(url: str, sub_id: str = "s", body: bytes = b"encrypted", headers: dict[str, str] | None = None,
                 make_body: Callable[[], bytes] | None = None) -> PushRequest:
    """One push to `url` whose (already "encrypted") body is `body`."""
    return PushRequest(sub_id, url, make_body or (lambda: body), {"TTL": "60"} if headers is None else headers)


def _answer(address: str, port: int) -> list[tuple[Any, ...]]:
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]


def resolving_to(*addresses: str) -> Resolver:
    """getaddrinfo stand-in: every name has `addresses`, in this order."""

    def resolve(host: str, port: int, type: int = 0) -> list[tuple[Any, ...]]:
        return [entry for address in addresses for entry in _answer(address, port)]

    return resolve


def names(mapping: dict[str, str]) -> Resolver:
    """getaddrinfo stand-in: host name -> its one address; other names do not resolve."""

    def resolve(host: str, port: int, type: int = 0) -> list[tuple[Any, ...]]:
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return _answer(mapping[host], port)

    return resolve


def pinned(addresses: dict[str, str]) -> Resolver:
    """getaddrinfo stand-in reading `addresses` at each lookup (a dict the test may change)."""

    def resolve(host: str, port: int, type: int = 0) -> list[tuple[Any, ...]]:
        return _answer(addresses[host], port)

    return resolve
