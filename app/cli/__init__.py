"""The `davpush` command line (console script `davpush` = app.cli:main; also `python -m app.cli`).

One module per command group, each with a `register(commands)`: vapid, processes (up, web,
worker), setup (check, demo, init), subscriptions, nextcloud. Failures are reported through
errors.fail; configuration and Redis errors of any command are caught once, in main().
"""
from __future__ import annotations

import argparse
import os
import sys

import redis

from ..core.config import ConfigError
from .errors import USAGE, fail


def build_parser() -> argparse.ArgumentParser:
    from . import nextcloud, processes, setup, subscriptions, vapid

    parser = argparse.ArgumentParser(prog="davpush", description="WebDAV-Push gateway and delivery service")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in (vapid, processes, setup, subscriptions, nextcloud):
        group.register(commands)
    return parser


def _use_private_redis(command: str) -> None:
    """Without REDIS_URL, commands run where `davpush up` runs use its private Redis."""
    if command == "up" or os.environ.get("REDIS_URL"):
        return
    from ..ops.supervisor import private_redis_url

    url = private_redis_url()
    if url:
        os.environ["REDIS_URL"] = url
        print(f"davpush: REDIS_URL is not set; using the private Redis of `davpush up` at {url}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _use_private_redis(args.command)
    try:
        code: int = args.handler(args) or 0
        return code
    except ConfigError as error:
        return fail(f"configuration error: {error}", USAGE)
    except redis.RedisError as error:
        from ..core.redis_connect import redis_address, redis_cause

        where = redis_address(os.environ.get("REDIS_URL", ""))
        return fail(f"cannot use Redis at {where}: {redis_cause(error)}")
    except KeyboardInterrupt:
        return 130

