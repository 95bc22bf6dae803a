"""Push triggers: what a subscription wants to hear about, clamped to what we support."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEPTHS = ("0", "1", "infinity")
# What this server advertises in supported-triggers (and clamps requests to).
MAX_CONTENT_DEPTH = "1"
MAX_PROPERTY_DEPTH = "0"


def normalize_depth(value: str) -> str | None:
    text = value.strip().lower()
    if text == "infinite":  # the draft's spelling until 2025-04
        text = "infinity"
    return text if text in DEPTHS else None


def clamp(depth: str, maximum: str) -> str:
    return depth if DEPTHS.index(depth) <= DEPTHS.index(maximum) else maximum


def covers(depth: str | None, needed: str) -> bool:
    """Whether a subscription depth reaches a change needing `needed` depth."""
    return depth is not None and DEPTHS.index(depth) >= DEPTHS.index(needed)


@dataclass(frozen=True)
class Triggers:
    content_depth: str | None = None
    property_depth: str | None = None
    properties: tuple[str, ...] = ()  # Clark names from the property-update's DAV:prop; empty = all

    @property
    def empty(self) -> bool:
        return self.content_depth is None and self.property_depth is None

    def to_dict(self) -> dict[str, Any]:
        return {"content": self.content_depth, "property": self.property_depth, "props": list(self.properties)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Triggers:
        return cls(data.get("content"), data.get("property"), tuple(data.get("props") or ()))


DEFAULT_TRIGGERS = Triggers(content_depth="1")
