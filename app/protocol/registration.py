"""Parsing and validating a push-register request body (WebDAV-Push §Subscription Registration)."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from . import keys
from .expiry import parse_http_date
from .names import DAV, PUSH, qn
from .triggers import DEFAULT_TRIGGERS, MAX_CONTENT_DEPTH, MAX_PROPERTY_DEPTH, Triggers, clamp, normalize_depth
from .xmlsafe import text_of

PUSH_REGISTER = qn(PUSH, "push-register")
MAX_BODY_BYTES = 64 * 1024


class RegistrationError(Exception):
    """A refused registration: HTTP status, optional DAV precondition, human message."""

    def __init__(self, status: int, message: str, precondition: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.precondition = precondition


def invalid(message: str) -> RegistrationError:
    return RegistrationError(403, message, "invalid-subscription")


@dataclass(frozen=True)
class WebPushSubscription:
    push_resource: str
    public_key: str  # canonical base64url, 65-byte P-256 point
    auth_secret: str  # canonical base64url, 16 bytes
    content_encoding: str = "aes128gcm"


@dataclass(frozen=True)
class Registration:
    subscription: WebPushSubscription
    triggers: Triggers
    requested_expiry: datetime | None


def _child(parent: ET.Element, local: str, namespace: str = PUSH) -> ET.Element | None:
    return parent.find(qn(namespace, local))


def parse_registration(root: ET.Element) -> Registration:
    if root.tag != PUSH_REGISTER:
        raise RegistrationError(400, "the root element is not push-register")
    return Registration(
        subscription=_parse_subscription(root),
        triggers=_parse_triggers(root),
        requested_expiry=parse_http_date(text_of(_child(root, "expires"))),
    )


def _parse_subscription(root: ET.Element) -> WebPushSubscription:
    subscription = _child(root, "subscription")
    if subscription is None:
        raise invalid("push-register has no subscription element")
    web_push = _child(subscription, "web-push-subscription")
    if web_push is None:
        raise invalid("only web-push-subscription is supported as a transport")
    push_resource = text_of(_child(web_push, "push-resource"))
    if not push_resource:
        raise invalid("web-push-subscription has no push-resource")

    encoding = text_of(_child(web_push, "content-encoding")) or "aes128gcm"
    if encoding.lower() != "aes128gcm":
        raise invalid(f"content-encoding {encoding!r} is not supported; only aes128gcm is")

    key_element = _child(web_push, "subscription-public-key")
    if key_element is None:
        key_element = _child(web_push, "client-public-key")  # name used until 2025-04
    if key_element is None or not text_of(key_element):
        raise invalid("subscription-public-key is missing: the push message could not be encrypted")
    key_type = (key_element.get("type") or "p256dh").strip().lower()
    if key_type != "p256dh":
        raise invalid(f"subscription-public-key type {key_type!r} is not supported; only p256dh is")
    auth = text_of(_child(web_push, "auth-secret"))
    if not auth:
        raise invalid("auth-secret is missing: the push message could not be encrypted")
    try:
        public_key = keys.validate_p256dh(text_of(key_element))
        auth_secret = keys.validate_auth_secret(auth)
    except keys.InvalidKey as error:
        raise invalid(str(error)) from None
    return WebPushSubscription(push_resource, public_key, auth_secret, "aes128gcm")


def _parse_triggers(root: ET.Element) -> Triggers:
    trigger = _child(root, "trigger")
    if trigger is None:
        # DAVx5 up to 4.5.19 sends no trigger: its intent is content updates of the collection.
        return DEFAULT_TRIGGERS
    content_depth = _depth_of(_child(trigger, "content-update"), MAX_CONTENT_DEPTH)
    property_element = _child(trigger, "property-update")
    property_depth = _depth_of(property_element, MAX_PROPERTY_DEPTH)
    properties: tuple[str, ...] = ()
    if property_depth is not None and property_element is not None:
        prop = property_element.find(qn(DAV, "prop"))
        if prop is not None:
            properties = tuple(sorted({child.tag for child in prop}))
    triggers = Triggers(content_depth, property_depth, properties)
    if triggers.empty:
        raise RegistrationError(403, "none of the requested triggers is supported", "no-supported-trigger")
    return triggers


def _depth_of(element: ET.Element | None, maximum: str) -> str | None:
    if element is None:
        return None
    depth_element = element.find(qn(DAV, "depth"))
    if depth_element is None:
        return maximum  # lenient: a trigger without depth gets what we support
    depth = normalize_depth(text_of(depth_element))
    return None if depth is None else clamp(depth, maximum)
