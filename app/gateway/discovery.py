"""Service detection: push properties in PROPFIND answers, `webdav-push` in OPTIONS.

Answers that get push properties are rewritten response by response as they stream from
upstream (see protocol.multistatus_stream and gateway.streaming), never held whole.
"""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from flask import Response, request

from ..protocol import propfind, xmlsafe
from ..protocol.multistatus_stream import rewrite_multistatus
from ..protocol.topics import topic_for_collection
from . import proxy, streaming
from .upstream import MAX_MULTISTATUS, end_to_end

if TYPE_CHECKING:
    from ..core.services import Services

MAX_PROPFIND_REQUEST = 1024 * 1024
COMPLIANCE_TOKEN = "webdav-push"
UNREADABLE = "the upstream DAV server sent an unreadable multistatus\n"


def handle_propfind(services: Services) -> Response:
    body = proxy.read_prefix(MAX_PROPFIND_REQUEST + 1)
    requested, root = [], None
    if len(body) <= MAX_PROPFIND_REQUEST:
        try:
            root = xmlsafe.parse(body, max_bytes=MAX_PROPFIND_REQUEST)
            requested = propfind.requested_push_props(root)
        except xmlsafe.XmlError:
            pass  # not ours to judge: upstream answers it
    if not requested or root is None:  # (requested push props imply a parsed root)
        return proxy.forward(services.upstream, proxy.request_body(body))

    new_body, injected = propfind.rewrite_request(root)
    upstream_response = services.upstream.send(
        "PROPFIND",
        proxy.raw_target(request.environ),
        proxy.forward_headers({"Accept-Encoding": "identity", "Content-Type": "application/xml; charset=utf-8"}),
        new_body,
        stream=True,
    )
    if upstream_response.status_code != 207:
        return proxy.relay(upstream_response)
    if _declared_length(upstream_response) > MAX_MULTISTATUS:
        upstream_response.close()
        return Response(UNREADABLE, 502, mimetype="text/plain")

    def describe(facts: propfind.ResourceFacts) -> str | None:
        if facts.kind is None:
            return None
        key = services.resolver.collection_key(facts.path, facts.owner_principal)
        return None if key is None else topic_for_collection(services.settings.secret_key, key)

    edit = partial(
        propfind.augment_response,
        requested=requested,
        injected=injected,
        describe=describe,
        vapid_public_key=services.signer.public_key,
        minimal=_prefers_minimal(),
    )
    output = rewrite_multistatus(streaming.upstream_body(upstream_response), edit, max_bytes=MAX_MULTISTATUS)
    replaced = ("content-length", "content-encoding", "content-type", "date", "server")
    headers = [(n, v) for n, v in end_to_end(upstream_response.raw.headers.items()) if n.lower() not in replaced]
    return streaming.respond(upstream_response, output, status=207, headers=headers,
                             content_type="application/xml; charset=utf-8", unreadable=UNREADABLE,
                             path=proxy.raw_path(request.environ))


def _declared_length(upstream_response) -> int:
    try:
        return int(upstream_response.raw.headers.get("Content-Length", ""))
    except ValueError:
        return 0


def _prefers_minimal() -> bool:
    prefer = request.headers.get("Prefer", "").lower()
    return "return=minimal" in prefer.replace(" ", "") or request.headers.get("Brief", "").lower() == "t"


def handle_options(services: Services) -> Response:
    response = proxy.forward(services.upstream, proxy.request_body())
    values = response.headers.getlist("DAV")
    tokens = [token.strip() for value in values for token in value.split(",")]
    if values and COMPLIANCE_TOKEN not in tokens:
        response.headers.remove("DAV")
        response.headers.add("DAV", ", ".join(values + [COMPLIANCE_TOKEN]))
    return response
