"""`davpush subscriptions list|stats|purge`: inspect and clean up subscriptions."""
from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..core.config import load_settings
from ..core.logs import endpoint_label

if TYPE_CHECKING:
    from ..core.services import Services


def _services() -> Services:
    from ..core.services import build_services

    return build_services(load_settings())


def _list(args: argparse.Namespace) -> int:
    services = _services()
    rows = 0
    for sub in services.store.iter_subscriptions(include_expired=args.all):
        if args.user and sub.user != args.user:
            continue
        record = {
            "id": sub.id,
            "user": sub.user,
            "collection": sub.collection,
            "endpoint": endpoint_label(sub.push_resource),
            "triggers": sub.triggers.to_dict(),
            "expires": datetime.fromtimestamp(sub.expires, UTC).isoformat(),
            "last_success": datetime.fromtimestamp(sub.last_success, UTC).isoformat() if sub.last_success else None,
        }
        line = f"{sub.id}  {sub.user}  {sub.collection}  {record['endpoint']}  expires {record['expires']}"
        print(json.dumps(record) if args.json else line)
        rows += 1
    if not args.json:
        print(f"{rows} subscription(s)")
    return 0


def _stats(args: argparse.Namespace) -> int:
    services = _services()
    now = time.time()
    stats: dict[str, Any] = {"live": services.store.count_live(now), "total": services.store.count_all()}
    stats["expired"] = stats["total"] - stats["live"]
    by_origin: dict[str, int] = {}
    users = set()
    for sub in services.store.iter_subscriptions(now):
        origin = endpoint_label(sub.push_resource).split("#")[0]
        by_origin[origin] = by_origin.get(origin, 0) + 1
        users.add(sub.user)
    stats["users"] = len(users)
    stats["by_origin"] = by_origin
    stats["queued_jobs"] = services.queue.count
    print(json.dumps(stats, indent=2))
    return 0


def _purge(args: argparse.Namespace) -> int:
    removed = _services().store.purge_expired()
    print(f"removed {removed} expired subscription(s)")
    return 0


def register(commands: Any) -> None:
    """Add the `subscriptions` command group to the `davpush` parser."""
    subs = commands.add_parser("subscriptions", help="inspect and clean up subscriptions").add_subparsers(
        dest="action", required=True
    )
    listing = subs.add_parser("list", help="list live subscriptions (endpoints shown as origin#hash)")
    listing.add_argument("--all", action="store_true", help="include expired ones not purged yet")
    listing.add_argument("--user", help="only this user (principal path, e.g. /remote.php/dav/principals/users/alice)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=_list)
    subs.add_parser("stats", help="counts by state, user and push service").set_defaults(handler=_stats)
    subs.add_parser("purge", help="remove expired subscriptions now").set_defaults(handler=_purge)
