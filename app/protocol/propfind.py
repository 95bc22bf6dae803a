"""PROPFIND handling for push properties (WebDAV-Push §Push Properties).

The gateway asks upstream for what it needs to classify each resource
(resourcetype, owner) instead of the push properties, then fills the push
properties into the multistatus itself.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from .names import (
    CAL_CALENDAR,
    CARD_ADDRESSBOOK,
    D_HREF,
    D_OWNER,
    D_PROP,
    D_PROPSTAT,
    D_RESOURCETYPE,
    D_RESPONSE,
    D_STATUS,
    DAV,
    OC_OWNER_PRINCIPAL,
    PUSH,
    PUSH_PROP_TAGS,
    qn,
)
from .triggers import MAX_CONTENT_DEPTH, MAX_PROPERTY_DEPTH
from .xmlsafe import text_of

D_PROPFIND = qn(DAV, "propfind")
CLASSIFYING_PROPS = (D_RESOURCETYPE, OC_OWNER_PRINCIPAL, D_OWNER)


def may_request_push_props(body: bytes) -> bool:
    """False only when `body` certainly names no push property: an ASCII-compatible document without
    the push namespace's URI or a character reference (that could spell it). Lets the gateway pass
    the common PROPFIND on without parsing it."""
    if PUSH.encode() in body or b"&#" in body:
        return True
    return body[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in body[:512]


def requested_push_props(root: ET.Element) -> list[str]:
    """Push property tags named in <propfind><prop>, in request order (empty for allprop)."""
    if root.tag != D_PROPFIND:
        return []
    prop = root.find(D_PROP)
    if prop is None:
        return []
    return [child.tag for child in prop if child.tag in PUSH_PROP_TAGS]


def rewrite_request(root: ET.Element) -> tuple[bytes, set[str]]:
    """The body to send upstream: push props removed, classifying props added.

    Returns the new body and the tags that were added (to strip from the answer).
    """
    prop = root.find(D_PROP)
    assert prop is not None  # only called for a request with push props (requested_push_props)
    for child in [c for c in prop if c.tag in PUSH_PROP_TAGS]:
        prop.remove(child)
    present = {child.tag for child in prop}
    injected = set()
    for tag in CLASSIFYING_PROPS:
        if tag not in present:
            ET.SubElement(prop, tag)
            injected.add(tag)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True), injected


@dataclass(frozen=True)
class ResourceFacts:
    path: str  # URL path of the href, still percent-encoded
    kind: str | None  # "calendar", "addressbook" or None
    owner_principal: str | None  # e.g. principals/users/alice or an href to it


Describe = Callable[[ResourceFacts], "str | None"]


def augment_multistatus(multistatus: ET.Element, **options: Any) -> None:
    """augment_response() for every <response> of a whole tree (the options are augment_response's)."""
    for response in multistatus.iter(D_RESPONSE):
        augment_response(response, **options)


def augment_response(
    response: ET.Element,
    *,
    requested: list[str],
    injected: set[str],
    describe: Describe,
    vapid_public_key: str,
    minimal: bool = False,
) -> None:
    """Fill push props into one <response> in place: a 200 propstat for push-capable resources,
    404 for the rest."""
    facts = _facts(response)
    topic = describe(facts) if facts else None
    for propstat in response.findall(D_PROPSTAT):
        prop = propstat.find(D_PROP)
        if prop is None:
            continue
        for child in [c for c in prop if c.tag in injected or c.tag in PUSH_PROP_TAGS]:
            prop.remove(child)
    if topic is not None:
        target = _propstat(response, 200, "OK")
        for tag in requested:
            target.append(_push_value(tag, topic, vapid_public_key))
    elif not minimal and response.find(D_PROPSTAT) is not None:
        target = _propstat(response, 404, "Not Found")
        for tag in requested:
            ET.SubElement(target, tag)
    _drop_empty_propstats(response)


def _facts(response: ET.Element) -> ResourceFacts | None:
    href = text_of(response.find(D_HREF))
    if not href:
        return None
    found = ok_props(response)
    resourcetype = found.get(D_RESOURCETYPE)
    kind = None
    if resourcetype is not None:
        if resourcetype.find(CAL_CALENDAR) is not None:
            kind = "calendar"
        elif resourcetype.find(CARD_ADDRESSBOOK) is not None:
            kind = "addressbook"
    owner = text_of(found.get(OC_OWNER_PRINCIPAL)) or text_of(
        found[D_OWNER].find(D_HREF) if D_OWNER in found else None
    )
    return ResourceFacts(urlsplit(href).path, kind, owner or None)


def ok_props(response: ET.Element) -> dict[str, ET.Element]:
    """The properties of a multistatus response that came back with status 200, by tag."""
    found: dict[str, ET.Element] = {}
    for propstat in response.findall(D_PROPSTAT):
        if " 200" not in text_of(propstat.find(D_STATUS)):
            continue
        prop = propstat.find(D_PROP)
        for child in prop if prop is not None else ():
            found.setdefault(child.tag, child)
    return found


def _propstat(response: ET.Element, code: int, reason: str) -> ET.Element:
    """The <prop> of the response's propstat with this status, created if needed."""
    for propstat in response.findall(D_PROPSTAT):
        if f" {code}" in text_of(propstat.find(D_STATUS)):
            prop = propstat.find(D_PROP)
            if prop is None:
                prop = ET.Element(D_PROP)
                propstat.insert(0, prop)
            return prop
    propstat = ET.SubElement(response, D_PROPSTAT)
    prop = ET.SubElement(propstat, D_PROP)
    ET.SubElement(propstat, D_STATUS).text = f"HTTP/1.1 {code} {reason}"
    return prop


def _drop_empty_propstats(response: ET.Element) -> None:
    propstats = response.findall(D_PROPSTAT)
    empty = [p for p in propstats if (prop := p.find(D_PROP)) is None or len(prop) == 0]
    if len(empty) == len(propstats) and propstats:
        empty = empty[1:]  # a response needs at least one propstat
    for propstat in empty:
        response.remove(propstat)


@lru_cache(maxsize=4096)
def push_value(tag: str, topic: str, vapid_public_key: str) -> bytes:
    """A push property's value serialized on its own (it declares its namespaces)."""
    return ET.tostring(_push_value(tag, topic, vapid_public_key))


def _push_value(tag: str, topic: str, vapid_public_key: str) -> ET.Element:
    element = ET.Element(tag)
    if tag == qn(PUSH, "transports"):
        web_push = ET.SubElement(element, qn(PUSH, "web-push"))
        key = ET.SubElement(web_push, qn(PUSH, "vapid-public-key"), {"type": "p256ecdsa"})
        key.text = vapid_public_key
    elif tag == qn(PUSH, "topic"):
        element.text = topic
    else:
        for trigger, depth in (("content-update", MAX_CONTENT_DEPTH), ("property-update", MAX_PROPERTY_DEPTH)):
            ET.SubElement(ET.SubElement(element, qn(PUSH, trigger)), qn(DAV, "depth")).text = depth
    return element
