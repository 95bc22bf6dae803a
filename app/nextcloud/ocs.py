"""A small client for the webhook_listeners OCS API (registering davpush's webhooks).

Nextcloud has no occ command to add webhooks; registrations go through
`/ocs/v2.php/apps/webhook_listeners/api/v1/webhooks` with an admin (or delegated admin)
account. `WebhookRegistrar` lists what is registered for davpush's receiver URI, plans the
changes needed (create / update / keep / delete, one registration per event class) and applies
them. Running it twice changes nothing the second time.

Secrets: the app password and the webhook secret are only ever put in the request (Basic auth
and the `authData` body); they never appear in exception messages, `repr()` or `Action`s.
"""
from __future__ import annotations

import builtins
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from .paths import WEBHOOKS_OCS_PATH
from .schemas import BRIDGE_EVENT, MOVED_EVENT, STOCK_EVENT_CLASSES

API_PATH = WEBHOOKS_OCS_PATH
RECEIVER_PATH = "/push/webhooks/nextcloud"

CALENDAR_OBJECT_EVENTS = STOCK_EVENT_CLASSES
KNOWN_EVENTS = CALENDAR_OBJECT_EVENTS + (BRIDGE_EVENT,)

BIRTHDAY_CALENDAR_URI = "contact_birthdays"


def birthday_filter(event: str) -> dict | None:
    """The eventFilter that drops birthday-calendar changes for one event class.

    webhook_listeners evaluates the filter against the envelope with Mongo semantics, where
    `$ne` on a *missing* key matches. So:
    - the five single-calendar events carry `event.calendarData.uri`: filter on it;
    - CalendarObjectMovedEvent has `sourceCalendarData`/`targetCalendarData` and no
      `calendarData`, so the same filter would silently match every move (a no-op that looks
      like a filter). A move always changes at least one ordinary calendar (the birthday
      calendar is generated and read-only), whose subscribers must hear about it, so the
      correct filter for moves is none at all: we send null;
    - the bridge event carries `event.calendarUri` for calendar kinds only; `$ne` keeps the
      address-book kinds, which have no calendarUri.
    """
    if event == MOVED_EVENT:
        return None
    if event == BRIDGE_EVENT:
        return {"event.calendarUri": {"$ne": BIRTHDAY_CALENDAR_URI}}
    if event in CALENDAR_OBJECT_EVENTS:
        return {"event.calendarData.uri": {"$ne": BIRTHDAY_CALENDAR_URI}}
    return None


def receiver_uri(davpush_url: str) -> str:
    """davpush's webhook URL from its public base URL (a full receiver URL is kept as is)."""
    value = (davpush_url or "").strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OCSError(f"{value!r} is not an absolute http(s) URL for davpush")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise OCSError("the davpush URL must not contain credentials, a query or a fragment")
    base = value.rstrip("/")
    if base.endswith(RECEIVER_PATH):
        return base
    return base + RECEIVER_PATH


class OCSError(Exception):
    """A registration step failed. str(error) is one short line, safe to print."""


@dataclass(frozen=True)
class Action:
    """One planned or applied change: kind is create, update, keep or delete."""

    kind: str
    event: str
    id: int | None = None
    event_filter: dict | None = None
    reason: str = ""

    def __str__(self) -> str:
        text = f"{self.kind} {self.event}"
        if self.id is not None:
            text += f" (id {self.id})"
        if self.reason:
            text += f": {self.reason}"
        return text


def _no_filter(value: Any) -> bool:
    # Nextcloud stores a null filter as [] and may answer [] or {}.
    return value is None or value == [] or value == {}


def _same_filter(existing: Any, wanted: dict | None) -> bool:
    if _no_filter(existing) or _no_filter(wanted):
        return _no_filter(existing) and _no_filter(wanted)
    return existing == wanted


class WebhookRegistrar:
    """OCS client for webhook_listeners, authenticated as an admin with an app password."""

    def __init__(self, nextcloud_url: str, user: str, app_password: str,
                 session: requests.Session | None = None, timeout: float = 15) -> None:
        parts = urlsplit((nextcloud_url or "").strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OCSError(f"{nextcloud_url!r} is not an absolute http(s) URL for Nextcloud")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise OCSError("the Nextcloud URL must not contain credentials, a query or a fragment")
        self.nextcloud_url = nextcloud_url.strip().rstrip("/")
        self.user = user
        self.app_password = app_password
        self.session = session if session is not None else requests.Session()
        self.timeout = timeout
        self._secret = ""
        self._receiver = ""
        self._secrets = [app_password] if app_password else []

    def __repr__(self) -> str:  # never show the app password or the secret
        return f"WebhookRegistrar({self.nextcloud_url!r}, user={self.user!r})"

    # -- reading ---------------------------------------------------------------------------

    def list(self, uri: str | None = None) -> list[dict]:
        """Registrations, optionally only those whose receiver URI is exactly `uri`."""
        data = self._call("GET", API_PATH, params={"uri": uri} if uri is not None else None)
        if not isinstance(data, list):
            raise OCSError("Nextcloud answered the webhook list with something other than a list")
        hooks = [hook for hook in data if isinstance(hook, dict)]
        if uri is not None:  # never trust the server-side filter for what we might delete
            hooks = [hook for hook in hooks if hook.get("uri") == uri]
        return hooks

    # -- planning --------------------------------------------------------------------------

    def plan(
        self,
        receiver_uri: str,
        secret: str,
        events: Iterable[str],
        exclude_birthday: bool = False,
        *,
        rotate_secret: bool = False,
        remove: Iterable[str] = (),
    ) -> builtins.list[Action]:
        """What to do so that `receiver_uri` has exactly one up-to-date hook per event.

        `remove` names event classes whose registrations for this URI should go (used when
        switching to the bridge only). Duplicate registrations of one class are deleted.
        The secret is remembered for `apply()` but never stored in the actions.
        """
        if not secret:
            raise OCSError("the webhook secret is empty")
        self._secret = secret
        self._receiver = receiver_uri
        if secret not in self._secrets:
            self._secrets.append(secret)
        existing = self.list(uri=receiver_uri)
        by_event: dict[str, list[dict]] = {}
        for hook in sorted(existing, key=lambda h: _int_id(h.get("id")) or 0):
            by_event.setdefault(str(hook.get("event", "")).lstrip("\\"), []).append(hook)

        actions: list[Action] = []
        wanted = list(dict.fromkeys(e.lstrip("\\") for e in events))
        for event in wanted:
            event_filter = birthday_filter(event) if exclude_birthday else None
            hooks = by_event.get(event, [])
            if not hooks:
                actions.append(Action("create", event, None, event_filter))
                continue
            first, extra = hooks[0], hooks[1:]
            reason = self._difference(first, event_filter)
            if not reason and rotate_secret:
                reason = "secret rotated"
            hook_id = _int_id(first.get("id"))
            if reason:
                actions.append(Action("update", event, hook_id, event_filter, reason))
            else:
                actions.append(Action("keep", event, hook_id, event_filter))
            for hook in extra:
                actions.append(Action("delete", event, _int_id(hook.get("id")), None, "duplicate"))
        for event in dict.fromkeys(e.lstrip("\\") for e in remove):
            if event in wanted:
                continue
            for hook in by_event.get(event, []):
                actions.append(Action("delete", event, _int_id(hook.get("id")), None, "not wanted any more"))
        return actions

    @staticmethod
    def _difference(hook: dict, event_filter: dict | None) -> str:
        if str(hook.get("httpMethod") or "").upper() != "POST":
            return "HTTP method differs"
        if (hook.get("authMethod") or "none") != "header" or not hook.get("authData"):
            return "authentication differs"
        if not _same_filter(hook.get("eventFilter"), event_filter):
            return "event filter differs"
        if hook.get("userIdFilter") not in (None, ""):
            return "user filter differs"
        if not _no_filter(hook.get("headers")):
            return "extra headers differ"
        return ""

    # -- changing --------------------------------------------------------------------------

    def apply(self, actions: Iterable[Action]) -> builtins.list[Action]:
        """Carry out planned actions (after `plan()`); returns them with the ids assigned."""
        done: list[Action] = []
        for action in actions:
            if action.kind == "keep":
                done.append(action)
            elif action.kind in ("create", "update"):
                secret, receiver = self._secret, self._receiver
                if not secret or not receiver:
                    raise OCSError("apply() needs plan() first")
                body = {
                    "httpMethod": "POST",
                    "uri": receiver,
                    "event": action.event,
                    "eventFilter": action.event_filter,
                    "userIdFilter": None,
                    "headers": None,
                    "authMethod": "header",
                    "authData": {"Authorization": f"Bearer {secret}"},
                }
                path = API_PATH if action.kind == "create" else f"{API_PATH}/{action.id}"
                data = self._call("POST", path, json=body, event=action.event)
                new_id = _int_id(data.get("id")) if isinstance(data, dict) else action.id
                done.append(Action(action.kind, action.event, new_id if new_id is not None else action.id,
                                   action.event_filter, action.reason))
            elif action.kind == "delete":
                self._delete(action.id)
                done.append(action)
            else:
                raise OCSError(f"unknown action {action.kind!r}")
        return done

    def unregister(self, receiver_uri: str, dry_run: bool = False) -> builtins.list[Action]:
        """Delete every registration whose receiver URI is exactly `receiver_uri`."""
        actions = [
            Action("delete", str(hook.get("event", "")).lstrip("\\"), _int_id(hook.get("id")))
            for hook in sorted(self.list(uri=receiver_uri), key=lambda h: _int_id(h.get("id")) or 0)
        ]
        if not dry_run:
            for action in actions:
                self._delete(action.id)
        return actions

    def _delete(self, hook_id: int | None) -> None:
        if hook_id is None:
            raise OCSError("cannot delete a registration without an id")
        try:
            self._call("DELETE", f"{API_PATH}/{hook_id}")
        except _NotFound:
            pass  # already gone

    # -- HTTP ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, *, params=None, json=None, event: str | None = None):
        url = self.nextcloud_url + path
        headers = {
            "OCS-APIRequest": "true",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        try:
            response = self.session.request(
                method, url, params=params, json=json, headers=headers,
                auth=(self.user, self.app_password), timeout=self.timeout, allow_redirects=False,
            )
        except requests.exceptions.Timeout:
            raise OCSError(f"Nextcloud at {self.nextcloud_url} did not answer within {self.timeout:g} s") from None
        except requests.exceptions.SSLError:
            raise OCSError(f"TLS verification failed for {self.nextcloud_url}") from None
        except requests.exceptions.RequestException as error:
            raise OCSError(f"cannot reach Nextcloud at {self.nextcloud_url} ({_short(error)})") from None

        status = response.status_code
        payload = _ocs_payload(response)
        meta_message = ""
        if isinstance(payload, dict):
            meta = (payload.get("ocs") or {}).get("meta") or {}
            meta_message = self._clean(str(meta.get("message") or "").strip())

        if 300 <= status < 400:
            target = response.headers.get("Location", "?")
            raise OCSError(f"Nextcloud redirected to {self._clean(target)} (HTTP {status}): "
                           "give that base URL as --nextcloud-url")
        if status == 401:
            raise OCSError(f"Nextcloud rejected the credentials of user {self.user!r} (HTTP 401): "
                           "check --user and the app password")
        if status == 403:
            raise OCSError(f"user {self.user!r} may not manage webhooks (HTTP 403): "
                           "it needs admin or delegated admin rights")
        if status == 404:
            if method == "DELETE":
                raise _NotFound()
            raise OCSError("the webhook_listeners API was not found (HTTP 404): "
                           "enable it with `occ app:enable webhook_listeners` (Nextcloud 30+)")
        if status == 400:
            what = f"{event}: " if event else ""
            hint = ""
            if event == BRIDGE_EVENT:
                hint = " (is the dav_push_bridge app enabled?)"
            elif event:
                hint = " (calendar object webhooks need Nextcloud 32 or later)"
            raise OCSError(f"Nextcloud refused {what}{meta_message or 'bad request'} (HTTP 400){hint}")
        if payload is None:
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            raise OCSError(f"Nextcloud answered HTTP {status} with {kind}, not OCS JSON: "
                           "is --nextcloud-url the Nextcloud base URL?")
        if status >= 300:
            raise OCSError(f"Nextcloud answered HTTP {status}: {meta_message or 'error'}")
        ocs = payload.get("ocs") if isinstance(payload, dict) else None
        if not isinstance(ocs, dict) or "data" not in ocs:
            raise OCSError(f"Nextcloud answered HTTP {status} with JSON that is not an OCS response")
        return ocs["data"]

    def _clean(self, text: str) -> str:
        for secret in self._secrets:
            if secret:
                text = text.replace(secret, "***")
        return text[:200]


class _NotFound(Exception):
    pass


def _ocs_payload(response: requests.Response):
    try:
        return response.json()
    except ValueError:
        return None


def _int_id(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _short(error: Exception) -> str:
    """The innermost reason of a requests/urllib3 error, without object reprs."""
    reason = error
    while getattr(reason, "args", None) and isinstance(reason.args[0], Exception):
        reason = reason.args[0]
    text = str(getattr(reason, "reason", None) or reason)
    # "<...HTTPConnection object at 0x..>: Failed ..." or "HTTPConnection(host=..): Failed ..."
    for marker in (">: ", "): "):
        if text.startswith(("<", "HTTPConnection", "HTTPSConnection")) and marker in text:
            text = text.split(marker, 1)[1]
            break
    return text.strip()[:160] or type(error).__name__
