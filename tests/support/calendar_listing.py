"""A large Sabre-style Depth 1 PROPFIND answer on a calendar, as Nextcloud gives the gateway when a
client asks for push properties (the gateway asks for resourcetype and owners instead)."""
from __future__ import annotations

import hashlib
from collections.abc import Iterator

from .davxml import APPLE, DAV, OC, Writer

OWNER_HREF = "<d:href>/remote.php/dav/principals/users/{owner}/</d:href>"


def calendar_response(writer: Writer, path: str, owner: str) -> str:
    return writer.response(path, [
        (f"{DAV}displayname", "Work"), (f"{APPLE}calendar-color", "#0082c9"),
        (f"{DAV}resourcetype", "<d:collection/><cal:calendar/>"),
        (f"{OC}owner-principal", f"principals/users/{owner}"), (f"{DAV}owner", OWNER_HREF.format(owner=owner))])


def event_response(writer: Writer, path: str, owner: str, index: int) -> str:
    etag = hashlib.md5(f"{path}{index}".encode()).hexdigest()
    return writer.response(f"{path}{etag[:8]}-{etag[8:12]}-{etag[12:16]}-{etag[16:20]}-{etag[20:]}.ics", [
        (f"{DAV}getetag", f"&quot;{etag}&quot;"), (f"{DAV}resourcetype", ""),
        (f"{DAV}owner", OWNER_HREF.format(owner=owner))], [f"{OC}owner-principal"])


def calendar_listing(events: int, path: str = "/remote.php/dav/calendars/bob/work_shared_by_alice/",
                     owner: str = "alice") -> bytes:
    """The calendar first, then `events` events (~430 bytes each), then a sync-token."""
    writer = Writer()
    responses = [calendar_response(writer, path, owner)]
    responses += [event_response(writer, path, owner, i) for i in range(events)]
    return writer.multistatus(responses, "<d:sync-token>http://sabre.io/ns/sync/42</d:sync-token>")


def pieces(document: bytes, size: int) -> list[bytes]:
    """`document` cut into `size`-byte chunks (one empty chunk for an empty document)."""
    return [document[i:i + size] for i in range(0, len(document), size)] or [b""]


def tracked_pieces(document: bytes, size: int) -> tuple[Iterator[bytes], list[int]]:
    """The chunks as a stream, and the list of chunk numbers handed out so far (filled as it is read)."""
    consumed: list[int] = []

    def chunks() -> Iterator[bytes]:
        for index, piece in enumerate(pieces(document, size)):
            consumed.append(index)
            yield piece

    return chunks(), consumed
