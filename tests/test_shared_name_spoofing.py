"""A calendar named like someone else's share (`personal_shared_by_alice`, created by bob) is bob's
own: its own topic, no pushes for alice's changes, and bob's writes never reach alice's topic.
Who owns a collection comes from upstream's answer, never from its name."""
import pytest
import requests

from app.nextcloud.paths import canonical_key, claimed_key
from app.protocol.topics import topic_for_collection
from support.env import SECRET_KEY
from support.nextcloud_stub import ics_event
from support.payloads import object_event
from test_delivery_e2e import ALICE, BOB, discover, message, subscribe, webhook
from test_gateway_writes import settle

LOOK_ALIKE = "/calendars/bob/personal_shared_by_alice/"
ALICE_PERSONAL = topic_for_collection(SECRET_KEY, "calendars/alice/personal")
MKCALENDAR = (b'<?xml version="1.0"?><c:mkcalendar xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">'
              b"<d:set><d:prop><d:displayname>Not alice's</d:displayname></d:prop></d:set></c:mkcalendar>")


@pytest.fixture
def gateway(nextcloud, start_gateway):
    gateway = start_gateway(nextcloud.url, PUSH_MIN_INTERVAL_MS=0)
    response = requests.request("MKCALENDAR", gateway.dav(LOOK_ALIKE), data=MKCALENDAR, auth=BOB)
    assert response.status_code == 201  # Sabre (and the stub) accept any collection name
    return gateway


def subscriptions(gateway):
    return {s.href: s for s in gateway.services.store.iter_subscriptions()}


def test_the_look_alike_gets_its_own_topic_in_discovery_and_registration(gateway):
    _, bobs = discover(gateway, "/calendars/bob/", BOB)
    _, alices = discover(gateway, "/calendars/alice/", ALICE)
    assert bobs["/remote.php/dav" + LOOK_ALIKE] != alices["/remote.php/dav/calendars/alice/personal/"]
    assert alices["/remote.php/dav/calendars/alice/personal/"] == ALICE_PERSONAL


def test_bob_registering_on_the_look_alike_is_not_subscribed_to_alice(gateway, receiver):
    subscribe(gateway, receiver, "/calendars/alice/personal/", auth=ALICE, name="alice")
    subscribe(gateway, receiver, LOOK_ALIKE, auth=BOB, name="bob")
    bob = subscriptions(gateway)["/remote.php/dav" + LOOK_ALIKE]
    assert bob.collection == "calendars/bob/personal_shared_by_alice" and bob.topic != ALICE_PERSONAL


def test_alices_changes_do_not_reach_bob(gateway, receiver, run_worker):
    alice_keys, _ = subscribe(gateway, receiver, "/calendars/alice/personal/", auth=ALICE, name="alice")
    subscribe(gateway, receiver, LOOK_ALIKE, auth=BOB, name="bob")
    assert webhook(gateway, object_event(owner="alice", uri="personal", token=50))["outcomes"] == ["queued"]
    requests.put(gateway.dav("/calendars/alice/personal/a.ics"), data=ics_event("a"), auth=ALICE)
    settle(gateway, run_worker, receiver, 2)
    assert {p.path for p in receiver.pushes} == {"/up/alice"}
    assert all(message(p, alice_keys)["topic"] == ALICE_PERSONAL for p in receiver.pushes)


def test_bobs_writes_to_the_look_alike_neither_push_to_alice_nor_advance_her_token(gateway, nextcloud, receiver, run_worker):
    subscribe(gateway, receiver, "/calendars/alice/personal/", auth=ALICE, name="alice")
    bob_keys, _ = subscribe(gateway, receiver, LOOK_ALIKE, auth=BOB, name="bob")
    with nextcloud._lock:
        nextcloud._coll("calendar", "bob", "personal_shared_by_alice").sync = 1000
    assert requests.put(gateway.dav(LOOK_ALIKE + "b.ics"), data=ics_event("b"), auth=BOB).status_code == 201
    settle(gateway, run_worker, receiver, 1)
    [push] = receiver.pushes
    assert push.path == "/up/bob" and message(push, bob_keys)["token"] == "http://sabre.io/ns/sync/1001"
    assert gateway.services.store.delivered_token(ALICE_PERSONAL) is None
    # alice's real change with a much lower token is still news to her subscribers
    assert webhook(gateway, object_event(owner="alice", uri="personal", token=7))["outcomes"] == ["queued"]
    settle(gateway, run_worker, receiver, 2)
    assert [p.path for p in receiver.pushes] == ["/up/bob", "/up/alice"]


def test_nextcloud_webhooks_for_the_look_alike_reach_bob_only(gateway, receiver, run_worker):
    subscribe(gateway, receiver, "/calendars/alice/personal/", auth=ALICE, name="alice")
    subscribe(gateway, receiver, LOOK_ALIKE, auth=BOB, name="bob")
    webhook(gateway, object_event(owner="bob", uri="personal_shared_by_alice", token=3, user="bob"))
    settle(gateway, run_worker, receiver, 1)
    assert [p.path for p in receiver.pushes] == ["/up/bob"]


def test_a_real_share_written_by_the_sharee_still_notifies_the_owner(gateway, nextcloud, receiver, run_worker):
    subscribe(gateway, receiver, "/calendars/alice/work/", auth=ALICE, name="alice")
    subscribe(gateway, receiver, "/calendars/bob/work_shared_by_alice/", auth=BOB, name="bob")
    assert requests.put(gateway.dav("/calendars/bob/work_shared_by_alice/w.ics"), data=ics_event("w"), auth=BOB).status_code == 201
    settle(gateway, run_worker, receiver, 2)
    assert sorted(p.path for p in receiver.pushes) == ["/up/alice", "/up/bob"]
    work = topic_for_collection(SECRET_KEY, "calendars/alice/work")
    assert gateway.services.store.delivered_token(work) == nextcloud.sync_token("alice", "work")


def test_deleting_the_look_alike_ends_bobs_subscriptions_not_alices(gateway, receiver, run_worker):
    subscribe(gateway, receiver, "/calendars/alice/personal/", auth=ALICE, name="alice")
    subscribe(gateway, receiver, LOOK_ALIKE, auth=BOB, name="bob")
    assert requests.delete(gateway.dav(LOOK_ALIKE), auth=BOB).status_code == 204
    settle(gateway, run_worker, receiver, 1)
    assert [p.path for p in receiver.pushes] == ["/up/bob"]  # the final push of a deleted calendar
    assert [s.collection for s in gateway.services.store.iter_subscriptions()] == ["calendars/alice/personal"]


@pytest.mark.parametrize("segments, owner, key", [
    (["calendars", "bob", "work_shared_by_alice"], "principals/users/alice", "calendars/alice/work"),
    (["calendars", "bob", "work_shared_by_alice"], "/remote.php/dav/principals/users/alice/", "calendars/alice/work"),
    (["calendars", "bob", "work_shared_by_alice"], None, "calendars/bob/work_shared_by_alice"),
    (["calendars", "bob", "work_shared_by_alice"], "principals/users/bob", "calendars/bob/work_shared_by_alice"),
    (["calendars", "bob", "work_shared_by_alice"], "principals/users/carol", "calendars/bob/work_shared_by_alice"),
    (["calendars", "bob", "work_shared_by_alice"], "principals/groups/alice", "calendars/bob/work_shared_by_alice"),
    (["calendars", "bob", "_shared_by_alice"], "principals/users/alice", "calendars/bob/_shared_by_alice"),
    (["calendars", "alice", "work_shared_by_alice"], "principals/users/alice", "calendars/alice/work_shared_by_alice"),
    (["addressbooks", "users", "bob", "contacts_shared_by_alice"], "principals/users/alice", "addressbooks/users/alice/contacts"),
    (["addressbooks", "users", "bob", "contacts_shared_by_alice"], None, "addressbooks/users/bob/contacts_shared_by_alice"),
])
def test_only_upstreams_owner_answer_maps_a_shared_name(segments, owner, key):
    assert canonical_key(segments, owner) == key


def test_the_name_alone_is_only_a_claim():
    assert claimed_key(["calendars", "bob", "work_shared_by_alice"]) == "calendars/alice/work"
    assert claimed_key(["calendars", "bob", "work"]) is None
    assert claimed_key(["calendars", "bob", "x_shared_by_bob"]) is None
    assert claimed_key(["calendars", "bob", "work_shared_by_alice", "e.ics"]) is None
