"""Reading HTTP Basic credentials without ever failing on odd input."""
from __future__ import annotations

import base64


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) of a Basic `Authorization` value, or None if it is not readable Basic."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # ValueError covers bad base64, non-ASCII header text and non-UTF-8 credentials.
        user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except ValueError:
        return None
    return user, password
