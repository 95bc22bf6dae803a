"""The `davpush` command line."""
from __future__ import annotations

import argparse
import os
import sys

from .config import ConfigError


def _vapid_generate(args) -> int:
    from .delivery.vapid import VapidKeyError, generate_key_file, public_key_b64

    path = args.file or os.environ.get("VAPID_PRIVATE_KEY_FILE")
    if not path:
        print("davpush: give --file PATH or set VAPID_PRIVATE_KEY_FILE", file=sys.stderr)
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
    from .delivery.vapid import VapidKeyError, load_key, public_key_b64

    path = args.file or os.environ.get("VAPID_PRIVATE_KEY_FILE")
    if not path:
        print("davpush: give --file PATH or set VAPID_PRIVATE_KEY_FILE", file=sys.stderr)
        return 2
    try:
        print(public_key_b64(load_key(path)))
    except VapidKeyError as error:
        print(f"davpush: {error}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="davpush", description="WebDAV-Push gateway and delivery service")
    commands = parser.add_subparsers(dest="command", required=True)

    vapid = commands.add_parser("vapid", help="manage the server's VAPID key").add_subparsers(dest="action", required=True)
    generate = vapid.add_parser("generate", help="write a new VAPID private key (refuses to overwrite)")
    generate.add_argument("--file", help="PEM path (default: $VAPID_PRIVATE_KEY_FILE)")
    generate.set_defaults(handler=_vapid_generate)
    show = vapid.add_parser("show", help="print the 87-character public key clients receive")
    show.add_argument("--file", help="PEM path (default: $VAPID_PRIVATE_KEY_FILE)")
    show.set_defaults(handler=_vapid_show)

    from . import cli_ops

    cli_ops.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except ConfigError as error:
        print(f"davpush: configuration error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
