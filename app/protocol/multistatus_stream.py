"""A multistatus rewritten one <response> at a time as it streams through.

Memory stays bounded by one <response> (capped) plus buffers, whatever the size of the answer:
each response is parsed, edited, serialized and dropped before the next one is read.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator, Iterable

from .names import D_RESPONSE, DAV, qn
from .xmlsafe import XmlError
from .xmlstream import Item, RootStart, TopLevelReader
from .xmlwriter import StreamWriter

D_MULTISTATUS = qn(DAV, "multistatus")
MAX_DEPTH = 128
MAX_RESPONSE_ELEMENTS = 20_000
MAX_RESPONSE_BYTES = 4 * 1024 * 1024


def rewrite_multistatus(
    chunks: Iterable[bytes], edit: Callable[[ET.Element], None], *, max_bytes: int
) -> Generator[bytes, None, None]:
    """The serialized multistatus of `chunks` with every <response> passed through `edit` first.

    Yields after each input chunk that completed something, so output follows input. Raises
    XmlError (from wherever it stops) when the document is malformed, uses DTDs or entities,
    breaks a cap, or is not a DAV:multistatus.
    """
    reader = TopLevelReader(
        max_bytes=max_bytes,
        max_depth=MAX_DEPTH,
        max_child_elements=MAX_RESPONSE_ELEMENTS,
        max_child_bytes=MAX_RESPONSE_BYTES,
    )
    writer = StreamWriter(hints=reader.prefix_hints)
    for data in chunks:
        output = _serialize(reader.feed(data), writer, edit)
        if output:
            yield output
    yield _serialize(reader.close(), writer, edit) + writer.end()


def _serialize(items: list[Item], writer: StreamWriter, edit: Callable[[ET.Element], None]) -> bytes:
    parts = []
    for item in items:
        if isinstance(item, RootStart):
            if item.tag != D_MULTISTATUS:
                raise XmlError(f"expected a DAV:multistatus, got {item.tag}")
            parts.append(writer.start(item))
            continue
        if item.tag == D_RESPONSE:
            edit(item)
        parts.append(writer.element(item))
    return b"".join(parts)
