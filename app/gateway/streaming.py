"""Sending an upstream body that is rewritten on the fly.

The first CHUNK of output is produced before the status line goes out, so a small answer is
checked whole (an unreadable one still gets a 502, and a Content-Length). A larger one is sent
chunked as it is produced; if it turns out unreadable later, the connection is dropped so the
client sees a broken answer instead of a silently short one (a sync client would take missing
resources for deleted ones).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from ..core.logs import log
from ..protocol.xmlsafe import XmlError
from .answer import Answer
from .upstream import CHUNK, UpstreamUnavailable, reading_answer
from .upstream_http import Response

logger = logging.getLogger("davpush.gateway")


class StreamAborted(Exception):
    """Raised into the WSGI server after the status line was sent: it then drops the connection."""


def upstream_body(upstream_response: Response) -> Iterator[bytes]:
    """The decoded body, whatever has arrived at a time; read failures as UpstreamUnavailable."""
    while True:
        with reading_answer():
            data = upstream_response.read1(CHUNK)
        if not data:
            return
        yield data
        if upstream_response.complete:
            return
        # Rewriting a large answer is CPU work between reads that may not block: give other
        # requests (webhooks, health checks) a turn after each chunk under gevent (and the GIL
        # a hint with threads).
        time.sleep(0)


def respond(upstream_response: Response, output: Iterator[bytes], *, status: int, headers: list, content_type: str,
            unreadable: str, path: str) -> Answer:
    """A response of `output` (a generator over upstream_response's body), which is closed on every path.

    XmlError before anything is sent: a 502 with the text `unreadable`. UpstreamUnavailable before
    anything is sent propagates (the gateway answers 502/504).
    """
    head, size = [], 0
    try:
        for data in output:
            head.append(data)
            size += len(data)
            if size >= CHUNK:
                break
        else:
            upstream_response.close()
            body = b"".join(head)
            return Answer(status, [*headers, ("Content-Type", content_type), ("Content-Length", str(len(body)))],
                          [body])
    except XmlError as error:
        upstream_response.close()
        log(logger, logging.WARNING, "unreadable upstream answer", path=path, error=str(error))
        return Answer.text(502, unreadable)
    except BaseException:
        upstream_response.close()
        raise
    # on_close: also when the body is never iterated
    return Answer(status, [*headers, ("Content-Type", content_type)], _stream(head, output, upstream_response, path),
                  on_close=upstream_response.close)


def _stream(head: list[bytes], output: Iterator[bytes], upstream_response: Response, path: str) -> Iterator[bytes]:
    try:
        yield from head
        head.clear()
        try:
            yield from output
        except (XmlError, UpstreamUnavailable) as error:
            log(logger, logging.WARNING, "aborting a streamed answer: upstream's became unreadable",
                path=path, error=str(error))
            raise StreamAborted(str(error)) from None
    finally:
        close = getattr(output, "close", None)
        if close is not None:
            close()
        upstream_response.close()
