"""`davpush nextcloud ...` commands (webhook registration through the OCS API).

    davpush nextcloud register-webhooks --nextcloud-url https://cloud.example.com --user admin \\
        [--app-password PW | env NEXTCLOUD_APP_PASSWORD] [--davpush-url URL (env PUBLIC_URL)] \\
        [--secret S (env WEBHOOK_SECRET)] [--exclude-birthday-calendar] \\
        [--with-bridge | --bridge-only] [--rotate-secret] [--dry-run]
    davpush nextcloud unregister-webhooks --nextcloud-url URL --user admin [--davpush-url URL] [--dry-run]

Exit status: 0 done, 1 Nextcloud refused or could not be reached, 2 missing or bad options.
"""
from __future__ import annotations

import argparse
import os

from ..nextcloud.ocs import BRIDGE_EVENT, CALENDAR_OBJECT_EVENTS, OCSError, WebhookRegistrar, receiver_uri
from .errors import USAGE, fail

MIN_SECRET_LENGTH = 16  # the same minimum as davpush's own WEBHOOK_SECRET check


def _connection(args: argparse.Namespace) -> tuple[WebhookRegistrar, str] | int:
    """The registrar and the receiver URI from args/env, or the exit status after reporting a problem."""
    nextcloud_url = args.nextcloud_url or os.environ.get("NEXTCLOUD_URL") or os.environ.get("UPSTREAM_URL")
    password = args.app_password or os.environ.get("NEXTCLOUD_APP_PASSWORD")
    davpush_url = args.davpush_url or os.environ.get("PUBLIC_URL")
    missing = [
        option
        for option, value in (
            ("--nextcloud-url (or NEXTCLOUD_URL)", nextcloud_url),
            ("--user", args.user),
            ("--app-password (or NEXTCLOUD_APP_PASSWORD)", password),
            ("--davpush-url (or PUBLIC_URL)", davpush_url),
        )
        if not value
    ]
    if missing or not (nextcloud_url and password and davpush_url):
        return fail("missing " + ", ".join(missing), USAGE)
    try:
        registrar = WebhookRegistrar(nextcloud_url, args.user, password, timeout=args.timeout)
        receiver = receiver_uri(davpush_url)
    except OCSError as error:
        return fail(str(error), USAGE)
    return registrar, receiver


def _register_webhooks(args) -> int:
    connection = _connection(args)
    if isinstance(connection, int):
        return connection
    registrar, receiver = connection
    secret = args.secret or os.environ.get("WEBHOOK_SECRET") or ""
    if not secret:
        return fail("missing --secret (or WEBHOOK_SECRET): the bearer secret davpush expects", USAGE)
    if len(secret) < MIN_SECRET_LENGTH or any(ch.isspace() or not ch.isprintable() for ch in secret):
        return fail(f"the webhook secret must be at least {MIN_SECRET_LENGTH} printable characters without spaces", USAGE)

    if args.bridge_only:
        events, remove = [BRIDGE_EVENT], list(CALENDAR_OBJECT_EVENTS)
    else:
        events = list(CALENDAR_OBJECT_EVENTS) + ([BRIDGE_EVENT] if args.with_bridge else [])
        remove = []

    try:
        actions = registrar.plan(receiver, secret, events, args.exclude_birthday_calendar,
                                 rotate_secret=args.rotate_secret, remove=remove)
        print(f"webhook receiver: {receiver}")
        if args.dry_run:
            for action in actions:
                print(action)
            changes = sum(action.kind != "keep" for action in actions)
            print(f"dry run: nothing changed ({changes} change(s) planned)")
            return 0
        done = registrar.apply(actions)
    except OCSError as error:
        return fail(str(error))

    for action in done:
        print(action)
    counts = {kind: sum(a.kind == kind for a in done) for kind in ("create", "update", "keep", "delete")}
    print(
        f"done: {counts['create']} created, {counts['update']} updated, "
        f"{counts['keep']} unchanged, {counts['delete']} deleted"
    )
    if counts["create"] or counts["update"]:
        print("note: Nextcloud caches its webhook list; a new webhook can take up to 5 minutes to fire")
    return 0


def _unregister_webhooks(args) -> int:
    connection = _connection(args)
    if isinstance(connection, int):
        return connection
    registrar, receiver = connection
    try:
        actions = registrar.unregister(receiver, dry_run=args.dry_run)
    except OCSError as error:
        return fail(str(error))
    print(f"webhook receiver: {receiver}")
    for action in actions:
        print(action)
    if args.dry_run:
        print(f"dry run: nothing changed ({len(actions)} registration(s) would be deleted)")
    else:
        print(f"done: {len(actions)} deleted")
    return 0


def _connection_options(parser) -> None:
    parser.add_argument("--nextcloud-url", metavar="URL",
                        help="Nextcloud base URL (default: $NEXTCLOUD_URL, then $UPSTREAM_URL)")
    parser.add_argument("--user", metavar="ADMIN", help="an admin (or delegated admin) account")
    parser.add_argument("--app-password", metavar="PW",
                        help="that account's app password (better: $NEXTCLOUD_APP_PASSWORD, kept out of ps)")
    parser.add_argument("--davpush-url", metavar="URL",
                        help="davpush's public base URL (default: $PUBLIC_URL); the receiver is "
                             "URL/push/webhooks/nextcloud")
    parser.add_argument("--timeout", type=float, default=15, help="seconds per OCS request (default 15)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")


def register(commands) -> None:
    """Add the `nextcloud` sub-command group to the `davpush` parser."""
    group = commands.add_parser("nextcloud", help="Nextcloud set-up helpers")
    actions = group.add_subparsers(dest="nextcloud_command", required=True)

    add = actions.add_parser(
        "register-webhooks",
        help="register davpush's webhooks in Nextcloud (idempotent; OCS API, admin needed)",
        description="Create or update one webhook_listeners registration per event class for "
                    "davpush's receiver. Existing matching registrations are kept.",
    )
    _connection_options(add)
    add.add_argument("--secret", help="bearer secret sent by Nextcloud (default: $WEBHOOK_SECRET)")
    add.add_argument("--exclude-birthday-calendar", action="store_true",
                     help="do not send changes of the generated contact_birthdays calendar")
    bridge = add.add_mutually_exclusive_group()
    bridge.add_argument("--with-bridge", action="store_true",
                        help="also register the dav_push_bridge app's DavCollectionChangedEvent")
    bridge.add_argument("--bridge-only", action="store_true",
                        help="register only the bridge event and remove davpush's calendar-object "
                             "webhooks (avoids the 4000-character job limit; see nextcloud_setup/README.md)")
    add.add_argument("--rotate-secret", action="store_true",
                     help="re-send the secret to every existing registration (Nextcloud stores it "
                          "encrypted, so it cannot be compared)")
    add.set_defaults(handler=_register_webhooks)

    remove = actions.add_parser(
        "unregister-webhooks",
        help="delete every registration pointing at davpush's receiver URI",
    )
    _connection_options(remove)
    remove.set_defaults(handler=_unregister_webhooks)
