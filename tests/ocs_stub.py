"""A stub of Nextcloud's webhook_listeners OCS API, strict about request shapes.

It serves `/ocs/v2.php/apps/webhook_listeners/api/v1/webhooks[/{id}]` like the real
controller (list with optional `?uri=`, create with POST, update with POST to /{id}, delete),
keeps registrations in memory, stores authData as an opaque "encrypted" string (remembering
the clear value for assertions), and records every request. Any request that breaks the
documented shape is answered 400 and listed in `violations`, so tests can assert there were none.
"""
from __future__ import annotations

import base64
import json
import secrets
import threading
from dataclasses import dataclass, field

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

API = "/ocs/v2.php/apps/webhook_listeners/api/v1/webhooks"
BODY_KEYS = {"httpMethod", "uri", "event", "eventFilter", "userIdFilter", "headers", "authMethod", "authData"}
STOCK = (
    "OCP\\Calendar\\Events\\CalendarObjectCreatedEvent",
    "OCP\\Calendar\\Events\\CalendarObjectUpdatedEvent",
    "OCP\\Calendar\\Events\\CalendarObjectDeletedEvent",
    "OCP\\Calendar\\Events\\CalendarObjectMovedToTrashEvent",
    "OCP\\Calendar\\Events\\CalendarObjectRestoredEvent",
    "OCP\\Calendar\\Events\\CalendarObjectMovedEvent",
)
BRIDGE = "OCA\\DavPushBridge\\Events\\DavCollectionChangedEvent"


@dataclass
class Seen:
    method: str
    path: str
    args: dict
    body: object


@dataclass
class OCSStub:
    admin: str = "admin"
    password: str = "admin-app-password-123"
    users: dict = field(default_factory=lambda: {"bob": "bob-app-password-456"})  # valid, not admin
    compatible: set = field(default_factory=lambda: set(STOCK))
    ignore_uri_filter: bool = False
    hooks: dict = field(default_factory=dict)  # id -> stored registration (as the API returns it)
    clear_auth: dict = field(default_factory=dict)  # id -> authData as sent
    seen: list = field(default_factory=list)
    violations: list = field(default_factory=list)
    next_id: int = 1

    def add_hook(self, uri: str, event: str, *, event_filter=None, auth_method="header",
                 auth_data=None, user="admin") -> int:
        """Put a registration in place directly (as if made earlier, e.g. by someone else)."""
        hook_id = self.next_id
        self.next_id += 1
        self.hooks[hook_id] = {
            "id": hook_id, "appId": None, "userId": user, "httpMethod": "POST", "uri": uri,
            "event": event, "eventFilter": event_filter if event_filter is not None else [],
            "userIdFilter": "", "headers": None, "authMethod": auth_method,
            "authData": "enc:" + secrets.token_hex(8) if auth_data is not None or auth_method == "header" else None,
        }
        self.clear_auth[hook_id] = auth_data
        return hook_id

    @property
    def mutations(self) -> list:
        return [s for s in self.seen if s.method != "GET"]

    # -- WSGI ------------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self._handle(request)
        return response(environ, start_response)

    def _ocs(self, data, status=200, message="OK"):
        body = {"ocs": {"meta": {"status": "ok" if status < 300 else "failure", "statuscode": status,
                                 "message": message}, "data": data}}
        return Response(json.dumps(body), status=status, content_type="application/json; charset=utf-8")

    def _bad(self, message):
        self.violations.append(message)
        return self._ocs([], 400, message)

    def _handle(self, request: Request) -> Response:
        body = None
        if request.data:
            try:
                body = json.loads(request.data)
            except ValueError:
                body = request.data.decode("latin-1")
        self.seen.append(Seen(request.method, request.path, dict(request.args), body))

        if request.path.startswith("/html"):
            return Response("<html><body>Login</body></html>", content_type="text/html")
        if not request.path.startswith(API):
            return Response("<html>not found</html>", status=404, content_type="text/html")

        user, password = self._basic(request)
        if user is None or ((user, password) != (self.admin, self.password) and self.users.get(user) != password):
            return self._ocs([], 401, "Current user is not logged in")
        if request.headers.get("OCS-APIRequest") != "true":
            return self._bad("missing OCS-APIRequest: true")
        if "application/json" not in request.headers.get("Accept", ""):
            return self._bad("Accept is not application/json")
        if user != self.admin:
            return self._ocs([], 403, "Logged in account must be an admin")

        rest = request.path[len(API):].strip("/")
        if request.method == "GET" and not rest:
            hooks = list(self.hooks.values())
            uri = request.args.get("uri")
            if uri is not None and not self.ignore_uri_filter:
                hooks = [h for h in hooks if h["uri"] == uri]
            return self._ocs(hooks)
        if request.method == "GET" and rest.isdigit():
            hook = self.hooks.get(int(rest))
            return self._ocs(hook) if hook else self._ocs([], 404, "not found")
        if request.method == "POST" and not rest:
            return self._save(request, body, None)
        if request.method == "POST" and rest.isdigit():
            if int(rest) not in self.hooks:
                return self._ocs([], 404, "Webhook not found")
            return self._save(request, body, int(rest))
        if request.method == "DELETE" and rest.isdigit():
            existed = self.hooks.pop(int(rest), None) is not None
            self.clear_auth.pop(int(rest), None)
            return self._ocs(existed)
        if request.method == "PUT":
            return self._bad("updates must be POST /webhooks/{id}, not PUT")
        return Response("method not allowed", status=405)

    @staticmethod
    def _basic(request: Request):
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None, None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None, None
        return user, password

    def _save(self, request: Request, body, hook_id):
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return self._bad("Content-Type is not application/json")
        if not isinstance(body, dict):
            return self._bad("body is not a JSON object")
        missing = BODY_KEYS - body.keys()
        if missing:
            return self._bad(f"body lacks {sorted(missing)}")
        if body["httpMethod"] != "POST":
            return self._bad("httpMethod is not POST")
        if body["authMethod"] not in ("none", "header", None):
            return self._ocs([], 400, "This auth method does not exist")
        if body["authMethod"] == "header" and not isinstance(body["authData"], dict):
            return self._ocs([], 400, "Header auth method needs an associative array of headers as auth data")
        event = body["event"].lstrip("\\")
        if event not in self.compatible:
            return self._ocs([], 400, f"{event} is not an event class compatible with webhooks")
        if hook_id is None:
            hook_id = self.next_id
            self.next_id += 1
        self.hooks[hook_id] = {
            "id": hook_id, "appId": None, "userId": self.admin, "httpMethod": body["httpMethod"],
            "uri": body["uri"], "event": event,
            "eventFilter": body["eventFilter"] if body["eventFilter"] is not None else [],
            "userIdFilter": body["userIdFilter"], "headers": body["headers"],
            "authMethod": body["authMethod"] or "none",
            "authData": "enc:" + secrets.token_hex(8) if body["authData"] is not None else None,
        }
        self.clear_auth[hook_id] = body["authData"]
        return self._ocs(self.hooks[hook_id])


def matches(event_filter, envelope) -> bool:
    """webhook_listeners' filter semantics for the subset davpush uses ($ne on dot paths).

    As in Nextcloud's PHPMongoQuery, `$ne` on a missing key matches.
    """
    if not event_filter:
        return True
    for path, condition in event_filter.items():
        value, exists = envelope, True
        for part in path.split("."):
            if isinstance(value, dict) and part in value and value[part] is not None:
                value = value[part]
            else:
                exists = False
                break
        for operator, operand in condition.items():
            assert operator == "$ne", operator
            if exists and value == operand:
                return False
    return True


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


class StubServer:
    """Serve an OCSStub on 127.0.0.1 in a thread."""

    def __init__(self, stub: OCSStub):
        self.stub = stub
        self.server = make_server("127.0.0.1", 0, stub, threaded=True, request_handler=_QuietHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.thread.join(5)
        self.server.server_close()
