"""The `davpush` command line."""
from __future__ import annotations

import argparse
import os
import sys

import redis

from ..core.config import ConfigError


def _vapid_generate(args) -> int:
    from ..delivery.vapid import VapidKeyError, generate_key_file, key_raw_b64, new_key, public_key_b64

    if args.stdout:
        vapid = new_key()
        print(key_raw_b64(vapid))  # one line, for VAPID_PRIVATE_KEY
        print(f"public key: {public_key_b64(vapid)} (keep the private key: changing it breaks every subscription)",
              file=sys.stderr)
        return 0
    path = args.file or os.environ.get("VAPID_PRIVATE_KEY_FILE")
    if not path:
        print("davpush: give --file PATH (or set VAPID_PRIVATE_KEY_FILE), or --stdout to print the key", file=sys.stderr)
        return 2
    try:
        vapid = generate_key_file(path)
    except VapidKeyError as error:
        print(f"davpush: {error}", file=sys.stderr)
        return 1
    print(f"wrote a new VAPID private key to {path} (keep it: changing it breaks every subscription)")
    print(f"public key: {public_key_b64(vapid)}")
    return 0


def _vapid_show(args) -> int:
    from ..core.config import vapid_key_from
    from ..delivery.vapid import VapidKeyError, load_key, parse_key, public_key_b64

    try:
        if args.file:
            vapid = load_key(args.file)
        else:
            vapid = parse_key(vapid_key_from(os.environ)[0].encode(), "the VAPID key")
        print(public_key_b64(vapid))
    except VapidKeyError as error:
        print(f"davpush: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="davpush", description="WebDAV-Push gateway and delivery service")
    commands = parser.add_subparsers(dest="command", required=True)

    vapid = commands.add_parser("vapid", help="manage the server's VAPID key").add_subparsers(dest="action", required=True)
    generate = vapid.add_parser("generate", help="write a new VAPID private key (refuses to overwrite)")
    target = generate.add_mutually_exclusive_group()
    target.add_argument("--file", help="PEM path (default: $VAPID_PRIVATE_KEY_FILE)")
    target.add_argument("--stdout", action="store_true",
                        help="print the key (base64url, one line) for VAPID_PRIVATE_KEY instead of writing a file")
    generate.set_defaults(handler=_vapid_generate)
    show = vapid.add_parser("show", help="print the 87-character public key clients receive")
    show.add_argument("--file", help="PEM path (default: $VAPID_PRIVATE_KEY or $VAPID_PRIVATE_KEY_FILE)")
    show.set_defaults(handler=_vapid_show)

    from . import ops as cli_ops

    cli_ops.register(commands)
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
        return args.handler(args) or 0
    except ConfigError as error:
        print(f"davpush: configuration error: {error}", file=sys.stderr)
        return 2
    except redis.RedisError as error:
        from ..core.redis_connect import redis_address, redis_cause

        where = redis_address(os.environ.get("REDIS_URL", ""))
        print(f"davpush: cannot use Redis at {where}: {redis_cause(error)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

