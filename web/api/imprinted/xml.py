"""XML for the Imprinted dialect: a safe reader (XML → plain dict) and a writer (dict → XML).

Reading uses defusedxml with the DTD forbidden outright, so there is no entity expansion
(billion laughs), no external entity and no external DTD; the body size is already bounded by
the app's `client_max_size`, and nesting is bounded here. The result has the shape the JSON
parser gives, so one validator serves both formats: an element with children is an object,
`<items>` is a list of its `<item>` children, a leaf is its text.
"""

from __future__ import annotations

import re
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped]

MAX_DEPTH = 8
LISTS = {"items": "item", "orders": "order"}  # list key -> element name of each entry
# Characters XML 1.0 cannot carry at all (even escaped).
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


class XmlError(ValueError):
    """The body is not XML we accept; the message says why (for a 400)."""


def parse(raw: bytes, root: str) -> dict[str, Any]:
    try:
        element: Element = fromstring(
            raw, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DefusedXmlException as exc:
        raise XmlError(
            f"forbidden XML construct ({type(exc).__name__}): DTDs and entities are not accepted"
        ) from None
    except ParseError as exc:
        raise XmlError(f"malformed XML: {exc}") from None
    except (ValueError, LookupError, RecursionError) as exc:  # e.g. an unknown encoding
        raise XmlError(f"malformed XML: {exc}") from None
    if element.tag != root:
        raise XmlError(f"the root element must be <{root}>, not <{str(element.tag)[:40]}>")
    value = _value(element, 1)
    if isinstance(value, str):
        if value:
            raise XmlError(f"<{root}> must contain elements, not text")
        return {}
    if not isinstance(value, dict):
        raise XmlError(f"<{root}> must contain fields, not a list")
    return value


def _value(element: Element, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise XmlError(f"XML nested deeper than {MAX_DEPTH} levels")
    children = list(element)
    text = (element.text or "").strip()
    if not children:
        return text
    if text or any((c.tail or "").strip() for c in children):
        raise XmlError(f"<{element.tag}> mixes text and elements")
    name = LISTS.get(str(element.tag))
    if name is not None:
        out: list[Any] = []
        for child in children:
            if child.tag != name:
                raise XmlError(
                    f"<{element.tag}> may only contain <{name}> elements, "
                    f"not <{str(child.tag)[:40]}>"
                )
            out.append(_value(child, depth + 1))
        return out
    fields: dict[str, Any] = {}
    for child in children:
        tag = str(child.tag)
        if tag in fields:
            raise XmlError(f"<{tag}> appears more than once in <{element.tag}>")
        fields[tag] = _value(child, depth + 1)
    return fields


# -- writing ----------------------------------------------------------------------------


def _escape(text: str) -> str:
    text = XML_ILLEGAL.sub("\ufffd", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _name(key: str) -> str:
    return key if XML_NAME.fullmatch(key) else "field"


def _write(out: list[str], name: str, value: Any) -> None:
    if value is None or value == {} or value == []:
        out.append(f"<{name}/>")
        return
    out.append(f"<{name}>")
    if isinstance(value, dict):
        for k, v in value.items():
            _write(out, _name(str(k)), v)
    elif isinstance(value, list):
        entry = LISTS.get(name, "item")
        for v in value:
            _write(out, entry, v)
    elif isinstance(value, bool):
        out.append("true" if value else "false")
    else:
        out.append(_escape(str(value)))
    out.append(f"</{name}>")


def render(root: str, value: Any) -> bytes:
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n']
    _write(out, root, value)
    out.append("\n")
    return "".join(out).encode("utf-8")
