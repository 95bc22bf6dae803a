"""The one way this service parses XML: defusedxml, with size and shape caps."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import cast

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser
from defusedxml.ElementTree import fromstring as _defused_fromstring

from .names import PREFIXES

for _namespace, _prefix in PREFIXES.items():
    ET.register_namespace(_prefix, _namespace)


class XmlError(ValueError):
    """The document is empty, too large, malformed or uses forbidden XML features."""


def parse(data: bytes, *, max_bytes: int, max_depth: int = 64, max_elements: int = 200_000) -> ET.Element:
    if not data or not data.strip():
        raise XmlError("the request body is empty")
    if len(data) > max_bytes:
        raise XmlError(f"the XML document is larger than {max_bytes} bytes")
    with as_xml_error():
        root: ET.Element = _defused_fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    _check_shape(root, max_depth, max_elements)
    return root


def defused_parser(target: object) -> DefusedXMLParser:
    """An incremental parser (`feed`/`close`) calling `target`, refusing DTDs, entities and external references."""
    return DefusedXMLParser(target=target, forbid_dtd=True, forbid_entities=True, forbid_external=True)


@contextmanager
def as_xml_error() -> Iterator[None]:
    """Every way defusedxml and expat refuse a document, as one XmlError."""
    try:
        yield
    except XmlError:
        raise  # e.g. a cap enforced by a parser target
    except DefusedXmlException:
        raise XmlError("DTDs and entity declarations are not allowed") from None
    except ET.ParseError as error:
        raise XmlError(f"malformed XML: {error}") from None
    except (LookupError, ValueError) as error:  # e.g. an unknown encoding in the XML declaration
        raise XmlError(f"unreadable XML: {error}") from None


def _check_shape(root: ET.Element, max_depth: int, max_elements: int) -> None:
    count = 0
    stack = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        count += 1
        if depth > max_depth:
            raise XmlError(f"the XML document is nested deeper than {max_depth} levels")
        if count > max_elements:
            raise XmlError(f"the XML document has more than {max_elements} elements")
        stack.extend((child, depth + 1) for child in element)


class _RootFound(Exception):
    def __init__(self, tag: str):
        self.tag = tag


class _FirstStartTag:
    """Parser target that stops at the root element's start tag."""

    def start(self, tag: str, attrib: dict[str, str]) -> None:
        raise _RootFound(tag)


def root_tag(data: bytes) -> str:
    """The qualified tag of the root element of a possibly truncated document.

    Only the prolog and the first start tag are parsed (by defusedxml, so a DTD in
    any encoding is refused), so a truncated prefix of a large body is enough.
    Raises XmlError when no root start tag can be read.
    """
    if not data.strip():
        raise XmlError("the request body is empty")
    parser = defused_parser(_FirstStartTag())
    try:
        with as_xml_error():
            parser.feed(data)
    except _RootFound as found:
        return found.tag
    raise XmlError("malformed XML: no root element")


def text_of(element: ET.Element | None) -> str:
    if element is None:
        return ""
    return "".join(element.itertext()).strip()


def serialize(root: ET.Element) -> bytes:
    return cast(bytes, ET.tostring(root, encoding="utf-8", xml_declaration=True))
