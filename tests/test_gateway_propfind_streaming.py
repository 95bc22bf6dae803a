"""Large PROPFIND answers with push properties stream through the gateway (issue 8, bounded memory).

A canned upstream sends a big multistatus in two parts with a gate between them, so "streamed"
is observed with events: the client has bytes while upstream still waits. No timing assertions.
"""
import logging
import threading
import xml.etree.ElementTree as ET

import pytest
import requests

from app.gateway import discovery, streaming
from app.gateway.upstream import CHUNK
from app.protocol.topics import topic_for_collection
from support.bodies import PUSH_PROPFIND_DAVX5
from support.calendar_listing import calendar_listing, event_response
from support.davxml import DAV, OC, Writer
from support.env import SECRET_KEY
from support.servers import read_body, serve_wsgi

P = "{https://bitfire.at/webdav-push}"
BOB = ("bob", "bob-pw")
CALENDAR = "/remote.php/dav/calendars/bob/work_shared_by_alice/"


class CannedUpstream:
    """Answers every request 207 with `head`, then, once `may_finish` is set, each piece of `tail`."""

    def __init__(self, head: bytes, tail=(), *, content_length: int | None = None):
        self.head, self.tail, self.content_length = head, tail, content_length
        self.may_finish = threading.Event()
        self.may_finish.set()
        self.finished = threading.Event()  # everything was handed to the server
        self.closed_early = threading.Event()  # the gateway hung up before the end
        self.bodies = []

    def __call__(self, environ, start_response):
        self.bodies.append(read_body(environ))
        headers = [("Content-Type", "application/xml; charset=utf-8")]
        if self.content_length is not None:
            headers.append(("Content-Length", str(self.content_length)))
        start_response("207 Multi-Status", headers)
        return self._body()

    def _body(self):
        try:
            yield self.head
            if not self.may_finish.wait(30):
                raise RuntimeError("may_finish was never set")
            yield from self.tail
            self.finished.set()
        except GeneratorExit:
            self.closed_early.set()
            raise


@pytest.fixture
def canned(start_gateway):
    """(upstream, gateway) for a CannedUpstream built by the test."""
    handles = []

    def start(upstream: CannedUpstream):
        handle = serve_wsgi(upstream)
        handles.append(handle)
        return start_gateway(handle.url)

    yield start
    for upstream in handles:
        upstream.stop()


def pieces(data: bytes, size: int = 16384):
    return [data[i:i + size] for i in range(0, len(data), size)]


def propfind(gateway, headers=None, **kwargs):
    """DAVx5's push PROPFIND (which itself asks for resourcetype), Depth 1."""
    return requests.request("PROPFIND", gateway.dav("/calendars/bob/work_shared_by_alice/"), data=PUSH_PROPFIND_DAVX5,
                            auth=BOB, headers={"Depth": "1", **(headers or {})}, timeout=60, **kwargs)


def test_large_answer_reaches_the_client_before_upstream_has_sent_it_all(canned):
    document = calendar_listing(4000)
    half = len(document) // 2
    upstream = CannedUpstream(document[:half], pieces(document[half:]))
    upstream.may_finish.clear()
    gateway = canned(upstream)

    response = propfind(gateway, stream=True)
    assert response.status_code == 207
    assert "Content-Length" not in response.headers and response.headers["Transfer-Encoding"] == "chunked"
    chunks = response.iter_content(CHUNK)
    first = next(chunks)
    assert first.startswith(b"<?xml") and not upstream.finished.is_set()
    upstream.may_finish.set()
    body = first + b"".join(chunks)
    assert upstream.finished.is_set()

    root = ET.fromstring(body)
    responses = root.findall(f"{DAV}response")
    assert len(responses) == 4001 and root.findtext(f"{DAV}sync-token") == "http://sabre.io/ns/sync/42"
    calendar, events = responses[0], responses[1:]
    assert calendar.findtext(f"{DAV}href") == CALENDAR
    # the owner comes from upstream's answer: bob's view of alice's calendar has alice's topic
    assert calendar.findtext(f".//{P}topic") == topic_for_collection(SECRET_KEY, "calendars/alice/work")
    assert calendar.find(f".//{P}vapid-public-key").text == gateway.services.signer.public_key
    assert calendar.findtext(f".//{DAV}displayname") == "Work"
    for event in events:
        statuses = {ps.findtext(f"{DAV}status"): [c.tag for c in ps.find(f"{DAV}prop")] for ps in event.findall(f"{DAV}propstat")}
        assert statuses == {"HTTP/1.1 200 OK": [f"{DAV}getetag", f"{DAV}resourcetype"],
                            "HTTP/1.1 404 Not Found": [f"{P}transports", f"{P}topic"]}
    # the injected classifying properties were asked for upstream and stripped again
    asked = ET.fromstring(upstream.bodies[0]).find(f"{DAV}prop")
    assert {f"{OC}owner-principal", f"{DAV}owner"} <= {c.tag for c in asked}
    assert root.find(f".//{OC}owner-principal") is None and root.find(f".//{DAV}owner") is None


def test_prefer_minimal_streams_without_404_propstats(canned):
    gateway = canned(CannedUpstream(calendar_listing(1000)))
    response = propfind(gateway, headers={"Prefer": "return=minimal"})
    assert response.status_code == 207
    root = ET.fromstring(response.content)
    assert len(root.findall(f".//{P}topic")) == 1 and len(root.findall(f".//{P}transports")) == 1


def test_small_answer_is_checked_whole_and_keeps_a_content_length(canned):
    document = calendar_listing(3)
    gateway = canned(CannedUpstream(document, content_length=len(document)))
    response = propfind(gateway)
    assert response.status_code == 207 and int(response.headers["Content-Length"]) == len(response.content)
    assert ET.fromstring(response.content).find(f".//{P}topic") is not None


@pytest.mark.parametrize("document", [
    b"<d:multistatus xmlns:d='DAV:'><d:response><d:href>/x</d:href></d:multistatus>",
    b"<?xml version='1.0'?><!DOCTYPE d:multistatus [<!ENTITY x 'y'>]><d:multistatus xmlns:d='DAV:'>&x;</d:multistatus>",
    b"<d:error xmlns:d='DAV:'/>",
    b"",
    calendar_listing(20)[:-300],  # upstream stopped early
])
def test_unreadable_answer_before_the_first_bytes_is_a_502(canned, document):
    upstream = CannedUpstream(document)
    gateway = canned(upstream)
    response = propfind(gateway)
    assert response.status_code == 502 and response.content == discovery.UNREADABLE.encode()


def test_malformed_xml_after_the_first_bytes_breaks_the_connection(canned, caplog):
    document = calendar_listing(3000)
    broken = document[: len(document) // 2] + b"<d:response><d:href>/x</d:oops>" + document[len(document) // 2:]
    gateway = canned(CannedUpstream(broken[:200_000], pieces(broken[200_000:])))
    caplog.set_level(logging.WARNING, logger="davpush.gateway")
    response = propfind(gateway, stream=True)
    assert response.status_code == 207
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content  # noqa: B018 - the client sees a broken answer, not a short well-formed one
    assert any("aborting a streamed answer" in r.getMessage() for r in caplog.records)


def test_declared_oversize_answer_is_a_502_without_reading_it(canned, monkeypatch):
    monkeypatch.setattr(discovery, "MAX_MULTISTATUS", 100_000)
    document = calendar_listing(1000)
    upstream = CannedUpstream(document, content_length=len(document))
    gateway = canned(upstream)
    assert propfind(gateway).status_code == 502


def test_oversize_answer_is_cut_off_midway(canned, monkeypatch):
    monkeypatch.setattr(discovery, "MAX_MULTISTATUS", 300_000)
    document = calendar_listing(2000)  # ~950 kB, sent chunked: the size shows only while streaming
    gateway = canned(CannedUpstream(document[:CHUNK * 2], pieces(document[CHUNK * 2:])))
    response = propfind(gateway, stream=True)
    assert response.status_code == 207
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        response.content  # noqa: B018


def test_upstream_is_closed_when_the_client_hangs_up_midway(canned):
    document = calendar_listing(1000)
    close = b"</d:multistatus>\n"
    head = document[: -len(close)]
    block = "".join(event_response(Writer(), CALENDAR, "alice", i) for i in range(150)).encode()
    tail = (block for _ in range(25 * 1024 * 1024 // len(block)))  # ~25 MB more, under MAX_MULTISTATUS
    upstream = CannedUpstream(head, tail)
    upstream.may_finish.clear()
    gateway = canned(upstream)

    response = propfind(gateway, stream=True)
    assert next(response.iter_content(CHUNK)).startswith(b"<?xml")
    response.close()  # the client goes away while upstream still has ~25 MB to send
    upstream.may_finish.set()
    assert upstream.closed_early.wait(30)
    assert not upstream.finished.is_set()


class FakeUpstreamResponse:
    def __init__(self):
        self.closed = 0

    def close(self):
        self.closed += 1


def test_upstream_is_closed_even_if_the_body_is_never_iterated():
    upstream = FakeUpstreamResponse()

    def output():
        yield b"x" * CHUNK
        yield b"rest"

    response = streaming.respond(upstream, output(), status=207, headers=[], content_type="application/xml",
                                 unreadable="", path="/")
    assert upstream.closed == 0  # streaming: the first CHUNK is read, the rest waits for the server
    body = response({}, lambda status, headers: None)  # what the WSGI server does, then closes it unread
    body.close()
    assert upstream.closed >= 1
