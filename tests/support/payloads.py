"""Realistic Nextcloud webhook envelopes (nextcloud-integration.md §4.4–§4.7)."""
from __future__ import annotations

import copy

ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Nextcloud calendar v5//EN\r\nBEGIN:VEVENT\r\n"
    "UID:3F2504E0-4F89-11D3-9A0C-0305E82C3301\r\nDTSTAMP:20251009T090000Z\r\nDTSTART:20251010T100000Z\r\n"
    "DTEND:20251010T110000Z\r\nSUMMARY:Standup\r\nEND:VEVENT\r\nEND:VCALENDAR"
)


def calendar_data(owner="alice", uri="work", calendar_id=9, token=9651):
    return {
        "id": calendar_id,
        "uri": uri,
        "principaluri": f"principals/users/{owner}",
        "{http://calendarserver.org/ns/}getctag": f"http://sabre.io/ns/sync/{token}",
        "{http://sabredav.org/ns}sync-token": token,
        "{urn:ietf:params:xml:ns:caldav}supported-calendar-component-set": {},
        "{urn:ietf:params:xml:ns:caldav}schedule-calendar-transp": {},
        "{DAV:}displayname": uri.title(),
        "{urn:ietf:params:xml:ns:caldav}calendar-description": None,
        "{urn:ietf:params:xml:ns:caldav}calendar-timezone": None,
        "{http://apple.com/ns/ical/}calendar-order": 0,
        "{http://apple.com/ns/ical/}calendar-color": "#0082c9",
        "{http://nextcloud.com/ns}deleted-at": None,
        "{http://nextcloud.com/ns}owner-displayname": owner.title(),
    }


SHARES = [
    {"href": "principal:principals/users/bob", "commonName": "Bob", "status": 1, "readOnly": False,
     "{http://owncloud.org/ns}principal": "principals/users/bob", "{http://owncloud.org/ns}group-share": False},
    {"href": "principal:principals/groups/staff", "commonName": "staff", "status": 1, "readOnly": True,
     "{http://owncloud.org/ns}principal": "principals/groups/staff", "{http://owncloud.org/ns}group-share": True},
]


def object_event(kind="Created", owner="alice", uri="work", token=9651, user="bob", time_=1760000001, object_id=22):
    return {
        "event": {
            "calendarId": 9,
            "calendarData": calendar_data(owner, uri, token=token),
            "shares": copy.deepcopy(SHARES),
            "objectData": {
                "id": object_id,
                "uri": "3F2504E0-4F89-11D3-9A0C-0305E82C3301.ics",
                "lastmodified": 1760000000,
                "etag": '"19fa45b394c3a1c0f2d1e9a4b8b7e6d5"',
                "calendarid": 9,
                "size": 612,
                "calendardata": ICS,
                "component": "vevent",
                "classification": 0,
                "{http://nextcloud.com/ns}deleted-at": None,
            },
            "class": f"OCP\\Calendar\\Events\\CalendarObject{kind}Event",
        },
        "user": {"uid": user, "displayName": user.title()} if user else None,
        "time": time_,
    }


def moved_event(source=("alice", "work", 100), target=("alice", "personal", 200)):
    return {
        "event": {
            "sourceCalendarId": 9,
            "sourceCalendarData": calendar_data(source[0], source[1], 9, source[2]),
            "targetCalendarId": 12,
            "targetCalendarData": calendar_data(target[0], target[1], 12, target[2]),
            "sourceShares": copy.deepcopy(SHARES),
            "targetShares": [],
            "objectData": {"id": 22, "uri": "x.ics", "calendardata": ICS},
            "class": "OCP\\Calendar\\Events\\CalendarObjectMovedEvent",
        },
        "user": {"uid": "alice", "displayName": "Alice"},
        "time": 1760000200,
    }


def bridge_event(**fields):
    event = {
        "kind": "card", "op": "updated", "addressBookId": 5, "addressBookUri": "contacts",
        "ownerPrincipal": "principals/users/alice", "syncToken": 318,
        "sharePrincipals": ["principals/users/bob"], "objectUri": "a1b2c3.vcf",
        "class": "OCA\\DavPushBridge\\Events\\DavCollectionChangedEvent",
    }
    event.update(fields)
    return {"event": event, "user": {"uid": "alice", "displayName": "Alice"}, "time": 1760000100}
