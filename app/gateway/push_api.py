"""The /push/ URL space owned by davpush (subscriptions; webhooks, health and metrics join later)."""
from __future__ import annotations

from flask import Blueprint, current_app

from . import proxy, registration
from .upstream import UpstreamUnavailable

blueprint = Blueprint("push", __name__, url_prefix="/push")


@blueprint.route("/subscriptions/<sub_id>", methods=["DELETE"])
def delete_subscription(sub_id: str):
    try:
        return registration.handle_delete(current_app.extensions["davpush"], sub_id)
    except UpstreamUnavailable as error:
        return proxy.unavailable(error)
