"""Operational commands: run the processes, inspect subscriptions, check the set-up."""
from __future__ import annotations


def register(commands) -> None:
    """Add the operational sub-commands to the `davpush` parser."""
    from .nextcloud import cli as nextcloud_cli

    nextcloud_cli.register(commands)
