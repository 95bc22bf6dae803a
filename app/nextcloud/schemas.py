"""marshmallow schemas for Nextcloud webhook envelopes, and what each event means for push.

Payload facts: ../shared/docs/nextcloud-integration.md §3–§4. Values arrive as
ints or strings depending on the database driver; Sabre property objects arrive
as `{}`; `user` is null for changes made by cron or occ; extra keys are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from ..protocol.numbers import parse_ascii_int
from ..protocol.subscription import MAX_SYNC_NUMBER, SABRE_SYNC_PREFIX
from . import paths

SYNC_TOKEN_KEY = "{http://sabredav.org/ns}sync-token"
OCP = "OCP\\Calendar\\Events\\"
DAV_EVENTS = "OCA\\DAV\\Events\\"
BRIDGE_EVENT = "OCA\\DavPushBridge\\Events\\DavCollectionChangedEvent"


# ASCII digits only (app/protocol/numbers.py); at most 30 digits, well within int()'s 4300-digit
# limit and far beyond any database id or token.
MAX_INTEGER_DIGITS = 30


class IntLike(fields.Field):
    """A 64-bit integer sent as a JSON number or a string of ASCII digits (optionally with a leading minus)."""

    low, high = -(2**63), 2**63 - 1
    out_of_range = f"must be an integer from {low} to {high}"

    def _deserialize(self, value, attr, data, **kwargs):
        number = self._integer(value)
        if not self.low <= number <= self.high:
            # JSON numbers have no size limit: a 4,000-digit one must not reach Redis or a Lua tonumber().
            raise ValidationError(self.out_of_range)
        return number

    @staticmethod
    def _integer(value) -> int:
        if isinstance(value, bool):
            raise ValidationError("must be an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            number = parse_ascii_int(value.strip(), signed=True, max_digits=MAX_INTEGER_DIGITS)
            if number is not None:
                return number
        raise ValidationError("must be an integer")


class SyncTokenNumber(IntLike):
    """The counter N of a sync-token (http://sabre.io/ns/sync/<N>): never negative, at most 64 bits."""

    low, high = 0, MAX_SYNC_NUMBER
    out_of_range = f"a sync-token must be an integer from {low} to {high}"

    def _deserialize(self, value, attr, data, **kwargs):
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError:
            raise ValidationError(self.out_of_range) from None


class Lenient(Schema):
    class Meta:
        unknown = EXCLUDE


class UserSchema(Lenient):
    uid = fields.String(required=True)
    displayName = fields.String(load_default=None, allow_none=True)


class EnvelopeSchema(Lenient):
    event = fields.Dict(required=True)
    user = fields.Nested(UserSchema, allow_none=True, load_default=None)
    time = IntLike(load_default=None, allow_none=True)


class CollectionDataSchema(Lenient):
    """calendarData / addressBookData: only the keys that locate the collection matter."""

    uri = fields.String(required=True, validate=validate.Length(min=1))
    principaluri = fields.String(required=True, validate=validate.Length(min=1))
    sync_token = SyncTokenNumber(data_key=SYNC_TOKEN_KEY, load_default=None, allow_none=True)


class CalendarObjectEventSchema(Lenient):
    calendarId = IntLike(load_default=None, allow_none=True)
    calendarData = fields.Nested(CollectionDataSchema, required=True)
    shares = fields.List(fields.Raw(), load_default=list)
    objectData = fields.Raw(load_default=None, allow_none=True)


class CalendarObjectMovedEventSchema(Lenient):
    sourceCalendarId = IntLike(load_default=None, allow_none=True)
    sourceCalendarData = fields.Nested(CollectionDataSchema, required=True)
    targetCalendarId = IntLike(load_default=None, allow_none=True)
    targetCalendarData = fields.Nested(CollectionDataSchema, required=True)
    objectData = fields.Raw(load_default=None, allow_none=True)


KINDS = ("card", "addressbook", "calendar", "calendar-object")
OPS = ("created", "updated", "deleted", "moved", "restored", "trashed", "shared")


class BridgeEventSchema(Lenient):
    """The compact event of the optional companion app (nextcloud_setup/bridge_app/EVENT.md)."""

    kind = fields.String(required=True, validate=validate.OneOf(KINDS))
    op = fields.String(required=True, validate=validate.OneOf(OPS))
    addressBookUri = fields.String(load_default=None, allow_none=True)
    calendarUri = fields.String(load_default=None, allow_none=True)
    ownerPrincipal = fields.String(required=True, validate=validate.Length(min=1))
    syncToken = SyncTokenNumber(load_default=None, allow_none=True)
    objectUri = fields.String(load_default=None, allow_none=True)
    targetAddressBookUri = fields.String(load_default=None, allow_none=True)
    targetCalendarUri = fields.String(load_default=None, allow_none=True)
    targetOwnerPrincipal = fields.String(load_default=None, allow_none=True)
    targetSyncToken = SyncTokenNumber(load_default=None, allow_none=True)


@dataclass(frozen=True)
class CollectionChange:
    """One collection affected by an event, in push terms."""

    key: str
    content_depth: str | None = "1"  # "1": a member changed; "0": the collection itself
    property_update: bool = False
    collection_deleted: bool = False
    sync_token: str | None = None


def _token(number: int | None, behind: bool = False) -> str | None:
    """Client-visible sync-token. Delete and trash events carry the token from
    before the change (nextcloud-integration.md §4.6): the corrected value is one
    higher, which can only cause an extra sync, never a missed one."""
    if number is None:
        return None
    after = number + 1 if behind else number
    return f"{SABRE_SYNC_PREFIX}{after}" if after <= MAX_SYNC_NUMBER else None


def _calendar_change(data: dict, behind: bool) -> CollectionChange:
    owner = paths.uid_of_principal(data["principaluri"])
    if owner is None:
        raise ValidationError({"principaluri": ["is not a user principal"]})
    return CollectionChange(paths.calendar_key(owner, data["uri"]), sync_token=_token(data["sync_token"], behind))


OBJECT_EVENTS = {
    "CalendarObjectCreatedEvent": False,
    "CalendarObjectUpdatedEvent": False,
    "CalendarObjectRestoredEvent": False,
    "CalendarObjectDeletedEvent": True,  # True: the payload token is one behind
    "CalendarObjectMovedToTrashEvent": True,
}


MOVED_EVENT_NAME = "CalendarObjectMovedEvent"
# What davpush registers webhooks for (app/nextcloud/ocs.py) and understands here.
STOCK_EVENT_CLASSES = tuple(OCP + name for name in (*OBJECT_EVENTS, MOVED_EVENT_NAME))
MOVED_EVENT = OCP + MOVED_EVENT_NAME


def short_class(event_class: str) -> str:
    return event_class.rsplit("\\", 1)[-1] if event_class else "unknown"


def is_known(event_class: str) -> bool:
    name = short_class(event_class)
    if event_class == BRIDGE_EVENT:
        return True
    if not (event_class.startswith(OCP) or event_class.startswith(DAV_EVENTS)):
        return False
    return name in OBJECT_EVENTS or name == MOVED_EVENT_NAME


def changes_for(event_class: str, event: dict) -> list[CollectionChange]:
    """The collection changes an event stands for. Raises ValidationError when malformed."""
    name = short_class(event_class)
    if event_class == BRIDGE_EVENT:
        return _bridge_changes(BridgeEventSchema().load(event))
    if name == MOVED_EVENT_NAME:
        moved = CalendarObjectMovedEventSchema().load(event)
        return [
            _calendar_change(moved["sourceCalendarData"], behind=False),
            _calendar_change(moved["targetCalendarData"], behind=False),
        ]
    loaded = CalendarObjectEventSchema().load(event)
    return [_calendar_change(loaded["calendarData"], behind=OBJECT_EVENTS[name])]


def _bridge_changes(event: dict) -> list[CollectionChange]:
    kind, op = event["kind"], event["op"]
    address_book = kind in ("card", "addressbook")
    key_of = paths.addressbook_key if address_book else paths.calendar_key

    def key(owner_principal: str | None, uri: str | None, field: str) -> str:
        owner = paths.uid_of_principal(owner_principal)
        if owner is None or not uri:
            raise ValidationError({field: ["is required to locate the collection"]})
        return key_of(owner, uri)

    uri_field = "addressBookUri" if address_book else "calendarUri"
    source = key(event["ownerPrincipal"], event[uri_field], uri_field)
    behind = op in ("deleted", "trashed")
    if kind in ("card", "calendar-object"):
        changes = [CollectionChange(source, sync_token=_token(event["syncToken"], behind))]
        if op == "moved":
            target_field = "target" + uri_field[0].upper() + uri_field[1:]
            target_owner = event["targetOwnerPrincipal"] or event["ownerPrincipal"]
            changes.append(
                CollectionChange(key(target_owner, event[target_field], target_field), sync_token=_token(event["targetSyncToken"]))
            )
        return changes
    # Collection-level events.
    if op in ("updated", "shared"):
        return [CollectionChange(source, content_depth=None, property_update=True)]
    if op in ("deleted", "trashed"):
        return [CollectionChange(source, content_depth="0", collection_deleted=True)]
    return []  # created / restored / moved collections have no subscriptions yet
