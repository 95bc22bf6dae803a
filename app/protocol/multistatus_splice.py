"""Push properties spliced into a streaming multistatus: the source's bytes pass through, edited in place.

The document is parsed incrementally by defusedxml's expat parser (no DTDs, entities or external
references; caps as in multistatus_stream), but no tree is built and nothing is re-serialized:
each <response> is held as bytes until its end tag, the facts about it (href, resource type,
owner, the status of each propstat) are taken from the parse events, and then its bytes go out
with the edits applied at byte offsets: properties davpush added to the request (or push
properties upstream answered itself) cut out, push properties inserted into the propstat with
the right status (or a new propstat), propstats left empty dropped. Inserted fragments declare
their own namespaces, so the source's prefixes stay valid everywhere. The outcome equals
propfind.augment_response applied to the parsed response, at a fraction of the CPU (it is the
cost of every DAVx5 collection refresh; see bench/RESULTS.md, issue 11).

Documents that are not UTF-8 go through multistatus_stream (re-serialized) instead.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from itertools import chain
from urllib.parse import urlsplit
from xml.parsers.expat import ErrorString, ExpatError

from .multistatus_stream import (
    D_MULTISTATUS,
    MAX_DEPTH,
    MAX_RESPONSE_BYTES,
    MAX_RESPONSE_ELEMENTS,
    rewrite_multistatus,
)
from .names import (
    CAL_CALENDAR,
    CARD_ADDRESSBOOK,
    D_HREF,
    D_OWNER,
    D_PROP,
    D_PROPSTAT,
    D_RESOURCETYPE,
    D_RESPONSE,
    D_STATUS,
    OC_OWNER_PRINCIPAL,
    PUSH_PROP_TAGS,
)
from .propfind import Describe, ResourceFacts, augment_response, push_value
from .xmlsafe import XmlError, as_xml_error, defused_parser
from .xmlstream import MAX_NAMES

_SNIFF = 256  # bytes that tell a document's encoding: a BOM or the XML declaration
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_UTF8 = ("utf-8", "utf8")
# A start tag of a well-formed document (expat has read it): attribute values may hold ">" but not "<".
_START_TAG = re.compile(rb"""<[^\s/>]+(?:\s+[^\s=]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*\s*(/?)>""")


def _expat_name(tag: str) -> str:
    """"{uri}local" as expat reports it (with "}" as the namespace separator): "uri}local"."""
    return tag[1:]


def _clark_name(name: str) -> str:
    return "{" + name if "}" in name else name


E_RESPONSE, E_PROPSTAT, E_PROP, E_STATUS, E_HREF = map(_expat_name, (D_RESPONSE, D_PROPSTAT, D_PROP, D_STATUS, D_HREF))
E_RESOURCETYPE, E_OWNER, E_OWNER_PRINCIPAL = map(_expat_name, (D_RESOURCETYPE, D_OWNER, OC_OWNER_PRINCIPAL))
E_CALENDAR, E_ADDRESSBOOK = map(_expat_name, (CAL_CALENDAR, CARD_ADDRESSBOOK))
E_MULTISTATUS = _expat_name(D_MULTISTATUS)
E_PUSH_PROPS = frozenset(map(_expat_name, PUSH_PROP_TAGS))
_FACT_PROPERTIES = frozenset((E_RESOURCETYPE, E_OWNER, E_OWNER_PRINCIPAL))


def is_utf8(head: bytes) -> bool:
    """Whether a document starting with `head` is UTF-8 (no UTF-16/32 BOM, no other declared encoding)."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head[:4]:
        return False
    declared = _DECLARED_ENCODING.match(head.removeprefix(b"\xef\xbb\xbf"))
    return declared is None or declared.group(1).decode("ascii").lower() in _UTF8


def augment_multistatus_stream(
    chunks: Iterable[bytes], *, requested: list[str], injected: set[str], describe: Describe,
    vapid_public_key: str, minimal: bool, max_bytes: int,
) -> Iterator[bytes]:
    """The multistatus of `chunks` with push properties, as propfind.augment_response would edit it.
    Raises XmlError (from wherever it stops) for malformed or forbidden XML and broken caps."""
    chunks = iter(chunks)
    head = b""
    for data in chunks:
        head += data
        if len(head) >= _SNIFF:
            break
    if not is_utf8(head):
        edit = partial(augment_response, requested=requested, injected=injected, describe=describe,
                       vapid_public_key=vapid_public_key, minimal=minimal)
        yield from rewrite_multistatus(chain([head], chunks), edit, max_bytes=max_bytes)
        return
    splicer = _Splicer(requested=requested, injected=injected, describe=describe, vapid_public_key=vapid_public_key,
                       minimal=minimal, max_bytes=max_bytes)
    for data in chain([head], chunks):
        output = splicer.feed(data)
        if output:
            yield output
    yield splicer.close()


_RECORD_DEPTH = 5  # elements down to the properties (multistatus/response/propstat/prop/property) are located


class _Element:
    """Where an element of interest is in the source, by absolute byte offsets."""

    __slots__ = ("name", "start", "end", "close_tag")

    def __init__(self, name: str, start: int, empty_end: int):
        self.name = name
        self.start = start
        self.end = empty_end  # just past its end tag (known at once for an empty-element tag, else -1)
        self.close_tag = -1  # where its end tag starts (the content's end); -1 for an empty-element tag


@dataclass
class _Propstat:
    element: _Element
    prop: _Element | None = None
    cut: list[_Element] = field(default_factory=list)  # properties to remove
    kept: int = 0  # properties that stay
    names: set[str] = field(default_factory=set)  # of the properties that tell facts (resourcetype, owner...)
    status: str | None = None
    resourcetype_kinds: list[str] = field(default_factory=list)
    owner_principal: str | None = None
    owner_href: str | None = None


@dataclass
class _Response:
    element: _Element
    href: str | None = None
    propstats: list[_Propstat] = field(default_factory=list)
    elements: int = 0


class _Splicer:
    def __init__(self, *, requested: list[str], injected: set[str], describe: Describe, vapid_public_key: str,
                 minimal: bool, max_bytes: int):
        self.requested = requested
        self.removed = frozenset(map(_expat_name, injected)) | E_PUSH_PROPS
        self.describe = describe
        self.vapid_public_key = vapid_public_key
        self.minimal = minimal
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._base = 0  # absolute offset of _buffer[0]
        self._sent = 0  # absolute offset up to which the source has been sent (dropped at the next feed)
        self._fed = 0
        self._out: list[bytes] = []
        self._depth = 0
        self._response: _Response | None = None
        self._propstat: _Propstat | None = None
        self._records: list[_Element | None] = [None] * (_RECORD_DEPTH + 1)  # by depth: the open element's record
        self._text: list[str] | None = None  # collecting text for the element at _text_depth
        self._text_depth = 0
        self._text_target = ""
        parser = defused_parser(None)
        self._expat = expat = parser.parser
        expat.buffer_text = True
        expat.StartElementHandler = self._start
        expat.EndElementHandler = self._end
        expat.CharacterDataHandler = None  # only while collecting the text of an element (_collect)
        expat.CommentHandler = None
        expat.ProcessingInstructionHandler = None
        expat.ordered_attributes = True  # a list is cheaper than a dict, and attributes are not looked at
        expat.DefaultHandlerExpand = None  # ElementTree's, for entities: expat refuses undefined ones itself
        self._in_prop = False  # inside the <prop> of the current propstat
        self._property = ""  # name of the open property (depth 5) in it

    # feeding
    def feed(self, data: bytes) -> bytes:
        self._fed += len(data)
        if self._fed > self.max_bytes:
            raise XmlError(f"the XML document is larger than {self.max_bytes} bytes")
        if self._sent > self._base:  # drop what was sent, once per feed rather than once per response
            del self._buffer[:self._sent - self._base]
            self._base = self._sent
        self._buffer += data
        self._parse(data)
        if len(self._expat.intern) > MAX_NAMES:
            raise XmlError(f"the XML document uses more than {MAX_NAMES} distinct names")
        if self._response is not None and self._fed - self._response.element.start > MAX_RESPONSE_BYTES:
            raise XmlError(f"an element of the XML document is larger than {MAX_RESPONSE_BYTES} bytes")
        if self._response is None and self._fed - self._sent > MAX_RESPONSE_BYTES:
            raise XmlError(f"an element of the XML document is larger than {MAX_RESPONSE_BYTES} bytes")
        return self._take()

    def close(self) -> bytes:
        self._parse(b"", final=True)
        self._pass_through(self._fed)
        return self._take()

    def _parse(self, data: bytes, *, final: bool = False) -> None:
        try:
            self._expat.Parse(data, final)
        except ExpatError as error:
            raise XmlError(f"malformed XML: {ErrorString(error.code)}: line {error.lineno}, column {error.offset}") from None
        except XmlError:
            raise
        except Exception:  # defusedxml's refusals and the like: one error type for callers
            with as_xml_error():
                raise

    def _take(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def _slice(self, start: int, end: int) -> bytes:
        return bytes(self._buffer[start - self._base:end - self._base])

    def _pass_through(self, end: int) -> None:
        """Send the source bytes up to `end` unchanged."""
        if end > self._sent:
            self._out.append(self._slice(self._sent, end))
            self._sent = end

    def _element(self, name: str) -> _Element:
        """A record of the element whose start tag expat just read."""
        start = self._expat.CurrentByteIndex
        tag = _START_TAG.match(self._buffer, start - self._base)
        if tag is None:
            raise XmlError("unexpected start tag")  # cannot happen after expat accepted it
        return _Element(name, start, tag.end() + self._base if tag.group(1) else -1)

    def _end_of(self, element: _Element, at: int) -> None:
        """Complete `element`'s offsets from its end event at byte `at`, where its end tag starts."""
        if element.end < 0:
            element.close_tag = at
            element.end = self._buffer.index(b">", at - self._base) + 1 + self._base

    # expat callbacks: called for every element, so they do as little as possible
    def _start(self, name: str, _attributes: list[str]) -> None:
        depth = self._depth = self._depth + 1
        if depth > MAX_DEPTH:
            raise XmlError(f"the XML document is nested deeper than {MAX_DEPTH} levels")
        response = self._response
        if response is not None:
            response.elements += 1
            if response.elements > MAX_RESPONSE_ELEMENTS:
                raise XmlError(f"an element of the XML document has more than {MAX_RESPONSE_ELEMENTS} elements")
        if depth > _RECORD_DEPTH:
            if depth == 6 and self._text is None and self._propstat is not None:
                self._start_depth6(name)
            return
        record = None
        if depth == 1:
            if name != E_MULTISTATUS:
                raise XmlError(f"expected a DAV:multistatus, got {_clark_name(name)}")
        elif depth == 2:
            if name == E_RESPONSE:
                record = self._element(name)
                self._pass_through(record.start)
                self._response = _Response(record)
        elif response is not None and self._text is None:
            record = self._start_in_response(name, depth, response)
        self._records[depth] = record

    def _start_in_response(self, name: str, depth: int, response: _Response) -> _Element | None:
        propstat = self._propstat
        if depth == 3:
            if name == E_PROPSTAT:
                self._propstat = _Propstat(self._element(name))
                return self._propstat.element
            if name == E_HREF and response.href is None:
                self._collect(depth, "href")
            return None
        if propstat is None:
            return None
        if depth == 4:
            if name == E_PROP and propstat.prop is None:
                propstat.prop = self._element(name)
                self._in_prop = True
                return propstat.prop
            if name == E_STATUS and propstat.status is None:
                self._collect(depth, "status")
            return None
        if not self._in_prop:
            return None
        self._property = name  # depth 5: a property
        record = None
        if name in self.removed:
            record = self._element(name)
            propstat.cut.append(record)
        else:
            propstat.kept += 1
        if name in _FACT_PROPERTIES:
            propstat.names.add(name)
            if name == E_OWNER_PRINCIPAL and propstat.owner_principal is None:
                self._collect(depth, "owner_principal")
        return record

    def _start_depth6(self, name: str) -> None:
        """Inside a property: the kinds in <resourcetype>, the <href> in <owner>."""
        propstat = self._propstat
        assert propstat is not None
        if not self._in_prop:
            return
        parent = self._property
        if parent == E_RESOURCETYPE and name in (E_CALENDAR, E_ADDRESSBOOK):
            propstat.resourcetype_kinds.append("calendar" if name == E_CALENDAR else "addressbook")
        elif parent == E_OWNER and name == E_HREF and propstat.owner_href is None:
            self._collect(6, "owner_href")

    def _collect(self, depth: int, target: str) -> None:
        self._text, self._text_depth, self._text_target = [], depth, target
        self._expat.CharacterDataHandler = self._text.append

    def _end(self, _name: str) -> None:
        depth = self._depth
        self._depth = depth - 1
        if self._text is not None and depth == self._text_depth:
            self._store_text("".join(self._text).strip())
            self._text = None
            self._expat.CharacterDataHandler = None
        if depth > _RECORD_DEPTH:
            return
        record = self._records[depth]
        if record is None:
            return
        self._records[depth] = None
        self._end_of(record, self._expat.CurrentByteIndex)
        if depth == 4 and self._propstat is not None and record is self._propstat.prop:
            self._in_prop = False
        if depth == 3 and self._propstat is not None and record is self._propstat.element:
            assert self._response is not None
            self._response.propstats.append(self._propstat)
            self._propstat = None
        elif depth == 2 and self._response is not None:
            self._emit(self._response)
            self._response = None

    def _store_text(self, text: str) -> None:
        target = self._text_target
        if target == "href":
            assert self._response is not None
            self._response.href = text
        elif self._propstat is not None:
            setattr(self._propstat, target, text)

    # editing
    def _emit(self, response: _Response) -> None:
        facts = _facts(response)
        topic = self.describe(facts) if facts is not None else None
        cuts: list[tuple[int, int]] = []
        inserts: list[tuple[int, bytes]] = []
        remaining: dict[int, int] = {}
        for index, propstat in enumerate(response.propstats):
            cuts.extend((p.start, p.end) for p in propstat.cut)
            remaining[index] = propstat.kept
        additions: tuple[int, bytes] | None = None
        if topic is not None:
            additions = (200, b"".join(push_value(tag, topic, self.vapid_public_key) for tag in self.requested))
        elif not self.minimal and response.propstats:
            additions = (404, b"".join(_empty(tag) for tag in self.requested))
        if additions is not None and additions[1]:
            code, fragment = additions
            target = _propstat_with(response.propstats, code)
            prop = response.propstats[target].prop if target is not None else None
            if target is not None and prop is not None:
                inserts.append((prop.close_tag, fragment))
                remaining[target] += 1
            else:
                close_tag = response.element.close_tag
                inserts.append((close_tag, _new_propstat(code, fragment)))
        empty = [i for i, count in remaining.items() if count == 0]
        if len(empty) == len(response.propstats) and response.propstats and not inserts:
            empty = empty[1:]  # a response keeps at least one propstat
        for index in empty:
            element = response.propstats[index].element
            cuts = [c for c in cuts if not element.start <= c[0] < element.end]
            cuts.append((element.start, element.end))
        self._write_edited(response.element, cuts, inserts)

    def _write_edited(self, element: _Element, cuts: list[tuple[int, int]], inserts: list[tuple[int, bytes]]) -> None:
        edits = sorted([(start, end, b"") for start, end in cuts] + [(at, at, data) for at, data in inserts],
                       key=lambda edit: (edit[0], edit[1]))
        self._pass_through(element.start)
        position = element.start
        for start, end, data in edits:
            if start > position:
                self._out.append(self._slice(position, start))
            if data:
                self._out.append(data)
            position = max(position, end)
        self._out.append(self._slice(position, element.end))
        self._sent = element.end


def _propstat_with(propstats: list[_Propstat], code: int) -> int | None:
    """The first propstat with this status whose <prop> can take more properties."""
    for index, propstat in enumerate(propstats):
        if f" {code}" in (propstat.status or "") and propstat.prop is not None and propstat.prop.close_tag >= 0:
            return index
    return None


def _facts(response: _Response) -> ResourceFacts | None:
    """As propfind._facts: from the first 200 propstat that has each property."""
    if not response.href:
        return None
    kind: str | None = None
    principal: str | None = None
    owner_href: str | None = None
    seen_resourcetype = False
    for propstat in response.propstats:
        if " 200" not in (propstat.status or ""):
            continue
        names = propstat.names
        if not seen_resourcetype and E_RESOURCETYPE in names:
            seen_resourcetype = True
            kinds = propstat.resourcetype_kinds
            kind = "calendar" if "calendar" in kinds else "addressbook" if "addressbook" in kinds else None
        if principal is None and E_OWNER_PRINCIPAL in names:
            principal = propstat.owner_principal or ""
        if owner_href is None and E_OWNER in names:
            owner_href = propstat.owner_href or ""
    href = response.href
    path = href if href.startswith("/") and "?" not in href and "#" not in href else urlsplit(href).path
    return ResourceFacts(path, kind, principal or owner_href or None)


@lru_cache(maxsize=64)
def _empty(tag: str) -> bytes:
    return ET.tostring(ET.Element(tag))


def _new_propstat(code: int, fragment: bytes) -> bytes:
    reason = "OK" if code == 200 else "Not Found"
    return (b'<d:propstat xmlns:d="DAV:"><d:prop>' + fragment
            + f"</d:prop><d:status>HTTP/1.1 {code} {reason}</d:status></d:propstat>".encode())
