"""What to do with each push-service answer (RFC 8030, UnifiedPush, ntfy quirks)."""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from ..protocol.expiry import parse_http_date
from ..protocol.numbers import ascii_digits


class OutcomeKind(StrEnum):
    """What a push's answer means for its subscription (the values are metric labels)."""

    SUCCESS = "success"  # record last success
    GONE = "gone"  # 404/410: delete the subscription now
    RETRY = "retry"  # 429/503, other 5xx, timeouts, connection errors, unresolvable names: retry later, bounded
    REJECTED = "rejected"  # 400/413, redirects, ntfy's 507 and other 4xx: log, no retry
    AUTH = "auth"  # 401/403: VAPID or key problem; log and count
    BLOCKED = "blocked"  # the endpoint resolved to a forbidden address at send time


SUCCESS, GONE, RETRY, REJECTED, AUTH, BLOCKED = (
    OutcomeKind.SUCCESS, OutcomeKind.GONE, OutcomeKind.RETRY, OutcomeKind.REJECTED, OutcomeKind.AUTH, OutcomeKind.BLOCKED,
)

MIN_RETRY_AFTER, MAX_RETRY_AFTER = 1, 3600


@dataclass(frozen=True)
class Outcome:
    subscription_id: str
    kind: OutcomeKind
    status: int | None = None  # HTTP status, None when no answer
    retry_after: float | None = None  # seconds, for RETRY when the service said so
    detail: str = ""


def classify(status: int) -> OutcomeKind:
    if 200 <= status < 300:
        return SUCCESS
    if status in (404, 410):
        return GONE
    if status in (401, 403):
        return AUTH
    if status == 429 or status == 503 or (500 <= status < 600 and status != 507):
        return RETRY
    return REJECTED


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), clamped.

    None when the value is neither: the caller then backs off as usual. Only ASCII text counts
    (the answer head is decoded as latin-1; see app/protocol/numbers.py).
    """
    if not value:
        return None
    value = value.strip()
    if not value.isascii():
        return None
    if ascii_digits(value):
        seconds = float(value)  # float, not int: no digit-count limit, huge values become inf
    else:
        moment = parse_http_date(value)
        if moment is None:
            return None
        seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return float(min(max(seconds, MIN_RETRY_AFTER), MAX_RETRY_AFTER))


def backoff(attempt: int, base: float = 5.0, cap: float = 600.0, rng: Callable[[], float] = random.random) -> float:
    """Exponential backoff with ±50% jitter: ~5 s, 10 s, 20 s … capped at 10 min."""
    growth: float = 2 ** max(0, attempt - 1)
    return min(cap, base * growth) * (0.5 + rng())
