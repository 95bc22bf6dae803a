"""A Nextcloud stand-in for gateway tests: `DavTree` behind Basic auth, request recording,
a streaming "files" area and a redirect, as a WSGI app.

Seeded state: users alice/bob/carol (password `<uid>-pw`); alice owns calendars `personal`,
`work` and address book `contacts`; bob owns calendar `personal` and address book `contacts`;
alice's `work` is shared read-write with bob, alice's `contacts` read-only with bob.
OPTIONS without an Authorization header is answered 200 (as Nextcloud does); any other request
without valid Basic credentials gets 401. A `push-register` POST is an ordinary POST.
`/status.php` answers Nextcloud's status JSON; other paths outside the DAV root are 404.
"""
from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import parse_qs, unquote

from .nextcloud_dav import (  # noqa: F401  (re-exported for test authors)
    ADDRESSBOOK,
    ALLOW,
    CALENDAR,
    DAV_HEADER,
    DAV_ROOT,
    SYNC_PREFIX,
    XML_TYPE,
    DavError,
    DavTree,
    UploadInfo,
    dav_segments,
    ics_event,
    vcard,
)
from .servers import CHUNK, Served, iter_body, request_headers, request_target

USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
WWW_AUTHENTICATE = 'Basic realm="Nextcloud", charset="UTF-8"'
STATUS_JSON = b'{"installed":true,"maintenance":false,"needsDbUpgrade":false,"version":"32.0.0.0","productname":"Nextcloud"}'
BODY_KEEP_LIMIT = 1 << 20  # recorded request bodies above this keep only length and sha256

_PATTERN = bytes(range(251)) * 300  # period 251 (prime): misplaced chunks change the digest


def pattern_bytes(n: int, offset: int = 0) -> bytes:
    """`n` bytes of the deterministic download pattern, starting at stream position `offset`."""
    out = bytearray()
    while len(out) < n:
        start = (offset + len(out)) % 251
        out += _PATTERN[start:start + min(n - len(out), len(_PATTERN) - 251)]
    return bytes(out)


def pattern_sha256(n: int) -> str:
    digest = hashlib.sha256()
    for offset in range(0, n, CHUNK):
        digest.update(pattern_bytes(min(CHUNK, n - offset), offset))
    return digest.hexdigest()


@dataclass
class RecordedRequest:
    method: str
    path: str  # as sent: percent-encoded, with the query
    headers: list[tuple[str, str]]
    user: str | None = None  # set once authenticated
    body: bytes | None = b""  # None when longer than 1 MiB: see body_length / body_sha256
    body_length: int = 0
    body_sha256: str = hashlib.sha256(b"").hexdigest()

    def header(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return default


class NextcloudStub(Served, DavTree):
    """WSGI app; start it with `stub.start()` (→ `stub.url`) or `servers.serve_wsgi(stub)`.

    Events for streaming tests: upload_started, upload_may_finish, download_started,
    download_may_finish (the `*_may_finish` ones are set by default; `gate_timeout` seconds max).
    """

    def __init__(self, *, seed: bool = True):
        super().__init__()
        self.requests: list[RecordedRequest] = []
        self.upload_started = threading.Event()
        self.upload_may_finish = threading.Event()
        self.download_started = threading.Event()
        self.download_may_finish = threading.Event()
        self.upload_may_finish.set()
        self.download_may_finish.set()
        self.gate_timeout = 30.0
        self._server = None
        if seed:
            for uid, password in USERS.items():
                self.add_user(uid, password)
            self.add_calendar("alice", "personal")
            self.add_calendar("alice", "work")
            self.add_addressbook("alice", "contacts")
            self.add_calendar("bob", "personal")
            self.add_addressbook("bob", "contacts")
            self.share_calendar("alice", "work", "bob")
            self.share_addressbook("alice", "contacts", "bob", read_only=True)


    # ------------------------------------------------------------ gates and recorded requests

    def reset_gates(self) -> None:
        self.upload_started.clear()
        self.download_started.clear()
        self.upload_may_finish.set()
        self.download_may_finish.set()

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def requests_for(self, method: str | None = None, path_prefix: str = "") -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if (method is None or r.method == method)
                    and unquote(r.path).startswith(path_prefix)]

    # ------------------------------------------------------------ WSGI

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"].upper()
        record = RecordedRequest(method, request_target(environ), request_headers(environ))
        with self._lock:
            self.requests.append(record)
        try:
            status, headers, body = self._dispatch(method, environ, record)
        except DavError as err:
            status, headers, body = err.status, err.headers + [("Content-Type", XML_TYPE)], err.body
        if isinstance(body, bytes):
            headers.append(("Content-Length", str(len(body))))
            body = [body] if method != "HEAD" else []
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        return body

    def _dispatch(self, method: str, environ, record: RecordedRequest):
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
        if path == "/status.php" and method in ("GET", "HEAD"):
            return 200, [("Content-Type", "application/json")], STATUS_JSON
        segs = dav_segments(path)
        if segs is None:
            self._consume(environ, record)
            raise DavError(404, "NotFound", f"{path} is not below {DAV_ROOT}/")
        if segs == ["redirect-me"] and method in ("GET", "HEAD"):
            return 301, [("Location", "http://example.invalid/elsewhere")], b""
        if method == "OPTIONS" and not environ.get("HTTP_AUTHORIZATION"):
            # Nextcloud's AnonymousOptionsPlugin answers OPTIONS without credentials instead of 401.
            self._consume(environ, record)
            return self.handle("OPTIONS", segs, environ, b"", None)
        user = self._authenticate(environ)
        if user is None:
            self._consume(environ, record)
            raise DavError(401, "NotAuthenticated",
                           "No public access to this resource., No 'Authorization: Basic' header found.",
                           [("WWW-Authenticate", WWW_AUTHENTICATE)])
        record.user = user
        if segs[:1] == ["files"] and method == "PUT":
            return self._put_file(segs, environ, record, user)
        if segs[:1] == ["files"] and method in ("GET", "HEAD"):
            return self._get_file(segs, environ, user, method)
        return self.handle(method, segs, environ, self._consume(environ, record), user)

    def _authenticate(self, environ) -> str | None:
        scheme, _, credentials = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            uid, sep, password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return uid if sep and self.check_password(uid, password) else None

    @staticmethod
    def _consume(environ, record: RecordedRequest) -> bytes:
        body = b"".join(iter_body(environ))
        record.body_length = len(body)
        record.body_sha256 = hashlib.sha256(body).hexdigest()
        record.body = body if len(body) <= BODY_KEEP_LIMIT else None
        return body

    # ------------------------------------------------------------ files area (streaming)

    def _put_file(self, segs, environ, record: RecordedRequest, user: str):
        if len(segs) != 3 or segs[1] != user:
            raise DavError(404, "NotFound", "File not found")
        digest, length, kept = hashlib.sha256(), 0, bytearray()
        for chunk in iter_body(environ):
            if length == 0:
                self.upload_started.set()
                if not self.upload_may_finish.wait(self.gate_timeout):
                    raise DavError(500, "Sabre\\DAV\\Exception", "upload_may_finish was never set")
            length += len(chunk)
            digest.update(chunk)
            if length <= BODY_KEEP_LIMIT:
                kept += chunk
        info = UploadInfo(length, digest.hexdigest())
        record.body_length, record.body_sha256 = info.length, info.sha256
        record.body = bytes(kept) if length <= BODY_KEEP_LIMIT else None
        with self._lock:
            existed = (user, segs[2]) in self._uploads
            self._uploads[(user, segs[2])] = info
        etag = f'"{info.sha256[:32]}"'
        return (204 if existed else 201), [("ETag", etag), ("OC-ETag", etag)], b""

    def _get_file(self, segs, environ, user: str, method: str):
        size = parse_qs(environ.get("QUERY_STRING", "")).get("size", [""])[0]
        if len(segs) != 3 or segs[1] != user or not size.isdigit():
            raise DavError(404, "NotFound", "File not found (the stub serves files only with ?size=N)")
        n = int(size)
        headers = [("Content-Type", "application/octet-stream"), ("Content-Length", str(n))]
        if method == "HEAD" or n == 0:
            return 200, headers, []

        def stream():
            first = min(CHUNK, n)
            yield pattern_bytes(first)
            # Runs only after the server has written the first chunk.
            self.download_started.set()
            if not self.download_may_finish.wait(self.gate_timeout):
                raise RuntimeError("download_may_finish was never set")
            for offset in range(first, n, CHUNK):
                yield pattern_bytes(min(CHUNK, n - offset), offset)

        return 200, headers, stream()
