"""PUSH_MAX_SUBSCRIPTIONS_PER_USER: past the cap a new registration is a 403 DAV error, renewals
still work, the count is of live subscriptions only and holds under concurrent registrations."""
import dataclasses
import threading
import time
import xml.etree.ElementTree as ET

import pytest
import requests

from app.core.config import ConfigError, load_settings
from support import bodies
from support.push_receiver import ClientKeys

ALICE, BOB = ("alice", "alice-pw"), ("bob", "bob-pw")
WORK, PERSONAL = "/calendars/alice/work/", "/calendars/alice/personal/"
ALICE_PRINCIPAL = "/remote.php/dav/principals/users/alice"


@pytest.fixture
def gateway(nextcloud, start_gateway):
    return start_gateway(nextcloud.url, PUSH_MAX_SUBSCRIPTIONS_PER_USER="3")


@pytest.fixture
def keys():
    return ClientKeys.generate()


def register(gateway, receiver, keys, name, path=WORK, auth=ALICE):
    body = bodies.davx5_old(receiver.endpoint(f"/up/{name}"), keys.p256dh, keys.auth)
    return requests.post(gateway.dav(path), data=body, auth=auth, headers={"Content-Type": bodies.XML_UTF8})


def users(gateway):
    return [s.user for s in gateway.services.store.iter_subscriptions()]


def test_the_fourth_new_registration_is_refused_with_a_reason(gateway, receiver, keys):
    assert [register(gateway, receiver, keys, n).status_code for n in ("a", "b", "c")] == [201, 201, 201]
    refused = register(gateway, receiver, keys, "d", path=PERSONAL)
    assert refused.status_code == 403
    root = ET.fromstring(refused.content)
    assert root.tag == "{DAV:}error"
    assert "too many push subscriptions" in root.findtext("{http://sabredav.org/ns}message")
    assert "3" in root.findtext("{http://sabredav.org/ns}message")
    assert users(gateway) == [ALICE_PRINCIPAL] * 3


def test_renewing_at_the_cap_is_still_a_204(gateway, receiver, keys):
    first = register(gateway, receiver, keys, "a")
    register(gateway, receiver, keys, "b")
    register(gateway, receiver, keys, "c")
    again = register(gateway, receiver, keys, "a")
    assert again.status_code == 204 and again.headers["Location"] == first.headers["Location"]


def test_unregistering_one_makes_room_for_a_new_one(gateway, receiver, keys):
    locations = [register(gateway, receiver, keys, n).headers["Location"] for n in ("a", "b", "c")]
    assert register(gateway, receiver, keys, "d").status_code == 403
    assert requests.delete(gateway.location_to_local(locations[1]), auth=ALICE).status_code == 204
    assert register(gateway, receiver, keys, "d").status_code == 201
    assert register(gateway, receiver, keys, "e").status_code == 403


def test_expired_subscriptions_do_not_count(gateway, receiver, keys):
    for name in ("a", "b", "c"):
        register(gateway, receiver, keys, name)
    store = gateway.services.store
    oldest = next(store.iter_subscriptions())
    store.upsert(dataclasses.replace(oldest, expires=int(time.time()) - 1))  # expired, not purged yet
    assert register(gateway, receiver, keys, "d").status_code == 201


def test_another_user_is_not_affected(gateway, receiver, keys):
    for name in ("a", "b", "c"):
        register(gateway, receiver, keys, name)
    assert register(gateway, receiver, keys, "bob", path="/calendars/bob/personal/", auth=BOB).status_code == 201


def test_concurrent_registrations_never_overshoot(gateway, receiver, keys):
    results = []
    threads = [threading.Thread(target=lambda n=n: results.append(register(gateway, receiver, keys, f"c{n}").status_code))
               for n in range(10)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(results) == [201] * 3 + [403] * 7
    assert users(gateway) == [ALICE_PRINCIPAL] * 3


def test_the_user_index_follows_deletes_and_purges(gateway, receiver, keys):
    store = gateway.services.store
    locations = [register(gateway, receiver, keys, n).headers["Location"] for n in ("a", "b")]
    index = store.keys.user(store.keys.user_field(ALICE_PRINCIPAL))
    assert store.redis.zcard(index) == 2
    requests.delete(gateway.location_to_local(locations[0]), auth=ALICE)
    assert store.redis.zcard(index) == 1
    [left] = store.iter_subscriptions()
    store.upsert(dataclasses.replace(left, expires=int(time.time()) - 1))
    assert store.purge_expired() == 1 and store.redis.zcard(index) == 0


def test_the_default_is_250_and_bad_values_name_the_variable(make_env):
    assert load_settings(make_env()).push_max_subscriptions_per_user == 250
    assert load_settings(make_env(PUSH_MAX_SUBSCRIPTIONS_PER_USER="7")).push_max_subscriptions_per_user == 7
    for bad in ("0", "-1", "many", "1000001"):
        with pytest.raises(ConfigError, match="PUSH_MAX_SUBSCRIPTIONS_PER_USER"):
            load_settings(make_env(PUSH_MAX_SUBSCRIPTIONS_PER_USER=bad))
