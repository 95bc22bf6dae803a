"""Discovery through the gateway: what DAVx5, Chiri and tsdav-push see in PROPFIND and OPTIONS."""
import requests

from app.protocol.topics import topic_for_collection
from support.bodies import PUSH_PROPFIND_DAVX5, PUSH_PROPFIND_TSDAV
from support.davxml import PUSH, parse_multistatus
from support.env import SECRET_KEY

P = PUSH
ALICE, BOB, CAROL = ("alice", "alice-pw"), ("bob", "bob-pw"), ("carol", "carol-pw")


def propfind(url, body, auth, depth="1", **headers):
    return requests.request("PROPFIND", url, data=body, auth=auth, headers={"Depth": depth, **headers})


def push_props(response):
    """href -> {local name: element} for push props in a 200 propstat; and the set of hrefs with them in 404."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(response.content)
    found, missing = {}, set()
    for item in root.iter("{DAV:}response"):
        href = item.find("{DAV:}href").text
        for propstat in item.iter("{DAV:}propstat"):
            status = propstat.find("{DAV:}status").text
            for prop in propstat.find("{DAV:}prop"):
                if prop.tag.startswith(P):
                    if " 200 " in status:
                        found.setdefault(href, {})[prop.tag[len(P):]] = prop
                    else:
                        missing.add(href)
    return found, missing


def test_davx5_home_set_depth1_shows_push_on_every_calendar(gateway):
    response = propfind(gateway.dav("/calendars/bob/"), PUSH_PROPFIND_DAVX5, BOB)
    assert response.status_code == 207
    found, missing = push_props(response)
    calendars = {"/remote.php/dav/calendars/bob/personal/", "/remote.php/dav/calendars/bob/work_shared_by_alice/"}
    assert set(found) == calendars
    for props in found.values():
        key = props["transports"].find(f"{P}web-push/{P}vapid-public-key")
        assert key.get("type") == "p256ecdsa" and key.text == gateway.services.signer.public_key
        assert len(props["topic"].text) == 22
    assert "/remote.php/dav/calendars/bob/" in missing
    assert "/remote.php/dav/calendars/bob/inbox/" in missing
    # the rest of the answer is upstream's: displayname and resourcetype still there
    parsed = parse_multistatus(response.content)
    assert "{urn:ietf:params:xml:ns:caldav}calendar" in parsed["/remote.php/dav/calendars/bob/personal/"].resourcetype()


def test_owner_and_sharee_see_the_same_topic(gateway):
    owner, _ = push_props(propfind(gateway.dav("/calendars/alice/"), PUSH_PROPFIND_DAVX5, ALICE))
    sharee, _ = push_props(propfind(gateway.dav("/calendars/bob/"), PUSH_PROPFIND_DAVX5, BOB))
    alice_work = owner["/remote.php/dav/calendars/alice/work/"]["topic"].text
    assert sharee["/remote.php/dav/calendars/bob/work_shared_by_alice/"]["topic"].text == alice_work
    assert alice_work == topic_for_collection(SECRET_KEY, "calendars/alice/work")
    owners_topic = owner["/remote.php/dav/calendars/alice/personal/"]["topic"].text
    assert owners_topic != sharee["/remote.php/dav/calendars/bob/personal/"]["topic"].text


def test_address_books_get_push_too(gateway):
    found, _ = push_props(propfind(gateway.dav("/addressbooks/users/bob/"), PUSH_PROPFIND_DAVX5, BOB))
    assert set(found) == {"/remote.php/dav/addressbooks/users/bob/contacts/",
                          "/remote.php/dav/addressbooks/users/bob/contacts_shared_by_alice/"}
    shared = found["/remote.php/dav/addressbooks/users/bob/contacts_shared_by_alice/"]["topic"].text
    assert shared == topic_for_collection(SECRET_KEY, "addressbooks/users/alice/contacts")


def test_tsdav_depth0_gets_supported_triggers(gateway):
    response = propfind(gateway.dav("/calendars/alice/work/"), PUSH_PROPFIND_TSDAV, ALICE, depth="0")
    found, _ = push_props(response)
    triggers = found["/remote.php/dav/calendars/alice/work/"]["supported-triggers"]
    assert [(t.tag[len(P):], t.find("{DAV:}depth").text) for t in triggers] == [("content-update", "1"), ("property-update", "0")]
    # nothing the client did not ask for leaks in (the gateway asked upstream for resourcetype/owner)
    parsed = parse_multistatus(response.content)["/remote.php/dav/calendars/alice/work/"]
    assert "{DAV:}resourcetype" not in parsed.props and "{http://owncloud.org/ns}owner-principal" not in parsed.props


def test_prefer_minimal_omits_404_push_props(gateway):
    response = propfind(gateway.dav("/calendars/bob/"), PUSH_PROPFIND_DAVX5, BOB, Prefer="return=minimal")
    found, missing = push_props(response)
    assert len(found) == 2 and missing == set()


def test_requests_without_push_props_pass_through_byte_for_byte(gateway, nextcloud):
    body = b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:displayname/><d:getetag/></d:prop></d:propfind>'
    via_gateway = propfind(gateway.dav("/calendars/alice/"), body, ALICE)
    direct = propfind(nextcloud.url + "/remote.php/dav/calendars/alice/", body, ALICE)
    assert via_gateway.status_code == 207 and via_gateway.content == direct.content
    assert nextcloud.requests_for("PROPFIND")[0].body == body


def test_unreadable_propfind_bodies_are_left_to_upstream(gateway, nextcloud):
    body = b'<?xml version="1.0" encoding="x-unknown"?><d:propfind xmlns:d="DAV:"><d:prop/></d:propfind>'
    response = propfind(gateway.dav("/calendars/alice/"), body, ALICE)
    assert response.status_code < 500
    assert nextcloud.requests_for("PROPFIND")[0].body == body


def test_allprop_never_gets_push_props(gateway):
    for body in (b'<d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>', b""):
        response = propfind(gateway.dav("/calendars/alice/"), body, ALICE)
        assert response.status_code == 207 and b"bitfire.at/webdav-push" not in response.content


def test_unauthenticated_propfind_gets_upstreams_challenge(gateway):
    response = propfind(gateway.dav("/calendars/alice/"), PUSH_PROPFIND_DAVX5, None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic realm=")


def test_other_users_collections_stay_hidden(gateway):
    assert propfind(gateway.dav("/calendars/alice/"), PUSH_PROPFIND_DAVX5, CAROL).status_code == 404


def test_options_advertises_webdav_push(gateway):
    response = requests.options(gateway.dav("/calendars/alice/work/"), auth=ALICE)
    tokens = [t.strip() for t in response.headers["DAV"].split(",")]
    assert "webdav-push" in tokens and "calendar-access" in tokens
