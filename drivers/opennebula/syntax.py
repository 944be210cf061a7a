"""OpenNebula's template syntax (``NAME = "value"``, ``NAME = [ KEY = "value", ... ]``),
written so that no value can break out of its quotes.

OpenNebula's lexer (``src/parsers/template_parser.l``) reads a double-quoted value as any
run of characters other than ``"``, where the two characters ``\\"`` stand for a quote
(``template_syntax.y`` unescapes exactly that pair and nothing else). So a value is safe
once every ``"`` is written ``\\"`` — with two exceptions that cannot be written at all:

* a value ending in a backslash (its closing quote would read as an escaped one and the
  value would swallow what follows);
* ``]]>`` anywhere (the lexer turns such a line into a CDATA token and refuses the
  template).

Control characters other than tab and newline cannot travel in XML-RPC either. Such
values are refused with :class:`TemplateValueError`; free text (user-data, vc-out.xml)
goes base64-encoded, so it never comes near these rules.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pcc.common.errors import DriverError

NAME = re.compile(r"^[A-Z][A-Z0-9_]*\Z")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class TemplateValueError(DriverError):
    """A value that OpenNebula's template syntax cannot carry."""


def quote(value: str | int | float) -> str:
    """``value`` as a double-quoted template string OpenNebula reads back unchanged."""
    text = str(value)
    if text.endswith("\\"):
        raise TemplateValueError(f"an OpenNebula template value cannot end in a backslash: {text[-40:]!r}")
    if "]]>" in text:
        raise TemplateValueError(f"an OpenNebula template value cannot contain ']]>': {text[:40]!r}")
    if _CONTROL.search(text):
        raise TemplateValueError(
            f"an OpenNebula template value cannot hold control characters: {text[:40]!r}"
        )
    return '"' + text.replace('"', '\\"') + '"'


def b64(text: str) -> str:
    """Free text for a template value: base64 has none of the characters the syntax reserves."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _name(name: str) -> str:
    if not NAME.match(name):
        raise TemplateValueError(f"not an OpenNebula attribute name: {name!r}")
    return name


Value = str | int | float


@dataclass
class Template:
    """An ordered OpenNebula template: single attributes and vector attributes (a name may
    repeat, as ``NIC`` and ``DISK`` do)."""

    items: list[tuple[str, Value | Mapping[str, Value]]] = field(default_factory=list)

    def set(self, name: str, value: Value) -> Template:
        self.items.append((_name(name), value))
        return self

    def vector(self, name: str, values: Mapping[str, Value]) -> Template:
        if not values:
            raise TemplateValueError(f"vector attribute {name} is empty")
        self.items.append((_name(name), {_name(k): v for k, v in values.items()}))
        return self

    def extend(self, items: Iterable[tuple[str, Value | Mapping[str, Value]]]) -> Template:
        for name, value in items:
            if isinstance(value, Mapping):
                self.vector(name, value)
            else:
                self.set(name, value)
        return self

    def render(self) -> str:
        lines = []
        for name, value in self.items:
            if isinstance(value, Mapping):
                inner = ",\n".join(f"  {_name(k)} = {quote(v)}" for k, v in value.items())
                lines.append(f"{name} = [\n{inner} ]")
            else:
                lines.append(f"{name} = {quote(value)}")
        return "\n".join(lines) + "\n"
