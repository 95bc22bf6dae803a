"""Who is calling: derived from upstream's answer to the caller's own credentials."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ..net.http_auth import basic_credentials
from .upstream import CollectionFacts


def identity(facts: CollectionFacts, authorization: str | None) -> str | None:
    """The caller's principal URL path, else `basic:<user name>`; None if unknown.

    Credentials themselves are never kept: only this identity is stored.
    """
    if facts.current_user_principal:
        path = unquote(urlsplit(facts.current_user_principal).path).rstrip("/")
        if path:
            return path
    credentials = basic_credentials(authorization)
    return f"basic:{credentials[0]}" if credentials and credentials[0] else None
