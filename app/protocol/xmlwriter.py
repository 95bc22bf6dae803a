"""Serializing a document piece by piece: the root's start tag, each child, the root's end tag.

Namespaces known when the root is written (ours from names.PREFIXES and those the source declared
on its root) are declared once on the root. Any other namespace gets a prefix that stays the same
for the whole document and is declared on each child of the root that uses it, since later
children cannot see a declaration made inside an earlier one.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from .names import PREFIXES, split_qn
from .xmlstream import RootStart

XML_NAMESPACE = "http://www.w3.org/XML/1998/namespace"  # bound to `xml:` by definition, never declared


class StreamWriter:
    def __init__(self, preferred: dict[str, str] = PREFIXES, hints: dict[str, str] | None = None):
        """`preferred`: URI -> prefix always used; `hints`: URI -> prefix the source used (may grow)."""
        self._root_prefixes = dict(preferred)
        self._other_prefixes: dict[str, str] = {}
        self._taken = set(preferred.values()) | {"xml", "xmlns"}
        self._hints = hints if hints is not None else {}
        self._names: dict[str, tuple[str, str | None]] = {}  # name -> (qualified name, URI to declare per child)
        self._root_name = ""

    def start(self, root: RootStart) -> bytes:
        for prefix, uri in root.namespaces.items():
            if uri and uri not in self._root_prefixes:
                self._root_prefixes[uri] = self._free_prefix(prefix)
        for name in (root.tag, *root.attrib):
            uri, _ = split_qn(name)
            if uri and uri != XML_NAMESPACE and uri not in self._root_prefixes:
                self._root_prefixes[uri] = self._free_prefix(self._hints.get(uri, ""))
        self._root_name = self._name(root.tag)[0]
        declarations = "".join(f' xmlns:{prefix}="{_attribute(uri)}"' for uri, prefix in self._root_prefixes.items())
        attributes = self._attributes(root.attrib, set())
        return f"<?xml version='1.0' encoding='utf-8'?>\n<{self._root_name}{attributes}{declarations}>".encode()

    def element(self, element: ET.Element) -> bytes:
        """One child of the root, complete, with the declarations it needs."""
        parts: list[str] = []
        local: set[str] = set()
        self._write(element, parts, local)
        if local:
            declarations = "".join(f' xmlns:{self._other_prefixes[uri]}="{_attribute(uri)}"' for uri in sorted(local))
            parts[0] += declarations
        return "".join(parts).encode("utf-8")

    def end(self) -> bytes:
        return f"</{self._root_name}>\n".encode()

    def _write(self, element: ET.Element, parts: list[str], local: set[str]) -> None:
        name, uri = self._names.get(element.tag) or self._name(element.tag)
        if uri:
            local.add(uri)
        parts.append(f"<{name}{self._attributes(element.attrib, local)}" if element.attrib else f"<{name}")
        if element.text or len(element):
            parts.append(">")
            if element.text:
                parts.append(_text(element.text))
            for child in element:
                self._write(child, parts, local)
            parts.append(f"</{name}>")
        else:
            parts.append(" />")
        if element.tail:
            parts.append(_text(element.tail))

    def _attributes(self, attrib: dict[str, str], local: set[str]) -> str:
        parts = []
        for key, value in attrib.items():
            name, uri = self._names.get(key) or self._name(key)
            if uri:
                local.add(uri)
            parts.append(f' {name}="{_attribute(value)}"')
        return "".join(parts)

    def _name(self, name: str) -> tuple[str, str | None]:
        """(qualified name, the URI when it must be declared on the child of the root that uses it)."""
        uri, local = split_qn(name)
        entry: tuple[str, str | None]
        if not uri:
            entry = (local, None)
        elif uri == XML_NAMESPACE:
            entry = (f"xml:{local}", None)
        elif uri in self._root_prefixes:
            entry = (f"{self._root_prefixes[uri]}:{local}", None)
        else:
            if uri not in self._other_prefixes:
                self._other_prefixes[uri] = self._free_prefix(self._hints.get(uri, ""))
            entry = (f"{self._other_prefixes[uri]}:{local}", uri)
        self._names[name] = entry
        return entry

    def _free_prefix(self, wanted: str) -> str:
        prefix, n = wanted, 0
        while not prefix or prefix in self._taken or prefix.lower().startswith("xml"):
            prefix, n = f"ns{n}", n + 1
        self._taken.add(prefix)
        return prefix


def _text(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:  # a literal CR would be read back as a newline
        text = text.replace("\r", "&#13;")
    return text


def _attribute(value: str) -> str:
    value = _text(value)
    if '"' in value:
        value = value.replace('"', "&quot;")
    if "\n" in value or "\t" in value:  # attribute-value normalization would turn them into spaces
        value = value.replace("\n", "&#10;").replace("\t", "&#9;")
    return value
