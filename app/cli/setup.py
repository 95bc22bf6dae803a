"""`davpush check|demo|init`: check a set-up, see it work, start a development machine's."""
from __future__ import annotations

import argparse
import secrets
from pathlib import Path
from typing import Any

from ..nextcloud import paths as nextcloud_paths
from .errors import fail
from .vapid import write_key_file


def _check(args: argparse.Namespace) -> int:
    from ..ops.checks import RELEASE_CHECKS, run_checks

    return run_checks(print, RELEASE_CHECKS if args.release else ())


def _demo(args: argparse.Namespace) -> int:
    from ..ops.demo import run_demo

    return run_demo()


def _init(args: argparse.Namespace) -> int:
    """Write a starter .env for a development machine (explicitly, never on its own)."""
    env_file = Path(args.env_file)
    if env_file.exists():
        return fail(f"{env_file} already exists; not touching it")
    key_file = Path(args.vapid_file)
    if not key_file.exists():
        vapid, code = write_key_file(str(key_file))
        if vapid is None:
            return code
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


def register(commands: Any) -> None:
    """Add the set-up commands to the `davpush` parser."""
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
