"""The SSRF guard against IPv4 hidden in IPv6 and the IANA special-purpose ranges: the rules
(`address_allowed`), registration (a 403 DAV error, nothing stored) and send time (refused
before any connection, through a resolver that answers what an attacker's DNS would)."""
import ipaddress
import socket
import xml.etree.ElementTree as ET

import pytest
import requests

from app.delivery.outcomes import BLOCKED
from app.delivery.sender import PushRequest, PushSender
from app.net import ssrf
from support import bodies
from support.push_receiver import ClientKeys

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)
SECRET_PATH = "/wpush/capability-secret"

# (address, what it embeds or is) for every form that must be refused with an empty allow-list.
REFUSED = {
    # the forms of the issue
    "::7f00:1": "127.0.0.1",  # IPv4-compatible loopback
    "::ffff:0:7f00:1": "127.0.0.1",  # IPv4-translated loopback
    "::a9fe:a9fe": "169.254.169.254",  # IPv4-compatible cloud metadata
    "fec0::1": "site-local",
    # IPv4-mapped, -compatible, -translated and NAT64 with private IPv4
    "::ffff:10.0.0.1": "10.0.0.1",
    "::ffff:169.254.169.254": "169.254.169.254",
    "::10.1.2.3": "10.1.2.3",
    "::ffff:0:192.168.1.1": "192.168.1.1",
    "64:ff9b::7f00:1": "127.0.0.1",
    "64:ff9b::a9fe:a9fe": "169.254.169.254",
    # tunnels and local translation: refused even with a public IPv4 inside
    "64:ff9b:1::808:808": "8.8.8.8",
    "64:ff9b:1::a00:1": "10.0.0.1",
    "2002:808:808::1": "8.8.8.8",
    "2002:7f00:1::1": "127.0.0.1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "192.0.2.45",  # Teredo (RFC 4380 example), client address
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7": "8.8.8.8",
    # other special-purpose ranges
    "240.0.0.1": "reserved",
    "255.255.255.255": "broadcast",
    "224.0.0.251": "multicast",
    "ff02::1": "multicast",
    "192.0.0.9": "IETF protocol assignment",
    "198.18.0.1": "benchmarking",
    "192.88.99.1": "6to4 relay",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "100::1": "discard-only",
    "2001:2::1": "benchmarking",
    "5f00::1": "segment-routing",
    "fd12:3456::1": "unique-local",
    "::": "unspecified",
    "4000::1": "outside global unicast",
}
ALLOWED = ("93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8", "::8.8.8.8", "::ffff:0:8.8.8.8", "64:ff9b::808:808")


@pytest.mark.parametrize("address, named", REFUSED.items(), ids=REFUSED.keys())
def test_refused_and_the_reason_names_what_is_embedded(address, named):
    assert ssrf.address_allowed(address) is False
    assert named in ssrf.refusal(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_in_any_judged_form_are_allowed(address):
    assert ssrf.address_allowed(address) is True


@pytest.mark.parametrize("address", ["::ffff:127.0.0.1", "::ffff:7f00:1", "::7f00:1", "::ffff:0:7f00:1", "127.0.0.1"])
def test_an_embedded_ipv4_is_judged_as_that_ipv4(address):
    assert ssrf.address_allowed(address, LOOPBACK) is True
    assert ssrf.address_allowed(address.replace("7f00", "a00").replace("127.", "10."), LOOPBACK) is False


@pytest.mark.parametrize("address", ["2002:7f00:1::1", "64:ff9b:1::7f00:1"])
def test_tunnels_stay_refused_even_when_the_embedded_network_is_allowed(address):
    assert ssrf.address_allowed(address, LOOPBACK) is False


def test_an_allowed_ipv6_network_opens_exactly_that_network():
    site_local = (ipaddress.ip_network("fec0::/10"),)
    assert ssrf.address_allowed("fec0::1", site_local) is True
    assert ssrf.address_allowed("fd00::1", site_local) is False


def test_both_ends_of_every_special_purpose_range_are_refused():
    for network, name in ssrf.SPECIAL_PURPOSE:
        for address in (network.network_address, network.broadcast_address):
            assert ssrf.refusal(str(address)) is not None, f"{address} ({name}) passed"


# -- at registration ----------------------------------------------------------------------------


@pytest.fixture
def strict(nextcloud, start_gateway):
    return start_gateway(nextcloud.url, PUSH_ALLOWED_NETWORKS="", PUSH_ALLOW_HTTP="false")


def register(gateway, push_resource):
    keys = ClientKeys.generate()
    return requests.post(gateway.dav("/calendars/alice/work/"), data=bodies.davx5_old(push_resource, keys.p256dh, keys.auth),
                         auth=("alice", "alice-pw"), headers={"Content-Type": bodies.XML_UTF8})


def _literal(address: str) -> str:
    return f"[{address}]" if ":" in address else address


@pytest.mark.parametrize("address, named", REFUSED.items(), ids=REFUSED.keys())
def test_registration_refuses_every_form_with_a_dav_error(strict, address, named):
    response = register(strict, f"https://{_literal(address)}{SECRET_PATH}")
    assert response.status_code == 403
    root = ET.fromstring(response.content)
    assert root.tag == "{DAV:}error" and root.find("{https://bitfire.at/webdav-push}invalid-subscription") is not None
    message = root.findtext("{http://sabredav.org/ns}message")
    assert named in message and "capability-secret" not in message
    assert list(strict.services.store.iter_subscriptions()) == []


@pytest.mark.parametrize("address", ["::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_registration_accepts_public_ipv4_behind_mapped_and_nat64(strict, address):
    assert register(strict, f"https://[{address}]{SECRET_PATH}").status_code == 201


def test_registration_accepts_mapped_loopback_when_loopback_is_allowed(gateway):
    assert register(gateway, "https://[::ffff:127.0.0.1]/push").status_code == 201


# -- at send time --------------------------------------------------------------------------------


def answering(address):
    """A resolver standing in for a DNS name that now points at `address`."""

    def resolve(host, port, type=0):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
        return [(family, socket.SOCK_STREAM, 6, "", sockaddr)]

    return resolve


def send_through(address, url, allowed_networks=()):
    sender = PushSender(concurrency=4, per_origin=2, connect_timeout=2, read_timeout=2, allow_http=True,
                        allowed_networks=allowed_networks, resolver=answering(address))
    try:
        [outcome] = sender.send_all([PushRequest("s1", url, lambda: b"x", {"TTL": "60"})], lambda origin: "vapid t=x")
    finally:
        sender.close()
    return outcome


@pytest.mark.parametrize("address, named", REFUSED.items(), ids=REFUSED.keys())
def test_sender_refuses_a_name_resolving_to_any_form(address, named):
    outcome = send_through(address, f"https://push.example{SECRET_PATH}")
    assert outcome.kind == BLOCKED
    assert named in outcome.detail and "capability-secret" not in outcome.detail


def test_sender_reaches_a_loopback_receiver_through_its_mapped_form_only_when_allowed(receiver):
    url = receiver.url.replace("127.0.0.1", "push.example") + "/p"
    assert send_through("::ffff:127.0.0.1", url).kind == BLOCKED
    assert receiver.pushes == []
    assert send_through("::ffff:127.0.0.1", url, LOOPBACK).kind == "success"
    assert len(receiver.pushes) == 1
