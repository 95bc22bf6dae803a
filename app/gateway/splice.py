"""Large bodies moved from socket to socket by the kernel (os.splice through a pipe).

A proxied 100 MB download or upload otherwise passes through Python several times over (received
into bytes objects, and for uploads copied again by gunicorn's body reader); spliced, no byte
enters the process. Used only where it is known to work: plain (non-TLS) sockets on Linux, the
client's socket handed over by gunicorn (`gunicorn.socket`), and a body whose length is known.
Everything else takes the portable path (bench/RESULTS.md, issue 11, has both).

Waiting goes through `select`, which gevent patches, so under gevent workers a transfer waiting
for its peer holds only its greenlet.
"""
from __future__ import annotations

import errno
import fcntl
import io
import os
import select
import socket
import ssl
from typing import Any

SPLICE_MIN = 1024 * 1024  # smaller bodies are not worth the pipe
PIPE_SIZE = 1024 * 1024
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
AVAILABLE = hasattr(os, "splice")


class SpliceError(OSError):
    """The transfer failed part-way (`reading`: on the source's side): neither connection can be reused."""

    def __init__(self, message: str, *, reading: bool, code: int = errno.EPIPE):
        # An errno the WSGI server knows: a peer that went away is not a server error to log.
        super().__init__(code, message)
        self.reading = reading


class SpliceTimeout(SpliceError):
    pass


def spliceable(sock) -> bool:
    return AVAILABLE and isinstance(sock, socket.socket) and not isinstance(sock, ssl.SSLSocket)


def client_socket(environ):
    """The client's socket, if the WSGI server hands it over and it can be spliced."""
    sock = environ.get("gunicorn.socket")
    return sock if sock is not None and spliceable(sock) else None


def transfer(source, destination, count: int, *, timeout: float) -> None:
    """Move exactly `count` bytes from socket `source` to socket `destination`."""
    source_fd, destination_fd = source.fileno(), destination.fileno()
    read_end, write_end = os.pipe()
    try:
        try:
            fcntl.fcntl(write_end, _F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # the default pipe size works too, in more steps
        remaining = count
        while remaining:
            try:
                moved = os.splice(source_fd, write_end, min(remaining, PIPE_SIZE), flags=_FLAGS)
            except BlockingIOError:
                _wait(source_fd, readable=True, timeout=timeout)
                continue
            except OSError as error:
                raise SpliceError(f"reading failed: {error.strerror}", reading=True,
                                  code=error.errno or errno.ECONNRESET) from None
            if moved == 0:
                raise SpliceError("the sender closed the connection early", reading=True)
            remaining -= moved
            while moved:
                try:
                    moved -= os.splice(read_end, destination_fd, moved, flags=_FLAGS)
                except BlockingIOError:
                    _wait(destination_fd, readable=False, timeout=timeout)
                except OSError as error:
                    raise SpliceError(f"writing failed: {error.strerror}", reading=False,
                                      code=error.errno or errno.EPIPE) from None
    finally:
        os.close(read_end)
        os.close(write_end)


def _wait(fd: int, *, readable: bool, timeout: float) -> None:
    ready = select.select([fd], [], [], timeout) if readable else select.select([], [fd], [], timeout)
    if not any(ready):
        raise SpliceTimeout("timed out", reading=readable, code=errno.ETIMEDOUT)


class GunicornBody:
    """The rest of a request body of known length, taken over from gunicorn's reader: what it has
    already buffered, then the socket. Afterwards gunicorn's reader is left at the body's end
    (with anything it buffered beyond it), as if it had read the body itself."""

    def __init__(self, environ) -> None:
        self.ok = False
        self.length = 0
        self.sock: Any = None
        self._stream: Any = None
        self._reader: Any = None
        self._unreader: Any = None
        stream: Any = environ.get("wsgi.input")
        sock = client_socket(environ)
        reader: Any = getattr(stream, "reader", None)
        unreader = getattr(reader, "unreader", None)
        buffered = getattr(unreader, "buf", None)
        if (sock is None or type(stream).__module__ != "gunicorn.http.body" or type(reader).__name__ != "LengthReader"
                or not isinstance(getattr(stream, "buf", None), io.BytesIO) or stream.buf.tell() != 0
                or not isinstance(buffered, io.BytesIO) or not isinstance(getattr(reader, "length", None), int)):
            return
        self.ok = True
        self._stream, self._reader, self._unreader, self.sock = stream, reader, unreader, sock
        self.length = self._reader.length

    def take_buffered(self) -> bytes:
        """The body's bytes gunicorn has read already (and so are not in the socket any more)."""
        data = self._unreader.buf.getvalue()
        head, rest = data[:self.length], data[self.length:]
        self._unreader.buf = io.BytesIO()
        self._unreader.buf.write(rest)
        self._reader.length -= len(head)
        return head

    @property
    def remaining(self) -> int:
        """Bytes of the body still in the socket (after take_buffered)."""
        return self._reader.length

    def done(self) -> None:
        self._reader.length = 0

    def failed(self) -> None:
        """The body was not read to its end: the connection must not carry another request."""
        self._stream.failed = True
