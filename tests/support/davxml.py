"""Sabre-style DAV XML for the test doubles: namespaces, multistatus rendering, and parsing.

Rendering is done with strings rather than ElementTree so that the prefixes are exactly Sabre's
(`d:`, `cal:`, `oc:` ...; other namespaces get `x1`, `x2`, ... declared on the element) and no
global `ET.register_namespace` state leaks into the code under test.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import quote
from xml.sax.saxutils import escape

NAMESPACES = {
    "d": "DAV:",
    "s": "http://sabredav.org/ns",
    "cal": "urn:ietf:params:xml:ns:caldav",
    "cs": "http://calendarserver.org/ns/",
    "oc": "http://owncloud.org/ns",
    "nc": "http://nextcloud.com/ns",
    "card": "urn:ietf:params:xml:ns:carddav",
}
_PREFIX = {ns: prefix for prefix, ns in NAMESPACES.items()}
ROOT_XMLNS = "".join(f' xmlns:{prefix}="{ns}"' for prefix, ns in NAMESPACES.items())

DAV = "{DAV:}"
SABRE = "{http://sabredav.org/ns}"
CALDAV = "{urn:ietf:params:xml:ns:caldav}"
CARDDAV = "{urn:ietf:params:xml:ns:carddav}"
CS = "{http://calendarserver.org/ns/}"
OC = "{http://owncloud.org/ns}"
NC = "{http://nextcloud.com/ns}"
APPLE = "{http://apple.com/ns/ical/}"
PUSH = "{https://bitfire.at/webdav-push}"

STATUS_LINES = {
    200: "HTTP/1.1 200 OK",
    403: "HTTP/1.1 403 Forbidden",
    404: "HTTP/1.1 404 Not Found",
    424: "HTTP/1.1 424 Failed Dependency",
}
HREF_SAFE = "/-_.~():@"  # what Sabre's encodePath leaves alone besides letters and digits


def split_clark(clark: str) -> tuple[str, str]:
    if clark.startswith("{"):
        ns, _, local = clark[1:].partition("}")
        return ns, local
    return "", clark


def encode_href(path: str) -> str:
    return quote(path, safe=HREF_SAFE)


def href(path: str) -> str:
    """`<d:href>` with a percent-encoded path."""
    return f"<d:href>{escape(encode_href(path))}</d:href>"


def text(value) -> str:
    return escape(str(value))


class Writer:
    """Renders one multistatus document."""

    def __init__(self):
        self._extra: dict[str, str] = {}

    def qname(self, clark: str) -> tuple[str, str]:
        """(qualified name, xmlns declaration needed on the element)."""
        ns, local = split_clark(clark)
        if not ns:
            return local, ""
        if ns in _PREFIX:
            return f"{_PREFIX[ns]}:{local}", ""
        prefix = self._extra.setdefault(ns, f"x{len(self._extra) + 1}")
        return f"{prefix}:{local}", f' xmlns:{prefix}="{escape(ns, {chr(34): "&quot;"})}"'

    def element(self, clark: str, inner: str = "") -> str:
        name, decl = self.qname(clark)
        return f"<{name}{decl}>{inner}</{name}>" if inner else f"<{name}{decl}/>"

    def response(self, path: str, found: list[tuple[str, str]], missing: list[str] = (),
                 missing_status: int = 404) -> str:
        parts = [f"<d:response>{href(path)}"]
        for status, props in ((200, found), (missing_status, [(name, "") for name in missing])):
            if props:
                body = "".join(self.element(name, inner) for name, inner in props)
                parts.append(f"<d:propstat><d:prop>{body}</d:prop><d:status>{STATUS_LINES[status]}</d:status></d:propstat>")
        parts.append("</d:response>")
        return "".join(parts)

    def propstat_response(self, path: str, groups: list[tuple[int, list[str]]]) -> str:
        """A response with empty property elements grouped by status (PROPPATCH answers)."""
        parts = [f"<d:response>{href(path)}"]
        for status, names in groups:
            if names:
                body = "".join(self.element(name) for name in names)
                parts.append(f"<d:propstat><d:prop>{body}</d:prop><d:status>{STATUS_LINES[status]}</d:status></d:propstat>")
        parts.append("</d:response>")
        return "".join(parts)

    @staticmethod
    def status_response(path: str, status: int) -> str:
        return f"<d:response>{href(path)}<d:status>{STATUS_LINES[status]}</d:status></d:response>"

    @staticmethod
    def multistatus(responses: list[str], tail: str = "") -> bytes:
        return (f'<?xml version="1.0"?>\n<d:multistatus{ROOT_XMLNS}>' + "".join(responses) + tail
                + "</d:multistatus>\n").encode("utf-8")


def sabre_error(exception: str, message: str, extra: str = "") -> bytes:
    """Sabre's error body, e.g. exception="NotFound" → Sabre\\DAV\\Exception\\NotFound."""
    qualified = exception if "\\" in exception else f"Sabre\\DAV\\Exception\\{exception}"
    return ('<?xml version="1.0" encoding="utf-8"?>\n<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">\n'
            f"  <s:exception>{escape(qualified)}</s:exception>\n  <s:message>{escape(message)}</s:message>\n"
            f"{extra}</d:error>\n").encode()


# ---------------------------------------------------------------- parsing (also for test authors)


def parse_status(line: str) -> int:
    """'HTTP/1.1 404 Not Found' → 404."""
    return int(line.split()[1])


@dataclass
class DavResponse:
    """One `d:response`: `props` holds the 200 properties; `prop_status` every property's status."""

    href: str
    status: int | None = None
    props: dict[str, ET.Element] = field(default_factory=dict)
    prop_status: dict[str, int] = field(default_factory=dict)

    def text(self, clark: str) -> str | None:
        element = self.props.get(clark)
        return None if element is None else (element.text or "")

    def hrefs(self, clark: str) -> list[str]:
        element = self.props.get(clark)
        return [] if element is None else [h.text or "" for h in element.iter(DAV + "href")]

    def resourcetype(self) -> set[str]:
        element = self.props.get(DAV + "resourcetype")
        return set() if element is None else {child.tag for child in element}


def parse_multistatus(body: bytes) -> dict[str, DavResponse]:
    """A 207 body → {href as sent (percent-encoded): DavResponse}. The sync-token, if any, is under key ''."""
    root = ET.fromstring(body)
    if root.tag != DAV + "multistatus":
        raise ValueError(f"not a multistatus: {root.tag}")
    result: dict[str, DavResponse] = {}
    for element in root.findall(DAV + "response"):
        response = DavResponse(href=element.findtext(DAV + "href", ""))
        status = element.findtext(DAV + "status")
        if status:
            response.status = parse_status(status)
        for propstat in element.findall(DAV + "propstat"):
            code = parse_status(propstat.findtext(DAV + "status", "HTTP/1.1 500"))
            for prop in propstat.find(DAV + "prop") if propstat.find(DAV + "prop") is not None else ():
                response.prop_status[prop.tag] = code
                if code == 200:
                    response.props[prop.tag] = prop
        result[response.href] = response
    token = root.findtext(DAV + "sync-token")
    if token is not None:
        result[""] = DavResponse(href="", props={DAV + "sync-token": root.find(DAV + "sync-token")})
    return result


def requested_props(element: ET.Element) -> list[str]:
    """Clark names of the children of a `d:prop` element, in order, without duplicates."""
    return list(dict.fromkeys(child.tag for child in element))
