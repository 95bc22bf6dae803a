"""Logging set-up and the rules for what may appear in logs.

Push endpoints are capability URLs and are only ever logged as origin + short hash;
credentials and keys are never logged.

Log lines cannot be forged: in the text format every value (message, fields, logger
name, request id) has CR, LF and the other control characters escaped, field values
with spaces, quotes or "=" are quoted, and the lines of a traceback are prefixed with
"  | ", so whatever an exception message contains stays inside its record. The JSON
format escapes the same characters as JSON string escapes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from urllib.parse import urlsplit

request_id: ContextVar[str] = ContextVar("request_id", default="-")


def endpoint_label(url: str) -> str:
    """'https://push.example.net#3f2a9c1e': enough to correlate, useless to an attacker."""
    try:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    except ValueError:
        origin = "invalid"
    return f"{origin}#{hashlib.sha256(url.encode('utf-8')).hexdigest()[:8]}"


def short_id(subscription_id: str) -> str:
    return subscription_id[:8]


def new_request_id() -> str:
    return secrets.token_hex(8)


def client_request_id(value: str | None) -> str:
    """A caller's X-Request-Id, if it is safe to put in logs ("" otherwise)."""
    value = value or ""
    return value if 0 < len(value) <= 64 and all(c.isalnum() or c in "-_." for c in value) else ""


access_logger = logging.getLogger("davpush.access")


def log_request(method: str, path: str, status: int, started: float) -> None:
    """The access log line of one request (`started`: its time.perf_counter())."""
    if access_logger.isEnabledFor(logging.INFO):
        log(access_logger, logging.INFO, "request", method=method, path=path, status=status,
            ms=round((time.perf_counter() - started) * 1000, 1))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
        }
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # json.dumps escapes C0 controls and (ensure_ascii) everything beyond ASCII; DEL is left.
        return json.dumps(entry, default=str).replace("\x7f", "\\u007f")


# C0 controls, DEL, C1 controls (including NEL), Unicode line/paragraph separators and the
# bidirectional overrides that make a line read differently from what it contains.
_UNSAFE = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES = str.maketrans({chr(c): _NAMED.get(chr(c), f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE})
TRACEBACK_PREFIX = "  | "


def escape_control(value) -> str:
    """str(value) with CR, LF and every other control character written as an escape."""
    text = str(value)
    # Every character of _UNSAFE is non-printable, so a printable text has nothing to escape:
    # the check is several times cheaper than translate(), and almost every value passes it.
    return text if text.isprintable() else text.translate(_ESCAPES)


_NEEDS_QUOTES = re.compile(r'[ "=]')


def _field_value(value) -> str:
    """A field value as logfmt: quoted when it has a space, quote or "=", so it cannot fake another field."""
    text = str(value)
    if text and _NEEDS_QUOTES.search(text) is None:
        return escape_control(text)
    return '"' + escape_control(text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def _continuation(text: str) -> str:
    """Multi-line text (a traceback) as prefixed lines: nothing in it can start a record."""
    return "\n".join(TRACEBACK_PREFIX + escape_control(line) for line in text.split("\n"))


class TextFormatter(logging.Formatter):
    _second: tuple[int, str] = (-1, "")  # the last second formatted, and its text

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's default text ("2026-12-01 10:00:00,123"), the part before the comma kept per second."""
        second = int(record.created)
        cached_second, text = self._second
        if second != cached_second:
            text = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {}) or {}
        extra = " ".join(f"{escape_control(k)}={_field_value(v)}" for k, v in fields.items())
        line = (f"{self.formatTime(record)} {record.levelname:<7} {escape_control(record.name)} "
                f"[{escape_control(request_id.get())}] {escape_control(record.getMessage())}")
        line = f"{line} {extra}" if extra else line
        if record.exc_info:
            line += "\n" + _continuation(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + _continuation(self.formatStack(record.stack_info))
        return line


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    # No format in use shows the caller, thread or multiprocessing name (gunicorn's shows the
    # process id, which stays), so logging need not look them up for every record (the
    # "Optimization" switches of the logging HOWTO): the gateway logs every DAV request.
    logging._srcfile = None
    logging.logThreads = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def log(logger: logging.Logger, level: int, message: str, **fields) -> None:
    logger.log(level, message, extra={"fields": fields})
