"""Nextcloud's DAV URL conventions, in one place.

Paths here are lists of decoded segments below the DAV root (/remote.php/dav):
  calendars/<uid>/<uri>                        a user's calendar
  calendars/<sharee>/<uri>_shared_by_<owner>   a sharee's view of <owner>'s calendar
  addressbooks/users/<uid>/<uri>               address books, with the same sharing rule
  principals/users/<uid>                       a user principal
The canonical collection key is the owner's path, so owner and sharees share a topic.
"""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

DAV_PREFIX = "/remote.php/dav"  # where Nextcloud serves CalDAV/CardDAV
WEBHOOKS_OCS_PATH = "/ocs/v2.php/apps/webhook_listeners/api/v1/webhooks"  # webhook_listeners' OCS API
SHARED_BY = "_shared_by_"
USER_PRINCIPAL = ("principals", "users")


def calendar_key(owner_uid: str, uri: str) -> str:
    return f"calendars/{owner_uid}/{uri}"


def addressbook_key(owner_uid: str, uri: str) -> str:
    return f"addressbooks/users/{owner_uid}/{uri}"


def uid_of_principal(principal: str | None) -> str | None:
    """'principals/users/alice' or an href '/remote.php/dav/principals/users/alice/' → 'alice';
    None for anything else, including text urlsplit() refuses (e.g. "//[x/principals/users/a")."""
    if not principal:
        return None
    try:
        path = urlsplit(principal).path
    except ValueError:
        return None
    segments = [unquote(s) for s in path.split("/") if s]
    for index in range(len(segments) - 2):
        if (segments[index], segments[index + 1]) == USER_PRINCIPAL:
            return segments[index + 2]
    return None


def collection_segments(segments: list[str]) -> int | None:
    """How many leading segments name the collection containing this path, if any."""
    if len(segments) >= 3 and segments[0] == "calendars":
        return 3
    if len(segments) >= 4 and segments[:2] == ["addressbooks", "users"]:
        return 4
    return None


def canonical_key(segments: list[str], owner_principal: str | None = None) -> str | None:
    """The owner's key for a calendar or address-book path; None for other paths."""
    size = collection_segments(segments)
    if size is None or len(segments) != size:
        return None
    *home, uri = segments
    viewer = home[-1]
    owner = uid_of_principal(owner_principal)
    if owner and uri.endswith(SHARED_BY + owner):
        uri = uri[: -len(SHARED_BY + owner)]
    elif SHARED_BY in uri:
        uri, _, owner = uri.rpartition(SHARED_BY)
    owner = owner or viewer
    if segments[0] == "calendars":
        return calendar_key(owner, uri)
    return addressbook_key(owner, uri)


def is_shared_view(segments: list[str]) -> bool:
    """A sharee's view of someone else's collection (deleting it only unsubscribes that sharee)."""
    size = collection_segments(segments)
    return size is not None and len(segments) == size and SHARED_BY in segments[-1]
