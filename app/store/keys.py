"""The Redis key schema: the one place that knows davpush's key names.

Every key starts with the configured prefix (REDIS_PREFIX, "dp:" by default):

  {p}sub:<id>             hash    one subscription (see Subscription.to_fields)
  {p}topic:<topic>        zset    subscription ids of a topic, scored by expiry
  {p}expiry               zset    every subscription id, scored by expiry
  {p}dedupe               hash    sha256(user, collection, push-resource) -> id
  {p}user:<sha256(user)>  zset    subscription ids of one user, scored by expiry: the per-user cap
                                  (subscriptions stored before this index existed join it when renewed)
  {p}pending:<topic>      hash    the merged change waiting for its delivery job
  {p}due                  zset    topic -> ms by which a delivery job should have claimed its
                                  pending change (a watchdog re-enqueues the job after that)
  {p}fanout:<id>          hash    a fan-out being delivered: the change (or retry) and its owner
  {p}fanout:<id>:done     set     subscription ids whose push of that fan-out has an outcome
  {p}fanouts              zset    fan-out id -> ms at which its owner's lease ends
  {p}last:<topic>         string  ms timestamp of the last delivery start (rate limit)
  {p}delivered:<topic>    string  highest sync-token number delivered (stale-event filter)
  {p}seen:<sha256>        string  webhook bodies already accepted (duplicate filter)
  {p}metrics              hash    counters shared by all processes
  {p}lock:<name>          string  short-lived locks (periodic purge)
  {p}heartbeat:<worker>   string  worker liveness, with a TTL
  {p}slots:<origin>       zset    worker -> ms its lease on that push service's request slots ends
  {p}slots:<origin>:n     hash    worker -> how many of the origin's slots it holds (PUSH_ORIGIN
                                  limits across all worker processes together)

Scripts need every key on one node: Redis Cluster is not supported. Only the store
(redis_store.py) reads and writes these keys; tests and benchmarks that look at Redis directly
build key names here too.
"""
from __future__ import annotations

import hashlib


class Keys:
    def __init__(self, prefix: str = "dp:"):
        self.prefix = prefix

    # subscriptions
    def sub(self, sub_id: str) -> str:
        return f"{self.prefix}sub:{sub_id}"

    @property
    def sub_prefix(self) -> str:
        """sub(id) is sub_prefix + id (Lua scripts build record keys from ids)."""
        return self.sub("")

    def topic(self, topic: str) -> str:
        return f"{self.prefix}topic:{topic}"

    @property
    def topic_prefix(self) -> str:
        return self.topic("")

    @property
    def expiry(self) -> str:
        return f"{self.prefix}expiry"

    @property
    def dedupe(self) -> str:
        return f"{self.prefix}dedupe"

    @staticmethod
    def dedupe_field(user: str, collection: str, push_resource: str) -> str:
        return hashlib.sha256(f"{user}\x00{collection}\x00{push_resource}".encode()).hexdigest()[:32]

    @staticmethod
    def user_field(user: str) -> str:
        return hashlib.sha256(user.encode()).hexdigest()[:32]

    def user(self, user_field: str) -> str:
        """The per-user index; user_field is user_field(principal)."""
        return f"{self.prefix}user:{user_field}"

    @property
    def user_prefix(self) -> str:
        return self.user("")

    # changes and fan-outs
    def pending(self, topic: str) -> str:
        """The pending change of a topic; pending("*") is the SCAN pattern of all of them."""
        return f"{self.prefix}pending:{topic}"

    @property
    def due(self) -> str:
        return f"{self.prefix}due"

    def fanout(self, fanout_id: str) -> str:
        return f"{self.prefix}fanout:{fanout_id}"

    def fanout_done(self, fanout_id: str) -> str:
        return f"{self.fanout(fanout_id)}:done"

    @property
    def fanouts(self) -> str:
        return f"{self.prefix}fanouts"

    def last_delivery(self, topic: str) -> str:
        return f"{self.prefix}last:{topic}"

    def delivered(self, topic: str) -> str:
        return f"{self.prefix}delivered:{topic}"

    def seen(self, fingerprint: str) -> str:
        """A webhook body already accepted; seen("*") is the SCAN pattern."""
        return f"{self.prefix}seen:{fingerprint}"

    # operations
    @property
    def metrics(self) -> str:
        return f"{self.prefix}metrics"

    def lock(self, name: str) -> str:
        return f"{self.prefix}lock:{name}"

    def heartbeat(self, worker: str) -> str:
        """A worker's heartbeat; heartbeat("*") is the SCAN pattern."""
        return f"{self.prefix}heartbeat:{worker}"

    def slots(self, origin: str) -> str:
        return f"{self.prefix}slots:{origin}"

    def slot_counts(self, origin: str) -> str:
        return f"{self.slots(origin)}:n"
