"""Rewriting a multistatus response by response as it streams (pure: no servers)."""
import tracemalloc
import xml.etree.ElementTree as ET

import pytest

from app.gateway.collections import CollectionResolver
from app.protocol import propfind, xmlsafe
from app.protocol.multistatus_stream import rewrite_multistatus
from app.protocol.xmlstream import RootStart, TopLevelReader
from support.calendar_listing import calendar_listing, pieces, tracked_pieces
from support.davxml import DAV, OC

P = "{https://bitfire.at/webdav-push}"
REQUESTED = [f"{P}transports", f"{P}topic"]
INJECTED = {f"{DAV}resourcetype", f"{OC}owner-principal", f"{DAV}owner"}
CALENDAR = "/remote.php/dav/calendars/bob/work_shared_by_alice/"


def describe_with(keys):
    resolver = CollectionResolver("/remote.php/dav")

    def describe(facts):
        if facts.kind is None:
            return None
        keys.append((facts.path, facts.owner_principal))
        return "TOPIC-" + resolver.collection_key(facts.path, facts.owner_principal)

    return describe


def edit_with(keys, minimal=False):
    def edit(response):
        propfind.augment_response(response, requested=REQUESTED, injected=INJECTED, describe=describe_with(keys),
                                  vapid_public_key="BKEY", minimal=minimal)
    return edit



def streamed(document: bytes, size: int = 4096, **kwargs) -> bytes:
    return b"".join(rewrite_multistatus(pieces(document, size), edit_with([], **kwargs), max_bytes=1 << 25))


def canonical(document: bytes) -> str:
    return ET.canonicalize(document, rewrite_prefixes=True, strip_text=True)


@pytest.mark.parametrize("minimal", [False, True])
def test_a_large_answer_is_augmented_exactly_like_the_whole_tree(minimal):
    document = calendar_listing(3000)
    reference = xmlsafe.parse(document, max_bytes=1 << 25, max_depth=128, max_elements=2_000_000)
    propfind.augment_multistatus(reference, requested=REQUESTED, injected=INJECTED, describe=describe_with([]),
                                 vapid_public_key="BKEY", minimal=minimal)
    output = streamed(document, size=1000, minimal=minimal)
    assert canonical(output) == canonical(xmlsafe.serialize(reference))
    root = ET.fromstring(output)
    responses = root.findall(f"{DAV}response")
    assert len(responses) == 3001 and root.findtext(f"{DAV}sync-token") == "http://sabre.io/ns/sync/42"
    calendar, event = responses[0], responses[1]
    assert calendar.findtext(f".//{P}topic") == "TOPIC-calendars/alice/work"
    assert calendar.find(f".//{P}vapid-public-key").text == "BKEY"
    assert calendar.find(f".//{DAV}resourcetype") is None and calendar.find(f".//{OC}owner-principal") is None
    assert event.find(f".//{DAV}getetag") is not None and event.find(f".//{DAV}owner") is None
    assert (event.find(f".//{P}transports") is None) == minimal


def test_the_owner_comes_from_upstreams_answer():
    keys = []
    b"".join(rewrite_multistatus([calendar_listing(2)], edit_with(keys), max_bytes=1 << 20))
    assert keys == [(CALENDAR, "principals/users/alice")]


def test_output_follows_input_response_by_response():
    document = calendar_listing(2000)
    chunks, consumed = tracked_pieces(document, 8192)
    output = rewrite_multistatus(chunks, edit_with([]), max_bytes=1 << 25)
    first = next(output)
    assert first.startswith(b"<?xml") and b"<d:multistatus" in first
    assert len(consumed) == 1  # one input chunk in, its complete responses out
    total = len(pieces(document, 8192))
    produced = [len(consumed) for _ in output]
    assert produced[0] < total and len(produced) > total // 2


def test_memory_does_not_grow_with_the_answer():
    document = calendar_listing(2000)  # ~950 kB; as one tree it would take several times that
    tracemalloc.start()
    try:
        chunks = (document[i:i + 8192] for i in range(0, len(document), 8192))
        for _ in rewrite_multistatus(chunks, edit_with([]), max_bytes=1 << 25):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.4 * len(document)


def test_every_prefix_used_is_declared_and_stable():
    document = (b'<?xml version="1.0"?><multistatus xmlns="DAV:" xmlns:P="urn:not-push" xmlns:x="urn:root-declared">'
                b'<response><href>/a</href><propstat><prop><P:thing xml:lang="en">1</P:thing>'
                b'<y:color xmlns:y="urn:apple" y:kind="rgb">red</y:color><x:z/></prop>'
                b'<status>HTTP/1.1 200 OK</status></propstat></response>'
                b'<response><href>/b</href><propstat><prop><y:color xmlns:y="urn:apple">blue</y:color></prop>'
                b'<status>HTTP/1.1 200 OK</status></propstat></response></multistatus>')
    output = b"".join(rewrite_multistatus(pieces(document, 7), lambda response: None, max_bytes=1 << 20))
    root = ET.fromstring(output)  # every prefix declared, or this would fail
    first, second = root.findall(f"{DAV}response")
    assert first.find(".//{urn:not-push}thing").get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
    assert first.find(".//{urn:apple}color").get("{urn:apple}kind") == "rgb"
    assert second.find(".//{urn:apple}color").text == "blue"
    assert first.find(".//{urn:root-declared}z") is not None
    text = output.decode()
    assert text.count('xmlns:y="urn:apple"') == 2  # declared on each response that uses it
    assert "<d:response" in text and "P:thing" not in text  # our prefixes win; upstream's P is renamed


def test_text_and_attributes_round_trip():
    value = 'a & b < c > d "q" \r\n\ttab'
    document = ('<d:multistatus xmlns:d="DAV:"><d:response><d:href>/x</d:href><d:propstat><d:prop>'
                f'<d:displayname a="{xml_attr(value)}">{xml_text(value)}</d:displayname></d:prop>'
                "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>").encode()
    root = ET.fromstring(b"".join(rewrite_multistatus([document], lambda response: None, max_bytes=1 << 20)))
    name = root.find(f".//{DAV}displayname")
    assert name.text == value and name.get("a") == value


def xml_text(value):
    return value.replace("&", "&amp;").replace("<", "&lt;").replace("\r", "&#13;")


def xml_attr(value):
    return xml_text(value).replace('"', "&quot;").replace("\n", "&#10;").replace("\t", "&#9;")


def test_non_ascii_and_other_encodings():
    document = ('<?xml version="1.0" encoding="utf-16"?><d:multistatus xmlns:d="DAV:"><d:response>'
                "<d:href>/caf\u00e9</d:href><d:status>HTTP/1.1 200 OK</d:status></d:response></d:multistatus>")
    output = b"".join(rewrite_multistatus(pieces(document.encode("utf-16"), 5), lambda r: None, max_bytes=1 << 20))
    assert ET.fromstring(output).findtext(f"{DAV}response/{DAV}href") == "/caf\u00e9"


@pytest.mark.parametrize("document, message", [
    (b"", "malformed"),
    (b"<d:multistatus xmlns:d='DAV:'><d:response>", "malformed"),  # upstream stopped early
    (b"<d:multistatus xmlns:d='DAV:'><d:response></d:multistatus>", "malformed"),
    (b"<d:error xmlns:d='DAV:'/>", "multistatus"),
    (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
     b"<d:multistatus xmlns:d='DAV:'>&b;</d:multistatus>", "DTD"),
    (b'<!DOCTYPE m SYSTEM "http://example.invalid/x.dtd"><d:multistatus xmlns:d="DAV:"/>', "DTD"),
])
def test_unreadable_answers_are_xml_errors(document, message):
    with pytest.raises(xmlsafe.XmlError, match=message):
        b"".join(rewrite_multistatus(pieces(document, 10) or [b""], lambda r: None, max_bytes=1 << 20))


def test_malformed_tail_fails_after_the_first_output():
    document = calendar_listing(500)[:-2000] + b"<oops></d:multistatus>"
    output = rewrite_multistatus(pieces(document, 4096), edit_with([]), max_bytes=1 << 25)
    assert next(output).startswith(b"<?xml")
    with pytest.raises(xmlsafe.XmlError, match="malformed"):
        for _ in output:
            pass


def reader(**caps):
    return TopLevelReader(**{"max_bytes": 1 << 20, **caps})


def test_reader_hands_out_each_child_once_complete():
    r = reader()
    items = r.feed(b'<d:multistatus xmlns:d="DAV:"><d:response><d:href>/a</d:href></d:response><d:resp')
    assert isinstance(items[0], RootStart) and items[0].tag == f"{DAV}multistatus" and items[0].namespaces == {"d": "DAV:"}
    assert [e.findtext(f"{DAV}href") for e in items[1:]] == ["/a"]
    items = r.feed(b"onse><d:href>/b</d:href></d:response></d:multistatus>")
    assert [e.findtext(f"{DAV}href") for e in items] == ["/b"]
    assert r.close() == []


def test_total_size_cap():
    r = reader(max_bytes=1000)
    r.feed(b'<d:multistatus xmlns:d="DAV:">' + b" " * 900)
    with pytest.raises(xmlsafe.XmlError, match="larger than 1000 bytes"):
        r.feed(b" " * 200)


def test_depth_cap():
    with pytest.raises(xmlsafe.XmlError, match="nested deeper than 128"):
        reader().feed(b'<d:multistatus xmlns:d="DAV:"><d:response>' + b"<a>" * 200)


def test_per_response_element_cap():
    r = reader(max_child_elements=100)
    r.feed(b'<d:multistatus xmlns:d="DAV:"><d:response>' + b"<a/>" * 98 + b"</d:response>")  # 99 elements: fine
    with pytest.raises(xmlsafe.XmlError, match="more than 100 elements"):
        r.feed(b"<d:response>" + b"<a/>" * 100)


def test_per_response_size_cap():
    r = reader(max_child_bytes=10_000)
    r.feed(b'<d:multistatus xmlns:d="DAV:"><d:response><d:href>')
    r.feed(b"x" * 5000)
    with pytest.raises(xmlsafe.XmlError, match="larger than 10000 bytes"):
        r.feed(b"x" * 6000)


def test_distinct_names_cap():
    r = reader(max_names=50)
    with pytest.raises(xmlsafe.XmlError, match="more than 50 distinct names"):
        r.feed(b'<d:multistatus xmlns:d="DAV:"><d:response>' + b"".join(b"<n%d/>" % i for i in range(60)))
