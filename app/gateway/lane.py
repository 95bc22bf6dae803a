"""The DAV lane: requests under DAV_PREFIX answered at the WSGI level, without Flask.

Every CalDAV/CardDAV request of every user passes through here, so its CPU is a tax on the whole
Nextcloud: Flask's request context, routing and response objects cost more than the forwarding
itself (bench/RESULTS.md, issue 11). POST (push registration) is the exception: it goes to the
Flask blueprint, which answers it or forwards it the same way.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import redis

from ..core.logs import client_request_id, log, log_request, new_request_id, request_id
from . import discovery, proxy, writes
from .answer import Answer
from .loop import LOOP_STATUS
from .upstream import UnreadableRequestBody, UpstreamUnavailable

if TYPE_CHECKING:
    from ..core.services import Services

logger = logging.getLogger("davpush.gateway")
LOOP_WARNING_INTERVAL = 60.0  # seconds between warnings about the same misconfiguration, per process
LOOPED_BODY_DRAIN = 1024 * 1024
_last_loop_warning = float("-inf")

DAV_METHODS = frozenset((
    "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND", "PROPPATCH", "MKCOL",
    "MKCALENDAR", "COPY", "MOVE", "LOCK", "UNLOCK", "REPORT", "SEARCH", "ACL", "BIND", "UNBIND", "REBIND",
))  # fmt: skip
FLASK_METHODS = frozenset(("POST",))  # answered by the blueprint (registration)


class DavLane:
    """WSGI middleware in front of the Flask app."""

    def __init__(self, flask_wsgi, services: Services):
        self.flask_wsgi = flask_wsgi
        self.services = services
        self.prefix = services.settings.dav_prefix

    def owns(self, environ) -> bool:
        method = environ.get("REQUEST_METHOD", "")
        if method not in DAV_METHODS or method in FLASK_METHODS:
            return False
        path = environ.get("PATH_INFO", "")
        if self.prefix:
            return path == self.prefix or path.startswith(self.prefix + "/")
        return not (path == "/push" or path.startswith("/push/"))  # DAV at the root: davpush keeps /push/

    def __call__(self, environ, start_response):
        if not self.owns(environ):
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        rid = client_request_id(environ.get("HTTP_X_REQUEST_ID")) or new_request_id()
        request_id.set(rid)
        answer = answer_dav(self.services, environ)
        answer.headers.append(("X-Request-Id", rid))
        log_request(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), answer.status, started)
        return answer(environ, start_response)


def answer_dav(services: Services, environ) -> Answer:
    """The answer to a DAV request (any method but POST)."""
    looped = refuse_looped_request(services, environ)
    if looped is not None:
        return looped
    method = environ["REQUEST_METHOD"]
    try:
        if method == "PROPFIND":
            answer = discovery.handle_propfind(services, environ)
        elif method == "OPTIONS":
            answer = discovery.handle_options(services, environ)
        else:
            answer = proxy.forward(services.upstream, environ, proxy.request_body(environ))
    except (UpstreamUnavailable, UnreadableRequestBody) as error:
        return proxy.unavailable(error)
    except redis.RedisError:
        logger.exception("Redis is unavailable")
        return Answer.text(503, "storage unavailable, try again later\n", [("Retry-After", "30")])
    except Exception:
        logger.exception("error answering a DAV request")
        return Answer.text(500, "internal error; see the service log for the request id\n")
    observe_write(services, environ, answer)
    return answer


def observe_write(services: Services, environ, answer: Answer) -> None:
    """A successful write becomes a change event once the answer has been sent (see writes.py)."""
    method = environ["REQUEST_METHOD"]
    if method in writes.WRITE_METHODS and 200 <= answer.status < 300:
        observed = writes.observation(method, proxy.raw_path(environ), environ, proxy.forwarded_for(environ))
        answer.call_on_close(lambda: writes.run_safely(services, observed))


def refuse_looped_request(services: Services, environ) -> Answer | None:
    """A request davpush itself forwarded has come back: answer 508 before anything else runs
    (forwarding it again would go round until every connection hangs)."""
    global _last_loop_warning
    mark = services.upstream.mark
    if mark is None or not mark.carried_by(environ.get("HTTP_VIA")):
        return None
    now = time.monotonic()
    if now - _last_loop_warning >= LOOP_WARNING_INTERVAL:
        _last_loop_warning = now
        log(logger, logging.WARNING,
            "request loop: a request this davpush forwarded came back to it; UPSTREAM_URL must be Nextcloud's "
            "internal address, not the public one that routes DAV requests to davpush (answering 508)",
            upstream=services.settings.upstream_url, method=environ.get("REQUEST_METHOD"),
            path=environ.get("PATH_INFO"))
    try:
        # Read a small body, so the sender gets the answer instead of a reset connection.
        proxy.read_prefix(environ, LOOPED_BODY_DRAIN)
    except UnreadableRequestBody:
        pass
    message = (
        "508 Loop Detected: this request was forwarded by davpush and came back to it. UPSTREAM_URL must be "
        "Nextcloud's internal address, not the public one that routes DAV requests to davpush.\n"
    )
    return Answer.text(LOOP_STATUS, message, list(mark.answer_headers().items()))
