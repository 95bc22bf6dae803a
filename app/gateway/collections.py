"""Mapping DAV URLs to canonical collection keys, for Nextcloud and generic upstreams."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ..nextcloud import paths as nextcloud_paths


class CollectionResolver:
    def __init__(self, dav_prefix: str, flavor: str = "nextcloud"):
        self.prefix_segments = [s for s in dav_prefix.split("/") if s]
        self.flavor = flavor

    def segments(self, url_or_path: str) -> list[str] | None:
        """Decoded path segments below the DAV root; None for paths outside it."""
        path = urlsplit(url_or_path).path
        raw = [s for s in path.split("/") if s]
        size = len(self.prefix_segments)
        if raw[:size] != self.prefix_segments:
            return None
        decoded = [unquote(s) for s in raw[size:]]
        if any(s in (".", "..") for s in decoded):
            return None
        return decoded

    def key_for_segments(self, segments: list[str], owner_principal: str | None = None) -> str | None:
        if not segments:
            return None
        if self.flavor == "nextcloud":
            key = nextcloud_paths.canonical_key(segments, owner_principal)
            if key is not None:
                return key
        return "/".join(segments)

    def collection_key(self, url_or_path: str, owner_principal: str | None = None) -> str | None:
        """Canonical key of the collection at this URL. `owner_principal`: the owner upstream
        reported; without it a shared-view name is taken literally (see nextcloud/paths.py)."""
        segments = self.segments(url_or_path)
        return None if segments is None else self.key_for_segments(segments, owner_principal)

    def claimed_key(self, url_or_path: str) -> str | None:
        """The owner's key a shared-view name claims, unverified (see nextcloud_paths.claimed_key)."""
        segments = self.segments(url_or_path)
        if not segments or self.flavor != "nextcloud":
            return None
        return nextcloud_paths.claimed_key(segments)
