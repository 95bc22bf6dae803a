"""The DAV gateway blueprint: everything under DAV_PREFIX goes through here."""
from __future__ import annotations

import logging
import time

from flask import Blueprint, Response, request
from werkzeug.routing import PathConverter

from ..core.current import current_services
from ..core.logs import log
from . import discovery, proxy, registration, writes
from .loop import LOOP_STATUS
from .upstream import UnreadableRequestBody, UpstreamUnavailable

logger = logging.getLogger("davpush.gateway")
LOOP_WARNING_INTERVAL = 60.0  # seconds between warnings about the same misconfiguration, per process
LOOPED_BODY_DRAIN = 1024 * 1024
_last_loop_warning = float("-inf")

DAV_METHODS = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "PROPPATCH", "MKCOL",
    "MKCALENDAR", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "ACL", "BIND", "UNBIND", "REBIND",
]  # fmt: skip


class AnyPath(PathConverter):
    """Like `path`, but also matches a leading slash ("/dav//x" is upstream's business, not a 404)."""

    regex = ".*?"
    part_isolating = False  # werkzeug would otherwise match a single segment (no "/" in the regex)


def create_blueprint(dav_prefix: str) -> Blueprint:
    """The gateway's routes; the app must have AnyPath registered as the `anypath` converter."""
    blueprint = Blueprint("gateway", __name__)
    blueprint.before_request(refuse_looped_request)
    for rule in {dav_prefix or "/", dav_prefix + "/", dav_prefix + "/<anypath:subpath>"}:
        blueprint.add_url_rule(
            rule,
            view_func=dav_entry,
            methods=DAV_METHODS,
            strict_slashes=False,
            provide_automatic_options=False,
        )
    return blueprint


def refuse_looped_request():
    """A request davpush itself forwarded has come back: answer 508 before anything else runs
    (forwarding it again would go round until every connection hangs)."""
    global _last_loop_warning
    services = current_services()
    mark = services.upstream.mark
    if mark is None or not mark.carried_by(request.headers.get("Via")):
        return None
    now = time.monotonic()
    if now - _last_loop_warning >= LOOP_WARNING_INTERVAL:
        _last_loop_warning = now
        log(logger, logging.WARNING,
            "request loop: a request this davpush forwarded came back to it; UPSTREAM_URL must be Nextcloud's "
            "internal address, not the public one that routes DAV requests to davpush (answering 508)",
            upstream=services.settings.upstream_url, method=request.method, path=request.path)
    try:
        # Read a small body, so the sender gets the answer instead of a reset connection.
        proxy.read_prefix(LOOPED_BODY_DRAIN)
    except UnreadableRequestBody:
        pass
    message = (
        "508 Loop Detected: this request was forwarded by davpush and came back to it. UPSTREAM_URL must be "
        "Nextcloud's internal address, not the public one that routes DAV requests to davpush.\n"
    )
    return Response(message, LOOP_STATUS, headers=mark.answer_headers(), mimetype="text/plain")


def dav_entry(subpath: str = ""):
    services = current_services()
    try:
        if request.method == "PROPFIND":
            return discovery.handle_propfind(services)
        if request.method == "OPTIONS":
            return discovery.handle_options(services)
        if request.method == "POST":
            answer = registration.handle_post(services)
            response, answered_here = answer.response, answer.answered_here
        else:
            response, answered_here = proxy.forward(services.upstream, proxy.request_body()), False
    except (UpstreamUnavailable, UnreadableRequestBody) as error:
        return proxy.unavailable(error)
    if request.method in writes.WRITE_METHODS and 200 <= response.status_code < 300 and not answered_here:
        observed = writes.observation(request.method, proxy.raw_path(request.environ), request.headers, proxy.forwarded_for())
        response.call_on_close(lambda: writes.run_safely(services, observed))
    return response
