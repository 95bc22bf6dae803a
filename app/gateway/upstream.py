"""Talking to the upstream DAV server: header rules, streaming bodies, DAV look-ups."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

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
from . import splice
from .loop import ANSWER_HEADER, LoopMark
from .upstream_http import Origin, Pool, Response, UpstreamError, UpstreamTimeout, exchange

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
BODY_CHUNK = 1024 * 1024  # request bodies are read and sent in pieces of up to this much
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


@contextmanager
def reading_answer() -> Iterator[None]:
    """Failures while reading upstream's answer, as the UpstreamUnavailable the gateway answers with."""
    try:
        yield
    except UpstreamTimeout:
        raise UpstreamUnavailable(504, "the upstream DAV server did not answer in time") from None
    except UpstreamError:
        raise UpstreamUnavailable(502, "the upstream DAV server broke off its answer") from None


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
    """A client's request body, sent on as it is read: an already-read prefix, then the rest of
    `stream` (`length` bytes of it, or up to its end when the length is unknown: sent chunked)."""

    def __init__(self, prefix: bytes, stream, length: int | None):
        self._prefix = prefix
        self._stream = stream
        self._rest = None if length is None else length - len(prefix)
        self.length = length
        self.started = False

    @property
    def untouched(self) -> bool:
        """Nothing of the body has been read yet."""
        return not self._prefix and not self.started

    def chunks(self) -> Iterator[bytes]:
        self.started = True
        if self._prefix:
            yield self._prefix
        rest = self._rest
        while rest is None or rest > 0:
            data = read_client(self._stream, BODY_CHUNK if rest is None else min(BODY_CHUNK, rest))
            if not data:
                if rest:
                    raise UnreadableRequestBody()
                return
            if rest is not None:
                rest -= len(data)
            yield data


class SplicedBody:
    """A large request body of known length moved from the client's socket to upstream's by the
    kernel (see splice.py): what gunicorn has buffered of it first, then the socket."""

    def __init__(self, client: splice.GunicornBody, timeout: float):
        self._client = client
        self._timeout = timeout
        self.length = client.length
        self.started = False

    def send_to(self, sock) -> None:
        self.started = True
        try:
            sock.sendall(self._client.take_buffered())
            splice.transfer(self._client.sock, sock, self._client.remaining, timeout=self._timeout)
        except splice.SpliceError as error:
            self._client.failed()
            if error.reading:
                raise UnreadableRequestBody() from None
            raise UpstreamError("sending the body failed") from None
        except OSError:
            self._client.failed()
            raise UpstreamError("sending the body failed") from None
        self._client.done()


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
    """The upstream DAV server (UPSTREAM_URL): requests sent from here carry the loop mark."""

    def __init__(self, base_url: str, *, timeout: float, verify_tls: bool = True, pool_size: int = 64,
                 mark: LoopMark | None = None):
        self.base_url = base_url.rstrip("/")
        self.mark = mark  # put on every request sent from here (see loop.py)
        self.timeout = timeout
        self.plain = urlsplit(self.base_url).scheme == "http"  # bodies may be spliced (splice.py)
        self.path_prefix = urlsplit(self.base_url).path
        self.pool = Pool(Origin.parse(self.base_url), connect_timeout=10.0, verify_tls=verify_tls, size=pool_size)

    def send(self, method: str, raw_path_and_query: str, headers, body=None, timeout: float | None = None) -> Response:
        """The answer, its body unread: read it (read1/read_all) and close() it.
        `headers`: a dict or (name, value) pairs, end-to-end ones only (Host and framing are added)."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if self.mark is not None:
            pairs = self.mark.stamp(pairs)
        try:
            response = exchange(self.pool, method, self.path_prefix + raw_path_and_query, pairs, body,
                                read_timeout=self.timeout if timeout is None else timeout)
        except UpstreamTimeout:
            raise UpstreamUnavailable(504, "the upstream DAV server did not answer in time") from None
        except UpstreamError:
            raise UpstreamUnavailable(502, "the upstream DAV server is unreachable") from None
        if self.mark is not None and self.mark.is_loop_answer(response.status, response.header(ANSWER_HEADER)):
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
        response = self.send("PROPFIND", raw_path, headers, _LOOKUP_BODY)
        try:
            facts = CollectionFacts(status=response.status)
            if response.status == 401:
                facts.www_authenticate = response.header_list("WWW-Authenticate")
                return facts
            if response.status != 207:
                return facts
            try:
                response.decode_content()
                content = response.read_all(MAX_MULTISTATUS)
            except UpstreamTimeout:
                raise UpstreamUnavailable(504, "the upstream DAV server did not answer in time") from None
            except UpstreamError:
                facts.status = 502
                return facts
        finally:
            response.close()
        try:
            root = xmlsafe.parse(content, max_bytes=MAX_MULTISTATUS)
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
