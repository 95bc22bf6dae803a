"""`davpush nextcloud ...` commands (webhook registration through the OCS API)."""
from __future__ import annotations


def register(commands) -> None:
    """Add the `nextcloud` sub-command group. (Filled in by the setup-kit work.)"""
    commands.add_parser("nextcloud", help="Nextcloud set-up helpers")
