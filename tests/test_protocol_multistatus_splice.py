"""Push properties spliced into a streaming multistatus (pure: no servers).

The reference is propfind.augment_response on the parsed tree: the splice must give the same
document (compared canonically: same elements, attributes and text, whatever the prefixes).
"""
import tracemalloc
import xml.etree.ElementTree as ET

import pytest

from app.gateway.collections import CollectionResolver
from app.protocol import propfind, xmlsafe
from app.protocol.multistatus_splice import augment_multistatus_stream, is_utf8
from support.calendar_listing import calendar_listing, pieces, tracked_pieces
from support.davxml import DAV, OC

P = "{https://bitfire.at/webdav-push}"
ALL_PUSH = [f"{P}transports", f"{P}topic", f"{P}supported-triggers"]
INJECTED = {f"{DAV}resourcetype", f"{OC}owner-principal", f"{DAV}owner"}
NS = ('xmlns:d="DAV:" xmlns:cal="urn:ietf:params:xml:ns:caldav" xmlns:card="urn:ietf:params:xml:ns:carddav" '
      'xmlns:oc="http://owncloud.org/ns" xmlns:P="https://bitfire.at/webdav-push"')


def describe_with(keys):
    resolver = CollectionResolver("/remote.php/dav")

    def describe(facts):
        if facts.kind is None:
            return None
        keys.append((facts.path, facts.kind, facts.owner_principal))
        return "TOPIC-" + (resolver.collection_key(facts.path, facts.owner_principal) or facts.path)

    return describe



def spliced(document: bytes, size=4096, requested=ALL_PUSH, injected=INJECTED, minimal=False, keys=None,
            max_bytes=1 << 25) -> bytes:
    return b"".join(augment_multistatus_stream(
        pieces(document, size), requested=requested, injected=injected, describe=describe_with([] if keys is None else keys),
        vapid_public_key="BKEY", minimal=minimal, max_bytes=max_bytes))


def reference(document: bytes, requested=ALL_PUSH, injected=INJECTED, minimal=False, keys=None) -> bytes:
    root = xmlsafe.parse(document, max_bytes=1 << 25, max_depth=128, max_elements=2_000_000)
    propfind.augment_multistatus(root, requested=requested, injected=injected,
                                 describe=describe_with([] if keys is None else keys), vapid_public_key="BKEY",
                                 minimal=minimal)
    return xmlsafe.serialize(root)


def canonical(document: bytes) -> str:
    return ET.canonicalize(document, rewrite_prefixes=True, strip_text=True)


def response(href, kind="cal", owner=None, owner_href=None, extra_404=True, prop=None, status="200 OK"):
    types = {"cal": "<d:resourcetype><d:collection/><cal:calendar/></d:resourcetype>",
             "card": "<d:resourcetype><d:collection/><card:addressbook/></d:resourcetype>",
             "col": "<d:resourcetype><d:collection/></d:resourcetype>", None: ""}
    if prop is None:
        prop = (f"<d:prop>{types[kind]}<d:displayname>x &amp; y</d:displayname>"
                + (f"<oc:owner-principal>{owner}</oc:owner-principal>" if owner else "")
                + (f"<d:owner><d:href>{owner_href}</d:href></d:owner>" if owner_href else "") + "</d:prop>")
    missing = ("<d:propstat><d:prop><d:getctag/><P:topic/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status>"
               "</d:propstat>") if extra_404 else ""
    return (f"<d:response>\n <d:href>{href}</d:href><d:propstat>{prop}<d:status>HTTP/1.1 {status}</d:status>"
            f"</d:propstat>{missing}</d:response>\n")


DOCUMENTS = {
    "home": f'<?xml version="1.0" encoding="UTF-8"?>\n<d:multistatus {NS}>' + response("/c/", "col")
            + response("/c/a/", owner="principals/users/alice") + response("/c/b/", "card", owner_href="/p/bob/")
            + response("/c/n/", None, extra_404=False) + "</d:multistatus>\n",
    "empty prop and sync-token": f"<d:multistatus {NS}>" + response("/c/e/", prop="<d:prop/>")
            + response("/c/x/", None, extra_404=False) + "<d:sync-token>t</d:sync-token></d:multistatus>",
    "default namespace, comments, CDATA, tricky markup": (
        '<multistatus xmlns="DAV:"><!-- before --><response><href>/a/</href><propstat><prop>'
        '<resourcetype><collection/><C:calendar xmlns:C="urn:ietf:params:xml:ns:caldav"/></resourcetype>'
        '<x:y xmlns:x="urn:x" a="1&gt;2 /&gt;" b=\'/>\'>t/></x:y><x:e xmlns:x="urn:x" q="/>"/><x:c xmlns:x="urn:x">'
        '<![CDATA[<not markup/>]]></x:c><!-- in prop --></prop><status>HTTP/1.1 200 OK</status></propstat></response>'
        "<response><href>/b/</href><status>HTTP/1.1 404 Not Found</status></response></multistatus>"),
    "only injected properties": f"<d:multistatus {NS}><d:response><d:href>/o/</d:href><d:propstat><d:prop>"
            "<d:resourcetype><cal:calendar/></d:resourcetype><oc:owner-principal>principals/users/o"
            "</oc:owner-principal></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response></d:multistatus>",
    "props that are not found only": f"<d:multistatus {NS}><d:response><d:href>/n/</d:href><d:propstat><d:prop>"
            "<d:resourcetype/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat></d:response>"
            "</d:multistatus>",
    "upstream answered push properties itself": f"<d:multistatus {NS}>" + response(
            "/c/p/", prop="<d:prop><d:resourcetype><cal:calendar/></d:resourcetype><P:topic>forged</P:topic>"
                          "<P:transports/></d:prop>") + "</d:multistatus>",
    "text with markup characters": f"<d:multistatus {NS}>" + response(
            "/c/t/", prop="<d:prop><d:resourcetype><cal:calendar/></d:resourcetype><d:displayname>a/&gt;&lt;b"
                          "</d:displayname><oc:owner-principal>a/></oc:owner-principal></d:prop>")
            + "</d:multistatus>",
}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
@pytest.mark.parametrize("size", [1, 7, 4096])
@pytest.mark.parametrize("minimal", [False, True])
@pytest.mark.parametrize("requested, injected", [(ALL_PUSH, INJECTED), (ALL_PUSH[1:2], set())])
def test_the_splice_edits_exactly_like_the_tree(name, size, minimal, requested, injected):
    document = DOCUMENTS[name].encode()
    output = spliced(document, size, requested=requested, injected=injected, minimal=minimal)
    assert canonical(output) == canonical(reference(document, requested, injected, minimal))


@pytest.mark.parametrize("minimal", [False, True])
def test_a_large_listing_is_edited_like_the_tree(minimal):
    document = calendar_listing(2000)
    output = spliced(document, size=1000, minimal=minimal)
    assert canonical(output) == canonical(reference(document, minimal=minimal))
    root = ET.fromstring(output)
    calendar = root.findall(f"{DAV}response")[0]
    assert calendar.findtext(f".//{P}topic") == "TOPIC-calendars/alice/work"
    assert calendar.find(f".//{P}vapid-public-key").text == "BKEY"
    assert calendar.find(f".//{DAV}resourcetype") is None and calendar.find(f".//{OC}owner-principal") is None


def test_the_source_bytes_pass_through_where_nothing_changes():
    document = DOCUMENTS["home"].encode()
    output = spliced(document, requested=ALL_PUSH, injected=set())
    assert output.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<d:multistatus ' + NS.encode() + b">")
    assert b"<d:displayname>x &amp; y</d:displayname>" in output and output.endswith(b"</d:multistatus>\n")


def test_comments_and_processing_instructions_pass_through():
    document = DOCUMENTS["home"].replace("<d:displayname>", "<?pi data?><!-- note --><d:displayname>").encode()
    output = spliced(document)
    assert output.count(b"<?pi data?><!-- note --><d:displayname>") == 4
    # ElementTree's reading drops PIs (the tree-based rewrite loses them): otherwise the same document
    assert canonical(output.replace(b"<?pi data?>", b"")) == canonical(reference(document))


def test_the_facts_come_from_upstreams_answer():
    keys = []
    spliced(DOCUMENTS["home"].encode(), keys=keys)
    assert keys == [("/c/a/", "calendar", "principals/users/alice"), ("/c/b/", "addressbook", "/p/bob/")]
    keys = []
    spliced(calendar_listing(2), keys=keys)
    assert keys == [("/remote.php/dav/calendars/bob/work_shared_by_alice/", "calendar", "principals/users/alice")]


def test_output_follows_input_response_by_response():
    document = calendar_listing(2000)
    chunks, consumed = tracked_pieces(document, 8192)
    output = augment_multistatus_stream(chunks, requested=ALL_PUSH, injected=INJECTED, describe=describe_with([]),
                                        vapid_public_key="K", minimal=False, max_bytes=1 << 25)
    first = next(output)
    assert first.startswith(b"<?xml") and b"<d:response" in first and len(consumed) == 1
    produced = [len(consumed) for _ in output]
    assert len(produced) > len(pieces(document, 8192)) // 2


def test_memory_does_not_grow_with_the_answer():
    document = calendar_listing(2000)
    tracemalloc.start()
    try:
        chunks = (document[i:i + 8192] for i in range(0, len(document), 8192))
        for _ in augment_multistatus_stream(chunks, requested=ALL_PUSH, injected=INJECTED,
                                            describe=describe_with([]), vapid_public_key="K", minimal=False,
                                            max_bytes=1 << 25):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 0.2 * len(document)


def test_other_encodings_are_rewritten_whole():
    document = ('<?xml version="1.0" encoding="utf-16"?><d:multistatus xmlns:d="DAV:" '
                'xmlns:cal="urn:ietf:params:xml:ns:caldav"><d:response><d:href>/caf\u00e9/</d:href><d:propstat>'
                "<d:prop><d:resourcetype><cal:calendar/></d:resourcetype></d:prop><d:status>HTTP/1.1 200 OK"
                "</d:status></d:propstat></d:response></d:multistatus>").encode("utf-16")
    assert not is_utf8(document[:256])
    root = ET.fromstring(spliced(document, size=5))
    assert root.findtext(f"{DAV}response/{DAV}href") == "/caf\u00e9/"
    assert root.findtext(f".//{P}topic") == "TOPIC-/caf%C3%A9/" or root.find(f".//{P}topic") is not None


@pytest.mark.parametrize("head, utf8", [
    (b'<?xml version="1.0"?><a/>', True), (b"<?xml version='1.0' encoding='utf-8'?>", True),
    (b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF8"?>', True), (b"<a/>", True),
    (b'<?xml version="1.0" encoding="ISO-8859-1"?>', False), (b"\xff\xfe<\x00", False), (b"\x00<\x00a", False),
])
def test_encoding_sniffing(head, utf8):
    assert is_utf8(head) is utf8


@pytest.mark.parametrize("document, message", [
    (b"", "malformed"),
    (b"<d:multistatus xmlns:d='DAV:'><d:response>", "malformed"),
    (b"<d:multistatus xmlns:d='DAV:'><d:response></d:multistatus>", "malformed"),
    (b"<d:error xmlns:d='DAV:'/>", "multistatus"),
    (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
     b"<d:multistatus xmlns:d='DAV:'>&b;</d:multistatus>", "DTD"),
    (b'<!DOCTYPE m SYSTEM "http://example.invalid/x.dtd"><d:multistatus xmlns:d="DAV:"/>', "DTD"),
    (b"<d:multistatus xmlns:d='DAV:'><d:response><d:href>&undefined;</d:href></d:response></d:multistatus>",
     "malformed"),
])
def test_unreadable_answers_are_xml_errors(document, message):
    with pytest.raises(xmlsafe.XmlError, match=message):
        spliced(document, size=10)


def test_a_malformed_tail_fails_after_the_first_output():
    document = calendar_listing(500)[:-2000] + b"<oops></d:multistatus>"
    output = augment_multistatus_stream(iter(pieces(document, 4096)), requested=ALL_PUSH, injected=INJECTED,
                                        describe=describe_with([]), vapid_public_key="K", minimal=False,
                                        max_bytes=1 << 25)
    assert next(output).startswith(b"<?xml")
    with pytest.raises(xmlsafe.XmlError, match="malformed"):
        for _ in output:
            pass


START = f'<d:multistatus {NS}><d:response><d:href>/a/</d:href>'.encode()


@pytest.mark.parametrize("document, max_bytes, message", [
    (START + b" " * 2000, 1000, "larger than 1000 bytes"),
    (START + b"<a>" * 200, 1 << 20, "nested deeper than 128"),
    (START + b"<a/>" * 20_001, 1 << 25, "more than 20000 elements"),
    (START + b"<d:displayname>" + b"x" * (5 << 20), 1 << 25, "larger than 4194304 bytes"),
    (START + b"".join(b"<n%d/>" % i for i in range(10_100)), 1 << 25, "more than 10000 distinct names"),
])
def test_caps(document, max_bytes, message):
    with pytest.raises(xmlsafe.XmlError, match=message):
        spliced(document, size=65536, max_bytes=max_bytes)
