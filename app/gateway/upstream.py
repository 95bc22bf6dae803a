"""Talking to the upstream DAV server: header rules, streaming bodies, DAV look-ups."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter

from ..protocol import xmlsafe
from ..protocol.names import (
    CAL_CALENDAR,
    CARD_ADDRESSBOOK,
    D_CURRENT_USER_PRINCIPAL,
    D_HREF,
    D_OWNER,
    D_RESOURCETYPE,
    D_RESPONSE,
    D_SYNC_TOKEN,
    DAV,
    OC_OWNER_PRINCIPAL,
    OWNCLOUD,
)
from ..protocol.propfind import ok_props
from ..protocol.subscription import has_oversized_counter
from .loop import LoopMark

HOP_BY_HOP = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
    )
)
CHUNK = 64 * 1024
MAX_MULTISTATUS = 32 * 1024 * 1024


class UpstreamUnavailable(Exception):
    """Upstream could not be reached or timed out (the gateway answers 502/504)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class UpstreamLoop(UpstreamUnavailable):
    """UPSTREAM_URL leads back to davpush: its own request came back and was refused."""

    def __init__(self, base_url: str):
        super().__init__(
            508,
            "the upstream DAV server loops back to davpush: UPSTREAM_URL must be Nextcloud's internal address, "
            "not the public one that routes DAV requests to davpush",
        )
        self.base_url = base_url


class UnreadableRequestBody(Exception):
    """The client's body could not be read (broken chunked encoding, client gone): a 400, not upstream's fault."""

    status = 400

    def __init__(self):
        super().__init__("the request body could not be read (malformed chunked encoding or an interrupted upload)")


def read_client(stream, size: int) -> bytes:
    try:
        return stream.read(size)
    except OSError:
        raise UnreadableRequestBody() from None


def end_to_end(headers) -> list[tuple[str, str]]:
    """Headers without hop-by-hop ones, including those named in Connection."""
    headers = list(headers)
    named: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            named.update(token.strip().lower() for token in value.split(","))
    return [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() not in named]


class StreamBody:
    """A request body read in chunks: an optional already-read prefix, then the rest.

    `len` lets requests send a Content-Length instead of chunked encoding.
    """

    def __init__(self, prefix: bytes, stream, length: int | None):
        self._prefix = prefix
        self._stream = stream
        self.len = length

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size is None or size < 0 else size
        if self._prefix:
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            return data
        return read_client(self._stream, size) if self._stream is not None else b""

    def __iter__(self):
        while True:
            data = self.read(CHUNK)
            if not data:
                return
            yield data


@dataclass
class CollectionFacts:
    status: int
    kind: str | None = None  # "calendar" / "addressbook"
    owner_principal: str | None = None
    current_user_principal: str | None = None
    sync_token: str | None = None
    www_authenticate: list | None = None


_LOOKUP_BODY = (
    f'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="{DAV}" xmlns:oc="{OWNCLOUD}"><d:prop>'
    "<d:resourcetype/><d:current-user-principal/><d:owner/><oc:owner-principal/><d:sync-token/>"
    "</d:prop></d:propfind>"
).encode()


class Upstream:
    def __init__(self, base_url: str, *, timeout: float, verify_tls: bool = True, pool_size: int = 64,
                 mark: LoopMark | None = None):
        self.base_url = base_url.rstrip("/")
        self.mark = mark  # put on every request sent from here (see loop.py)
        self.timeout = (10.0, timeout)
        self.session = requests.Session()
        self.session.headers.clear()  # a proxy must not add headers of its own
        self.session.trust_env = False
        self.session.verify = verify_tls
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def url(self, raw_path_and_query: str) -> str:
        return self.base_url + raw_path_and_query

    def send(self, method: str, raw_path_and_query: str, headers, body=None, stream: bool = True,
             timeout: float | None = None):
        if self.mark is not None:
            headers = self.mark.stamp(headers or {})
        try:
            response = self.session.request(
                method,
                self.url(raw_path_and_query),
                headers=headers,
                data=body,
                stream=stream,
                allow_redirects=False,
                timeout=self.timeout if timeout is None else (timeout, timeout),
            )
        except requests.Timeout:
            raise UpstreamUnavailable(504, "the upstream DAV server did not answer in time") from None
        except requests.RequestException:
            raise UpstreamUnavailable(502, "the upstream DAV server is unreachable") from None
        if self.mark is not None and self.mark.is_loop_answer(response.status_code, response.headers):
            response.close()
            raise UpstreamLoop(self.base_url)
        return response

    def lookup(self, raw_path: str, authorization: str | None, forwarded: dict | None = None) -> CollectionFacts:
        """PROPFIND Depth 0 with the caller's own credentials: who they are and what this is.
        `forwarded`: the caller's X-Forwarded-* headers, for upstream's logs and brute-force throttling."""
        headers = {"Depth": "0", "Content-Type": "application/xml; charset=utf-8", "Accept-Encoding": "identity",
                   **(forwarded or {})}
        if authorization:
            headers["Authorization"] = authorization
        response = self.send("PROPFIND", raw_path, headers, _LOOKUP_BODY, stream=False)
        facts = CollectionFacts(status=response.status_code)
        if response.status_code == 401:
            facts.www_authenticate = response.raw.headers.getlist("WWW-Authenticate") if response.raw else []
            return facts
        if response.status_code != 207:
            return facts
        try:
            root = xmlsafe.parse(response.content, max_bytes=MAX_MULTISTATUS)
        except xmlsafe.XmlError:
            facts.status = 502
            return facts
        first = root.find(D_RESPONSE)
        props = ok_props(first) if first is not None else {}
        resourcetype = props.get(D_RESOURCETYPE)
        if resourcetype is not None:
            if resourcetype.find(CAL_CALENDAR) is not None:
                facts.kind = "calendar"
            elif resourcetype.find(CARD_ADDRESSBOOK) is not None:
                facts.kind = "addressbook"
        facts.owner_principal = xmlsafe.text_of(props.get(OC_OWNER_PRINCIPAL)) or _href(props.get(D_OWNER))
        facts.current_user_principal = _href(props.get(D_CURRENT_USER_PRINCIPAL))
        token = xmlsafe.text_of(props.get(D_SYNC_TOKEN)) or None
        facts.sync_token = None if has_oversized_counter(token) else token  # unknown rather than poisonous
        return facts


def _href(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    return xmlsafe.text_of(element.find(D_HREF)) or None
