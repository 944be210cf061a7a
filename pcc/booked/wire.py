"""LibreBooking's web-services documents as typed records, read defensively: every value
from LibreBooking is checked on the way in, and anything unusable is a :class:`BookedError`
(the poll that read it fails and the next one tries again; nothing is half-applied).

LibreBooking's habits these readers absorb: ids are numbers or strings (``"4"``), times are
ISO 8601 with a ``+0000`` offset in the session user's zone, custom attributes are a list
of ``{id, label, value}`` (``value`` null when unset), a reservation's ``resources`` is an
object keyed by resource id (or a list), and list items carry no custom attributes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pcc.common.errors import PccError, TemporaryError

ID = re.compile(r"^[0-9]{1,12}\Z")
REFERENCE = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")
MAX_TEXT = 20_000  # longer than any key or label PCC needs; more is not a value PCC takes

# custom attribute categories and types (LibreBooking's CustomAttributeCategory, ...Type)
RESERVATION, USER, RESOURCE = 1, 2, 4
TEXT, MULTILINE, SELECT, CHECKBOX = 1, 2, 3, 4


class BookedError(TemporaryError):
    """LibreBooking is unreachable or answered something PCC cannot use; retried next poll."""


class BookedRefused(PccError):
    """LibreBooking understood a request and refused it (its messages say why)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def text(doc: Mapping[str, Any], key: str, what: str, default: str | None = None) -> str:
    value = doc.get(key, default)
    if value is None and default is not None:
        value = default
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BookedError(f"{what}: {key!r} is missing or not text")
    value = str(value)
    if len(value) > MAX_TEXT:
        raise BookedError(f"{what}: {key!r} is longer than {MAX_TEXT} characters")
    return value


def ident(doc: Mapping[str, Any], key: str, what: str) -> str:
    value = text(doc, key, what)
    if not ID.match(value):
        raise BookedError(f"{what}: {key!r} is not an id: {value[:40]!r}")
    return value


def when(doc: Mapping[str, Any], key: str, what: str) -> int:
    value = text(doc, key, what)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BookedError(f"{what}: {key!r} is not an ISO 8601 time: {value[:40]!r}") from None
    if moment.tzinfo is None:
        raise BookedError(f"{what}: {key!r} has no time zone: {value[:40]!r}")
    return int(moment.timestamp())


def mapping(doc: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise BookedError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    return doc


def items(doc: Mapping[str, Any], key: str, what: str) -> list[Mapping[str, Any]]:
    value = doc.get(key)
    if value is None:
        return []
    if isinstance(value, Mapping):  # PHP arrays keyed by id come out as objects
        value = list(value.values())
    if not isinstance(value, list):
        raise BookedError(f"{what}: {key!r} is not a list")
    return [mapping(v, f"{what}: {key}[]") for v in value]


@dataclass(frozen=True)
class Attribute:
    """A custom attribute's value on an entity (``value`` None: unset)."""

    id: str
    label: str
    value: str | None


def attributes(doc: Mapping[str, Any], what: str) -> dict[str, Attribute]:
    """An entity's custom attributes by label (case as LibreBooking has it)."""
    out = {}
    for item in items(doc, "customAttributes", what):
        value = item.get("value")
        out[text(item, "label", what)] = Attribute(
            ident(item, "id", what),
            text(item, "label", what),
            None if value is None else text(item, "value", what),
        )
    return out


@dataclass(frozen=True)
class AttributeDef:
    """A custom attribute's definition (``GET /Attributes/Category/{id}``)."""

    id: str
    label: str
    category: int
    type: int
    possible_values: tuple[str, ...]
    admin_only: bool
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def read(cls, doc: Any, category: int) -> AttributeDef:
        doc = mapping(doc, "attribute")
        what = f"attribute {doc.get('label', '?')!r}"
        raw_values = doc.get("possibleValues") or []
        if isinstance(raw_values, str):
            raw_values = [v for v in raw_values.split(",") if v]
        if not isinstance(raw_values, list):
            raise BookedError(f"{what}: 'possibleValues' is not a list")
        return cls(
            id=ident(doc, "id", what),
            label=text(doc, "label", what),
            category=category,
            type=int(text(doc, "type", what)) if str(doc.get("type", "")).isdigit() else 0,
            possible_values=tuple(str(v) for v in raw_values),
            admin_only=bool(doc.get("adminOnly")),
            raw=doc,
        )


@dataclass(frozen=True)
class Listed:
    """A booking as ``GET /Reservations/`` lists it: no custom attributes."""

    reference: str
    resource_id: str
    start: int
    end: int
    user_id: str

    @classmethod
    def read(cls, doc: Any) -> Listed:
        doc = mapping(doc, "reservation list item")
        reference = text(doc, "referenceNumber", "reservation list item")
        what = f"reservation {reference[:64]!r}"
        if not REFERENCE.match(reference):
            raise BookedError(f"{what}: not a reference number")
        return cls(
            reference,
            ident(doc, "resourceId", what),
            when(doc, "startDate", what),
            when(doc, "endDate", what),
            ident(doc, "userId", what),
        )


@dataclass(frozen=True)
class Detail:
    """One booking in full (``GET /Reservations/{ref}``), kept whole for a full update."""

    reference: str
    resource_ids: tuple[str, ...]
    start: int
    end: int
    owner_id: str
    title: str
    attributes: dict[str, Attribute]
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def read(cls, doc: Any) -> Detail:
        doc = mapping(doc, "reservation")
        reference = text(doc, "referenceNumber", "reservation")
        what = f"reservation {reference[:64]!r}"
        if not REFERENCE.match(reference):
            raise BookedError(f"{what}: not a reference number")
        owner = mapping(doc.get("owner"), f"{what}: owner")
        resources = tuple(ident(r, "id", what) for r in items(doc, "resources", what))
        if not resources and doc.get("resourceId") is not None:
            resources = (ident(doc, "resourceId", what),)
        return cls(
            reference=reference,
            resource_ids=resources,
            start=when(doc, "startDate", what),
            end=when(doc, "endDate", what),
            owner_id=ident(owner, "userId", what),
            title=text(doc, "title", what, ""),
            attributes=attributes(doc, what),
            raw=doc,
        )

    def value(self, label: str) -> str:
        found = self.attributes.get(label)
        return (found.value or "").strip() if found else ""


@dataclass(frozen=True)
class Resource:
    id: str
    name: str
    attributes: dict[str, Attribute]
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def read(cls, doc: Any) -> Resource:
        doc = mapping(doc, "resource")
        what = f"resource {doc.get('name', '?')!r}"
        return cls(ident(doc, "resourceId", what), text(doc, "name", what), attributes(doc, what), doc)

    def value(self, label: str) -> str:
        found = self.attributes.get(label)
        return (found.value or "").strip() if found else ""


@dataclass(frozen=True)
class Person:
    """A LibreBooking user (``GET /Users/{id}``)."""

    id: str
    username: str
    email: str
    attributes: dict[str, Attribute]

    @classmethod
    def read(cls, doc: Any) -> Person:
        doc = mapping(doc, "user")
        what = f"user {doc.get('id', '?')!r}"
        return cls(
            ident(doc, "id", what),
            text(doc, "userName", what),
            text(doc, "emailAddress", what, ""),
            attributes(doc, what),
        )

    def value(self, label: str) -> str:
        found = self.attributes.get(label)
        return (found.value or "").strip() if found else ""
