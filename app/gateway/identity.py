"""Who is calling: derived from upstream's answer to the caller's own credentials."""
from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote, urlsplit

from .upstream import CollectionFacts


def identity(facts: CollectionFacts, authorization: str | None) -> str | None:
    """The caller's principal URL path, else `basic:<user name>`; None if unknown.

    Credentials themselves are never kept: only this identity is stored.
    """
    if facts.current_user_principal:
        path = unquote(urlsplit(facts.current_user_principal).path).rstrip("/")
        if path:
            return path
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
        return f"basic:{user}" if user else None
    return None
