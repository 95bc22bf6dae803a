"""Parsing the Push-Dont-Notify request header (WebDAV-Push §Suppressing Notifications).

Push-Dont-Notify = 1#quoted-registration-url / "*"
Invalid members are ignored, as the draft requires.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass(frozen=True)
class DontNotify:
    everything: bool = False
    urls: frozenset[str] = field(default_factory=frozenset)

    @property
    def empty(self) -> bool:
        return not self.everything and not self.urls


def parse_dont_notify(values: list[str]) -> DontNotify:
    urls: set[str] = set()
    star = False
    for value in values:
        for member in _members(value):
            if member == "*":
                star = True
            elif member.startswith('"'):
                url = _unquote(member)
                if url is not None and _absolute_http_url(url):
                    urls.add(url)
    # "*" must stand alone; mixed with URLs it is invalid and ignored.
    if star and not urls:
        return DontNotify(everything=True)
    return DontNotify(urls=frozenset(urls))


def _members(value: str) -> Iterator[str]:
    """Split a header value on commas outside quoted strings."""
    member, quoted, escaped = [], False, False
    for char in value:
        if escaped:
            member.append(char)
            escaped = False
        elif quoted and char == "\\":
            member.append(char)
            escaped = True
        elif char == '"':
            member.append(char)
            quoted = not quoted
        elif char == "," and not quoted:
            yield "".join(member).strip()
            member = []
        else:
            member.append(char)
    last = "".join(member).strip()
    if last:
        yield last


def _unquote(member: str) -> str | None:
    """The content of one complete quoted-string, or None if it is not exactly one."""
    out, index = [], 1
    while index < len(member):
        char = member[index]
        if char == "\\":
            if index + 1 >= len(member):
                return None
            out.append(member[index + 1])
            index += 2
        elif char == '"':
            return "".join(out) if index == len(member) - 1 else None
        else:
            out.append(char)
            index += 1
    return None


def _absolute_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[": an invalid member, ignored
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)
