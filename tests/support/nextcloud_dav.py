"""An in-memory SabreDAV-like tree with Nextcloud's paths: the DAV half of `NextcloudStub`.

`DavTree` holds users, calendars, address books, shares and objects and answers DAV methods on
paths below /remote.php/dav/ (URL conventions of nextcloud-integration.md §5, properties of §6).
It knows nothing of WebDAV-Push: push properties are answered 404 like any unknown property.

Deliberate simplifications: Depth infinity is treated as 1; REPORT calendar-query /
addressbook-query ignore their filters; calendar data is only checked for BEGIN:VCALENDAR /
BEGIN:VCARD; a sharee DELETE of `<uri>_shared_by_<owner>` removes the share; plain MKCOL without
a body creates a calendar / address book in the matching home (Sabre would answer 403).

Like Sabre, any collection name is accepted: bob may create a calendar literally named
`personal_shared_by_alice` (MKCALENDAR, or `add_calendar("bob", "personal_shared_by_alice")`). It is
bob's own (`oc:owner-principal` and `DAV:owner` name bob), and an own collection wins over a share
view of the same name. Shared views report the owner in both properties.
"""
from __future__ import annotations

import hashlib
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

from . import davxml
from .davxml import APPLE, CALDAV, CARDDAV, CS, DAV, NC, OC, Writer, href, sabre_error, text

DAV_ROOT = "/remote.php/dav"
CALENDAR, ADDRESSBOOK = "calendar", "addressbook"
SYNC_PREFIX = "http://sabre.io/ns/sync/"
DAV_HEADER = (
    "1, 3, extended-mkcol, access-control, calendarserver-principal-property-search, calendar-access, "
    "calendar-proxy, calendar-auto-schedule, calendar-availability, nc-calendar-trashbin, "
    "nc-calendar-webcal-cache, calendarserver-subscribed, oc-resource-sharing, oc-calendar-publishing, "
    "calendarserver-sharing, addressbook, nextcloud-checksum-update, nc-calendar-search, "
    "nc-enable-birthday-calendar"
)
ALLOW = "OPTIONS, GET, HEAD, DELETE, PROPFIND, PUT, PROPPATCH, COPY, MOVE, REPORT, POST, MKCOL, MKCALENDAR"
XML_TYPE = "application/xml; charset=utf-8"
SPECIAL_CALENDAR_CHILDREN = {
    "inbox": "<d:collection/><cal:schedule-inbox/>",
    "outbox": "<d:collection/><cal:schedule-outbox/>",
    "trashbin": "<d:collection/><nc:trash-bin/>",
}
WRITABLE_PROPS = {
    CALENDAR: {DAV + "displayname", APPLE + "calendar-color", APPLE + "calendar-order", CALDAV + "calendar-description"},
    ADDRESSBOOK: {DAV + "displayname", CARDDAV + "addressbook-description"},
}


def ics_event(uid: str, summary: str = "Test event") -> bytes:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//davpush tests//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250102T100000Z\r\n"
            f"DTEND:20250102T110000Z\r\nSUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()


def vcard(uid: str, name: str = "Test Person") -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\nEND:VCARD\r\n".encode()


@dataclass
class UploadInfo:
    length: int
    sha256: str


@dataclass
class _Object:
    data: bytes
    etag: str
    modified: float


@dataclass
class _Collection:
    kind: str
    owner: str
    uri: str
    props: dict[str, str]  # clark name → text (displayname, colour, description)
    objects: dict[str, _Object] = field(default_factory=dict)
    sync: int = 1
    changes: list[tuple[int, str]] = field(default_factory=list)  # (token after the change, object name or "")
    shares: dict[str, bool] = field(default_factory=dict)  # sharee → read_only

    def bump(self, name: str = "") -> None:
        self.sync += 1
        self.changes.append((self.sync, name))


@dataclass(frozen=True)
class _View:
    """A collection as one user sees it: under its own name or as `<uri>_shared_by_<owner>`."""

    coll: _Collection
    viewer: str
    name: str
    read_only: bool

    @property
    def home(self) -> str:
        if self.coll.kind == CALENDAR:
            return f"{DAV_ROOT}/calendars/{self.viewer}/"
        return f"{DAV_ROOT}/addressbooks/users/{self.viewer}/"

    @property
    def path(self) -> str:
        return f"{self.home}{self.name}/"


@dataclass(frozen=True)
class _Res:
    kind: str  # root, plain, principal, cal-home, ab-home, special, collection, object, files-home, file
    path: str
    view: _View | None = None
    name: str | None = None  # object / file / special-collection name, principal uid


class DavError(Exception):
    def __init__(self, status: int, exception: str, message: str, headers=(), extra: str = ""):
        super().__init__(message)
        self.status, self.headers = status, list(headers)
        self.body = sabre_error(exception, message, extra)


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


class DavTree:
    """Users, collections and objects, plus the DAV method handlers (`handle`). Thread-safe."""

    def __init__(self):
        self._lock = threading.RLock()
        self._users: dict[str, tuple[str, str]] = {}  # uid → (password, display name)
        self._colls: dict[tuple[str, str, str], _Collection] = {}  # (kind, owner, uri) → collection
        self._uploads: dict[tuple[str, str], UploadInfo] = {}  # (uid, name) → files-area upload

    # ------------------------------------------------------------ set-up

    def add_user(self, uid: str, password: str, display_name: str | None = None) -> None:
        with self._lock:
            self._users[uid] = (password, display_name or uid.capitalize())

    def add_calendar(self, owner: str, uri: str, displayname: str | None = None, color: str | None = None) -> None:
        props = {DAV + "displayname": displayname or uri.capitalize()}
        if color:
            props[APPLE + "calendar-color"] = color
        self._add(CALENDAR, owner, uri, props)

    def add_addressbook(self, owner: str, uri: str, displayname: str | None = None) -> None:
        self._add(ADDRESSBOOK, owner, uri, {DAV + "displayname": displayname or uri.capitalize()})

    def _add(self, kind: str, owner: str, uri: str, props: dict[str, str]) -> None:
        with self._lock:
            if (kind, owner, uri) in self._colls:
                raise ValueError(f"{kind} {owner}/{uri} exists")
            self._colls[(kind, owner, uri)] = _Collection(kind, owner, uri, props)

    def share_calendar(self, owner: str, uri: str, sharee: str, read_only: bool = False) -> None:
        with self._lock:
            self._coll(CALENDAR, owner, uri).shares[sharee] = read_only

    def share_addressbook(self, owner: str, uri: str, sharee: str, read_only: bool = False) -> None:
        with self._lock:
            self._coll(ADDRESSBOOK, owner, uri).shares[sharee] = read_only

    def unshare(self, owner: str, uri: str, sharee: str, kind: str = CALENDAR) -> None:
        with self._lock:
            self._coll(kind, owner, uri).shares.pop(sharee, None)

    def add_object(self, owner: str, uri: str, name: str, data: bytes | None = None, kind: str = CALENDAR) -> str:
        """Create or replace an object as a write would (sync-token +1); returns the ETag."""
        if data is None:
            data = ics_event(name.rsplit(".", 1)[0]) if kind == CALENDAR else vcard(name.rsplit(".", 1)[0])
        with self._lock:
            coll = self._coll(kind, owner, uri)
            coll.objects[name] = _Object(data, _etag(data), time.time())
            coll.bump(name)
            return coll.objects[name].etag

    def delete_object(self, owner: str, uri: str, name: str, kind: str = CALENDAR) -> None:
        with self._lock:
            coll = self._coll(kind, owner, uri)
            del coll.objects[name]
            coll.bump(name)

    # ------------------------------------------------------------ inspection

    def sync_token(self, owner: str, uri: str, kind: str = CALENDAR) -> int:
        """The number N in `http://sabre.io/ns/sync/N`."""
        with self._lock:
            return self._coll(kind, owner, uri).sync

    def objects(self, owner: str, uri: str, kind: str = CALENDAR) -> dict[str, bytes]:
        with self._lock:
            return {name: obj.data for name, obj in self._coll(kind, owner, uri).objects.items()}

    def shares(self, owner: str, uri: str, kind: str = CALENDAR) -> dict[str, bool]:
        with self._lock:
            return dict(self._coll(kind, owner, uri).shares)

    def collections(self, kind: str | None = None) -> list[tuple[str, str, str]]:
        """(kind, owner, uri) of every collection."""
        with self._lock:
            return sorted(key for key in self._colls if kind is None or key[0] == kind)

    def has_collection(self, owner: str, uri: str, kind: str = CALENDAR) -> bool:
        with self._lock:
            return (kind, owner, uri) in self._colls

    def uploads(self) -> dict[tuple[str, str], UploadInfo]:
        """(uid, file name) → UploadInfo(length, sha256) of completed files-area PUTs."""
        with self._lock:
            return dict(self._uploads)
    @staticmethod
    def calendar_path(owner: str, uri: str, viewer: str | None = None) -> str:
        viewer = viewer or owner
        name = uri if viewer == owner else f"{uri}_shared_by_{owner}"
        return f"{DAV_ROOT}/calendars/{viewer}/{name}/"

    @staticmethod
    def addressbook_path(owner: str, uri: str, viewer: str | None = None) -> str:
        viewer = viewer or owner
        name = uri if viewer == owner else f"{uri}_shared_by_{owner}"
        return f"{DAV_ROOT}/addressbooks/users/{viewer}/{name}/"

    def _coll(self, kind: str, owner: str, uri: str) -> _Collection:
        try:
            return self._colls[(kind, owner, uri)]
        except KeyError:
            raise KeyError(f"no {kind} {owner}/{uri}") from None

    # ------------------------------------------------------------ dispatch

    def handle(self, method: str, segs: list[str], environ, body: bytes, user: str | None):
        """→ (status, headers, body bytes); raises DavError. `segs`: path segments below the DAV root."""
        handler = getattr(self, "_do_" + method.lower(), None)
        if handler is None:
            raise DavError(501, "NotImplemented",
                           "There was no plugin in the system that was willing to handle this HTTP method.")
        with self._lock:
            return handler(segs, environ, body, user)

    def check_password(self, uid: str, password: str) -> bool:
        with self._lock:
            known = self._users.get(uid)
        return known is not None and known[0] == password

    # ------------------------------------------------------------ resolution

    def _view(self, kind: str, viewer: str, name: str) -> _View | None:
        coll = self._colls.get((kind, viewer, name))
        if coll is not None:
            return _View(coll, viewer, name, False)
        uri, sep, owner = name.rpartition("_shared_by_")
        coll = self._colls.get((kind, owner, uri)) if sep else None
        if coll is not None and viewer in coll.shares:
            return _View(coll, viewer, name, coll.shares[viewer])
        return None

    def _views(self, kind: str, viewer: str) -> list[_View]:
        own = [_View(c, viewer, c.uri, False) for (k, o, _), c in sorted(self._colls.items())
               if k == kind and o == viewer]
        shared = [_View(c, viewer, f"{c.uri}_shared_by_{c.owner}", c.shares[viewer])
                  for (k, _, _), c in sorted(self._colls.items()) if k == kind and viewer in c.shares]
        return own + shared

    def _resolve(self, segs: list[str], user: str) -> _Res | None:
        n, root = len(segs), DAV_ROOT + "/"
        if n == 0:
            return _Res("root", root)
        top = segs[0]
        if top == "principals":
            if n == 1 or (n == 2 and segs[1] == "users"):
                return _Res("plain", root + "/".join(segs) + "/")
            if n == 3 and segs[1] == "users" and segs[2] in self._users:
                return _Res("principal", f"{root}principals/users/{segs[2]}/", name=segs[2])
            return None
        if top == "calendars":
            if n == 1:
                return _Res("plain", f"{root}calendars/")
            if segs[1] != user:
                return None
            home = f"{root}calendars/{user}/"
            if n == 2:
                return _Res("cal-home", home)
            if n == 3 and segs[2] in SPECIAL_CALENDAR_CHILDREN:
                return _Res("special", f"{home}{segs[2]}/", name=segs[2])
            return self._in_view(self._view(CALENDAR, user, segs[2]), segs[3:])
        if top == "addressbooks":
            if n == 1:
                return _Res("plain", f"{root}addressbooks/")
            if segs[1] != "users":
                return None
            if n == 2:
                return _Res("plain", f"{root}addressbooks/users/")
            if segs[2] != user:
                return None
            if n == 3:
                return _Res("ab-home", f"{root}addressbooks/users/{user}/")
            return self._in_view(self._view(ADDRESSBOOK, user, segs[3]), segs[4:])
        if top == "files":
            if n == 1:
                return _Res("plain", f"{root}files/")
            if segs[1] != user:
                return None
            if n == 2:
                return _Res("files-home", f"{root}files/{user}/")
            if n == 3 and (user, segs[2]) in self._uploads:
                return _Res("file", f"{root}files/{user}/{segs[2]}", name=segs[2])
        return None

    @staticmethod
    def _in_view(view: _View | None, rest: list[str]) -> _Res | None:
        if view is None:
            return None
        if not rest:
            return _Res("collection", view.path, view)
        if len(rest) == 1 and rest[0] in view.coll.objects:
            return _Res("object", view.path + rest[0], view, rest[0])
        return None

    def _children(self, res: _Res, user: str) -> list[_Res]:
        root = DAV_ROOT + "/"
        if res.kind == "root":
            return [_Res("plain", f"{root}{name}/") for name in ("principals", "calendars", "addressbooks", "files")]
        if res.path == f"{root}principals/":
            return [_Res("plain", f"{root}principals/users/")]
        if res.path == f"{root}principals/users/":
            return [_Res("principal", f"{root}principals/users/{uid}/", name=uid) for uid in sorted(self._users)]
        if res.path == f"{root}calendars/":
            return [_Res("cal-home", f"{root}calendars/{user}/")]
        if res.path == f"{root}addressbooks/":
            return [_Res("plain", f"{root}addressbooks/users/")]
        if res.path == f"{root}addressbooks/users/":
            return [_Res("ab-home", f"{root}addressbooks/users/{user}/")]
        if res.path == f"{root}files/":
            return [_Res("files-home", f"{root}files/{user}/")]
        if res.kind == "cal-home":
            views = [_Res("collection", v.path, v) for v in self._views(CALENDAR, user)]
            return views + [_Res("special", f"{res.path}{name}/", name=name) for name in SPECIAL_CALENDAR_CHILDREN]
        if res.kind == "ab-home":
            return [_Res("collection", v.path, v) for v in self._views(ADDRESSBOOK, user)]
        if res.kind == "collection":
            return [_Res("object", res.path + name, res.view, name) for name in sorted(res.view.coll.objects)]
        if res.kind == "files-home":
            return [_Res("file", res.path + name, name=name) for (uid, name) in sorted(self._uploads) if uid == user]
        return []

    def _require(self, segs: list[str], user: str) -> _Res:
        res = self._resolve(segs, user)
        if res is None:
            raise DavError(404, "NotFound", f"File with name {'/'.join(segs)} could not be located")
        return res

    # ------------------------------------------------------------ properties

    def _props(self, res: _Res, user: str) -> dict[str, tuple[str, bool]]:
        """clark name → (inner XML, returned for allprop)."""
        props = {DAV + "current-user-principal": (href(f"{DAV_ROOT}/principals/users/{user}/"), False)}
        kind = res.kind
        if kind == "principal":
            uid = res.name
            props.update({
                DAV + "resourcetype": ("<d:principal/>", True),
                DAV + "displayname": (text(self._users[uid][1]), True),
                DAV + "principal-URL": (href(res.path), False),
                CALDAV + "calendar-home-set": (href(f"{DAV_ROOT}/calendars/{uid}/"), False),
                CARDDAV + "addressbook-home-set": (href(f"{DAV_ROOT}/addressbooks/users/{uid}/"), False),
                CALDAV + "calendar-user-address-set": (f"<d:href>mailto:{text(uid)}@example.com</d:href>{href(res.path)}", False),
            })
        elif kind == "special":
            props[DAV + "resourcetype"] = (SPECIAL_CALENDAR_CHILDREN[res.name], True)
            props[DAV + "owner"] = (href(f"{DAV_ROOT}/principals/users/{user}/"), False)
        elif kind in ("cal-home", "ab-home"):
            props[DAV + "resourcetype"] = ("<d:collection/>", True)
            props[DAV + "owner"] = (href(f"{DAV_ROOT}/principals/users/{user}/"), False)
        elif kind == "collection":
            props.update(self._collection_props(res.view))
        elif kind == "object":
            obj = res.view.coll.objects[res.name]
            is_cal = res.view.coll.kind == CALENDAR
            props.update({
                DAV + "resourcetype": ("", True),
                DAV + "getetag": (text(obj.etag), True),
                DAV + "getcontenttype": ("text/calendar; charset=utf-8; component=vevent" if is_cal
                                         else "text/vcard; charset=utf-8", True),
                DAV + "getcontentlength": (str(len(obj.data)), True),
                DAV + "getlastmodified": (formatdate(obj.modified, usegmt=True), True),
                (CALDAV + "calendar-data" if is_cal else CARDDAV + "address-data"):
                    (text(obj.data.decode("utf-8", "replace")), False),
            })
        elif kind == "file":
            info = self._uploads[(user, res.name)]
            props.update({
                DAV + "resourcetype": ("", True),
                DAV + "getcontentlength": (str(info.length), True),
                DAV + "getetag": (text(f'"{info.sha256[:32]}"'), True),
                DAV + "getcontenttype": ("application/octet-stream", True),
            })
        else:  # root, plain, files-home
            props[DAV + "resourcetype"] = ("<d:collection/>", True)
        return props

    def _collection_props(self, view: _View) -> dict[str, tuple[str, bool]]:
        coll, shared = view.coll, view.viewer != view.coll.owner
        token = f"{SYNC_PREFIX}{coll.sync}"
        owner_principal = f"{DAV_ROOT}/principals/users/{coll.owner}/"
        privileges = ["read"] + ([] if view.read_only else ["write", "write-properties", "write-content", "bind", "unbind"])
        if coll.kind == CALENDAR:
            marker = "<cs:shared/>" if shared else ("<cs:shared-owner/>" if coll.shares else "")
            props = {
                DAV + "resourcetype": ("<d:collection/><cal:calendar/>" + marker, True),
                CS + "getctag": (token, True),
                CALDAV + "supported-calendar-component-set": ('<cal:comp name="VEVENT"/><cal:comp name="VTODO"/>', True),
            }
        else:
            props = {
                DAV + "resourcetype": ("<d:collection/><card:addressbook/>", True),
                CS + "getctag": (str(coll.sync), True),  # a bare number for address books (§6)
            }
        props.update({name: (text(value), True) for name, value in coll.props.items()})
        props.update({
            DAV + "sync-token": (token, False),
            DAV + "owner": (href(owner_principal), False),
            OC + "owner-principal": (f"principals/users/{coll.owner}", True),
            NC + "owner-displayname": (text(self._users.get(coll.owner, ("", coll.owner))[1]), True),
            DAV + "current-user-privilege-set": ("".join(f"<d:privilege><d:{p}/></d:privilege>" for p in privileges), False),
        })
        return props

    @staticmethod
    def _select(props: dict[str, tuple[str, bool]], mode: str, names: list[str]):
        """→ (found [(name, inner)], missing [name]) for one resource."""
        if mode == "prop":
            return [(n, props[n][0]) for n in names if n in props], [n for n in names if n not in props]
        if mode == "propname":
            return [(n, "") for n in props], []
        found = [(n, inner) for n, (inner, in_all) in props.items() if in_all or n in names]
        return found, [n for n in names if n not in props]

    # ------------------------------------------------------------ read handlers

    def _do_options(self, segs, environ, body, user):
        return 200, [("DAV", DAV_HEADER), ("Allow", ALLOW), ("MS-Author-Via", "DAV"), ("Accept-Ranges", "bytes")], b""

    def _do_propfind(self, segs, environ, body, user):
        res = self._require(segs, user)
        mode, names = _parse_propfind(body)
        depth = environ.get("HTTP_DEPTH", "infinity").strip().lower()
        resources = [res] + (self._children(res, user) if depth != "0" else [])
        minimal = _prefers_minimal(environ)
        writer = Writer()
        responses = []
        for resource in resources:
            found, missing = self._select(self._props(resource, user), mode, names)
            responses.append(writer.response(resource.path, found, [] if minimal else missing))
        headers = [("Content-Type", XML_TYPE), ("Vary", "Brief,Prefer")]
        if minimal:
            headers.append(("Preference-Applied", "return=minimal"))
        return 207, headers, writer.multistatus(responses)

    def _do_get(self, segs, environ, body, user):
        res = self._require(segs, user)
        if res.kind != "object":
            raise DavError(501, "NotImplemented", "GET is only implemented on File objects")
        obj = res.view.coll.objects[res.name]
        content_type = "text/calendar; charset=utf-8" if res.view.coll.kind == CALENDAR else "text/vcard; charset=utf-8"
        return 200, [("Content-Type", content_type), ("ETag", obj.etag),
                     ("Last-Modified", formatdate(obj.modified, usegmt=True))], obj.data

    _do_head = _do_get

    def _do_post(self, segs, environ, body, user):
        self._require(segs, user)
        return 200, [
            ("X-Received-Length", str(len(body))),
            ("X-Received-Sha256", hashlib.sha256(body).hexdigest()),
            ("X-Received-Content-Type", environ.get("CONTENT_TYPE", "")),
        ], b""

    def _do_report(self, segs, environ, body, user):
        res = self._require(segs, user)
        root = _parse_xml(body)
        if root is None:
            raise DavError(400, "BadRequest", "The REPORT request body is missing")
        if res.kind != "collection":
            raise DavError(403, "ReportNotSupported", f"The {root.tag} REPORT is not supported on this url.")
        names = davxml.requested_props(root.find(DAV + "prop")) if root.find(DAV + "prop") is not None else []
        writer, coll = Writer(), res.view.coll
        objects = [_Res("object", res.path + n, res.view, n) for n in sorted(coll.objects)]
        if root.tag == DAV + "sync-collection":
            return self._sync_collection(res, root, names, writer, user)
        if root.tag in (CALDAV + "calendar-multiget", CARDDAV + "addressbook-multiget"):
            wanted = {unquote(h.text or "") for h in root.iter(DAV + "href")}
            objects = [o for o in objects if o.path in wanted]
            missing = sorted(wanted - {o.path for o in objects})
        elif root.tag in (CALDAV + "calendar-query", CARDDAV + "addressbook-query"):
            missing = []
        else:
            raise DavError(415, "UnsupportedMediaType", f"The {root.tag} REPORT is not supported")
        responses = [writer.response(o.path, *self._select(self._props(o, user), "prop", names)) for o in objects]
        responses += [writer.status_response(p, 404) for p in missing]
        return 207, [("Content-Type", XML_TYPE)], writer.multistatus(responses)

    def _sync_collection(self, res: _Res, root, names, writer: Writer, user: str):
        coll = res.view.coll
        token = (root.findtext(DAV + "sync-token") or "").strip()
        since = 0
        if token:
            number = token[len(SYNC_PREFIX):] if token.startswith(SYNC_PREFIX) else ""
            if not number.isdigit() or int(number) > coll.sync:
                raise DavError(403, "InvalidSyncToken", "Invalid or unknown sync token",
                               extra="  <d:valid-sync-token/>\n")
            since = int(number)
        changed = list(dict.fromkeys(name for number, name in coll.changes if number > since and name))
        if not token:
            changed = sorted(coll.objects)
        responses = []
        for name in changed:
            if name in coll.objects:
                obj = _Res("object", res.path + name, res.view, name)
                responses.append(writer.response(obj.path, *self._select(self._props(obj, user), "prop", names)))
            else:
                responses.append(writer.status_response(res.path + name, 404))
        tail = f"<d:sync-token>{SYNC_PREFIX}{coll.sync}</d:sync-token>"
        return 207, [("Content-Type", XML_TYPE)], writer.multistatus(responses, tail)

    # ------------------------------------------------------------ write handlers

    def _writable_view(self, res: _Res) -> _View:
        if res.view is None or res.kind not in ("collection", "object"):
            raise DavError(403, "Forbidden", "Permission denied")
        if res.view.read_only:
            raise DavError(403, "Sabre\\DAVACL\\Exception\\NeedPrivileges",
                           f"User did not have the required privileges ({{DAV:}}write) for path \"{res.path}\"")
        return res.view

    def _do_put(self, segs, environ, body, user):
        parent = self._require(segs[:-1], user) if segs else None
        if parent is None or parent.kind != "collection":
            raise DavError(405, "MethodNotAllowed", "Creating new files in this collection is not supported")
        view = self._writable_view(parent)
        name, coll = segs[-1], view.coll
        marker = b"BEGIN:VCALENDAR" if coll.kind == CALENDAR else b"BEGIN:VCARD"
        if marker not in body:
            raise DavError(415, "UnsupportedMediaType",
                           f"This resource only supports valid {'iCalendar 2.0' if coll.kind == CALENDAR else 'vCard'} data.")
        existing = coll.objects.get(name)
        _check_preconditions(environ, existing.etag if existing else None)
        coll.objects[name] = _Object(body, _etag(body), time.time())
        coll.bump(name)
        return (204 if existing else 201), [("ETag", coll.objects[name].etag)], b""

    def _do_delete(self, segs, environ, body, user):
        res = self._require(segs, user)
        if res.kind == "object":
            coll = self._writable_view(res).coll
            _check_preconditions(environ, coll.objects[res.name].etag)
            del coll.objects[res.name]
            coll.bump(res.name)
        elif res.kind == "collection" and res.view.viewer == res.view.coll.owner:
            coll = res.view.coll
            del self._colls[(coll.kind, coll.owner, coll.uri)]
        elif res.kind == "collection":
            del res.view.coll.shares[res.view.viewer]
        else:
            raise DavError(403, "Forbidden", "Permission denied to delete this node")
        return 204, [], b""

    def _do_move(self, segs, environ, body, user):
        return self._copy_or_move(segs, environ, user, move=True)

    def _do_copy(self, segs, environ, body, user):
        return self._copy_or_move(segs, environ, user, move=False)

    def _copy_or_move(self, segs, environ, user, move: bool):
        source = self._require(segs, user)
        destination = environ.get("HTTP_DESTINATION", "")
        if not destination:
            raise DavError(400, "BadRequest", "The destination header was not supplied")
        dest_path = unquote(urlsplit(destination).path)
        dest_segs = dav_segments(dest_path)
        if dest_segs is None:
            raise DavError(403, "Forbidden", f"Requested uri ({dest_path}) is out of base uri ({DAV_ROOT}/)")
        if source.kind != "object":
            raise DavError(403, "Forbidden", "Only calendar objects and cards can be moved or copied here")
        if dest_segs == segs:
            raise DavError(403, "Forbidden", "Source and destination uri are identical.")
        target = self._resolve(dest_segs[:-1], user) if dest_segs else None
        if target is None:
            raise DavError(409, "Conflict", "The destination node is not found")
        if target.kind != "collection" or target.view.coll.kind != source.view.coll.kind:
            raise DavError(403, "Forbidden", "The destination does not accept this kind of object")
        src_coll = (self._writable_view(source) if move else source.view).coll
        dst_coll = self._writable_view(target).coll
        name = dest_segs[-1]
        existed = name in dst_coll.objects
        if existed and environ.get("HTTP_OVERWRITE", "T").strip().upper() == "F":
            raise DavError(412, "PreconditionFailed", "The destination node already exists, and the overwrite header is set to false")
        obj = src_coll.objects[source.name]
        dst_coll.objects[name] = _Object(obj.data, obj.etag, time.time())
        if move:
            del src_coll.objects[source.name]
            src_coll.bump(source.name)
        dst_coll.bump(name)
        return (204 if existed else 201), [], b""

    def _do_proppatch(self, segs, environ, body, user):
        res = self._require(segs, user)
        root = _parse_xml(body)
        if root is None or root.tag != DAV + "propertyupdate":
            raise DavError(400, "BadRequest", "The request body must be a {DAV:}propertyupdate")
        updates = []  # (name, value or None for remove)
        for action in root:
            for prop in action.findall(DAV + "prop"):
                for element in prop:
                    updates.append((element.tag, (element.text or "") if action.tag == DAV + "set" else None))
        names = [name for name, _ in updates]
        allowed = WRITABLE_PROPS.get(res.view.coll.kind, set()) if res.kind == "collection" else set()
        if res.kind == "collection":
            self._writable_view(res)
        rejected = [n for n in names if n not in allowed]
        if rejected:
            groups = [(403, rejected), (424, [n for n in names if n not in rejected])]
        else:
            coll = res.view.coll
            for name, value in updates:
                if value is None:
                    coll.props.pop(name, None)
                else:
                    coll.props[name] = value
            coll.bump()
            groups = [(200, names)]
        writer = Writer()
        return 207, [("Content-Type", XML_TYPE)], writer.multistatus([writer.propstat_response(res.path, groups)])

    def _do_mkcalendar(self, segs, environ, body, user):
        return self._make_collection(segs, body, user, required_kind=CALENDAR)

    def _do_mkcol(self, segs, environ, body, user):
        return self._make_collection(segs, body, user, required_kind=None)

    def _make_collection(self, segs, body, user, required_kind: str | None):
        if not segs:
            raise DavError(405, "MethodNotAllowed", "The resource you tried to create already exists")
        if self._resolve(segs, user) is not None:
            raise DavError(405, "MethodNotAllowed", "The resource you tried to create already exists")
        parent = self._resolve(segs[:-1], user)
        if parent is None:
            raise DavError(409, "Conflict", "Parent node does not exist")
        home_kind = {"cal-home": CALENDAR, "ab-home": ADDRESSBOOK}.get(parent.kind)
        root = _parse_xml(body)
        types = {child.tag for rt in root.iter(DAV + "resourcetype") for child in rt} if root is not None else set()
        asked = CALENDAR if CALDAV + "calendar" in types else ADDRESSBOOK if CARDDAV + "addressbook" in types else None
        kind = required_kind or asked or (home_kind if not types else None)
        if home_kind is None or kind != home_kind:
            raise DavError(403, "Forbidden", "Unknown resourceType for this collection")
        props = {DAV + "displayname": segs[-1]}
        if root is not None:
            for prop in root.iter(DAV + "prop"):
                for element in prop:
                    if element.tag in WRITABLE_PROPS[kind]:
                        props[element.tag] = element.text or ""
        self._colls[(kind, user, segs[-1])] = _Collection(kind, user, segs[-1], props)
        return 201, [], b""


# ---------------------------------------------------------------- helpers


def dav_segments(path: str) -> list[str] | None:
    """Decoded path → segments below DAV_ROOT (None when outside it)."""
    if path != DAV_ROOT and not path.startswith(DAV_ROOT + "/"):
        return None
    return [s for s in path[len(DAV_ROOT):].split("/") if s]


def _parse_xml(body: bytes):
    if not body.strip():
        return None
    try:
        return ET.fromstring(body)
    except (ET.ParseError, LookupError) as err:  # LookupError: an unknown encoding
        raise DavError(400, "BadRequest", f"The request body is not valid XML: {err}") from None


def _parse_propfind(body: bytes) -> tuple[str, list[str]]:
    """→ ("prop" | "allprop" | "propname", property names)."""
    root = _parse_xml(body)
    if root is None:
        return "allprop", []
    if root.tag != DAV + "propfind":
        raise DavError(400, "BadRequest", "The root element must be {DAV:}propfind")
    prop, include = root.find(DAV + "prop"), root.find(DAV + "include")
    if prop is not None:
        return "prop", davxml.requested_props(prop)
    if root.find(DAV + "propname") is not None:
        return "propname", []
    return "allprop", davxml.requested_props(include) if include is not None else []


def _prefers_minimal(environ) -> bool:
    prefer = environ.get("HTTP_PREFER", "").replace(" ", "").lower()
    return "return=minimal" in prefer.split(",") or environ.get("HTTP_BRIEF", "").strip().lower() == "t"


def _check_preconditions(environ, current_etag: str | None) -> None:
    if_none_match = environ.get("HTTP_IF_NONE_MATCH", "").strip()
    if_match = environ.get("HTTP_IF_MATCH", "").strip()
    if if_none_match == "*" and current_etag is not None:
        raise DavError(412, "PreconditionFailed", "An If-None-Match header was specified, but the ETag matched")
    if if_match:
        tags = [t.strip() for t in if_match.split(",")]
        if current_etag is None or ("*" not in tags and current_etag not in tags):
            raise DavError(412, "PreconditionFailed", "An If-Match header was specified, but none of the ETags matched")
