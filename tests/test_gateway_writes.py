"""Writes seen by the gateway become pushes (address books, collection changes, other servers)."""
import time

import pytest
import requests

from support import bodies
from support.nextcloud_stub import ics_event, vcard
from support.payloads import object_event
from test_delivery_e2e import ALICE, BOB, message, subscribe, webhook

WORK = "/calendars/alice/work/"


def settle(gateway, run_worker, receiver=None, count=None):
    """Observed writes are processed after the response is sent: wait for their jobs, then run them."""
    deadline = time.time() + 5
    store = gateway.services.store
    while time.time() < deadline:
        run_worker(gateway.services)
        if count is None or (receiver and len(receiver.pushes) >= count):
            break
        time.sleep(0.05)
    time.sleep(0.2)
    run_worker(gateway.services)
    return store


@pytest.fixture
def gateway(nextcloud, start_gateway):
    return start_gateway(nextcloud.url, PUSH_MIN_INTERVAL_MS=0)


def test_contact_saved_through_the_gateway_pushes_with_the_new_token(gateway, nextcloud, receiver, run_worker):
    keys, _ = subscribe(gateway, receiver, "/addressbooks/users/alice/contacts/")
    response = requests.put(gateway.dav("/addressbooks/users/alice/contacts/c1.vcf"), data=vcard("c1"), auth=ALICE,
                            headers={"Content-Type": "text/vcard"})
    assert response.status_code == 201
    settle(gateway, run_worker, receiver, 1)
    [push] = receiver.pushes
    token = nextcloud.sync_token("alice", "contacts", kind="addressbook")
    assert message(push, keys) == {"topic": message(push, keys)["topic"], "content": True, "property": False,
                                   "token": f"http://sabre.io/ns/sync/{token}"}


def test_push_dont_notify_suppresses_exactly_the_named_registration(gateway, receiver, run_worker):
    _, mine = subscribe(gateway, receiver, WORK, name="alice-phone")
    subscribe(gateway, receiver, WORK, name="alice-tablet")
    subscribe(gateway, receiver, "/calendars/bob/work_shared_by_alice/", auth=BOB, name="bob")
    requests.put(gateway.dav(WORK + "e1.ics"), data=ics_event("e1"), auth=ALICE, headers={"Push-Dont-Notify": f'"{mine}"'})
    settle(gateway, run_worker, receiver, 2)
    assert sorted(p.path for p in receiver.pushes) == ["/up/alice-tablet", "/up/bob"]


def test_nobody_can_suppress_someone_elses_registration(gateway, receiver, run_worker):
    _, alice_location = subscribe(gateway, receiver, WORK, name="alice")
    subscribe(gateway, receiver, "/calendars/bob/work_shared_by_alice/", auth=BOB, name="bob")
    requests.put(gateway.dav("/calendars/bob/work_shared_by_alice/e2.ics"), data=ics_event("e2"), auth=BOB,
                 headers={"Push-Dont-Notify": f'"{alice_location}"'})
    settle(gateway, run_worker, receiver, 2)
    assert sorted(p.path for p in receiver.pushes) == ["/up/alice", "/up/bob"]


def test_star_suppresses_only_the_writers_own_registrations(gateway, receiver, run_worker):
    subscribe(gateway, receiver, WORK, name="alice")
    subscribe(gateway, receiver, "/calendars/bob/work_shared_by_alice/", auth=BOB, name="bob")
    requests.put(gateway.dav("/calendars/bob/work_shared_by_alice/e3.ics"), data=ics_event("e3"), auth=BOB,
                 headers={"Push-Dont-Notify": "*"})
    settle(gateway, run_worker, receiver, 1)
    assert [p.path for p in receiver.pushes] == ["/up/alice"]


def test_proppatch_is_a_property_update_for_property_subscribers_only(gateway, receiver, run_worker):
    content_only, _ = subscribe(gateway, receiver, WORK, name="content")  # old DAVx5: no trigger = content only
    both = bodies.davx5_current(receiver.endpoint("/up/both"), content_only.p256dh, content_only.auth, "Sun, 29 Nov 2026 10:00:00 GMT")
    assert requests.post(gateway.dav(WORK), data=both, auth=ALICE, headers={"Content-Type": bodies.XML_UTF8}).status_code == 201
    body = (b'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:displayname>Renamed</d:displayname>'
            b"</d:prop></d:set></d:propertyupdate>")
    assert requests.request("PROPPATCH", gateway.dav(WORK), data=body, auth=ALICE).status_code == 207
    settle(gateway, run_worker, receiver, 1)
    [push] = receiver.pushes
    assert push.path == "/up/both"
    assert message(push, content_only) == {"topic": message(push, content_only)["topic"], "content": False, "property": True, "token": None}


def test_owner_deleting_the_calendar_sends_a_final_push_and_drops_subscriptions(gateway, receiver, run_worker):
    subscribe(gateway, receiver, WORK, name="alice")
    subscribe(gateway, receiver, "/calendars/bob/work_shared_by_alice/", auth=BOB, name="bob")
    assert requests.delete(gateway.dav(WORK), auth=ALICE).status_code == 204
    settle(gateway, run_worker, receiver, 2)
    assert sorted(p.path for p in receiver.pushes) == ["/up/alice", "/up/bob"]
    assert list(gateway.services.store.iter_subscriptions()) == []


def test_sharee_removing_the_share_drops_only_their_subscription(gateway, receiver, run_worker):
    subscribe(gateway, receiver, WORK, name="alice")
    subscribe(gateway, receiver, "/calendars/bob/work_shared_by_alice/", auth=BOB, name="bob")
    assert requests.delete(gateway.dav("/calendars/bob/work_shared_by_alice/"), auth=BOB).status_code == 204
    settle(gateway, run_worker)
    assert receiver.pushes == []
    assert [s.user for s in gateway.services.store.iter_subscriptions()] == ["/remote.php/dav/principals/users/alice"]


def test_move_between_calendars_notifies_both(gateway, nextcloud, receiver, run_worker):
    nextcloud.add_object("alice", "work", "m.ics")
    subscribe(gateway, receiver, WORK, name="work")
    subscribe(gateway, receiver, "/calendars/alice/personal/", name="personal")
    response = requests.request("MOVE", gateway.dav(WORK + "m.ics"), auth=ALICE,
                                headers={"Destination": gateway.dav("/calendars/alice/personal/m.ics")})
    assert response.status_code in (201, 204)
    settle(gateway, run_worker, receiver, 2)
    assert sorted(p.path for p in receiver.pushes) == ["/up/personal", "/up/work"]


def test_copy_into_a_calendar_notifies_only_the_destination(gateway, nextcloud, receiver, run_worker):
    nextcloud.add_object("alice", "personal", "c.ics")
    subscribe(gateway, receiver, WORK, name="work")
    subscribe(gateway, receiver, "/calendars/alice/personal/", name="personal")
    response = requests.request("COPY", gateway.dav("/calendars/alice/personal/c.ics"), auth=ALICE,
                                headers={"Destination": gateway.dav(WORK + "c.ics")})
    assert response.status_code == 201
    settle(gateway, run_worker, receiver, 1)
    assert [p.path for p in receiver.pushes] == ["/up/work"]


def test_post_on_a_member_is_a_content_update_of_its_calendar(gateway, nextcloud, receiver, run_worker):
    nextcloud.add_object("alice", "work", "a.ics")
    keys, _ = subscribe(gateway, receiver, WORK, name="work")
    response = requests.post(gateway.dav(WORK + "a.ics?action=attachment-add"), data=b"attachment bytes", auth=ALICE,
                             headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200
    settle(gateway, run_worker, receiver, 1)
    [push] = receiver.pushes
    assert message(push, keys)["content"] is True


@pytest.mark.parametrize("method, path, destination, expected", [
    ("PUT", "/c/cal/e.ics", None, [("/c/cal/", "1", False, False)]),
    ("MKCALENDAR", "/c/new/", None, [("/c/", "1", False, False)]),
    ("MKCOL", "/c/new", None, [("/c/", "1", False, False)]),
    ("DELETE", "/c/cal/", None, [("/c/cal/", "0", False, True), ("/c/", "1", False, False)]),
    ("COPY", "/c/a/e.ics", "/c/b/e.ics", [("/c/b/", "1", False, False)]),
    ("MOVE", "/c/a/e.ics", "/c/b/e.ics", [("/c/a/e.ics", "0", False, True), ("/c/a/", "1", False, False), ("/c/b/", "1", False, False)]),
    ("PROPPATCH", "/c/cal/", None, [("/c/cal/", None, True, False)]),
    ("PROPPATCH", "/c/cal/e.ics", None, [("/c/cal/e.ics", None, True, False), ("/c/cal/", "1", False, False)]),
    ("POST", "/c/cal/", None, [("/c/cal/", "1", False, False)]),
    ("POST", "/c/cal/e.ics", None, [("/c/cal/e.ics", "1", False, False), ("/c/cal/", "1", False, False)]),
    ("GET", "/c/cal/e.ics", None, []),
])
def test_which_collections_a_write_changes(method, path, destination, expected):
    from app.gateway.writes import affected

    changes = affected(method, path, destination)
    assert [(c.path, c.content_depth, c.property_update, c.collection_deleted) for c in changes] == expected


def test_failed_write_pushes_nothing(gateway, receiver, run_worker):
    subscribe(gateway, receiver, "/addressbooks/users/alice/contacts/", name="alice")
    response = requests.put(gateway.dav("/addressbooks/users/bob/contacts_shared_by_alice/x.vcf"), data=vcard("x"), auth=BOB)
    assert response.status_code == 403  # read-only share
    settle(gateway, run_worker)
    assert receiver.pushes == []


def test_webhook_for_a_change_already_pushed_from_the_gateway_is_not_pushed_again(gateway, nextcloud, receiver, run_worker):
    subscribe(gateway, receiver, WORK)
    requests.put(gateway.dav(WORK + "w.ics"), data=ics_event("w"), auth=ALICE)
    settle(gateway, run_worker, receiver, 1)
    token = nextcloud.sync_token("alice", "work")
    result = webhook(gateway, object_event(kind="Created", token=token))
    assert result["outcomes"] == ["stale"]
    settle(gateway, run_worker)
    assert len(receiver.pushes) == 1


def test_caldav_client_against_radicale_through_the_gateway_produces_a_push(tmp_path, start_gateway, receiver, run_worker):
    import caldav

    from support.radicale_server import RadicaleServer

    with RadicaleServer(tmp_path / "radicale") as radicale:
        gateway = start_gateway(radicale.url, UPSTREAM_FLAVOR="generic", DAV_PREFIX="", PUSH_MIN_INTERVAL_MS=0)
        client = caldav.DAVClient(gateway.url + "/", username="alice", password="alice-pw")
        calendar = client.principal().make_calendar(name="Work", cal_id="work")
        keys, _ = subscribe(gateway, receiver, "/alice/work/")
        calendar.save_event(ics_event("radicale-1").decode())
        settle(gateway, run_worker, receiver, 1)
        [push] = receiver.pushes
        received = message(push, keys)
        assert received["content"] and received["token"].startswith("http://radicale.org/ns/sync/")
        [subscription] = gateway.services.store.iter_subscriptions()
        assert subscription.user == "/alice" and subscription.collection == "alice/work"
