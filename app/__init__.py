"""davpush: WebDAV-Push for Nextcloud and other DAV servers."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import redis
from flask import Flask, Response, g, request

from .core.config import Settings, load_settings
from .core.logs import log, new_request_id, request_id

if TYPE_CHECKING:
    from .core.services import Services

access_logger = logging.getLogger("davpush.access")


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the WSGI app. Raises ConfigError (one printable line) on bad settings."""
    from . import gateway
    from .core.current import install_services
    from .core.services import build_services
    from .gateway import push_api
    from .nextcloud import webhooks
    from .ops import admin

    settings = settings or load_settings()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None
    app.url_map.merge_slashes = False  # a DAV path with "//" goes upstream as it is, not redirected
    app.url_map.converters["anypath"] = gateway.AnyPath
    services = services or build_services(settings)
    install_services(app, services)
    app.register_blueprint(push_api.blueprint)
    app.register_blueprint(admin.blueprint)
    admin.mount_dashboard(app, services)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(gateway.create_blueprint(settings.dav_prefix))
    _install_request_logging(app)

    @app.errorhandler(404)
    def not_found(_error):
        return Response("not found\n", 404, mimetype="text/plain")

    @app.errorhandler(redis.RedisError)
    def storage_unavailable(_error):
        logging.getLogger("davpush").exception("Redis is unavailable")
        return Response("storage unavailable, try again later\n", 503, {"Retry-After": "30"}, mimetype="text/plain")

    @app.errorhandler(500)
    def internal_error(_error):
        return Response("internal error; see the service log for the request id\n", 500, mimetype="text/plain")

    @app.errorhandler(405)
    def not_allowed(_error):
        return Response("method not allowed\n", 405, mimetype="text/plain")

    return app


def _client_request_id() -> str:
    """A caller's X-Request-Id, if it is safe to put in logs."""
    value = request.headers.get("X-Request-Id", "")
    return value if 0 < len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value) else ""


def _install_request_logging(app: Flask) -> None:
    @app.before_request
    def start():
        g.started = time.perf_counter()
        g.request_id = _client_request_id() or new_request_id()
        request_id.set(g.request_id)

    @app.after_request
    def finish(response):
        response.headers["X-Request-Id"] = g.get("request_id", "-")
        log(
            access_logger,
            logging.INFO,
            "request",
            method=request.method,
            path=request.path,
            status=response.status_code,
            ms=round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1),
        )
        return response
