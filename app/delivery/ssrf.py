"""SSRF guard for push endpoints, applied at registration and again at send time.

Push endpoints are chosen by the subscriber, so every address the service
connects to must be public unless an operator allowed its network explicitly.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_ENDPOINT_BYTES = 1000

# Non-global ranges that ipaddress' is_global does not cover, after requests-hardened.
_EXTRA_BLOCKED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10",
        "192.0.0.0/24",
        "192.88.99.0/24",
        "64:ff9b::/96",
        "64:ff9b:1::/48",
        "2002::/16",
        "2001:20::/28",
        "5f00::/16",
        "3fff::/20",
    )
)


class BlockedEndpoint(ValueError):
    """The endpoint is not acceptable; str() says why, without echoing the URL."""


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int

    @property
    def origin(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def check_shape(url: str, *, allow_http: bool) -> Endpoint:
    """Scheme, length and form of a push endpoint URL (no DNS)."""
    if len(url.encode("utf-8")) > MAX_ENDPOINT_BYTES:
        raise BlockedEndpoint(f"push-resource is longer than {MAX_ENDPOINT_BYTES} bytes")
    if any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise BlockedEndpoint("push-resource contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BlockedEndpoint("push-resource is not a valid URL") from None
    allowed = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in allowed:
        raise BlockedEndpoint("push-resource must be an absolute https URL" + (" (or http)" if allow_http else ""))
    if not parts.hostname:
        raise BlockedEndpoint("push-resource has no host")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise BlockedEndpoint("push-resource must not contain user information")
    if parts.fragment:
        raise BlockedEndpoint("push-resource must not contain a fragment")
    default = 443 if parts.scheme == "https" else 80
    return Endpoint(parts.scheme, parts.hostname.lower(), port or default)


def address_allowed(address: str, allowed_networks: tuple = ()) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if any(ip in network for network in allowed_networks):
        return True
    if not ip.is_global or ip.is_multicast:
        return False
    return not any(ip in network for network in _EXTRA_BLOCKED)


def resolve(endpoint: Endpoint, allowed_networks: tuple = (), resolver=socket.getaddrinfo) -> list[str]:
    """Addresses of the endpoint, all of which pass the guard; raises if any does not.

    Refusing the whole name when one address is private stops a DNS answer from
    mixing a public decoy with an internal target.
    """
    try:
        infos = resolver(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise BlockedEndpoint("the push-resource host name does not resolve") from None
    addresses = []
    for info in infos:
        address = info[4][0]
        if not address_allowed(address, allowed_networks):
            raise BlockedEndpoint("the push-resource resolves to a private, loopback or reserved address")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise BlockedEndpoint("the push-resource host name does not resolve")
    return addresses


def check_endpoint(url: str, *, allow_http: bool, allowed_networks: tuple = ()) -> Endpoint:
    """The full registration-time check: shape plus resolved addresses."""
    endpoint = check_shape(url, allow_http=allow_http)
    resolve(endpoint, allowed_networks)
    return endpoint
