"""A WSGI answer: status, headers and a body iterable, with callbacks run when the server closes it.

The DAV gateway answers with these directly (no Flask request or response objects on the hot
path: they cost more CPU than the proxying itself). Flask views that forward a request upstream
return `to_flask()`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus

from flask import Response as FlaskResponse


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return f"{status} Unknown"


class Answer:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: Iterable[bytes] = (),
                 on_close: Callable[[], None] | None = None):
        self.status = status
        self.headers = headers
        self.body = body
        self._on_close = [on_close] if on_close else []

    @classmethod
    def text(cls, status: int, message: str, headers: list[tuple[str, str]] | None = None) -> Answer:
        body = message.encode()
        return cls(status, [*(headers or []), ("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body)))], [body])

    def call_on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((v for n, v in self.headers if n.lower() == name), None)

    def __call__(self, environ, start_response) -> Iterable[bytes]:
        start_response(status_line(self.status), self.headers)
        return _Closing(self.body, self._on_close)

    def to_flask(self) -> FlaskResponse:
        response = FlaskResponse(_Closing(self.body, self._on_close), self.status, headers=self.headers)
        if self.header("Content-Type") is None:
            response.headers.pop("Content-Type", None)
        return response


class _Closing:
    """The body as the WSGI server sees it: close() closes the body and runs the callbacks."""

    def __init__(self, body: Iterable[bytes], callbacks: list[Callable[[], None]]):
        self._body = body
        self._callbacks = callbacks

    def __iter__(self):
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            callbacks, self._callbacks = self._callbacks, []
            for callback in callbacks:
                callback()
