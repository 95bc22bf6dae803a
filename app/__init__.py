"""davpush: WebDAV-Push for Nextcloud and other DAV servers."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import redis
from flask import Flask, Response, g, request

from .core.config import Settings, load_settings
from .core.logs import client_request_id, log_request, new_request_id, request_id

if TYPE_CHECKING:
    from .core.services import Services


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
    app.wsgi_app = gateway.DavLane(app.wsgi_app, services)  # type: ignore[method-assign]  # DAV requests skip Flask (gateway/lane.py)

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


def _install_request_logging(app: Flask) -> None:
    @app.before_request
    def start():
        g.started = time.perf_counter()
        g.request_id = client_request_id(request.headers.get("X-Request-Id")) or new_request_id()
        request_id.set(g.request_id)

    @app.after_request
    def finish(response):
        response.headers["X-Request-Id"] = g.get("request_id", "-")
        log_request(request.method, request.path, response.status_code, g.get("started", time.perf_counter()))
        return response
