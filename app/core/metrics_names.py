"""Counter names shared by the processes that write them and /push/metrics that reads them.

A counter is stored as `name|label=value|label=value` in one Redis hash, so every
process (web, workers) adds to the same numbers.
"""
from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


# Push services named in metrics; every other origin is "other", so a user who registers
# endpoints on many hosts cannot grow the metrics without bound.
KNOWN_PUSH_SERVICES = (
    ("fcm.googleapis.com", "fcm"),
    ("updates.push.services.mozilla.com", "mozilla"),
    ("web.push.apple.com", "apple"),
    (".notify.windows.com", "windows"),
    ("ntfy.sh", "ntfy.sh"),
)


def push_service_label(url: str) -> str:
    _, separator, rest = url.partition("://")
    if not separator:
        return _label_for_authority(url)
    return _label_for_authority("//" + rest.split("/", 1)[0])


@lru_cache(maxsize=1024)
def _label_for_authority(text: str) -> str:
    """Cached per authority (a worker labels every push it sends; push services are few)."""
    try:
        host = (urlsplit(text).hostname or "").lower()
    except ValueError:
        return "other"
    for suffix, label in KNOWN_PUSH_SERVICES:
        if host == suffix or (suffix.startswith(".") and host.endswith(suffix)):
            return label
    return "other"


@lru_cache(maxsize=4096)  # called for every push's outcome; the label values are few
def counter(name: str, **labels: str) -> str:
    return "|".join([name] + [f"{k}={v}" for k, v in sorted(labels.items())])


def parse(key: str) -> tuple[str, dict[str, str]]:
    name, *pairs = key.split("|")
    return name, dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def latency_bucket(seconds: float) -> str:
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            return str(bound)
    return "+Inf"
