"""Nextcloud's DAV URL conventions, in one place.

Paths here are lists of decoded segments below the DAV root (/remote.php/dav):
  calendars/<uid>/<uri>                        a user's calendar
  calendars/<sharee>/<uri>_shared_by_<owner>   a sharee's view of <owner>'s calendar
  addressbooks/users/<uid>/<uri>               address books, with the same sharing rule
  principals/users/<uid>                       a user principal
The canonical collection key is the owner's path, so owner and sharees share a topic.

Who owns a collection is never read from its name: Sabre accepts any collection URI, so
bob may create a calendar literally named `personal_shared_by_alice`. A
`<uri>_shared_by_<x>` name maps to x's `<uri>` only when the upstream server answered
that the owner is x (`oc:owner-principal`, or `DAV:owner` when that is absent, naming
user x, who is not the viewer); otherwise the name is taken literally in the viewer's
home, so a look-alike gets a topic of its own. CalendarServer's `cs:shared` resource
type is not used: it says that a calendar is shared, not by whom.
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
    """The owner's key for a calendar or address-book path; None for other paths.
    `owner_principal`: the owner as the upstream server reported it (None when unknown)."""
    size = collection_segments(segments)
    if size is None or len(segments) != size:
        return None
    *home, name = segments
    viewer = home[-1]
    owner = uid_of_principal(owner_principal)
    if owner and owner != viewer:
        suffix = SHARED_BY + owner
        if name.endswith(suffix) and len(name) > len(suffix):
            return _key(segments[0], owner, name[: -len(suffix)])
    return _key(segments[0], viewer, name)


def claimed_key(segments: list[str]) -> str | None:
    """The owner's key a `<uri>_shared_by_<x>` name claims, unverified; None for other paths.

    Only a hint of where to look (a share's view cannot be asked about once it is deleted,
    and a write's collection may be either); never a reason to publish to that topic."""
    size = collection_segments(segments)
    if size is None or len(segments) != size or SHARED_BY not in segments[-1]:
        return None
    uri, _, owner = segments[-1].rpartition(SHARED_BY)
    if not uri or not owner or owner == segments[-2]:
        return None
    return _key(segments[0], owner, uri)


def _key(top: str, owner: str, uri: str) -> str:
    return calendar_key(owner, uri) if top == "calendars" else addressbook_key(owner, uri)
