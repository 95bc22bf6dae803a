"""The services object of the running Flask app: the one way request code gets at it.

A leaf module (Flask only, Services for type checking): the gateway, webhooks and admin
blueprints import it, while app/core/services.py, which builds the services from those
components, imports them, so the accessor cannot live there without an import cycle.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import Flask, current_app

if TYPE_CHECKING:
    from .services import Services

EXTENSION = "davpush"


def install_services(app: Flask, services: Services) -> None:
    app.extensions[EXTENSION] = services


def current_services() -> Services:
    """The services of the app handling the current request."""
    return cast("Services", current_app.extensions[EXTENSION])
