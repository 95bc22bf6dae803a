"""The DAV gateway blueprint: everything under DAV_PREFIX goes through here."""
from __future__ import annotations

from flask import Blueprint, current_app, request
from werkzeug.routing import PathConverter

from . import discovery, proxy, registration, writes
from .upstream import UnreadableRequestBody, UpstreamUnavailable

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
    for rule in {dav_prefix or "/", dav_prefix + "/", dav_prefix + "/<anypath:subpath>"}:
        blueprint.add_url_rule(
            rule,
            view_func=dav_entry,
            methods=DAV_METHODS,
            strict_slashes=False,
            provide_automatic_options=False,
        )
    return blueprint


def dav_entry(subpath: str = ""):
    services = current_app.extensions["davpush"]
    try:
        if request.method == "PROPFIND":
            return discovery.handle_propfind(services)
        if request.method == "OPTIONS":
            return discovery.handle_options(services)
        if request.method == "POST":
            response = registration.handle_post(services)
        else:
            response = proxy.forward(services.upstream, proxy.request_body())
    except (UpstreamUnavailable, UnreadableRequestBody) as error:
        return proxy.unavailable(error)
    if request.method in writes.WRITE_METHODS and 200 <= response.status_code < 300 and not registration.is_ours(response):
        observed = writes.observation(request.method, proxy.raw_path(request.environ), request.headers, proxy.forwarded_for())
        response.call_on_close(lambda: writes.run_safely(services, observed))
    return response
