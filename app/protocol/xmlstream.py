"""Reading a large XML document one child of the root at a time, with bounded memory.

Bytes are fed as they arrive; each child of the root element comes out as its own small tree once
its end tag has been read, and nothing of it is kept afterwards, so memory is bounded by one child
(plus the parser's buffers) whatever the size of the document. Parsing goes through defusedxml
(no DTDs, entities or external references) and every cap raises XmlError.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from .xmlsafe import XmlError, as_xml_error, defused_parser

MAX_NAMES = 10_000  # distinct element/attribute names and namespaces in one document (see TopLevelReader)


@dataclass(frozen=True)
class RootStart:
    """The root's start tag: the first item a reader returns."""

    tag: str
    attrib: dict[str, str]
    namespaces: dict[str, str] = field(default_factory=dict)  # prefix -> URI declared on the root


Item = RootStart | ET.Element  # what a reader returns: the root's start, then its finished children


class TopLevelReader:
    """`feed(data)` returns what the data completed: the RootStart, then finished children in order.

    Caps: `max_bytes` in all, `max_depth` levels, and per child of the root `max_child_elements`
    elements and `max_child_bytes` bytes (measured from its start tag, to within one fed chunk).
    `max_names` bounds the distinct element/attribute names and namespaces: the parser memoizes
    every name it meets, so a document of unique names would otherwise grow memory outside any child.
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        max_depth: int = 128,
        max_child_elements: int = 20_000,
        max_child_bytes: int = 4 * 1024 * 1024,
        max_names: int = MAX_NAMES,
    ):
        self._max_bytes = max_bytes
        self._max_child_bytes = max_child_bytes
        self._fed = 0
        self._target = _Children(max_depth, max_child_elements, max_names)
        self._parser = defused_parser(self._target)
        self._target.expat = self._parser.parser

    @property
    def prefix_hints(self) -> dict[str, str]:
        """URI -> the first prefix the document declared for it (grows as the document is read)."""
        return self._target.prefix_hints

    def feed(self, data: bytes) -> list[Item]:
        self._fed += len(data)
        if self._fed > self._max_bytes:
            raise XmlError(f"the XML document is larger than {self._max_bytes} bytes")
        with as_xml_error():
            self._parser.feed(data)
        target = self._target
        if target.builder is not None and self._fed - target.child_start > self._max_child_bytes:
            raise XmlError(f"an element of the XML document is larger than {self._max_child_bytes} bytes")
        return target.take()

    def close(self) -> list[Item]:
        """The last items; raises XmlError if the document is incomplete."""
        with as_xml_error():
            self._parser.close()
        return self._target.take()


class _Children:
    """Parser target: one TreeBuilder per child of the root, nothing kept outside the open child."""

    def __init__(self, max_depth: int, max_child_elements: int, max_names: int):
        self._max_depth = max_depth
        self._max_child_elements = max_child_elements
        self._max_names = max_names
        self.expat: Any = None  # the expat parser, for byte positions
        self.prefix_hints: dict[str, str] = {}
        self.builder: ET.TreeBuilder | None = None
        self.child_start = 0
        self._items: list[Item] = []
        self._depth = 0
        self._elements = 0
        self._names: set[str] = set()
        self._root_namespaces: dict[str, str] = {}

    def take(self) -> list[Item]:
        items, self._items = self._items, []
        return items

    def start_ns(self, prefix: str, uri: str) -> None:
        self._note(uri)
        if self._depth == 0:
            self._root_namespaces[prefix] = uri
        if prefix:
            self.prefix_hints.setdefault(uri, prefix)

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        self._depth += 1
        if self._depth > self._max_depth:
            raise XmlError(f"the XML document is nested deeper than {self._max_depth} levels")
        self._note(tag)
        for name in attrib:
            self._note(name)
        if self._depth == 1:
            self._items.append(RootStart(tag, dict(attrib), self._root_namespaces))
            return
        if self._depth == 2:
            self.builder = ET.TreeBuilder()
            self.child_start = self.expat.CurrentByteIndex
            self._elements = 0
        self._elements += 1
        if self._elements > self._max_child_elements:
            raise XmlError(f"an element of the XML document has more than {self._max_child_elements} elements")
        assert self.builder is not None  # set at depth 2, cleared when back at depth 1
        self.builder.start(tag, attrib)

    def end(self, tag: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            return
        assert self.builder is not None  # set at depth 2, cleared when back at depth 1
        self.builder.end(tag)
        if self._depth == 1:
            self._items.append(self.builder.close())
            self.builder = None

    def data(self, text: str) -> None:
        if self.builder is not None:  # text directly in the root (whitespace between children) is dropped
            self.builder.data(text)

    def _note(self, name: str) -> None:
        if name not in self._names:
            self._names.add(name)
            if len(self._names) > self._max_names:
                raise XmlError(f"the XML document uses more than {self._max_names} distinct names")
