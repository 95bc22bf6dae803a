"""PUSH_PROXY: the outbound HTTP(S) proxy pushes go through, with optional credentials.

The credentials leave the URL here and travel only as a Proxy-Authorization header to the proxy;
`label` (scheme, host and port) is what may appear in logs and errors.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit


class ProxyURLError(ValueError):
    """PUSH_PROXY is unusable; str() says why and never contains the credentials."""


@dataclass(frozen=True)
class EgressProxy:
    url: str  # scheme://host:port, without credentials
    authorization: str | None = field(default=None, repr=False)  # "Basic …" for Proxy-Authorization

    @property
    def label(self) -> str:
        return self.url


def parse_proxy_url(text: str) -> EgressProxy | None:
    """None for an empty setting; otherwise http(s)://[user:password@]host[:port][/]."""
    text = text.strip()
    if not text:
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ProxyURLError("is not a valid URL (expected http://[user:password@]host:port)") from None
    if parts.scheme not in ("http", "https"):
        raise ProxyURLError("must start with http:// or https://")
    if not parts.hostname:
        raise ProxyURLError("has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProxyURLError("must be just scheme, optional user:password, host and port (no path or query)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    url = f"{parts.scheme}://{host}:{port or (443 if parts.scheme == 'https' else 80)}"
    if parts.username is None and parts.password is None:
        return EgressProxy(url)
    credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
    return EgressProxy(url, "Basic " + base64.b64encode(credentials).decode("ascii"))
