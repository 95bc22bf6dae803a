"""DAV:error response bodies (RFC 4918 §16) with WebDAV-Push preconditions."""
from __future__ import annotations

from xml.sax.saxutils import escape

from .names import DAV, PUSH, SABRE

# The draft's prose says no-supported-trigger, its RELAX NG schema no-trigger-supported: emit both.
_ALIASES = {"no-supported-trigger": ("no-supported-trigger", "no-trigger-supported")}


def error_body(message: str, precondition: str | None = None) -> bytes:
    names = _ALIASES.get(precondition, (precondition,)) if precondition else ()
    elements = "".join(f"<P:{name}/>" for name in names if name)
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<D:error xmlns:D="{DAV}" xmlns:P="{PUSH}" xmlns:s="{SABRE}">'
        f"{elements}<s:message>{escape(message)}</s:message></D:error>\n"
    ).encode()
