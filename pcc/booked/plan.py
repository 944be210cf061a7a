"""What the connector should do, decided from what it read (pure): which resources are which
sites, what a booking asks for, what changed since the last poll, the attribute set PCC
needs in LibreBooking and the values a site's resource should show."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from pcc.booked.config import AttributeNames, BookedConfig
from pcc.booked.wire import (
    CHECKBOX,
    MULTILINE,
    RESERVATION,
    RESOURCE,
    SELECT,
    TEXT,
    USER,
    AttributeDef,
    Detail,
    Resource,
)
from pcc.common.errors import UserInputError
from pcc.controller.service import SiteRequest
from pcc.controller.store import SiteRecord

TRUE = ("1", "true", "yes", "on")


def sites_of(resources: Iterable[Resource], config: BookedConfig, sites: Iterable[str]) -> dict[str, str]:
    """Resource id -> PCC site, by the resource's name or by its "PCC site" attribute."""
    known = set(sites)
    out = {}
    for r in resources:
        name = r.name if config.sites_by == "name" else r.value(config.attributes.pcc_site)
        if name in known:
            out[r.id] = name
    return out


def fingerprint(resource_ids: Iterable[str], start: int, end: int) -> str:
    """What a list item says of a booking; a change means someone moved it."""
    return f"{','.join(sorted(set(resource_ids)))}|{start}|{end}"


@dataclass(frozen=True)
class Seen:
    """A fingerprint read back: the booking's resources and times when last acted on."""

    resource_ids: tuple[str, ...]
    start: int
    end: int

    @classmethod
    def parse(cls, text: str) -> Seen:
        ids, _, rest = text.partition("|")
        start, _, end = rest.partition("|")
        try:
            return cls(tuple(i for i in ids.split(",") if i), int(start), int(end))
        except ValueError:
            return cls((), 0, 0)


@dataclass(frozen=True)
class Ask:
    """A booking read as a reservation request."""

    image: str
    sites: tuple[SiteRequest, ...]
    ent: bool


def ask_of(detail: Detail, site_of: Mapping[str, str], names: AttributeNames) -> Ask:
    """The reservation a booking asks for; a UserInputError says what is missing or wrong,
    in the words of the booking form (it becomes the booking's Status)."""
    image = detail.value(names.vc_name)
    if not image:
        raise UserInputError(f"choose a {names.vc_name}")
    raw_cpus = detail.value(names.cpus)
    try:
        cpus = int(raw_cpus)
    except ValueError:
        raise UserInputError(f"{names.cpus} must be a whole number, got {raw_cpus[:20]!r}") from None
    raw_memory = detail.value(names.memory) or "1"
    try:
        memory = float(raw_memory)
    except ValueError:
        raise UserInputError(f"{names.memory} must be a number, got {raw_memory[:20]!r}") from None
    if cpus <= 0 or not math.isfinite(memory) or memory <= 0:
        raise UserInputError(f"{names.cpus} and {names.memory} must be more than 0")
    sites = [site_of[r] for r in detail.resource_ids if r in site_of]
    if not sites:
        raise UserInputError("none of the booked resources is a PCC site")
    ent = detail.value(names.ent).lower() in TRUE
    return Ask(image, tuple(SiteRequest(s, cpus, memory) for s in sites), ent)


# -- the attributes PCC needs ----------------------------------------------------------------------
@dataclass(frozen=True)
class Wanted:
    label: str
    category: int
    type: int
    possible_values: tuple[str, ...] = ()
    admin_only: bool = False
    regex: str = ""
    sort: int = 0


def wanted_attributes(names: AttributeNames, images: Sequence[str], by_attribute: bool) -> list[Wanted]:
    """Every custom attribute PCC reads or writes. Status and the resources' live figures are
    admin-only: PCC writes them, users read them."""
    out = [
        Wanted(names.cpus, RESERVATION, TEXT, regex=r"/^([0-9]{1,4})?$/", sort=1),
        Wanted(names.memory, RESERVATION, TEXT, regex=r"/^([0-9]{1,5}(\.[0-9]+)?)?$/", sort=2),
        Wanted(names.ent, RESERVATION, CHECKBOX, sort=3),
        Wanted(names.vc_name, RESERVATION, SELECT, tuple(sorted(images)), sort=4),
        Wanted(names.status, RESERVATION, TEXT, admin_only=True, sort=5),
        Wanted(names.ssh_key, USER, MULTILINE, sort=1),
    ]
    resource = [
        names.pragma_version,
        names.temp_dir,
        names.username,
        names.available_cpus,
        names.available_memory,
        names.deployment_type,
        names.hostname,
        names.health,
    ]
    out += [Wanted(label, RESOURCE, TEXT, admin_only=True, sort=i + 1) for i, label in enumerate(resource)]
    out.append(Wanted(names.site_ent, RESOURCE, CHECKBOX, admin_only=True, sort=len(resource) + 1))
    if by_attribute:
        out.append(Wanted(names.pcc_site, RESOURCE, TEXT, admin_only=True, sort=0))
    return out


def attribute_changes(
    existing: Iterable[AttributeDef], wanted: Iterable[Wanted]
) -> tuple[list[Wanted], list[tuple[AttributeDef, Wanted]]]:
    """Which wanted attributes are missing (to create), and which exist with other choices
    (a select whose possible values must change: the images)."""
    by_key = {(a.category, a.label.casefold()): a for a in existing}
    create, update = [], []
    for w in wanted:
        found = by_key.get((w.category, w.label.casefold()))
        if found is None:
            create.append(w)
        elif w.type == SELECT and tuple(sorted(found.possible_values)) != tuple(sorted(w.possible_values)):
            update.append((found, w))
    return create, update


def resource_values(record: SiteRecord, names: AttributeNames) -> dict[str, str]:
    """The values a site's resource shows: what it is, and its figures as of the last probe."""
    site = record.entry
    free_cpus = max(site.cpus - record.reserved_cpus, 0)
    free_memory = max(site.memory_gb - record.reserved_memory_gb, 0.0)
    health = record.health + (f": {record.reason}" if record.reason else "")
    return {
        names.pragma_version: record.pragma_version,
        names.temp_dir: record.staging_dir,
        names.username: site.user,
        names.available_cpus: str(free_cpus),
        names.available_memory: f"{free_memory:g}",
        names.deployment_type: site.deployment_type,
        names.site_ent: "1" if site.ent else "0",
        names.hostname: site.host,
        names.health: health[:500],
    }


def changed_values(resource: Resource, wanted: Mapping[str, str]) -> dict[str, str]:
    """The wanted values the resource does not show yet (a checkbox's unset is "0"), of the
    attributes it has (`pcc booked setup` creates them)."""
    out = {}
    for label, value in wanted.items():
        if label not in resource.attributes:
            continue
        current = resource.value(label)
        if current != value and not (value == "0" and current == ""):
            out[label] = value
    return out
