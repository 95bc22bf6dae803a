"""Operational commands: run the processes, inspect subscriptions, check the set-up."""
from __future__ import annotations

import json
import os
import secrets
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ..core.config import load_settings
from ..core.logs import endpoint_label
from ..nextcloud import paths as nextcloud_paths


def _fail(message: str, code: int = 1) -> int:
    print(f"davpush: {message}", file=sys.stderr)
    return code


# -- processes -----------------------------------------------------------------


def _worker(args) -> int:
    from ..core.logs import setup_logging
    from ..jobs.worker import run_worker

    settings = load_settings()
    setup_logging(settings.log_format, settings.log_level)
    return run_worker(burst=args.burst)


def _web(args) -> int:
    from ..web import gunicorn_command

    load_settings()  # one clear line instead of a gunicorn traceback
    command = gunicorn_command()
    os.execv(command[0], command)
    return 0  # not reached


def _up(args) -> int:
    from ..ops.supervisor import run_all

    return run_all()


def _init(args) -> int:
    """Write a starter .env for a development machine (explicitly, never on its own)."""
    from ..delivery.vapid import VapidKeyError, generate_key_file

    env_file = Path(args.env_file)
    if env_file.exists():
        return _fail(f"{env_file} already exists; not touching it")
    key_file = Path(args.vapid_file)
    if not key_file.exists():
        try:
            generate_key_file(str(key_file))
        except VapidKeyError as error:
            return _fail(str(error))
        print(f"generated the VAPID key {key_file} (keep it: changing it breaks every subscription)")
    env_file.write_text(
        "# davpush settings for this machine (see README: Configuration)\n"
        f"UPSTREAM_URL={args.upstream_url}\n"
        f"DAV_PREFIX={nextcloud_paths.DAV_PREFIX}\n"
        f"PUBLIC_URL={args.public_url}\n"
        f"WEBHOOK_SECRET={secrets.token_urlsafe(32)}\n"
        f"SECRET_KEY={secrets.token_urlsafe(48)}\n"
        f"VAPID_PRIVATE_KEY_FILE={key_file.resolve()}\n"
        "VAPID_SUBJECT=mailto:admin@example.com\n"
        f"ADMIN_PASSWORD={secrets.token_urlsafe(18)}\n"
        "# REDIS_URL unset: `davpush up` starts a private, persistent Redis in var/redis\n"
    )
    print(f"wrote {env_file}; edit UPSTREAM_URL and PUBLIC_URL for your Nextcloud")
    return 0


# -- inspection ------------------------------------------------------------------


def _services():
    from ..core.services import build_services

    return build_services(load_settings())


def _subscriptions_list(args) -> int:
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
            "expires": datetime.fromtimestamp(sub.expires, timezone.utc).isoformat(),
            "last_success": datetime.fromtimestamp(sub.last_success, timezone.utc).isoformat() if sub.last_success else None,
        }
        print(json.dumps(record) if args.json else f"{sub.id}  {sub.user}  {sub.collection}  {record['endpoint']}  expires {record['expires']}")
        rows += 1
    if not args.json:
        print(f"{rows} subscription(s)")
    return 0


def _subscriptions_stats(args) -> int:
    services = _services()
    now = time.time()
    stats = {"live": services.store.count_live(now), "total": services.store.count_all()}
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


def _subscriptions_purge(args) -> int:
    removed = _services().store.purge_expired()
    print(f"removed {removed} expired subscription(s)")
    return 0


def _demo(args) -> int:
    from ..ops.demo import run_demo

    return run_demo()


def _check(args) -> int:
    from ..ops.checks import RELEASE_CHECKS, run_checks

    return run_checks(print, RELEASE_CHECKS if args.release else ())


def register(commands) -> None:
    """Add the operational sub-commands to the `davpush` parser."""
    from . import nextcloud as nextcloud_cli

    up = commands.add_parser(
        "up", help="run everything: web, worker (with scheduler) and, without REDIS_URL, a private Redis in ./var/redis"
    )
    up.set_defaults(handler=_up)
    web = commands.add_parser("web", help="run the web process (gunicorn with the packaged settings, from any directory)")
    web.set_defaults(handler=_web)
    worker = commands.add_parser("worker", help="run a delivery worker (RQ SimpleWorker with the scheduler)")
    worker.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    worker.set_defaults(handler=_worker)
    check = commands.add_parser("check", help="check settings, Redis, upstream, the VAPID key and workers")
    check.add_argument("--release", action="store_true", help="only settings, Redis and the key (a deploy's release phase)")
    check.set_defaults(handler=_check)
    demo = commands.add_parser("demo", help="see it work: Radicale + davpush + a push receiver, end to end")
    demo.set_defaults(handler=_demo)

    init = commands.add_parser("init", help="write a starter .env and VAPID key for a development machine")
    init.add_argument("--env-file", default=".env")
    init.add_argument("--vapid-file", default="var/vapid_private.pem")
    init.add_argument("--upstream-url", default="http://localhost:8080")
    init.add_argument("--public-url", default="http://localhost:8000")
    init.set_defaults(handler=_init)

    subs = commands.add_parser("subscriptions", help="inspect and clean up subscriptions").add_subparsers(
        dest="action", required=True
    )
    listing = subs.add_parser("list", help="list live subscriptions (endpoints shown as origin#hash)")
    listing.add_argument("--all", action="store_true", help="include expired ones not purged yet")
    listing.add_argument("--user", help="only this user (principal path, e.g. /remote.php/dav/principals/users/alice)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=_subscriptions_list)
    subs.add_parser("stats", help="counts by state, user and push service").set_defaults(handler=_subscriptions_stats)
    subs.add_parser("purge", help="remove expired subscriptions now").set_defaults(handler=_subscriptions_purge)

    nextcloud_cli.register(commands)

