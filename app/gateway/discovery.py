"""Service detection: push properties in PROPFIND answers, `webdav-push` in OPTIONS.

Answers that get push properties are rewritten response by response as they stream from
upstream (see protocol.multistatus_stream and gateway.streaming), never held whole.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

from ..protocol import propfind, xmlsafe
from ..protocol.multistatus_splice import augment_multistatus_stream
from ..protocol.topics import topic_for_collection
from . import proxy, streaming
from .answer import Answer
from .upstream import MAX_MULTISTATUS, UpstreamUnavailable, end_to_end
from .upstream_http import UpstreamError

if TYPE_CHECKING:
    from ..core.services import Services

MAX_PROPFIND_REQUEST = 1024 * 1024
CACHED_REQUEST = 16 * 1024  # PROPFIND bodies up to this size have their reading cached
COMPLIANCE_TOKEN = "webdav-push"
UNREADABLE = "the upstream DAV server sent an unreadable multistatus\n"


def handle_propfind(services: Services, environ) -> Answer:
    body = proxy.read_prefix(environ, MAX_PROPFIND_REQUEST + 1)
    push_request = None
    if len(body) <= MAX_PROPFIND_REQUEST and propfind.may_request_push_props(body):
        push_request = (_cached_push_request if len(body) <= CACHED_REQUEST else _push_request)(body)
    if push_request is None:
        return proxy.forward(services.upstream, environ, proxy.request_body(environ, body))

    requested, new_body, injected = push_request
    upstream_response = services.upstream.send(
        "PROPFIND",
        proxy.raw_target(environ),
        proxy.forward_headers(environ, {"Accept-Encoding": "identity",
                                        "Content-Type": "application/xml; charset=utf-8"}),
        new_body,
    )
    if upstream_response.status != 207:
        return proxy.relay(upstream_response)
    if (upstream_response.content_length or 0) > MAX_MULTISTATUS:
        upstream_response.close()
        return Answer.text(502, UNREADABLE)
    try:
        upstream_response.decode_content()
    except UpstreamError:
        upstream_response.close()
        raise UpstreamUnavailable(502, "the upstream DAV server sent an undecodable answer") from None

    def describe(facts: propfind.ResourceFacts) -> str | None:
        if facts.kind is None:
            return None
        return _topic(services.resolver, services.settings.secret_key, facts.path, facts.owner_principal)

    output = augment_multistatus_stream(
        streaming.upstream_body(upstream_response),
        requested=list(requested),
        injected=set(injected),
        describe=describe,
        vapid_public_key=services.signer.public_key,
        minimal=_prefers_minimal(environ),
        max_bytes=MAX_MULTISTATUS,
    )
    replaced = ("content-length", "content-encoding", "content-type", "date", "server")
    headers = [(n, v) for n, v in end_to_end(upstream_response.headers) if n.lower() not in replaced]
    return streaming.respond(upstream_response, output, status=207, headers=headers,
                             content_type="application/xml; charset=utf-8", unreadable=UNREADABLE,
                             path=proxy.raw_path(environ))


def _push_request(body: bytes) -> tuple[tuple[str, ...], bytes, frozenset[str]] | None:
    """(push properties asked for, the body to send upstream, properties added to it), or None when
    the PROPFIND asks for none (or is not readable: upstream answers it)."""
    try:
        root = xmlsafe.parse(body, max_bytes=MAX_PROPFIND_REQUEST)
    except xmlsafe.XmlError:
        return None
    requested = propfind.requested_push_props(root)
    if not requested:
        return None
    new_body, injected = propfind.rewrite_request(root)
    return tuple(requested), new_body, frozenset(injected)


# Clients send the same few PROPFIND bodies again and again.
_cached_push_request = lru_cache(maxsize=256)(_push_request)


@lru_cache(maxsize=4096)
def _topic(resolver, secret_key: str, path: str, owner_principal: str | None) -> str | None:
    key = resolver.collection_key(path, owner_principal)
    return None if key is None else topic_for_collection(secret_key, key)


def _prefers_minimal(environ) -> bool:
    prefer = environ.get("HTTP_PREFER", "").lower()
    return "return=minimal" in prefer.replace(" ", "") or environ.get("HTTP_BRIEF", "").lower() == "t"


def handle_options(services: Services, environ) -> Answer:
    answer = proxy.forward(services.upstream, environ, proxy.request_body(environ))
    values = [v for n, v in answer.headers if n.lower() == "dav"]
    tokens = [token.strip() for value in values for token in value.split(",")]
    if values and COMPLIANCE_TOKEN not in tokens:
        answer.headers = [(n, v) for n, v in answer.headers if n.lower() != "dav"]
        answer.headers.append(("DAV", ", ".join(values + [COMPLIANCE_TOKEN])))
    return answer
