"""Subscriptions, pending changes, fan-outs and counters in Redis.

The key names are in keys.py (Keys), the one place that knows them; this module is the only one
that reads and writes them.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import redis

from ..protocol.subscription import Change, Subscription, sync_token_number
from .keys import Keys

FANOUT_TTL = 7 * 86400  # a fan-out record outlives any retry schedule, then goes away by itself
LOAD_CHUNK = 1000  # subscriptions read per script call: a large fan-out never blocks Redis for long

_UPSERT = """
-- KEYS: dedupe, expiry, topic, new record, user index
-- ARGV: dedupe field, new id, record prefix, expires, now, topic key prefix,
--       most live subscriptions per user (0: no limit), then field/value pairs
-- Returns {id, created (1/0), location}, or {'', -1, ''} when a new one would exceed the limit.
local existing = redis.call('HGET', KEYS[1], ARGV[1])
local record = KEYS[4]
local created = 1
local id = ARGV[2]
local old = nil
if existing and redis.call('EXISTS', ARGV[3] .. existing) == 1 then
  old = ARGV[3] .. existing
  if tonumber(redis.call('HGET', old, 'expires') or '0') > tonumber(ARGV[5]) then
    record = old
    id = existing
    created = 0
  end
end
local limit = tonumber(ARGV[7])
if created == 1 and limit > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', ARGV[5])  -- expired ones do not count
  if redis.call('ZCARD', KEYS[5]) >= limit then return {'', -1, ''} end
end
if created == 1 and old then
  -- expired but not purged yet: it is gone for the client, so this is a new registration
  local old_topic = redis.call('HGET', old, 'topic')
  redis.call('DEL', old)
  redis.call('ZREM', KEYS[2], existing)
  redis.call('ZREM', KEYS[5], existing)
  if old_topic then redis.call('ZREM', ARGV[6] .. old_topic, existing) end
end
for i = 8, #ARGV, 2 do
  local name = ARGV[i]
  if created == 1 or (name ~= 'id' and name ~= 'created' and name ~= 'location' and name ~= 'last_success') then
    redis.call('HSET', record, name, ARGV[i + 1])
  end
end
redis.call('HSET', KEYS[1], ARGV[1], id)
redis.call('ZADD', KEYS[2], ARGV[4], id)
redis.call('ZADD', KEYS[3], ARGV[4], id)
redis.call('ZADD', KEYS[5], ARGV[4], id)
return {id, created, redis.call('HGET', record, 'location')}
"""

_DELETE = """
-- KEYS: record, expiry, dedupe ; ARGV: id, topic key prefix, user index prefix
local topic = redis.call('HGET', KEYS[1], 'topic')
local dk = redis.call('HGET', KEYS[1], 'dk')
local uk = redis.call('HGET', KEYS[1], 'uk')
local existed = redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if topic then redis.call('ZREM', ARGV[2] .. topic, ARGV[1]) end
if uk then redis.call('ZREM', ARGV[3] .. uk, ARGV[1]) end
if dk and redis.call('HGET', KEYS[3], dk) == ARGV[1] then redis.call('HDEL', KEYS[3], dk) end
return existed
"""

_SET_IF_EXISTS = """
-- KEYS: records ; ARGV: field, value
local n = 0
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, ARGV[1], ARGV[2]); n = n + 1 end
end
return n
"""

_LOAD_RECORDS = """
-- ARGV: record prefix, n, n field names, then ids ; returns each id's HMGET of those fields
-- (one command for many records: a pipeline of HMGETs costs the client 3x the CPU to pack)
local n = tonumber(ARGV[2])
local fields = {}
for i = 1, n do fields[i] = ARGV[2 + i] end
local rows = {}
for i = 3 + n, #ARGV do
  rows[#rows + 1] = redis.call('HMGET', ARGV[1] .. ARGV[i], unpack(fields))
end
return rows
"""

_MERGE_PENDING = """
-- KEYS: pending, due ; ARGV: content depth ('' none), property (0/1), deleted (0/1), token ('' unknown),
--       token number ('' when not numeric), exclude (json list), accepted ms, ttl seconds, has content (0/1),
--       request id, topic, due ms
-- Token fields: tk = token to send, tn = its number, '' when not numeric, 'u' when unknown.
local key = KEYS[1]
local has_content = ARGV[9] == '1'
local token, number = ARGV[4], ARGV[5]
if has_content and token == '' then number = 'u' end
if redis.call('EXISTS', key) == 0 then
  redis.call('HSET', key, 'c', ARGV[1], 'p', ARGV[2], 'd', ARGV[3], 'tk', token, 'tn', number,
             'x', ARGV[6], 't0', ARGV[7], 'n', 1, 'r', ARGV[10])
  redis.call('EXPIRE', key, ARGV[8])
  redis.call('ZADD', KEYS[2], ARGV[12], ARGV[11])
  return 1
end
local c = redis.call('HGET', key, 'c')
if has_content then
  if c == '' then
    redis.call('HSET', key, 'tk', token, 'tn', number)
  else
    local tn = redis.call('HGET', key, 'tn')
    if tn == 'u' or tn == '' or number == 'u' or number == '' then
      redis.call('HSET', key, 'tk', '', 'tn', 'u')
    elseif #number > #tn or (#number == #tn and number > tn) then  -- exact for 64-bit tokens (Lua numbers are doubles)
      redis.call('HSET', key, 'tk', token, 'tn', number)
    end
  end
  if c == '' or ARGV[1] < c then redis.call('HSET', key, 'c', ARGV[1]) end
end
if ARGV[2] == '1' then redis.call('HSET', key, 'p', '1') end
if ARGV[3] == '1' then redis.call('HSET', key, 'd', '1') end
local old = cjson.decode(redis.call('HGET', key, 'x'))
local new = cjson.decode(ARGV[6])
local keep = {}
local seen = {}
for _, id in ipairs(new) do seen[id] = true end
for _, id in ipairs(old) do if seen[id] then table.insert(keep, id) end end
redis.call('HSET', key, 'x', #keep == 0 and '[]' or cjson.encode(keep))
redis.call('HINCRBY', key, 'n', 1)
return 0
"""

_TAKE = """
-- KEYS: pending, due ; ARGV: topic
local value = redis.call('HGETALL', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return value
"""

_CLAIM = """
-- KEYS: pending, due, fanout, fanouts ; ARGV: topic, fan-out id, owner, lease end ms, ttl seconds
-- The pending change becomes a fan-out owned by the caller in one step: a crash can lose neither.
local value = redis.call('HGETALL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if #value == 0 then return value end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[3], unpack(value))
redis.call('HSET', KEYS[3], 'kind', 'change', 'topic', ARGV[1], 'owner', ARGV[3], 'resumes', 0)
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[2])
return value
"""

_OVERDUE = """
-- KEYS: pending, due ; ARGV: topic, next due ms
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
  return 1
end
redis.call('ZREM', KEYS[2], ARGV[1])
return 0
"""

_RENEW = """
-- KEYS: fanouts, then fan-out records ; ARGV: owner, lease end ms, then fan-out ids
local renewed = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'owner') == ARGV[1] then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[i + 1])
    renewed = renewed + 1
  end
end
return renewed
"""

_RECLAIM = """
-- KEYS: fanouts, fanout ; ARGV: fan-out id, now ms, token, lease end ms
-- Hands an abandoned fan-out (lease over) to `token`; nil when it is still owned or gone.
local lease = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not lease or tonumber(lease) > tonumber(ARGV[2]) then return false end
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return false
end
redis.call('HSET', KEYS[2], 'owner', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return redis.call('HINCRBY', KEYS[2], 'resumes', 1)
"""

_TAKE_OVER = """
-- KEYS: fanouts, fanout ; ARGV: fan-out id, token, new owner, lease end ms
if redis.call('HGET', KEYS[2], 'owner') ~= ARGV[2] then return {} end
redis.call('HSET', KEYS[2], 'owner', ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
return redis.call('HGETALL', KEYS[2])
"""

_MAX_NUMBER = """
-- Decimal strings without leading zeros compare by length, then digit by digit: exact for
-- 64-bit numbers, which Lua's doubles are not.
local current = redis.call('GET', KEYS[1])
local new = ARGV[1]
if not current or #new > #current or (#new == #current and new > current) then
  redis.call('SET', KEYS[1], new, 'EX', ARGV[2])
end
return 1
"""


class SubscriptionLimitReached(Exception):
    """The user already has the most live subscriptions allowed."""

    def __init__(self, limit: int):
        super().__init__(f"at most {limit} live subscriptions per user")
        self.limit = limit


_LEASE_SLOTS = """
-- KEYS: leases zset, counts hash ; ARGV: worker, wanted, limit, now ms, lease end ms, lease ms
-- Grants a worker up to `wanted` of an origin's `limit` request slots, counting what every other
-- live worker holds; a dead worker's slots come back when its lease runs out.
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])) do
  redis.call('ZREM', KEYS[1], gone)
  redis.call('HDEL', KEYS[2], gone)
end
local others = 0
local counts = redis.call('HGETALL', KEYS[2])
for i = 1, #counts, 2 do
  if counts[i] ~= ARGV[1] then others = others + tonumber(counts[i + 1]) end
end
local grant = math.max(0, math.min(tonumber(ARGV[2]), tonumber(ARGV[3]) - others))
if grant > 0 then
  redis.call('HSET', KEYS[2], ARGV[1], grant)
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[6])  -- the keys go when nobody renews
redis.call('PEXPIRE', KEYS[2], ARGV[6])
return grant
"""


class Store:
    def __init__(self, client: redis.Redis, prefix: str = "dp:"):
        self.redis = client
        self.keys = Keys(prefix)
        self._upsert = client.register_script(_UPSERT)
        self._delete = client.register_script(_DELETE)
        self._set_if_exists = client.register_script(_SET_IF_EXISTS)
        self._load_records = client.register_script(_LOAD_RECORDS)
        self._merge = client.register_script(_MERGE_PENDING)
        self._take = client.register_script(_TAKE)
        self._claim = client.register_script(_CLAIM)
        self._overdue = client.register_script(_OVERDUE)
        self._renew = client.register_script(_RENEW)
        self._reclaim = client.register_script(_RECLAIM)
        self._take_over = client.register_script(_TAKE_OVER)
        self._lease_slots = client.register_script(_LEASE_SLOTS)
        self._max_number = client.register_script(_MAX_NUMBER)

    # -- keys -----------------------------------------------------------------
    dedupe_field = staticmethod(Keys.dedupe_field)
    user_field = staticmethod(Keys.user_field)

    # -- subscriptions ----------------------------------------------------------
    def upsert(self, subscription: Subscription, now: float | None = None, limit: int = 0) -> tuple[str, bool, str]:
        """Create, or update the keys, triggers and expiry of, the live registration of
        (user, collection, push-resource). Returns (id, created, location).

        With a limit, creating one more than `limit` live subscriptions for the user raises
        SubscriptionLimitReached (checked atomically); renewing an existing one never does."""
        now = time.time() if now is None else now
        dk = self.dedupe_field(subscription.user, subscription.collection, subscription.push_resource)
        uk = self.user_field(subscription.user)
        fields = dict(subscription.to_fields(), dk=dk, uk=uk)
        args: list[str | int | float] = [dk, subscription.id, self.keys.sub_prefix, subscription.expires, now,
                                         self.keys.topic_prefix, limit]
        for name, value in fields.items():
            args.extend((name, value))
        keys = [self.keys.dedupe, self.keys.expiry, self.keys.topic(subscription.topic), self.keys.sub(subscription.id), self.keys.user(uk)]
        sub_id, created, location = self._upsert(keys=keys, args=args)
        if created == -1:
            raise SubscriptionLimitReached(limit)
        return _text(sub_id), bool(created), _text(location)

    def get(self, sub_id: str, now: float | None = None) -> Subscription | None:
        """A live subscription, or None when unknown or expired."""
        fields = self.redis.hgetall(self.keys.sub(sub_id))
        if not fields:
            return None
        subscription = Subscription.from_fields(fields)
        if subscription.expires <= (time.time() if now is None else now):
            return None
        return subscription

    def delete(self, sub_id: str) -> bool:
        return bool(self._delete(keys=[self.keys.sub(sub_id), self.keys.expiry, self.keys.dedupe],
                                 args=[sub_id, self.keys.topic_prefix, self.keys.user_prefix]))

    def live_for_topic(self, topic: str, now: float | None = None) -> list[Subscription]:
        now = time.time() if now is None else now
        ids = self.redis.zrangebyscore(self.keys.topic(topic), f"({int(now)}", "+inf")
        return self._load(ids, now)

    def has_live(self, topic: str, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return self.redis.zcount(self.keys.topic(topic), f"({int(now)}", "+inf") > 0

    def _load(self, ids: list[Any], now: float) -> list[Subscription]:
        head: list[Any] = [self.keys.sub_prefix, len(Subscription.FIELDS), *Subscription.FIELDS]
        subscriptions = []
        for start in range(0, len(ids), LOAD_CHUNK):
            for values in self._load_records(args=head + ids[start:start + LOAD_CHUNK]):
                subscription = Subscription.from_values(values)
                if subscription is not None and subscription.expires > now:
                    subscriptions.append(subscription)
        return subscriptions

    def by_ids(self, ids: Iterable[str], now: float | None = None) -> list[Subscription]:
        return self._load(list(ids), time.time() if now is None else now)

    def record_success(self, ids: Iterable[str], when: int | None = None) -> None:
        ids = list(ids)
        if ids:
            self._set_if_exists(keys=[self.keys.sub(i) for i in ids], args=["last_success", when or int(time.time())])

    def drop_topic(self, topic: str) -> int:
        """Forget a deleted collection: its subscriptions and its delivered sync-token."""
        ids = [_text(i) for i in self.redis.zrange(self.keys.topic(topic), 0, -1)]
        for sub_id in ids:
            self.delete(sub_id)
        self.redis.delete(self.keys.topic(topic), self.keys.delivered(topic))
        return len(ids)

    def purge_expired(self, now: float | None = None, batch: int = 1000) -> int:
        now = time.time() if now is None else now
        removed = 0
        while True:
            ids = self.redis.zrangebyscore(self.keys.expiry, "-inf", int(now), start=0, num=batch)
            if not ids:
                return removed
            for sub_id in ids:
                sub_id = _text(sub_id)
                if not self.delete(sub_id):
                    self.redis.zrem(self.keys.expiry, sub_id)
                removed += 1

    def iter_subscriptions(self, now: float | None = None, include_expired: bool = False) -> Iterator[Subscription]:
        now = time.time() if now is None else now
        low = "-inf" if include_expired else f"({int(now)}"
        offset = 0
        while True:
            ids = self.redis.zrangebyscore(self.keys.expiry, low, "+inf", start=offset, num=500)
            if not ids:
                return
            offset += len(ids)
            yield from self._load(ids, -1 if include_expired else now)

    def count_live(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        return self.redis.zcount(self.keys.expiry, f"({int(now)}", "+inf")

    def count_all(self) -> int:
        return self.redis.zcard(self.keys.expiry)

    # -- pending changes (coalescing) ---------------------------------------------
    def merge_pending(self, change: Change, ttl: int = 3600, due_ms: int | None = None) -> bool:
        """Merge a change into its topic's pending change; True if it created one
        (the caller then enqueues the delivery job, which must claim it by `due_ms`)."""
        number = sync_token_number(change.sync_token)
        if due_ms is None:
            due_ms = int(time.time() * 1000) + 30_000
        created = self._merge(
            keys=[self.keys.pending(change.topic), self.keys.due],
            args=[
                change.content_depth or "",
                "1" if change.property_update else "0",
                "1" if change.collection_deleted else "0",
                change.sync_token or "",
                "" if number is None else str(number),
                json.dumps(sorted(change.exclude)),
                change.accepted_ms,
                ttl,
                "1" if change.content_depth is not None else "0",
                change.request_id,
                change.topic,
                due_ms,
            ],
        )
        return bool(created)

    def take_pending(self, topic: str) -> Change | None:
        """Remove and return a topic's pending change (nobody will deliver it)."""
        flat = self._take(keys=[self.keys.pending(topic), self.keys.due], args=[topic])
        return change_from_fields(topic, _pairs(flat)) if flat else None

    def claim_pending(self, topic: str, fanout_id: str, owner: str, lease_until_ms: int) -> Change | None:
        """Turn the topic's pending change into a fan-out owned by `owner` (None: nothing pending)."""
        flat = self._claim(
            keys=[self.keys.pending(topic), self.keys.due, self.keys.fanout(fanout_id), self.keys.fanouts],
            args=[topic, fanout_id, owner, lease_until_ms, FANOUT_TTL],
        )
        return change_from_fields(topic, _pairs(flat)) if flat else None

    def overdue_pending(self, now_ms: int, next_due_ms: int, limit: int = 100) -> list[str]:
        """Topics whose pending change no job claimed in time; their deadline moves to next_due_ms."""
        topics = [_text(t) for t in self.redis.zrangebyscore(self.keys.due, "-inf", now_ms, start=0, num=limit)]
        return [t for t in topics if self._overdue(keys=[self.keys.pending(t), self.keys.due], args=[t, next_due_ms])]

    # -- fan-outs in progress (at-least-once delivery) ------------------------------
    def start_fanout(self, fanout_id: str, fields: dict[str, Any], owner: str, lease_until_ms: int) -> None:
        pipe = self.redis.pipeline(transaction=True)
        record: dict[Any, Any] = {**fields, "owner": owner, "resumes": 0}
        pipe.hset(self.keys.fanout(fanout_id), mapping=record)
        pipe.expire(self.keys.fanout(fanout_id), FANOUT_TTL)
        pipe.zadd(self.keys.fanouts, {fanout_id: lease_until_ms})
        pipe.execute()

    def fanout_progress(self, fanout_id: str, done_ids: Iterable[str]) -> None:
        """Record the subscriptions whose push has an outcome (they are skipped on resume)."""
        done_ids = list(done_ids)
        if done_ids:
            pipe = self.redis.pipeline(transaction=False)
            pipe.sadd(self.keys.fanout_done(fanout_id), *done_ids)
            pipe.expire(self.keys.fanout_done(fanout_id), FANOUT_TTL)
            pipe.execute()

    def finish_fanout(self, fanout_id: str) -> None:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(self.keys.fanout(fanout_id), self.keys.fanout_done(fanout_id))
        pipe.zrem(self.keys.fanouts, fanout_id)
        pipe.execute()

    def renew_fanouts(self, fanout_ids: Iterable[str], owner: str, lease_until_ms: int) -> int:
        fanout_ids = list(fanout_ids)
        if not fanout_ids:
            return 0
        keys = [self.keys.fanouts, *(self.keys.fanout(i) for i in fanout_ids)]
        return int(self._renew(keys=keys, args=[owner, lease_until_ms, *fanout_ids]))

    def abandoned_fanouts(self, now_ms: int, limit: int = 100) -> list[str]:
        return [_text(i) for i in self.redis.zrangebyscore(self.keys.fanouts, "-inf", now_ms, start=0, num=limit)]

    def reclaim_fanout(self, fanout_id: str, now_ms: int, token: str, lease_until_ms: int) -> int | None:
        """Give an abandoned fan-out to `token`; the number of times it was resumed, or None."""
        resumes = self._reclaim(keys=[self.keys.fanouts, self.keys.fanout(fanout_id)],
                                args=[fanout_id, now_ms, token, lease_until_ms])
        return None if resumes is None else int(resumes)

    def take_over_fanout(self, fanout_id: str, token: str, owner: str, lease_until_ms: int) -> dict[str, str] | None:
        """The fan-out's record, now owned by `owner`, if it was still handed to `token`."""
        flat = self._take_over(keys=[self.keys.fanouts, self.keys.fanout(fanout_id)], args=[fanout_id, token, owner, lease_until_ms])
        return _pairs(flat) if flat else None

    def fanout_done(self, fanout_id: str) -> set[str]:
        return {_text(i) for i in self.redis.smembers(self.keys.fanout_done(fanout_id))}

    def fanout_count(self) -> int:
        return self.redis.zcard(self.keys.fanouts)

    def last_delivery_ms(self, topic: str) -> int:
        return int(self.redis.get(self.keys.last_delivery(topic)) or 0)

    def mark_delivery_start(self, topic: str, when_ms: int, keep_seconds: int = 3600) -> None:
        self.redis.set(self.keys.last_delivery(topic), when_ms, ex=keep_seconds)

    def delivered_token(self, topic: str) -> int | None:
        value = self.redis.get(self.keys.delivered(topic))
        return None if value is None else int(value)

    def mark_delivered_token(self, topic: str, number: int, keep_seconds: int = 7 * 86400) -> None:
        self._max_number(keys=[self.keys.delivered(topic)], args=[number, keep_seconds])

    def first_sighting(self, fingerprint: str, keep_seconds: int = 3600) -> bool:
        """True the first time a fingerprint is seen within keep_seconds."""
        return bool(self.redis.set(self.keys.seen(fingerprint), 1, nx=True, ex=keep_seconds))

    # -- shared counters ---------------------------------------------------------
    def count(self, name: str, amount: int = 1) -> None:
        self.redis.hincrby(self.keys.metrics, name, amount)

    def count_many(self, tallies: dict[str, int]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for name, amount in tallies.items():
            pipe.hincrby(self.keys.metrics, name, amount)
        pipe.execute()

    def counters(self) -> dict[str, int]:
        return {_text(k): int(v) for k, v in self.redis.hgetall(self.keys.metrics).items()}

    # -- request slots per push service, shared by all workers -----------------------------
    def lease_origin_slots(self, origin: str, worker: str, wanted: int, limit: int, lease_ms: int,
                           now_ms: int | None = None) -> int:
        """Hold up to `wanted` of `origin`'s `limit` slots for `lease_ms` (0 wanted gives them back);
        the number granted, which may be less than asked while other workers hold slots."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return int(self._lease_slots(keys=[self.keys.slots(origin), self.keys.slot_counts(origin)],
                                     args=[worker, wanted, limit, now_ms, now_ms + lease_ms, lease_ms]))

    def try_lock(self, name: str, seconds: int) -> bool:
        return bool(self.redis.set(self.keys.lock(name), 1, nx=True, ex=seconds))

    def heartbeat(self, worker: str, seconds: int = 60) -> None:
        self.redis.set(self.keys.heartbeat(worker), int(time.time()), ex=seconds)

    def heartbeats(self) -> dict[str, int]:
        keys = list(self.redis.scan_iter(match=self.keys.heartbeat("*"), count=100))
        if not keys:
            return {}
        values = self.redis.mget(keys)
        return {_text(k)[len(self.keys.heartbeat("")):]: int(v) for k, v in zip(keys, values, strict=True) if v is not None}


def _pairs(flat: list[str | bytes]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


def change_from_fields(topic: str, f: dict[str, str]) -> Change:
    """The change stored in a pending hash (or in a fan-out record made from one)."""
    return Change(
        topic=topic,
        content_depth=f.get("c") or None,
        property_update=f.get("p") == "1",
        collection_deleted=f.get("d") == "1",
        sync_token=f.get("tk") or None,
        exclude=frozenset(json.loads(f.get("x") or "[]")),
        accepted_ms=int(f.get("t0") or 0),
        merged=int(f.get("n") or 1),
        request_id=f.get("r", ""),
    )



def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else ("" if value is None else str(value))

