"""`davpush vapid generate|show`: the server's VAPID key."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .errors import USAGE, fail


def write_key_file(path: str) -> tuple[Any, int]:
    """Generate a VAPID key into a new file: (the key, 0), or (None, exit status) after reporting why not."""
    from ..delivery.vapid import VapidKeyError, generate_key_file

    try:
        return generate_key_file(path), 0
    except VapidKeyError as error:
        return None, fail(str(error))


def _generate(args: argparse.Namespace) -> int:
    from ..delivery.vapid import key_raw_b64, new_key, public_key_b64

    if args.stdout:
        vapid = new_key()
        print(key_raw_b64(vapid))  # one line, for VAPID_PRIVATE_KEY
        print(f"public key: {public_key_b64(vapid)} (keep the private key: changing it breaks every subscription)",
              file=sys.stderr)
        return 0
    path = args.file or os.environ.get("VAPID_PRIVATE_KEY_FILE")
    if not path:
        return fail("give --file PATH (or set VAPID_PRIVATE_KEY_FILE), or --stdout to print the key", USAGE)
    vapid, code = write_key_file(path)
    if vapid is None:
        return code
    print(f"wrote a new VAPID private key to {path} (keep it: changing it breaks every subscription)")
    print(f"public key: {public_key_b64(vapid)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..core.config import vapid_key_from
    from ..delivery.vapid import VapidKeyError, load_key, parse_key, public_key_b64

    try:
        if args.file:
            vapid = load_key(args.file)
        else:
            vapid = parse_key(vapid_key_from(os.environ)[0].encode(), "the VAPID key")
        print(public_key_b64(vapid))
    except VapidKeyError as error:
        return fail(str(error))
    return 0


def register(commands: Any) -> None:
    """Add the `vapid` command group to the `davpush` parser."""
    vapid = commands.add_parser("vapid", help="manage the server's VAPID key").add_subparsers(dest="action", required=True)
    generate = vapid.add_parser("generate", help="write a new VAPID private key (refuses to overwrite)")
    target = generate.add_mutually_exclusive_group()
    target.add_argument("--file", help="PEM path (default: $VAPID_PRIVATE_KEY_FILE)")
    target.add_argument("--stdout", action="store_true",
                        help="print the key (base64url, one line) for VAPID_PRIVATE_KEY instead of writing a file")
    generate.set_defaults(handler=_generate)
    show = vapid.add_parser("show", help="print the 87-character public key clients receive")
    show.add_argument("--file", help="PEM path (default: $VAPID_PRIVATE_KEY or $VAPID_PRIVATE_KEY_FILE)")
    show.set_defaults(handler=_show)
