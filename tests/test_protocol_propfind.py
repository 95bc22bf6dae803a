"""PROPFIND augmentation and collection keys (pure)."""
import xml.etree.ElementTree as ET

from app.gateway.collections import CollectionResolver
from app.protocol import propfind, xmlsafe

P = "{https://bitfire.at/webdav-push}"

DAVX5_PROPFIND = (
    b'<?xml version="1.0" encoding="UTF-8"?><d:propfind xmlns:d="DAV:" xmlns:P="https://bitfire.at/webdav-push">'
    b"<d:prop><d:displayname/><P:transports/><P:topic/></d:prop></d:propfind>"
)

MULTISTATUS = b"""<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:cal="urn:ietf:params:xml:ns:caldav" xmlns:oc="http://owncloud.org/ns">
 <d:response><d:href>/remote.php/dav/calendars/bob/</d:href>
  <d:propstat><d:prop><d:displayname>home</d:displayname><d:resourcetype><d:collection/></d:resourcetype></d:prop>
   <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
  <d:propstat><d:prop><oc:owner-principal/><d:owner/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
 </d:response>
 <d:response><d:href>/remote.php/dav/calendars/bob/work_shared_by_alice/</d:href>
  <d:propstat><d:prop><d:displayname>Work</d:displayname>
   <d:resourcetype><d:collection/><cal:calendar/></d:resourcetype>
   <oc:owner-principal>principals/users/alice</oc:owner-principal>
   <d:owner><d:href>/remote.php/dav/principals/users/alice/</d:href></d:owner></d:prop>
   <d:status>HTTP/1.1 200 OK</d:status></d:propstat>
 </d:response>
</d:multistatus>"""


def augmented(minimal=False):
    root = xmlsafe.parse(DAVX5_PROPFIND, max_bytes=65536)
    requested = propfind.requested_push_props(root)
    body, injected = propfind.rewrite_request(root)
    multistatus = xmlsafe.parse(MULTISTATUS, max_bytes=1 << 20)
    resolver = CollectionResolver("/remote.php/dav")
    keys = []

    def describe(facts):
        if facts.kind is None:
            return None
        keys.append(resolver.collection_key(facts.path, facts.owner_principal))
        return "TOPIC-" + keys[-1]

    propfind.augment_multistatus(multistatus, requested=requested, injected=injected, describe=describe,
                                 vapid_public_key="BKEY", minimal=minimal)
    return body, injected, multistatus, keys


def test_request_rewritten_to_classify_instead_of_asking_push_props():
    body, injected, _, _ = augmented()
    sent = ET.fromstring(body)
    names = [child.tag for child in sent.find("{DAV:}prop")]
    assert f"{P}transports" not in names and f"{P}topic" not in names
    assert "{DAV:}resourcetype" in names and "{http://owncloud.org/ns}owner-principal" in names
    assert "{DAV:}displayname" in names
    assert injected == {"{DAV:}resourcetype", "{http://owncloud.org/ns}owner-principal", "{DAV:}owner"}


def test_calendar_gets_push_props_in_200_and_home_gets_404():
    _, _, multistatus, keys = augmented()
    home, calendar = multistatus.findall("{DAV:}response")
    ok = calendar.find("{DAV:}propstat")
    assert "200" in ok.find("{DAV:}status").text
    key = ok.find(f"{{DAV:}}prop/{P}transports/{P}web-push/{P}vapid-public-key")
    assert key.text == "BKEY" and key.get("type") == "p256ecdsa"
    assert ok.find(f"{{DAV:}}prop/{P}topic").text == "TOPIC-calendars/alice/work"
    assert keys == ["calendars/alice/work"]
    # injected classifying props are gone again, requested ones stay
    assert calendar.find(".//{DAV:}resourcetype") is None
    assert calendar.find(".//{http://owncloud.org/ns}owner-principal") is None
    assert ok.find("{DAV:}prop/{DAV:}displayname").text == "Work"
    statuses = {ps.find("{DAV:}status").text: [c.tag for c in ps.find("{DAV:}prop")] for ps in home.findall("{DAV:}propstat")}
    assert statuses["HTTP/1.1 404 Not Found"] == [f"{P}transports", f"{P}topic"]
    assert statuses["HTTP/1.1 200 OK"] == ["{DAV:}displayname"]


def test_minimal_omits_404_for_push_props():
    _, _, multistatus, _ = augmented(minimal=True)
    home = multistatus.find("{DAV:}response")
    assert home.find(f".//{P}transports") is None


def test_allprop_names_no_push_props():
    root = xmlsafe.parse(b'<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>', max_bytes=1000)
    assert propfind.requested_push_props(root) == []


def test_supported_triggers_value():
    root = xmlsafe.parse(
        b'<d:propfind xmlns:d="DAV:" xmlns:P="https://bitfire.at/webdav-push"><d:prop><P:supported-triggers/></d:prop></d:propfind>',
        max_bytes=1000)
    requested = propfind.requested_push_props(root)
    propfind.rewrite_request(root)
    ms = xmlsafe.parse(MULTISTATUS, max_bytes=1 << 20)
    propfind.augment_multistatus(ms, requested=requested, injected=set(), describe=lambda f: "T" if f.kind else None,
                                 vapid_public_key="K")
    triggers = ms.findall("{DAV:}response")[1].find(f".//{P}supported-triggers")
    assert [(c.tag, c.find("{DAV:}depth").text) for c in triggers] == [
        (f"{P}content-update", "1"), (f"{P}property-update", "0")]


def test_keys_for_nextcloud_paths():
    r = CollectionResolver("/remote.php/dav")
    assert r.collection_key("/remote.php/dav/calendars/alice/work/") == "calendars/alice/work"
    assert r.collection_key("/remote.php/dav/calendars/bob/work_shared_by_alice/", "principals/users/alice") == "calendars/alice/work"
    assert r.collection_key("/remote.php/dav/calendars/bob/work_shared_by_alice/") == "calendars/bob/work_shared_by_alice"
    assert (r.collection_key("/remote.php/dav/calendars/bob/a_shared_by_b_shared_by_alice/", "principals/users/alice")
            == "calendars/alice/a_shared_by_b")
    assert r.collection_key("https://cloud.example/remote.php/dav/addressbooks/users/bob/contacts_shared_by_alice/",
                            "/remote.php/dav/principals/users/alice/") == "addressbooks/users/alice/contacts"
    assert r.collection_key("/remote.php/dav/calendars/al%40ice.com/work/") == "calendars/al@ice.com/work"
    assert r.claimed_key("/remote.php/dav/calendars/bob/work_shared_by_alice/") == "calendars/alice/work"
    assert r.collection_key("/elsewhere/calendars/alice/work/") is None
    assert r.collection_key("/remote.php/dav/calendars/alice/../bob/work/") is None


def test_keys_for_generic_upstream_are_paths():
    r = CollectionResolver("", "generic")
    assert r.collection_key("/alice/work_shared_by_x/") == "alice/work_shared_by_x"
    assert r.claimed_key("/alice/work_shared_by_x/") is None
