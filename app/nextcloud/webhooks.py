"""POST /push/webhooks/nextcloud: Nextcloud webhook_listeners events → queued deliveries.

Answers 202 as soon as the change is merged or queued: Nextcloud's job worker
waits for this answer and never retries, so the receiver must be fast.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

from flask import Blueprint, jsonify, request
from marshmallow import ValidationError

from ..changes.ingest import ChangeIngestor
from ..core.current import current_services
from ..core.logs import log
from ..core.metrics_names import counter
from ..protocol.subscription import Change
from ..protocol.topics import topic_for_collection
from . import schemas

MAX_BODY = 512 * 1024
logger = logging.getLogger("davpush.webhooks")
blueprint = Blueprint("nextcloud_webhooks", __name__)


def _error(status: int, message: str, **headers):
    response = jsonify(error=message)
    response.status_code = status
    response.headers.update(headers)
    return response


def _authorized(secret: str) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), secret.encode())


@blueprint.route("/push/webhooks/nextcloud", methods=["POST"])
def receive():
    services = current_services()
    accepted_ms = int(time.time() * 1000)
    if not _authorized(services.settings.webhook_secret):
        services.store.count(counter("webhook_events", event="-", outcome="unauthorized"))
        return _error(401, "missing or wrong bearer token", **{"WWW-Authenticate": 'Bearer realm="davpush"'})
    try:
        body = request.stream.read(MAX_BODY + 1)
    except OSError:  # e.g. malformed chunked encoding
        return _error(400, "the request body could not be read")
    if len(body) > MAX_BODY:
        return _error(413, f"webhook body larger than {MAX_BODY} bytes")
    try:
        document = json.loads(body)
        json.dumps(document, ensure_ascii=False).encode("utf-8")  # lone surrogate escapes ("\ud800") fail here
        envelope = schemas.EnvelopeSchema().load(document)
    except UnicodeEncodeError:
        return _error(400, "body is not JSON we accept: it contains a lone surrogate escape (not Unicode text)")
    except RecursionError:  # json.loads on a few hundred kB of "[[[[…"
        return _error(400, "body is not JSON we accept: nested too deeply")
    except (ValueError, TypeError) as error:
        return _error(400, f"body is not JSON: {error}")
    except ValidationError as error:
        return _error(400, f"not a webhook envelope: {error.messages}")

    event = envelope["event"]
    event_class = str(event.get("class") or "")
    name = schemas.short_class(event_class)
    if not schemas.is_known(event_class):
        services.store.count(counter("webhook_events", event="unknown", outcome="ignored"))
        log(logger, logging.INFO, "webhook ignored: unknown event class", event=event_class[:200])
        return jsonify(status="ignored", reason="unknown event class"), 202
    try:
        collection_changes = schemas.changes_for(event_class, event)
    except ValidationError as error:
        services.store.count(counter("webhook_events", event=name, outcome="malformed"))
        return _error(400, f"malformed {name}: {error.messages}")

    # Every change is built before anything is recorded, so a failure leaves nothing half-written.
    changes = [
        Change(
            topic=topic_for_collection(services.settings.secret_key, item.key),
            content_depth=item.content_depth,
            property_update=item.property_update,
            collection_deleted=item.collection_deleted,
            sync_token=item.sync_token,
            accepted_ms=accepted_ms,
        )
        for item in collection_changes
    ]
    if not services.store.first_sighting("webhook:" + hashlib.sha256(body).hexdigest()):
        services.store.count(counter("webhook_events", event=name, outcome="duplicate"))
        return jsonify(status="duplicate"), 202

    ingestor = ChangeIngestor(services)
    outcomes = [ingestor.submit(change) for change in changes]
    for outcome in outcomes:
        services.store.count(counter("webhook_events", event=name, outcome=outcome))
    log(logger, logging.INFO, "webhook accepted", event=name, outcomes=",".join(outcomes) or "none")
    return jsonify(status="accepted", outcomes=outcomes), 202
