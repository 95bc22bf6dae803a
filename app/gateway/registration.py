"""WebDAV-Push registration: a POST of a push-register document to a collection.

Unregistration (DELETE of the subscription URL) is in push_api.py, beside its route."""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from flask import Response, request

from ..core.logs import endpoint_label, log, short_id
from ..core.metrics_names import counter
from ..net import ssrf
from ..protocol import xmlsafe
from ..protocol.dav_errors import error_body
from ..protocol.expiry import format_http_date, grant_expiry
from ..protocol.registration import MAX_BODY_BYTES, PUSH_REGISTER, RegistrationError, parse_registration
from ..protocol.subscription import Subscription
from ..protocol.topics import topic_for_collection
from ..store import SubscriptionLimitReached
from . import proxy
from .identity import identity
from .upstream import CollectionFacts

if TYPE_CHECKING:
    from ..core.services import Services

logger = logging.getLogger("davpush.registration")
XML_TYPES = ("application/xml", "text/xml")


def dav_error(status: int, message: str, precondition: str | None = None, headers=None) -> Response:
    return Response(error_body(message, precondition), status, headers=headers or [], content_type="application/xml; charset=utf-8")


@dataclass(frozen=True)
class PostAnswer:
    """The answer to a POST under the DAV prefix, and who gave it: davpush itself (a registration
    or its refusal) or upstream. Only upstream's successful answers are writes to observe."""

    response: Response
    answered_here: bool


def handle_post(services: Services) -> PostAnswer:
    """Registrations are handled here; every other POST is forwarded with its body intact."""
    if request.mimetype not in XML_TYPES:
        return PostAnswer(_forwarded(services), answered_here=False)
    prefix = proxy.read_prefix(request.environ, MAX_BODY_BYTES + 1)
    try:
        root_tag = xmlsafe.root_tag(prefix)
    except xmlsafe.XmlError as error:
        return PostAnswer(dav_error(400, f"not a valid XML request body: {error}"), answered_here=True)
    if root_tag != PUSH_REGISTER:
        return PostAnswer(_forwarded(services, prefix), answered_here=False)
    if len(prefix) > MAX_BODY_BYTES:
        return PostAnswer(dav_error(413, f"a push-register body may be at most {MAX_BODY_BYTES} bytes"), answered_here=True)
    try:
        return PostAnswer(register(services, prefix), answered_here=True)
    except RegistrationError as error:
        return PostAnswer(dav_error(error.status, error.message, error.precondition), answered_here=True)


def _forwarded(services: Services, prefix: bytes = b"") -> Response:
    environ = request.environ
    return proxy.forward(services.upstream, environ, proxy.request_body(environ, prefix)).to_flask()


def register(services: Services, body: bytes) -> Response:
    settings = services.settings
    try:
        root = xmlsafe.parse(body, max_bytes=MAX_BODY_BYTES)
    except xmlsafe.XmlError as error:
        raise RegistrationError(400, f"not a valid push-register document: {error}") from None

    path = proxy.raw_path(request.environ)
    facts = services.upstream.lookup(path, request.headers.get("Authorization"), proxy.forwarded_for(request.environ))
    refusal = access_refusal(facts, require_collection=True)
    if refusal is not None:
        return refusal
    user = identity(facts, request.headers.get("Authorization"))
    if user is None:
        raise RegistrationError(403, "the upstream server did not tell who you are", "push-not-available")
    collection = services.resolver.collection_key(path, facts.owner_principal)
    if collection is None:
        raise RegistrationError(403, "push is not available for this resource", "push-not-available")

    registration = parse_registration(root)
    push_resource = registration.subscription.push_resource
    try:
        ssrf.check_endpoint(
            push_resource, allow_http=settings.push_allow_http, allowed_networks=settings.push_allowed_networks
        )
    except ssrf.BlockedEndpoint as error:
        raise RegistrationError(403, str(error), "invalid-subscription") from None

    now = datetime.now(UTC)
    expires = grant_expiry(registration.requested_expiry, now, settings.subscription_max_days)
    new_id = secrets.token_urlsafe(18)
    candidate = Subscription(
        id=new_id,
        user=user,
        collection=collection,
        topic=topic_for_collection(settings.secret_key, collection),
        href=unquote(urlsplit(path).path),
        push_resource=push_resource,
        public_key=registration.subscription.public_key,
        auth_secret=registration.subscription.auth_secret,
        triggers=registration.triggers,
        expires=int(expires.timestamp()),
        created=int(time.time()),
        location=f"{settings.public_base}/push/subscriptions/{new_id}",
    )
    try:
        sub_id, created, location = services.store.upsert(candidate, limit=settings.push_max_subscriptions_per_user)
    except SubscriptionLimitReached as error:
        services.store.count(counter("registrations", action="refused-limit"))
        log(logger, logging.WARNING, "subscription refused: per-user limit reached", user=user, limit=error.limit)
        raise RegistrationError(
            403,
            f"too many push subscriptions: this account already has {error.limit}, the most this server allows; "
            "unregister unused ones or wait for them to expire",
        ) from None
    services.store.count(counter("registrations", action="created" if created else "updated"))
    log(
        logger,
        logging.INFO,
        "subscription registered" if created else "subscription updated",
        subscription=short_id(sub_id),
        user=user,
        collection=collection,
        endpoint=endpoint_label(push_resource),
        expires=expires.isoformat(),
    )
    headers = {"Location": location, "Expires": format_http_date(expires)}
    response = Response(status=201 if created else 204, headers=headers)
    response.headers.pop("Content-Type", None)
    return response


def access_refusal(facts: CollectionFacts, *, require_collection: bool) -> Response | None:
    """The answer for a failed upstream check, or None when access is fine."""
    if facts.status == 401:
        headers = [("WWW-Authenticate", value) for value in facts.www_authenticate or []]
        return Response("authentication required\n", 401, headers=headers, mimetype="text/plain")
    if facts.status in (403, 404):
        return dav_error(403, "you cannot read this collection", "push-not-available")
    if facts.status != 207:
        return Response("the upstream DAV server gave an unexpected answer\n", 502, mimetype="text/plain")
    if require_collection and facts.kind is None:
        return dav_error(403, "push is only available for calendars and address books", "push-not-available")
    return None

