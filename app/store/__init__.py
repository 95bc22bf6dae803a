"""Everything davpush keeps in Redis: subscriptions, pending changes, fan-outs, counters, locks.

keys.py is the key schema (the one place that knows the key names); redis_store.py the Store that
reads and writes them (the only one that does).
"""
from .keys import Keys
from .redis_store import FANOUT_TTL, Store, SubscriptionLimitReached, change_from_fields

__all__ = ["FANOUT_TTL", "Keys", "Store", "SubscriptionLimitReached", "change_from_fields"]
