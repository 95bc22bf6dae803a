"""The Redis store against a real Redis."""
import threading
import time

import redis

from app.protocol.subscription import Change, Subscription
from app.protocol.triggers import Triggers
from app.store import Store


def make(sub_id="id1", user="/p/alice", collection="calendars/alice/work", push="https://push.example/a", expires=None, **kw):
    fields = dict(
        id=sub_id, user=user, collection=collection, topic="T-" + collection, href="/c/", push_resource=push,
        public_key="K", auth_secret="A", triggers=Triggers(content_depth="1"),
        expires=expires or int(time.time()) + 3600, created=int(time.time()), location=f"https://pub/push/subscriptions/{sub_id}",
    )
    fields.update(kw)
    return Subscription(**fields)


def test_create_then_update_keeps_id_and_location(redis_client):
    store = Store(redis_client)
    assert store.upsert(make("first")) == ("first", True, "https://pub/push/subscriptions/first")
    later = int(time.time()) + 7200
    sub_id, created, location = store.upsert(make("second", public_key="K2", expires=later))
    assert (sub_id, created, location) == ("first", False, "https://pub/push/subscriptions/first")
    stored = store.get("first")
    assert stored.public_key == "K2" and stored.expires == later and stored.location.endswith("/first")
    assert store.get("second") is None
    assert [s.id for s in store.live_for_topic("T-calendars/alice/work")] == ["first"]


def test_same_endpoint_on_other_collection_or_user_is_separate(redis_client):
    store = Store(redis_client)
    store.upsert(make("a"))
    assert store.upsert(make("b", collection="calendars/alice/home"))[1] is True
    assert store.upsert(make("c", user="/p/bob"))[1] is True
    assert store.count_live() == 3


def test_concurrent_identical_registrations_end_as_one(redis_url):
    results = []

    def register(n):
        client = redis.Redis.from_url(redis_url)
        results.append(Store(client).upsert(make(f"id{n}")))

    redis.Redis.from_url(redis_url).flushdb()
    threads = [threading.Thread(target=register, args=(n,)) for n in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert len({r[0] for r in results}) == 1
    assert sum(1 for r in results if r[1]) == 1
    assert Store(redis.Redis.from_url(redis_url)).count_all() == 1


def test_expired_are_never_returned_and_purged(redis_client):
    store = Store(redis_client)
    store.upsert(make("old", expires=int(time.time()) - 5))
    store.upsert(make("new", push="https://push.example/b"))
    assert [s.id for s in store.live_for_topic("T-calendars/alice/work")] == ["new"]
    assert store.get("old") is None
    assert store.purge_expired() == 1
    assert not redis_client.exists("dp:sub:old")
    assert redis_client.zscore("dp:topic:T-calendars/alice/work", "old") is None
    assert len(redis_client.hkeys("dp:dedupe")) == 1


def test_registering_again_after_expiry_is_a_new_registration(redis_client):
    store = Store(redis_client)
    store.upsert(make("old"))
    store.upsert(make("old", expires=int(time.time()) - 5))  # renewed into the past: expired, not yet purged
    assert store.get("old") is None
    sub_id, created, location = store.upsert(make("fresh"))
    assert (sub_id, created, location) == ("fresh", True, "https://pub/push/subscriptions/fresh")
    assert [s.id for s in store.live_for_topic("T-calendars/alice/work")] == ["fresh"]
    assert store.count_all() == 1 and store.purge_expired() == 0


def test_delete_removes_every_index(redis_client):
    store = Store(redis_client)
    store.upsert(make("x"))
    assert store.delete("x") is True
    assert store.delete("x") is False
    assert redis_client.keys("dp:*") == []


def test_record_success_does_not_resurrect_deleted(redis_client):
    store = Store(redis_client)
    store.upsert(make("x"))
    store.delete("x")
    store.record_success(["x"], 123)
    assert not redis_client.exists("dp:sub:x")


def test_pending_merge_rules(redis_client):
    store = Store(redis_client)
    tok = "http://sabre.io/ns/sync/{}".format
    assert store.merge_pending(Change("T", content_depth="1", sync_token=tok(5), exclude=frozenset({"a", "b"}), accepted_ms=10)) is True
    assert store.merge_pending(Change("T", content_depth="1", sync_token=tok(9), exclude=frozenset({"b"}))) is False
    assert store.merge_pending(Change("T", content_depth="1", sync_token=tok(7))) is False
    assert store.merge_pending(Change("T", property_update=True, exclude=frozenset({"b"}))) is False
    change = store.take_pending("T")
    assert change.sync_token == tok(9) and change.content_depth == "1" and change.property_update
    assert change.exclude == frozenset() and change.merged == 4 and change.accepted_ms == 10
    assert store.take_pending("T") is None


def test_pending_token_unknown_once_a_tokenless_change_merges(redis_client):
    store = Store(redis_client)
    store.merge_pending(Change("T", content_depth="1", sync_token="http://sabre.io/ns/sync/5"))
    store.merge_pending(Change("T", content_depth="1"))
    store.merge_pending(Change("T", content_depth="1", sync_token="http://sabre.io/ns/sync/6"))
    assert store.take_pending("T").sync_token is None


def test_pending_keeps_exclusions_agreed_by_all_and_self_depth(redis_client):
    store = Store(redis_client)
    store.merge_pending(Change("T", content_depth="1", exclude=frozenset({"a", "b"})))
    store.merge_pending(Change("T", content_depth="0", collection_deleted=True, exclude=frozenset({"a"})))
    change = store.take_pending("T")
    assert change.exclude == frozenset({"a"}) and change.content_depth == "0" and change.collection_deleted


def test_property_only_then_content_adopts_token(redis_client):
    store = Store(redis_client)
    store.merge_pending(Change("T", property_update=True))
    store.merge_pending(Change("T", content_depth="1", sync_token="http://radicale.org/ns/sync/abc"))
    change = store.take_pending("T")
    assert change.sync_token == "http://radicale.org/ns/sync/abc" and change.property_update


def test_delivered_token_only_grows(redis_client):
    store = Store(redis_client)
    store.mark_delivered_token("T", 9)
    store.mark_delivered_token("T", 4)
    assert store.delivered_token("T") == 9


def test_token_order_is_exact_beyond_double_precision(redis_client):
    store = Store(redis_client)
    big = 2**63 - 1
    store.mark_delivered_token("T", big - 1)
    store.mark_delivered_token("T", big)
    store.mark_delivered_token("T", big - 1)  # older, and equal as a double
    assert store.delivered_token("T") == big
    store.merge_pending(Change("T", content_depth="1", sync_token=f"http://sabre.io/ns/sync/{big - 1}"))
    store.merge_pending(Change("T", content_depth="1", sync_token=f"http://sabre.io/ns/sync/{big}"))
    store.merge_pending(Change("T", content_depth="1", sync_token=f"http://sabre.io/ns/sync/{big - 1}"))
    assert store.take_pending("T").sync_token == f"http://sabre.io/ns/sync/{big}"


def test_origin_slots_are_shared_by_workers_and_come_back_from_dead_ones(redis_client):
    store = Store(redis_client)
    origin, now = "https://ntfy.example.org", 1_000_000
    assert store.lease_origin_slots(origin, "w1", 6, 8, 5000, now_ms=now) == 6
    assert store.lease_origin_slots(origin, "w2", 6, 8, 5000, now_ms=now) == 2  # what is left
    assert store.lease_origin_slots(origin, "w3", 6, 8, 5000, now_ms=now) == 0
    assert store.lease_origin_slots(origin, "w1", 6, 8, 5000, now_ms=now + 1000) == 6  # renewal keeps its share
    assert store.lease_origin_slots(origin, "w1", 0, 8, 5000, now_ms=now + 1000) == 0  # given back
    assert store.lease_origin_slots(origin, "w3", 6, 8, 5000, now_ms=now + 1000) == 6
    # w2 dies: its lease runs out and its slots can be had again
    assert store.lease_origin_slots(origin, "w3", 8, 8, 5000, now_ms=now + 5001) == 8


def test_a_fan_out_loads_subscriptions_exactly_as_stored_and_skips_damaged_ones(redis_client):
    store = Store(redis_client)
    full = make("full", triggers=Triggers(content_depth="1", property_depth="0", properties=("{DAV:}displayname",)),
                last_success=1_700_000_000)
    store.upsert(full)
    store.upsert(make("damaged", push="https://push.example/b"))
    store.upsert(make("plain", push="https://push.example/c"))
    redis_client.hdel(store.keys.sub("damaged"), "public_key")  # a hash that lost a required field
    loaded = {s.id: s for s in store.live_for_topic("T-calendars/alice/work")}
    assert set(loaded) == {"full", "plain"}
    assert loaded["full"] == full
    assert [s.id for s in store.by_ids(["plain", "no-such-id"])] == ["plain"]


def test_a_fan_out_larger_than_one_read_loads_every_live_subscription(redis_client):
    from app.store import redis_store

    store = Store(redis_client)
    now = int(time.time())
    total = 2 * redis_store.LOAD_CHUNK + 7
    for n in range(total):
        expires = now - 5 if n % 500 == 3 else now + 3600  # a few expired ones, in every read
        store.upsert(make(f"s{n:05d}", push=f"https://push.example/{n}", expires=expires), now=now - 10)
    redis_client.delete(store.keys.sub("s01000"))  # gone between the index read and the records read
    loaded = store.live_for_topic("T-calendars/alice/work", now=now)
    expected = {f"s{n:05d}" for n in range(total) if n % 500 != 3} - {"s01000"}
    assert {s.id for s in loaded} == expected
    assert len(loaded) == len(expected)
    by_id = {s.id: s for s in loaded}
    assert by_id["s02006"].push_resource == "https://push.example/2006"
