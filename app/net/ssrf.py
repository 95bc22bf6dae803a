"""SSRF guard for push endpoints, applied at registration and again at send time.

Push endpoints are chosen by the subscriber, so every address the service
connects to must be public unless an operator allowed its network explicitly.

The address rules (`refusal`), in order:

1. An address inside PUSH_ALLOWED_NETWORKS is allowed, whatever it is.
2. IPv4 is refused when it lies in a special-purpose range (`SPECIAL_PURPOSE` below)
   or anything else Python's `ipaddress` does not call global; other IPv4 is allowed.
3. IPv6 that embeds an IPv4 address the way a host or translator would reach it is
   judged as that IPv4 address (rules 1 and 2): IPv4-mapped `::ffff:0:0/96`,
   IPv4-compatible `::/96` (except `::` and `::1`), IPv4-translated `::ffff:0:0:0/96`
   and the well-known NAT64 prefix `64:ff9b::/96` (globally reachable per IANA when the
   IPv4 address is). So `::ffff:127.0.0.1` passes exactly when 127.0.0.1 would.
4. IPv6 tunnel and local translation forms are refused, whatever they embed: local-use
   NAT64 `64:ff9b:1::/48`, 6to4 `2002::/16` and Teredo `2001::/32`. The embedded IPv4
   (for 64:ff9b:1::/48 assuming the /96 layout; for Teredo the client address) is decoded
   only to name it in the reason.
5. Other IPv6 is refused outside global unicast `2000::/3` (this covers site-local
   `fec0::/10`, unique-local, link-local and multicast) and inside any special-purpose
   range; the rest is allowed.

Reasons never contain the URL, only the addresses and ranges involved.
"""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MAX_ENDPOINT_BYTES = 1000

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# IANA "IPv4 Special-Purpose Address Registry" and "IPv6 Special-Purpose Address Registry"
# (iana.org/assignments/iana-ipv4-special-registry, …/iana-ipv6-special-registry), every entry,
# globally reachable or not; plus multicast and the deprecated IPv6 forms of the "IPv6 Address
# Space" registry (site-local, IPv4-compatible) and RFC 2765's IPv4-translated prefix.
# Each name carries its article, as it is used in refusal reasons.
SPECIAL_PURPOSE = tuple(
    (ipaddress.ip_network(network), name)
    for network, name in (
        ("0.0.0.0/8", "a 'this network'"),
        ("10.0.0.0/8", "a private-use"),
        ("100.64.0.0/10", "a shared (carrier-grade NAT)"),
        ("127.0.0.0/8", "a loopback"),
        ("169.254.0.0/16", "a link-local"),
        ("172.16.0.0/12", "a private-use"),
        ("192.0.0.0/24", "an IETF protocol assignment"),
        ("192.0.2.0/24", "a documentation"),
        ("192.31.196.0/24", "an AS112"),
        ("192.52.193.0/24", "an AMT"),
        ("192.88.99.0/24", "a 6to4 relay anycast"),
        ("192.168.0.0/16", "a private-use"),
        ("192.175.48.0/24", "an AS112 direct delegation"),
        ("198.18.0.0/15", "a benchmarking"),
        ("198.51.100.0/24", "a documentation"),
        ("203.0.113.0/24", "a documentation"),
        ("224.0.0.0/4", "a multicast"),
        ("240.0.0.0/4", "a reserved"),
        ("255.255.255.255/32", "a limited broadcast"),
        ("::/128", "the unspecified"),
        ("::1/128", "a loopback"),
        ("::/96", "an IPv4-compatible"),
        ("::ffff:0:0/96", "an IPv4-mapped"),
        ("::ffff:0:0:0/96", "an IPv4-translated"),
        ("64:ff9b::/96", "a NAT64"),
        ("64:ff9b:1::/48", "a local-use NAT64"),
        ("100::/64", "a discard-only"),
        ("100:0:0:1::/64", "a dummy"),
        ("2001::/23", "an IETF protocol assignment"),
        ("2001::/32", "a Teredo"),
        ("2001:2::/48", "a benchmarking"),
        ("2001:3::/32", "an AMT"),
        ("2001:4:112::/48", "an AS112"),
        ("2001:10::/28", "an ORCHID"),
        ("2001:20::/28", "an ORCHIDv2"),
        ("2001:30::/28", "a DRIP"),
        ("2001:db8::/32", "a documentation"),
        ("2002::/16", "a 6to4"),
        ("2620:4f:8000::/48", "an AS112 direct delegation"),
        ("3fff::/20", "a documentation"),
        ("5f00::/16", "a segment-routing SID"),
        ("fc00::/7", "a unique-local"),
        ("fe80::/10", "a link-local"),
        ("fec0::/10", "a site-local"),
        ("ff00::/8", "a multicast"),
    )
)
# Most specific first, so that 2001::/32 is named Teredo rather than an IETF assignment.
_BY_SPECIFICITY = sorted(SPECIAL_PURPOSE, key=lambda entry: -entry[0].prefixlen)

GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
_NOT_EMBEDDINGS = (ipaddress.ip_network("::/127"),)  # :: and ::1 are IPv6 addresses of their own
# (network, form name): the IPv4 address is the low 32 bits and is judged as itself.
_JUDGED_AS_IPV4 = tuple(
    (ipaddress.ip_network(network), form)
    for network, form in (
        ("::ffff:0:0/96", "IPv4-mapped"),
        ("::ffff:0:0:0/96", "IPv4-translated"),
        ("::/96", "IPv4-compatible"),
        ("64:ff9b::/96", "NAT64"),
    )
)
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


class BlockedEndpoint(ValueError):
    """The endpoint is not acceptable; str() says why, without echoing the URL."""


class UnresolvableHost(BlockedEndpoint):
    """The endpoint's host name does not resolve (now): refused at registration, while at send
    time a push to it is retried, as DNS trouble may pass."""


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


def refusal(address: str, allowed_networks: tuple[IPNetwork, ...] = ()) -> str | None:
    """Why the service must not connect to this address (see the module's rules), or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if any(ip in network for network in allowed_networks):
        return None
    if isinstance(ip, ipaddress.IPv4Address):
        return _ipv4_refusal(ip)
    for network, form in _JUDGED_AS_IPV4:
        if ip in network and not any(ip in n for n in _NOT_EMBEDDINGS):
            embedded = _low_ipv4(ip)
            why = refusal(str(embedded), allowed_networks)
            return None if why is None else f"an IPv6 address embedding {embedded} ({form} {network}), which is {why}"
    tunnelled = _tunnelled_ipv4(ip)
    if tunnelled is not None:
        embedded, form, network = tunnelled
        return f"an IPv6 address embedding {embedded} ({form} {network}), a form that is never allowed"
    special = _special_purpose(ip)
    if special is not None:
        return special
    if ip not in GLOBAL_UNICAST:
        return f"an IPv6 address outside global unicast ({GLOBAL_UNICAST})"
    return None if ip.is_global else "a non-public address"


def address_allowed(address: str, allowed_networks: tuple[IPNetwork, ...] = ()) -> bool:
    return refusal(address, allowed_networks) is None


def _ipv4_refusal(ip: ipaddress.IPv4Address) -> str | None:
    special = _special_purpose(ip)
    if special is not None:
        return special
    return None if ip.is_global else "a non-public address"


def _special_purpose(ip: IPAddress) -> str | None:
    for network, name in _BY_SPECIFICITY:
        if ip in network:
            return f"{name} address ({network})"
    return None


def _low_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def _tunnelled_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, str, IPNetwork] | None:
    """(embedded IPv4, form, network) for the refused tunnel and local-translation forms."""
    if ip in _LOCAL_NAT64:
        return _low_ipv4(ip), "local-use NAT64", _LOCAL_NAT64
    if ip.sixtofour is not None:
        return ip.sixtofour, "6to4", ipaddress.ip_network("2002::/16")
    if ip.teredo is not None:
        return ip.teredo[1], "Teredo", ipaddress.ip_network("2001::/32")
    return None


def resolve(endpoint: Endpoint, allowed_networks: tuple[IPNetwork, ...] = (),
            resolver: Callable[..., Any] = socket.getaddrinfo) -> list[str]:
    """Addresses of the endpoint, all of which pass the guard; raises if any does not.

    Refusing the whole name when one address is private stops a DNS answer from
    mixing a public decoy with an internal target.
    """
    try:
        infos = resolver(endpoint.host, endpoint.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        raise UnresolvableHost("the push-resource host name does not resolve") from None
    addresses = []
    for info in infos:
        address = info[4][0]
        try:
            why = refusal(address, allowed_networks)
        except ValueError:  # not an IP address at all: nothing to connect to safely
            why = "something that is not an IP address"
        if why is not None:
            raise BlockedEndpoint(f"the push-resource resolves to {why}; only public addresses are allowed")
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableHost("the push-resource host name does not resolve")
    return addresses


def check_endpoint(url: str, *, allow_http: bool, allowed_networks: tuple[IPNetwork, ...] = ()) -> Endpoint:
    """The full registration-time check: shape plus resolved addresses."""
    endpoint = check_shape(url, allow_http=allow_http)
    resolve(endpoint, allowed_networks)
    return endpoint
