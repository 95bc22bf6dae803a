"""HTTP dates (RFC 9110 §5.6.7) and the expiry policy for registrations."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

MIN_DAYS = 3

_FORMATS = (
    "%a, %d %b %Y %H:%M:%S GMT",  # IMF-fixdate
    "%A, %d-%b-%y %H:%M:%S GMT",  # obsolete RFC 850
    "%a %b %d %H:%M:%S %Y",  # asctime
)
_LAST_YEAR = 9000


def parse_http_date(value: str | None) -> datetime | None:
    """An aware UTC datetime, or None when the value is not an HTTP date."""
    if not value:
        return None
    # Nextcloud's dav_push app emitted "... +0000+"; accept "+0000"/"UTC" as GMT too.
    text = " ".join(value.strip().rstrip("+").split())
    for suffix in (" +0000", " UTC", " UT", " Z"):
        if text.endswith(suffix):
            text = text[: -len(suffix)] + " GMT"
    for pattern in _FORMATS:
        try:
            parsed = datetime.strptime(text, pattern)
        except ValueError:
            continue
        if parsed.year > _LAST_YEAR:
            return None
        return parsed.replace(tzinfo=UTC)
    return None


def format_http_date(moment: datetime) -> str:
    """IMF-fixdate in GMT, e.g. 'Wed, 02 Oct 2024 07:28:00 GMT'."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def grant_expiry(requested: datetime | None, now: datetime, max_days: int) -> datetime:
    """The expiry the server grants: the request clamped to [3 days, max_days].

    Absent, unparsable or past requests get the default, which is max_days.
    """
    longest = now + timedelta(days=max_days)
    if requested is None or requested <= now:
        return longest.replace(microsecond=0)
    shortest = now + timedelta(days=MIN_DAYS)
    return min(max(requested, shortest), longest).replace(microsecond=0)
