"""Everything davpush keeps in Redis: subscriptions, pending changes, fan-outs, counters, locks."""
from .redis_store import FANOUT_TTL, Store, SubscriptionLimitReached, change_from_fields

__all__ = ["FANOUT_TTL", "Store", "SubscriptionLimitReached", "change_from_fields"]
