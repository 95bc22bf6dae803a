"""Operations endpoints: /push/healthz, /push/metrics and the rq-dashboard at /push/rq/."""
from __future__ import annotations

import hmac
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from rq.registry import FailedJobRegistry, ScheduledJobRegistry
from rq.serializers import JSONSerializer

from ..core import metrics_names
from ..core.current import current_services
from ..net.http_auth import basic_credentials
from . import checks

if TYPE_CHECKING:
    from ..core.services import Services

DASHBOARD_PREFIX = "/push/rq"
ADMIN_USER = "admin"
blueprint = Blueprint("admin", __name__, url_prefix="/push")


def _admin_ok(settings) -> bool:
    credentials = basic_credentials(request.headers.get("Authorization"))
    if credentials is None or not settings.admin_password:
        return False
    user, password = credentials
    user_ok = hmac.compare_digest(user.encode(), ADMIN_USER.encode())
    password_ok = hmac.compare_digest(password.encode(), settings.admin_password.encode())
    return user_ok and password_ok


def _challenge() -> Response:
    settings = current_services().settings
    if not settings.admin_password:
        return Response("disabled: set ADMIN_PASSWORD to enable the admin pages\n", 403, mimetype="text/plain")
    return Response(
        "admin login required\n", 401, {"WWW-Authenticate": 'Basic realm="davpush admin", charset="UTF-8"'}, mimetype="text/plain"
    )


@blueprint.route("/livez", methods=["GET", "HEAD"])
def livez():
    """Liveness: the process answers (no Redis, no upstream: a restart would not fix those)."""
    return Response("ok\n", 200, {"Cache-Control": "no-store"}, mimetype="text/plain")


@blueprint.route("/healthz", methods=["GET"])
def healthz():
    results = checks.collect(current_services())
    healthy = all(result["ok"] for result in results.values())
    response = jsonify(status="ok" if healthy else "fail", checks=results)
    response.status_code = 200 if healthy else 503
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.route("/metrics", methods=["GET"])
def metrics():
    services = current_services()
    if not _admin_ok(services.settings):
        return _challenge()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(services))
    return Response(generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


class _Collector:
    """Reads the shared counters and a few gauges from Redis at scrape time."""

    COUNTERS = {
        "webhook_events": ("davpush_webhook_events", "Webhook events by class and outcome", ("event", "outcome")),
        "registrations": ("davpush_registrations", "Registration requests by result", ("action",)),
        "pushes": ("davpush_pushes", "Push requests by outcome and push service (fcm, mozilla, apple, windows, ntfy.sh or other)",
                   ("outcome", "origin")),
        "events_merged": ("davpush_events_merged", "Changes merged into an already queued delivery", ()),
        "events_stale": ("davpush_events_stale", "Changes dropped because their sync-token was already pushed", ()),
        "gateway_writes": ("davpush_gateway_writes", "Successful DAV writes observed by the gateway", ("outcome",)),
    }

    def __init__(self, services: Services):
        self.services = services

    def collect(self):
        store = self.services.store
        raw = store.counters()
        families = {
            key: CounterMetricFamily(name, help_text, labels=list(labels))
            for key, (name, help_text, labels) in self.COUNTERS.items()
        }
        buckets: dict[str, int] = {}
        for key, value in raw.items():
            name, labels = metrics_names.parse(key)
            if name in families:
                spec = self.COUNTERS[name][2]
                families[name].add_metric([labels.get(label, "") for label in spec], value)
            elif name == "push_latency_bucket":
                buckets[labels.get("le", "+Inf")] = value
        yield from families.values()

        cumulative, rows = 0, []
        for bound in [str(b) for b in metrics_names.LATENCY_BUCKETS] + ["+Inf"]:
            cumulative += buckets.get(bound, 0)
            rows.append((bound, cumulative))
        histogram = HistogramMetricFamily(
            "davpush_push_latency_seconds", "From change accepted by davpush to push answered by the push service"
        )
        histogram.add_metric([], rows, sum_value=raw.get(metrics_names.counter("push_latency_sum_ms"), 0) / 1000)
        yield histogram

        queue = self.services.queue
        gauges = {
            "davpush_subscriptions_live": ("Live (unexpired) subscriptions", store.count_live()),
            "davpush_queue_depth": ("Delivery jobs waiting in the queue", queue.count),
            "davpush_jobs_scheduled": ("Delayed delivery and retry jobs", ScheduledJobRegistry(queue=queue).count),
            "davpush_jobs_failed": ("Jobs in the failed registry", FailedJobRegistry(queue=queue).count),
            "davpush_workers_alive": ("Workers with a recent heartbeat", _alive(store)),
        }
        for name, (help_text, value) in gauges.items():
            yield GaugeMetricFamily(name, help_text, value=value)


def _alive(store) -> int:
    now = time.time()
    return sum(1 for at in store.heartbeats().values() if now - at < checks.WORKER_STALE_SECONDS)


_DESTRUCTIVE_SUFFIXES = ("/delete", "/empty", "/compact")


def mount_dashboard(app: Flask, services: Services) -> None:
    """rq-dashboard behind the admin login; delete/empty/compact only when allowed."""
    import rq_dashboard
    from rq_dashboard import web as dashboard_web

    settings = services.settings
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = not settings.dashboard_allow_delete
    dashboard_web.config.serializer = JSONSerializer
    dashboard_web.setup_rq_connection(app)
    app.redis_conn = services.redis  # type: ignore[attr-defined]  # the service's own client: its timeouts, TLS settings and pool
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=DASHBOARD_PREFIX)

    @app.before_request
    def guard_dashboard():
        if not (request.path == DASHBOARD_PREFIX or request.path.startswith(DASHBOARD_PREFIX + "/")):
            return None
        if not _admin_ok(settings):
            return _challenge()
        if request.method not in ("GET", "HEAD") or "/requeue/" in request.path:
            if request.method != "POST" or not _same_origin():
                return Response("refused: cross-site or non-POST state change\n", 403, mimetype="text/plain")
            if request.path.endswith(_DESTRUCTIVE_SUFFIXES) and not settings.dashboard_allow_delete:
                return Response("destructive actions are off (RQ_DASHBOARD_ALLOW_DELETE=false)\n", 403, mimetype="text/plain")
        return None


def _same_origin() -> bool:
    """Basic auth is replayed by browsers on cross-site requests, so state changes
    must come from the dashboard's own pages."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    try:
        return bool(source) and urlsplit(source).netloc == request.host
    except ValueError:  # not a URL at all
        return False
