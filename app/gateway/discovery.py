"""Service detection: push properties in PROPFIND answers, `webdav-push` in OPTIONS."""
from __future__ import annotations

from flask import Response, request

from ..protocol import propfind, xmlsafe
from ..protocol.topics import topic_for_collection
from . import proxy
from .upstream import MAX_MULTISTATUS, end_to_end

MAX_PROPFIND_REQUEST = 1024 * 1024
COMPLIANCE_TOKEN = "webdav-push"


def handle_propfind(services) -> Response:
    body = proxy.read_prefix(MAX_PROPFIND_REQUEST + 1)
    requested, root = [], None
    if len(body) <= MAX_PROPFIND_REQUEST:
        try:
            root = xmlsafe.parse(body, max_bytes=MAX_PROPFIND_REQUEST)
            requested = propfind.requested_push_props(root)
        except xmlsafe.XmlError:
            pass  # not ours to judge: upstream answers it
    if not requested:
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
    document = upstream_response.raw.read(MAX_MULTISTATUS + 1, decode_content=True)
    upstream_response.close()
    try:
        multistatus = xmlsafe.parse(document, max_bytes=MAX_MULTISTATUS, max_depth=128, max_elements=2_000_000)
    except xmlsafe.XmlError:
        return Response("the upstream DAV server sent an unreadable multistatus\n", 502, mimetype="text/plain")

    def describe(facts: propfind.ResourceFacts) -> str | None:
        if facts.kind is None:
            return None
        key = services.resolver.collection_key(facts.path, facts.owner_principal)
        return None if key is None else topic_for_collection(services.settings.secret_key, key)

    propfind.augment_multistatus(
        multistatus,
        requested=requested,
        injected=injected,
        describe=describe,
        vapid_public_key=services.signer.public_key,
        minimal=_prefers_minimal(),
    )
    replaced = ("content-length", "content-encoding", "content-type", "date", "server")
    headers = [(n, v) for n, v in end_to_end(upstream_response.raw.headers.items()) if n.lower() not in replaced]
    return Response(xmlsafe.serialize(multistatus), 207, headers=headers, content_type="application/xml; charset=utf-8")


def _prefers_minimal() -> bool:
    prefer = request.headers.get("Prefer", "").lower()
    return "return=minimal" in prefer.replace(" ", "") or request.headers.get("Brief", "").lower() == "t"


def handle_options(services) -> Response:
    response = proxy.forward(services.upstream, proxy.request_body())
    values = response.headers.getlist("DAV")
    tokens = [token.strip() for value in values for token in value.split(",")]
    if values and COMPLIANCE_TOKEN not in tokens:
        response.headers.remove("DAV")
        response.headers.add("DAV", ", ".join(values + [COMPLIANCE_TOKEN]))
    return response
