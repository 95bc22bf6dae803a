"""The /push/ URL space owned by davpush: a subscription's URL (the Location of its registration),
which its owner DELETEs to unregister. Webhooks (app/nextcloud/webhooks.py) and health and metrics
(app/ops/admin.py) are their own blueprints under /push/."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Blueprint, Response, request

from ..core.current import current_services
from ..core.logs import log, short_id
from ..core.metrics_names import counter
from . import proxy
from .identity import identity
from .registration import access_refusal
from .upstream import UpstreamUnavailable

if TYPE_CHECKING:
    from ..core.services import Services

logger = logging.getLogger("davpush.registration")
blueprint = Blueprint("push", __name__, url_prefix="/push")


@blueprint.route("/subscriptions/<sub_id>", methods=["DELETE"])
def delete_subscription(sub_id: str) -> Response:
    try:
        return handle_delete(current_services(), sub_id)
    except UpstreamUnavailable as error:
        return proxy.unavailable(error).to_flask()


def handle_delete(services: Services, sub_id: str) -> Response:
    # Credentials first, so that an unauthenticated caller cannot probe which ids exist.
    root = (services.settings.dav_prefix or "") + "/"
    facts = services.upstream.lookup(root, request.headers.get("Authorization"), proxy.forwarded_for(request.environ))
    refusal = access_refusal(facts, require_collection=False)
    if refusal is not None and facts.status == 401:
        return refusal
    subscription = services.store.get(sub_id)
    if subscription is None or refusal is not None or identity(facts, request.headers.get("Authorization")) != subscription.user:
        # Someone else's (or an unverifiable) registration: indistinguishable from unknown.
        return Response("no such subscription\n", 404, mimetype="text/plain")
    services.store.delete(sub_id)
    services.store.count(counter("registrations", action="deleted"))
    log(logger, logging.INFO, "subscription deleted", subscription=short_id(sub_id), user=subscription.user)
    response = Response(status=204)
    response.headers.pop("Content-Type", None)
    return response
