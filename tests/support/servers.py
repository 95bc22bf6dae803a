"""Run a WSGI app on a free loopback port in a background thread, plus request-body helpers.

werkzeug's threaded server speaks HTTP/1.1, decodes chunked request bodies (it then sets
`wsgi.input_terminated`) and sends generator responses without Content-Length chunked. It closes
every connection after one response (`Connection: close`), so connection reuse cannot be observed
against it.
"""
from __future__ import annotations

import socket
import threading
from urllib.parse import quote

from werkzeug.serving import DechunkedInput, WSGIRequestHandler, make_server

CHUNK = 64 * 1024


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code="-", size="-"):  # one line per request is only noise in tests
        pass


class ServerHandle:
    """A running server: `.url`, `.host`, `.port`, `.stop()`; a context manager."""

    def __init__(self, server, thread: threading.Thread, host: str, port: int):
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self.url = f"http://{host}:{port}"
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve_wsgi(app, host: str = "127.0.0.1", port: int = 0, *, quiet: bool = True) -> ServerHandle:
    """Serve `app` with werkzeug's threaded server in a daemon thread; port 0 picks a free one."""
    server = make_server(host, port, app, threaded=True, request_handler=_QuietHandler if quiet else None)
    bound_port = server.socket.getsockname()[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"wsgi-{bound_port}", daemon=True)
    thread.start()
    return ServerHandle(server, thread, host, bound_port)


def iter_body(environ, chunk_size: int = CHUNK):
    """Yield the request body in chunks as they arrive, for Content-Length and chunked bodies.

    A chunk is whatever is available (at most `chunk_size`), so a slow sender is never waited
    for beyond the bytes it has sent.
    """
    stream = environ["wsgi.input"]
    raw = getattr(stream, "_rfile", None)
    if isinstance(stream, DechunkedInput) and raw is not None:
        # werkzeug's DechunkedInput.read(n) waits until n bytes have arrived across chunks;
        # reading the framing ourselves hands over each chunk as soon as it is there.
        yield from _dechunk(raw, chunk_size)
        return
    if environ.get("wsgi.input_terminated"):
        while True:
            data = stream.read(chunk_size)
            if not data:
                return
            yield data
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        remaining = 0
    read = getattr(stream, "read1", stream.read)
    while remaining > 0:
        data = read(min(chunk_size, remaining))
        if not data:
            raise ConnectionError(f"client closed the connection with {remaining} body bytes missing")
        remaining -= len(data)
        yield data


def _dechunk(raw, chunk_size: int):
    while True:
        line = raw.readline(1024)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ConnectionError(f"invalid chunk header {line!r}") from None
        if size == 0:
            while raw.readline(1024) not in (b"\r\n", b"\n", b""):  # trailer fields
                pass
            return
        while size > 0:
            data = raw.read1(min(chunk_size, size))
            if not data:
                raise ConnectionError("client closed the connection inside a chunk")
            size -= len(data)
            yield data
        raw.readline(1024)  # CRLF after the chunk data


def read_body(environ) -> bytes:
    return b"".join(iter_body(environ))


def request_headers(environ) -> list[tuple[str, str]]:
    """Request headers as (Name-In-Title-Case, value) pairs, rebuilt from the WSGI environ."""
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:]
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if not value:
                continue
            name = key
        else:
            continue
        headers.append(("-".join(part.capitalize() for part in name.split("_")), value))
    return headers


def request_target(environ) -> str:
    """The path and query exactly as the client sent them (still percent-encoded)."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return raw
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    query = environ.get("QUERY_STRING")
    return f"{path}?{query}" if query else path


class Served:
    """start()/stop()/url and `with` for a WSGI app object that serves itself."""

    _server: ServerHandle | None = None

    def start(self, host: str = "127.0.0.1"):
        self._server = serve_wsgi(self, host)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def url(self) -> str:
        """Base URL of the running server (no path)."""
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} not started")
        return self._server.url

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
