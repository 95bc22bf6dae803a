"""Self-tests for tests/support: the doubles must behave as documented before other tests rely on them."""
from __future__ import annotations

import hashlib
import http.client
import os
import struct
import threading
import time

import pytest
import requests
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from support import davxml
from support.davxml import CALDAV, CS, DAV, OC, PUSH, parse_multistatus
from support.nextcloud_stub import (
    DAV_HEADER,
    DAV_ROOT,
    NextcloudStub,
    ics_event,
    pattern_bytes,
    pattern_sha256,
    vcard,
)
from support.push_receiver import (
    ClientKeys,
    PushReceiver,
    b64url_decode,
    b64url_encode,
    decrypt_aes128gcm,
    derive_cek_and_nonce,
    verify_vapid,
)
from support.radicale_server import RadicaleServer
from support.servers import free_port, read_body, serve_wsgi

ALICE, BOB, CAROL = ("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw")
PROPFIND_BODY = (
    b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/" '
    b'xmlns:oc="http://owncloud.org/ns" xmlns:P="https://bitfire.at/webdav-push"><d:prop>'
    b"<d:displayname/><d:resourcetype/><d:sync-token/><cs:getctag/><d:owner/><oc:owner-principal/>"
    b"<d:current-user-principal/><P:transports/><P:topic/></d:prop></d:propfind>"
)


@pytest.fixture
def stub():
    with NextcloudStub() as running:
        yield running


def dav(stub, method, path, auth=ALICE, **kwargs):
    kwargs.setdefault("timeout", 10)
    return requests.request(method, stub.url + path, auth=auth, allow_redirects=False, **kwargs)


def propfind(stub, path, auth=ALICE, depth="1", body=PROPFIND_BODY, headers=None):
    response = dav(stub, "PROPFIND", path, auth, data=body, headers={"Depth": depth, **(headers or {})})
    assert response.status_code == 207, response.text
    return response, parse_multistatus(response.content)


def token_of(stub, path, auth=ALICE) -> str:
    _, result = propfind(stub, path, auth, depth="0")
    return result[davxml.encode_href(path)].text(DAV + "sync-token")


# ---------------------------------------------------------------- servers


def test_serve_wsgi_streams_and_accepts_chunked_bodies():
    def app(environ, start_response):
        body = read_body(environ)
        start_response("200 OK", [("X-Len", str(len(body)))])
        return (part for part in (b"a" * 10, body[:5], b"z"))

    with serve_wsgi(app) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        response = requests.post(server.url, data=(c for c in (b"hello", b" ", b"world")), timeout=5)
        assert response.headers["X-Len"] == "11"
        assert response.headers.get("Transfer-Encoding") == "chunked"
        assert response.content == b"a" * 10 + b"hello" + b"z"
    with pytest.raises(requests.ConnectionError):
        requests.get(server.url, timeout=2)
    assert 0 < free_port() < 65536


# ---------------------------------------------------------------- Nextcloud stub: reading


def test_auth_is_required(stub):
    for auth in (None, ("alice", "wrong"), ("mallory", "x")):
        response = dav(stub, "PROPFIND", DAV_ROOT + "/", auth=auth, headers={"Depth": "0"})
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="Nextcloud", charset="UTF-8"'
    assert stub.requests[-1].user is None


def test_options_advertises_nextcloud_dav_features(stub):
    response = dav(stub, "OPTIONS", DAV_ROOT + "/calendars/alice/work/")
    assert response.status_code == 200
    assert response.headers["DAV"] == DAV_HEADER
    assert "PROPFIND" in response.headers["Allow"] and "MKCALENDAR" in response.headers["Allow"]
    assert "webdav-push" not in response.headers["DAV"]


def test_bob_sees_the_shared_calendar_in_his_home(stub):
    response, result = propfind(stub, DAV_ROOT + "/calendars/bob/", auth=BOB)
    assert response.content.startswith(b'<?xml version="1.0"?>\n<d:multistatus xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns" '
                                       b'xmlns:cal="urn:ietf:params:xml:ns:caldav" xmlns:cs="http://calendarserver.org/ns/" '
                                       b'xmlns:oc="http://owncloud.org/ns" xmlns:nc="http://nextcloud.com/ns" '
                                       b'xmlns:card="urn:ietf:params:xml:ns:carddav">')
    home = "/remote.php/dav/calendars/bob/"
    assert set(result) == {home, home + "personal/", home + "work_shared_by_alice/", home + "inbox/",
                           home + "outbox/", home + "trashbin/"}
    shared = result[home + "work_shared_by_alice/"]
    assert shared.text(OC + "owner-principal") == "principals/users/alice"
    assert shared.hrefs(DAV + "owner") == ["/remote.php/dav/principals/users/alice/"]
    assert shared.hrefs(DAV + "current-user-principal") == ["/remote.php/dav/principals/users/bob/"]
    assert shared.resourcetype() == {DAV + "collection", CALDAV + "calendar", CS + "shared"}
    assert shared.text(DAV + "sync-token") == f"http://sabre.io/ns/sync/{stub.sync_token('alice', 'work')}"
    assert shared.text(CS + "getctag") == shared.text(DAV + "sync-token")
    assert shared.text(DAV + "displayname") == "Work"
    assert shared.prop_status[PUSH + "topic"] == 404
    own = result[home + "personal/"]
    assert own.text(OC + "owner-principal") == "principals/users/bob"
    assert result[home + "inbox/"].resourcetype() == {DAV + "collection", CALDAV + "schedule-inbox"}
    assert result[home].resourcetype() == {DAV + "collection"}
    assert result[home].prop_status[OC + "owner-principal"] == 404


def test_a_calendar_named_like_a_share_is_its_creators_own(stub):
    """Sabre accepts any name: bob's `personal_shared_by_alice` is bob's, not a view of alice's."""
    path = DAV_ROOT + "/calendars/bob/personal_shared_by_alice/"
    assert dav(stub, "MKCALENDAR", path, auth=BOB).status_code == 201
    _, result = propfind(stub, path, auth=BOB, depth="0")
    look_alike = result[path]
    assert look_alike.text(OC + "owner-principal") == "principals/users/bob"
    assert look_alike.hrefs(DAV + "owner") == ["/remote.php/dav/principals/users/bob/"]
    assert CS + "shared" not in look_alike.resourcetype()
    assert stub.has_collection("bob", "personal_shared_by_alice") and stub.shares("alice", "personal") == {}


def test_unknown_props_are_echoed_in_their_own_namespace_and_minimal_drops_them(stub):
    path = DAV_ROOT + "/calendars/alice/work/"
    response, result = propfind(stub, path, depth="0")
    assert b'<x1:transports xmlns:x1="https://bitfire.at/webdav-push"/>' in response.content
    assert b"HTTP/1.1 404 Not Found" in response.content
    assert result[path].props.keys().isdisjoint({PUSH + "transports", PUSH + "topic"})
    response, result = propfind(stub, path, depth="0", headers={"Prefer": "return=minimal"})
    assert b"webdav-push" not in response.content and b"404" not in response.content
    assert response.headers["Preference-Applied"] == "return=minimal"
    assert result[path].text(DAV + "displayname") == "Work"


def test_allprop_and_empty_body_return_ordinary_props_only(stub):
    path = DAV_ROOT + "/addressbooks/users/bob/"
    for body in (b"", b'<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>'):
        response, result = propfind(stub, path, auth=BOB, body=body)
        assert b"webdav-push" not in response.content
        shared = result[path + "contacts_shared_by_alice/"]
        assert shared.resourcetype() == {DAV + "collection", "{urn:ietf:params:xml:ns:carddav}addressbook"}
        assert shared.text(OC + "owner-principal") == "principals/users/alice"
        assert shared.text(CS + "getctag") == str(stub.sync_token("alice", "contacts", "addressbook"))
        assert DAV + "sync-token" not in shared.props and DAV + "current-user-principal" not in shared.props
        assert not any(code == 404 for code in shared.prop_status.values())


def test_principal_and_root_props(stub):
    body = (b'<d:propfind xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:prop><d:current-user-principal/>'
            b"<c:calendar-home-set/></d:prop></d:propfind>")
    _, result = propfind(stub, DAV_ROOT + "/", depth="0", body=body, auth=CAROL)
    assert result["/remote.php/dav/"].hrefs(DAV + "current-user-principal") == ["/remote.php/dav/principals/users/carol/"]
    _, result = propfind(stub, DAV_ROOT + "/principals/users/carol/", depth="0", body=body, auth=CAROL)
    assert result["/remote.php/dav/principals/users/carol/"].hrefs(CALDAV + "calendar-home-set") == [
        "/remote.php/dav/calendars/carol/"]


def test_invisible_paths_are_404(stub):
    for path in ("/calendars/alice/work/", "/calendars/alice/", "/addressbooks/users/alice/contacts/",
                 "/calendars/carol/work_shared_by_alice/"):
        response = dav(stub, "PROPFIND", DAV_ROOT + path, auth=CAROL, headers={"Depth": "0"})
        assert response.status_code == 404, path
        assert b"Sabre\\DAV\\Exception\\NotFound" in response.content
    _, result = propfind(stub, DAV_ROOT + "/calendars/carol/", auth=CAROL)
    assert sorted(result) == ["/remote.php/dav/calendars/carol/", "/remote.php/dav/calendars/carol/inbox/",
                              "/remote.php/dav/calendars/carol/outbox/", "/remote.php/dav/calendars/carol/trashbin/"]


# ---------------------------------------------------------------- Nextcloud stub: writing


def test_put_bumps_the_sync_token_and_get_returns_the_object(stub):
    path = DAV_ROOT + "/calendars/alice/personal/"
    before = stub.sync_token("alice", "personal")
    assert token_of(stub, path) == f"http://sabre.io/ns/sync/{before}"
    created = dav(stub, "PUT", path + "e1.ics", data=ics_event("e1"))
    assert created.status_code == 201 and created.headers["ETag"].startswith('"')
    assert token_of(stub, path) == f"http://sabre.io/ns/sync/{before + 1}"
    updated = dav(stub, "PUT", path + "e1.ics", data=ics_event("e1", "changed"),
                  headers={"If-Match": created.headers["ETag"]})
    assert updated.status_code == 204 and updated.headers["ETag"] != created.headers["ETag"]
    assert stub.sync_token("alice", "personal") == before + 2
    assert dav(stub, "PUT", path + "e1.ics", data=ics_event("e1"), headers={"If-None-Match": "*"}).status_code == 412
    got = dav(stub, "GET", path + "e1.ics")
    assert got.status_code == 200 and b"SUMMARY:changed" in got.content and got.headers["ETag"] == updated.headers["ETag"]
    assert dav(stub, "PUT", path + "bad.ics", data=b"not a calendar").status_code == 415
    assert stub.objects("alice", "personal") == {"e1.ics": ics_event("e1", "changed")}


def test_sharee_writes_follow_share_access(stub):
    rw = dav(stub, "PUT", DAV_ROOT + "/calendars/bob/work_shared_by_alice/b.ics", auth=BOB, data=ics_event("b"))
    assert rw.status_code == 201
    assert "b.ics" in stub.objects("alice", "work")
    ro = dav(stub, "PUT", DAV_ROOT + "/addressbooks/users/bob/contacts_shared_by_alice/c.vcf", auth=BOB, data=vcard("c"))
    assert ro.status_code == 403
    assert stub.objects("alice", "contacts", "addressbook") == {}
    stub.add_object("alice", "contacts", "c.vcf", kind="addressbook")
    path = DAV_ROOT + "/addressbooks/users/bob/contacts_shared_by_alice/c.vcf"
    assert dav(stub, "GET", path, auth=BOB).status_code == 200
    assert dav(stub, "DELETE", path, auth=BOB).status_code == 403
    assert dav(stub, "PUT", DAV_ROOT + "/calendars/alice/work/x.ics", auth=CAROL, data=ics_event("x")).status_code == 404


def test_move_bumps_both_collections_and_copy_only_the_destination(stub):
    stub.add_object("alice", "personal", "m.ics")
    personal, work = stub.sync_token("alice", "personal"), stub.sync_token("alice", "work")
    response = dav(stub, "MOVE", DAV_ROOT + "/calendars/alice/personal/m.ics",
                   headers={"Destination": stub.url + DAV_ROOT + "/calendars/alice/work/m.ics"})
    assert response.status_code == 201
    assert stub.sync_token("alice", "personal") == personal + 1 and stub.sync_token("alice", "work") == work + 1
    assert "m.ics" not in stub.objects("alice", "personal") and "m.ics" in stub.objects("alice", "work")
    assert dav(stub, "GET", DAV_ROOT + "/calendars/bob/work_shared_by_alice/m.ics", auth=BOB).status_code == 200

    personal, work = stub.sync_token("alice", "personal"), stub.sync_token("alice", "work")
    response = dav(stub, "COPY", DAV_ROOT + "/calendars/alice/work/m.ics",
                   headers={"Destination": DAV_ROOT + "/calendars/alice/personal/copy%20of%20m.ics"})
    assert response.status_code == 201
    assert stub.sync_token("alice", "personal") == personal + 1 and stub.sync_token("alice", "work") == work
    assert "copy of m.ics" in stub.objects("alice", "personal")
    again = dav(stub, "COPY", DAV_ROOT + "/calendars/alice/work/m.ics", headers={
        "Destination": DAV_ROOT + "/calendars/alice/personal/copy%20of%20m.ics", "Overwrite": "F"})
    assert again.status_code == 412


def test_delete_proppatch_mkcalendar_mkcol(stub):
    stub.add_object("alice", "personal", "d.ics")
    before = stub.sync_token("alice", "personal")
    assert dav(stub, "DELETE", DAV_ROOT + "/calendars/alice/personal/d.ics").status_code == 204
    assert stub.sync_token("alice", "personal") == before + 1

    patch = (b'<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>Renamed</d:displayname>'
             b"</d:prop></d:set></d:propertyupdate>")
    response = dav(stub, "PROPPATCH", DAV_ROOT + "/calendars/alice/personal/", data=patch)
    assert response.status_code == 207 and b"HTTP/1.1 200 OK" in response.content
    assert stub.sync_token("alice", "personal") == before + 2
    _, result = propfind(stub, DAV_ROOT + "/calendars/alice/personal/", depth="0")
    assert result["/remote.php/dav/calendars/alice/personal/"].text(DAV + "displayname") == "Renamed"
    bad = patch.replace(b"d:displayname", b"d:getetag")
    response = dav(stub, "PROPPATCH", DAV_ROOT + "/calendars/alice/personal/", data=bad)
    assert b"HTTP/1.1 403 Forbidden" in response.content

    mkcalendar = (b'<c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav"><d:set><d:prop>'
                  b"<d:displayname>Holidays</d:displayname></d:prop></d:set></c:mkcalendar>")
    assert dav(stub, "MKCALENDAR", DAV_ROOT + "/calendars/carol/holidays/", auth=CAROL, data=mkcalendar).status_code == 201
    assert dav(stub, "MKCALENDAR", DAV_ROOT + "/calendars/carol/holidays/", auth=CAROL).status_code == 405
    assert stub.has_collection("carol", "holidays")
    assert dav(stub, "MKCOL", DAV_ROOT + "/addressbooks/users/carol/friends/", auth=CAROL).status_code == 201
    assert stub.has_collection("carol", "friends", "addressbook")

    assert dav(stub, "DELETE", DAV_ROOT + "/calendars/bob/work_shared_by_alice/", auth=BOB).status_code == 204
    assert stub.shares("alice", "work") == {}
    assert dav(stub, "DELETE", DAV_ROOT + "/calendars/carol/holidays/", auth=CAROL).status_code == 204
    assert not stub.has_collection("carol", "holidays")


def test_sync_collection_report_lists_changes_since_a_token(stub):
    path = DAV_ROOT + "/calendars/alice/work/"
    token = token_of(stub, path)
    stub.add_object("alice", "work", "new.ics")
    stub.add_object("alice", "work", "gone.ics")
    stub.delete_object("alice", "work", "gone.ics")
    body = (f'<d:sync-collection xmlns:d="DAV:"><d:sync-token>{token}</d:sync-token><d:sync-level>1</d:sync-level>'
            f"<d:prop><d:getetag/></d:prop></d:sync-collection>").encode()
    response = dav(stub, "REPORT", path, data=body)
    assert response.status_code == 207
    result = parse_multistatus(response.content)
    assert result[path + "new.ics"].text(DAV + "getetag").startswith('"')
    assert result[path + "gone.ics"].status == 404
    assert result[""].text(DAV + "sync-token") == f"http://sabre.io/ns/sync/{stub.sync_token('alice', 'work')}"


def test_post_reports_what_arrived_even_for_push_register(stub):
    share = (b'<?xml version="1.0"?><oc:share xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><oc:set>'
             b"<d:href>principal:principals/users/carol</d:href></oc:set></oc:share>")
    register = (b'<?xml version="1.0"?><push-register xmlns="https://bitfire.at/webdav-push"><subscription>'
                b"<web-push-subscription><push-resource>https://push.example/1</push-resource>"
                b"</web-push-subscription></subscription></push-register>")
    for body in (share, register, os.urandom(3 * 1024 * 1024)):
        response = dav(stub, "POST", DAV_ROOT + "/calendars/alice/work/", data=body,
                       headers={"Content-Type": "application/xml; charset=utf-8"})
        assert response.status_code == 200
        assert response.headers["X-Received-Length"] == str(len(body))
        assert response.headers["X-Received-Sha256"] == hashlib.sha256(body).hexdigest()
        assert response.headers["X-Received-Content-Type"] == "application/xml; charset=utf-8"
        assert b"webdav-push" not in response.content
    big = stub.requests[-1]
    assert big.body is None and big.body_length == 3 * 1024 * 1024
    assert stub.requests[-2].body == register and stub.requests[-2].header("content-type").startswith("application/xml")
    assert stub.requests[-2].path == "/remote.php/dav/calendars/alice/work/"
    stub.clear_requests()
    assert stub.requests == []


def test_chunked_request_bodies_are_accepted(stub):
    response = dav(stub, "PUT", DAV_ROOT + "/calendars/alice/personal/chunked.ics",
                   data=(part for part in (ics_event("chunked")[:20], ics_event("chunked")[20:])))
    assert response.status_code == 201
    assert stub.requests[-1].header("Transfer-Encoding") == "chunked"
    assert stub.objects("alice", "personal")["chunked.ics"] == ics_event("chunked")


def test_redirects_are_answered_not_followed(stub):
    response = dav(stub, "GET", DAV_ROOT + "/redirect-me")
    assert response.status_code == 301 and response.headers["Location"] == "http://example.invalid/elsewhere"


# ---------------------------------------------------------------- streaming gates


def test_upload_started_fires_before_the_body_is_complete(stub):
    size = 3 * 1024 * 1024 + 7
    data = pattern_bytes(size)
    stub.upload_may_finish.clear()
    connection = http.client.HTTPConnection("127.0.0.1", int(stub.url.rsplit(":", 1)[1]), timeout=10)
    connection.putrequest("PUT", DAV_ROOT + "/files/alice/big.bin")
    connection.putheader("Authorization", "Basic YWxpY2U6YWxpY2UtcHc=")
    connection.putheader("Content-Length", str(size))
    connection.endheaders()
    connection.send(data[:1000])  # only a small part of the body has been sent
    assert stub.upload_started.wait(5)
    assert ("alice", "big.bin") not in stub.uploads()
    stub.upload_may_finish.set()
    connection.send(data[1000:])
    response = connection.getresponse()
    assert response.status == 201
    connection.close()
    assert stub.uploads()[("alice", "big.bin")].sha256 == hashlib.sha256(data).hexdigest()
    assert stub.uploads()[("alice", "big.bin")].length == size


def test_chunked_upload_is_consumed_as_it_arrives(stub):
    stub.upload_may_finish.clear()
    sent_rest = threading.Event()

    def body():
        yield b"x" * 100
        assert stub.upload_started.wait(5)
        stub.upload_may_finish.set()
        sent_rest.set()
        yield b"y" * 100

    response = dav(stub, "PUT", DAV_ROOT + "/files/alice/chunked.bin", data=body())
    assert response.status_code == 201 and sent_rest.is_set()
    assert stub.uploads()[("alice", "chunked.bin")].sha256 == hashlib.sha256(b"x" * 100 + b"y" * 100).hexdigest()


def test_download_streams_before_it_may_finish(stub):
    size = 2 * 1024 * 1024 + 3
    stub.download_may_finish.clear()
    response = dav(stub, "GET", DAV_ROOT + f"/files/alice/any.bin?size={size}", stream=True)
    assert response.status_code == 200 and response.headers["Content-Length"] == str(size)
    first = response.raw.read(1000)
    assert first == pattern_bytes(1000)
    assert stub.download_started.wait(5)
    stub.download_may_finish.set()
    rest = response.raw.read()
    assert hashlib.sha256(first + rest).hexdigest() == pattern_sha256(size)
    assert pattern_bytes(10, offset=250) == bytes([250, 0, 1, 2, 3, 4, 5, 6, 7, 8])


def test_files_of_other_users_are_404(stub):
    assert dav(stub, "PUT", DAV_ROOT + "/files/alice/x.bin", auth=BOB, data=b"x").status_code == 404
    assert dav(stub, "GET", DAV_ROOT + "/files/alice/x.bin?size=3", auth=BOB).status_code == 404


# ---------------------------------------------------------------- Radicale


def test_radicale_starts_and_creates_calendars(tmp_path):
    with RadicaleServer(tmp_path) as radicale:
        path = radicale.make_calendar("alice", "alice-pw", "work")
        assert path == "/alice/work/"
        response = requests.request("PROPFIND", radicale.url + "/alice/", auth=ALICE, headers={"Depth": "1"},
                                    data=PROPFIND_BODY, timeout=10)
        assert response.status_code == 207
        result = parse_multistatus(response.content)
        assert CALDAV + "calendar" in result["/alice/work/"].resourcetype()
        assert requests.request("PROPFIND", radicale.url + "/alice/work/", auth=BOB, headers={"Depth": "0"},
                                timeout=10).status_code in (403, 404)
        assert requests.get(radicale.url + "/alice/", auth=("alice", "wrong"), timeout=10).status_code == 401
    assert radicale._process is None


# ---------------------------------------------------------------- push receiver and crypto toolkit

RFC8291 = {
    "ua_private": "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94",
    "ua_public": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
    "as_public": "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8",
    "auth": "BTBZMqHH6r4Tts7J_aSIgg",
    "salt": "DGv6ra1nlYgDCS1FRnbzlw",
    "ecdh_secret": "kyrL1jIIOHEzg3sM2ZWRHDRB62YACZhhSlknJ672kSs",
    "cek": "oIhVW04MRdy2XN9CiKLxTg",
    "nonce": "4h_95klXJ5E_qnoN",
    "body": "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3"
            "jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
}


def rfc_keys() -> ClientKeys:
    return ClientKeys.from_private(RFC8291["ua_private"], RFC8291["auth"])


def test_rfc8291_appendix_a_vector():
    keys = rfc_keys()
    assert keys.p256dh == RFC8291["ua_public"]
    cek, nonce = derive_cek_and_nonce(b64url_decode(RFC8291["ecdh_secret"]), b64url_decode(RFC8291["auth"]),
                                      b64url_decode(RFC8291["ua_public"]), b64url_decode(RFC8291["as_public"]),
                                      b64url_decode(RFC8291["salt"]))
    assert (b64url_encode(cek), b64url_encode(nonce)) == (RFC8291["cek"], RFC8291["nonce"])
    assert decrypt_aes128gcm(b64url_decode(RFC8291["body"]), keys) == b"When I grow up, I want to be a watermelon"


def test_decryption_rejects_violations():
    keys, body = rfc_keys(), b64url_decode(RFC8291["body"])
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(ValueError, match="tag"):
        decrypt_aes128gcm(tampered, keys)
    with pytest.raises(ValueError, match="more than one record"):
        decrypt_aes128gcm(body[:16] + struct.pack("!I", 40) + body[20:], keys)
    with pytest.raises(ValueError, match="tag"):
        decrypt_aes128gcm(body, ClientKeys.generate())
    with pytest.raises(ValueError, match="idlen"):
        decrypt_aes128gcm(body[:20] + b"\x00" + body[86:], keys)
    # A correctly encrypted record whose delimiter says "more records follow" (0x01).
    cek, nonce = derive_cek_and_nonce(b64url_decode(RFC8291["ecdh_secret"]), b64url_decode(RFC8291["auth"]),
                                      b64url_decode(RFC8291["ua_public"]), b64url_decode(RFC8291["as_public"]),
                                      b64url_decode(RFC8291["salt"]))
    ciphertext = AESGCM(cek).encrypt(nonce, b"hello\x01\x00\x00", None)
    with pytest.raises(ValueError, match="delimiter"):
        decrypt_aes128gcm(body[:86] + ciphertext, keys)
    assert decrypt_aes128gcm(body[:86] + AESGCM(cek).encrypt(nonce, b"hello\x02\x00\x00", None), keys) == b"hello"


def test_pywebpush_messages_decrypt():
    from pywebpush import WebPusher

    keys = ClientKeys.generate()
    assert len(b64url_decode(keys.p256dh)) == 65 and len(b64url_decode(keys.auth)) == 16
    for message in (b"x", b"<push-message/>" * 100, os.urandom(3993)):
        body = WebPusher(keys.subscription("https://push.example/1")).encode(message)["body"]
        assert decrypt_aes128gcm(body, keys) == message
    # http_ece silently splits plaintexts of 4080+ bytes into two records, which RFC 8291 forbids.
    two_records = WebPusher(keys.subscription("https://push.example/1")).encode(b"x" * 5000)["body"]
    with pytest.raises(ValueError, match="more than one record"):
        decrypt_aes128gcm(two_records, keys)


def raw_public(vapid) -> str:
    return b64url_encode(vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def test_vapid_headers_from_py_vapid_verify():
    from py_vapid import Vapid02

    vapid = Vapid02()
    vapid.generate_keys()
    public = raw_public(vapid)
    exp = int(time.time()) + 3600
    header = vapid.sign({"aud": "https://push.example", "exp": exp, "sub": "mailto:ops@example.org"})["Authorization"]
    claims = verify_vapid(header, expected_public_key=public, audience="https://push.example", check_exp=True)
    assert claims == {"aud": "https://push.example", "exp": exp, "sub": "mailto:ops@example.org"}
    assert verify_vapid(header.replace(",k=", ", k="))["aud"] == "https://push.example"
    other = Vapid02()
    other.generate_keys()
    other_public = raw_public(other)
    with pytest.raises(ValueError, match="expected VAPID public key"):
        verify_vapid(header, expected_public_key=other_public)
    with pytest.raises(ValueError, match="does not verify"):
        verify_vapid(header.split(",k=")[0] + ",k=" + other_public)
    with pytest.raises(ValueError, match="aud"):
        verify_vapid(header, audience="https://elsewhere.example")
    with pytest.raises(ValueError, match="scheme"):
        verify_vapid(header.replace("vapid", "WebPush", 1))


def test_receiver_records_scripts_and_delays():
    from py_vapid import Vapid02
    from pywebpush import webpush

    vapid = Vapid02()
    vapid.generate_keys()
    keys = ClientKeys.generate()
    with PushReceiver() as receiver:
        receiver.script("/push/a", [(410, {"X-Reason": "gone"}), (429, {"Retry-After": "7"}, "slow down")])
        first = requests.post(receiver.endpoint("/push/a"), data=b"1", timeout=5)
        second = requests.post(receiver.endpoint("/push/a"), data=b"2", timeout=5)
        third = requests.post(receiver.endpoint("/push/a"), data=b"3", timeout=5)
        assert (first.status_code, first.headers["X-Reason"]) == (410, "gone")
        assert (second.status_code, second.headers["Retry-After"], second.text) == (429, "7", "slow down")
        assert third.status_code == 201 and third.headers["Location"].startswith(receiver.url + "/messages/")
        assert requests.get(receiver.endpoint("/push/a"), timeout=5).status_code == 405

        response = webpush(keys.subscription(receiver.endpoint("/push/b")), data="hello push",
                           vapid_private_key=vapid, vapid_claims={"sub": "mailto:ops@example.org"}, ttl=60)
        assert response.status_code == 201
        pushes = receiver.wait_for(4, timeout=5)
        push = pushes[-1]
        assert push.path == "/push/b" and push.header("TTL") == "60"
        assert push.header("Content-Encoding") == "aes128gcm"
        assert push.decrypt(keys) == b"hello push"
        claims = verify_vapid(push.header("Authorization"), audience=receiver.url)
        assert claims["sub"] == "mailto:ops@example.org"
        assert [p.body for p in receiver.pushes_to("/push/a")] == [b"1", b"2", b"3"]
        assert pushes[0].received_at <= pushes[1].received_at <= push.received_at
        with pytest.raises(AssertionError, match="expected at least 5 push"):
            receiver.wait_for(5, timeout=0.2)

        receiver.latency_ms = 120
        started = time.monotonic()
        requests.post(receiver.endpoint(), data=b"slow", timeout=5)
        assert time.monotonic() - started >= 0.12
