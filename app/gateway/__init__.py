"""The DAV gateway: everything under DAV_PREFIX goes through here.

Most requests are answered by the DAV lane (lane.py) before Flask sees them; the blueprint
answers POST (push registration, or forwarded) and whatever the lane leaves to Flask.
"""
from __future__ import annotations

from flask import Blueprint, request
from werkzeug.routing import PathConverter

from ..core.current import current_services
from . import proxy, registration, writes
from .lane import DAV_METHODS, DavLane, answer_dav, refuse_looped_request
from .upstream import UnreadableRequestBody, UpstreamUnavailable

__all__ = ["AnyPath", "DavLane", "create_blueprint"]


class AnyPath(PathConverter):
    """Like `path`, but also matches a leading slash ("/dav//x" is upstream's business, not a 404)."""

    regex = ".*?"
    part_isolating = False  # werkzeug would otherwise match a single segment (no "/" in the regex)


def create_blueprint(dav_prefix: str) -> Blueprint:
    """The gateway's routes; the app must have AnyPath registered as the `anypath` converter."""
    blueprint = Blueprint("gateway", __name__)
    blueprint.before_request(_refuse_looped_request)
    for rule in {dav_prefix or "/", dav_prefix + "/", dav_prefix + "/<anypath:subpath>"}:
        blueprint.add_url_rule(
            rule,
            view_func=dav_entry,
            methods=sorted(DAV_METHODS),
            strict_slashes=False,
            provide_automatic_options=False,
        )
    return blueprint


def _refuse_looped_request():
    refusal = refuse_looped_request(current_services(), request.environ)
    return None if refusal is None else refusal.to_flask()


def dav_entry(subpath: str = ""):
    services = current_services()
    if request.method != "POST":
        return answer_dav(services, request.environ).to_flask()
    try:
        answer = registration.handle_post(services)
    except (UpstreamUnavailable, UnreadableRequestBody) as error:
        return proxy.unavailable(error).to_flask()
    response = answer.response
    if not answer.answered_here and 200 <= response.status_code < 300:
        environ = request.environ
        observed = writes.observation("POST", proxy.raw_path(environ), environ, proxy.forwarded_for(environ))
        response.call_on_close(lambda: writes.run_safely(services, observed))
    return response
