"""`pcc booked setup`: make a LibreBooking ready for PCC, idempotently. It creates the custom
attributes PCC reads and writes that are missing (a reservation's CPUs, Memory (GB),
ENT-enabled, VC Name with the images as its choices, and Status; a site's attributes; a
user's SSH public key), one resource per PCC site that has none, and fills the resources'
attributes from the sites' configuration and probes. A second run changes nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pcc.booked import plan
from pcc.booked.client import BookedClient
from pcc.booked.config import BookedConfig
from pcc.booked.connector import CONNECTOR, PCC_RESOURCE, resource_body
from pcc.booked.wire import RESERVATION, RESOURCE, USER, BookedError
from pcc.controller.service import Service

log = logging.getLogger(__name__)

CATEGORIES = (RESERVATION, USER, RESOURCE)


@dataclass
class SetupReport:
    attributes_created: list[str] = field(default_factory=list)
    attributes_updated: list[str] = field(default_factory=list)
    resources_created: list[str] = field(default_factory=list)
    resources_updated: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.attributes_created
            or self.attributes_updated
            or self.resources_created
            or self.resources_updated
        )


def attribute_body(wanted: plan.Wanted, possible_values: str | list[str]) -> dict[str, object]:
    """All twelve keys LibreBooking's attribute request needs (it refuses fewer)."""
    return {
        "label": wanted.label,
        "type": wanted.type,
        "categoryId": wanted.category,
        "regex": wanted.regex,
        "required": False,
        "possibleValues": possible_values,
        "sortOrder": wanted.sort,
        "appliesToIds": [],
        "adminOnly": wanted.admin_only,
        "isPrivate": False,
        "secondaryCategoryId": None,
        "secondaryEntityIds": [],
    }


def images_of(service: Service) -> list[str]:
    """Every image some site's probes reported (the VC Name's choices)."""
    names: set[str] = set()
    for site in service.images(CONNECTOR):
        names.update(site.images or ())
    return sorted(names)


def setup(config: BookedConfig, service: Service) -> SetupReport:
    report = SetupReport()
    images = images_of(service)
    with BookedClient(config) as client:
        existing = [a for category in CATEGORIES for a in client.attributes(category)]
        wanted = plan.wanted_attributes(config.attributes, images, config.sites_by == "attribute")
        create, update = plan.attribute_changes(existing, wanted)
        for w in create:
            values: list[str] = list(w.possible_values) if w.possible_values else []
            if w.type == plan.SELECT and not values:
                raise BookedError(
                    f"no site has reported its images yet, so {w.label!r} would have no choices: "
                    "start `pcc serve` until `pcc images` lists them, then run setup again"
                )
            client.create_attribute(attribute_body(w, values))
            report.attributes_created.append(w.label)
        for found, w in update:
            body = attribute_body(w, ",".join(w.possible_values))
            body["required"], body["sortOrder"] = bool(found.raw.get("required")), found.raw.get("sortOrder")
            body["adminOnly"] = found.admin_only
            client.update_attribute(found.id, body)
            report.attributes_updated.append(w.label)
        resources = client.resources()
        site_of = plan.sites_of(resources, config, (s.name for s in service.settings.sites))
        have = set(site_of.values())
        records = service.sites(CONNECTOR)
        for record in records:
            if record.entry.name in have:
                continue
            client.create_resource(new_resource(client, config, record.entry.name))
            report.resources_created.append(record.entry.name)
        if report.resources_created:
            resources = client.resources()
            site_of = plan.sites_of(resources, config, (s.name for s in service.settings.sites))
        by_site = {r.entry.name: r for r in records}
        for resource in resources:
            site = site_of.get(resource.id)
            if site is None:
                continue
            changes = plan.changed_values(resource, plan.resource_values(by_site[site], config.attributes))
            if changes:
                client.update_resource(resource.id, resource_body(resource, changes))
                if site not in report.resources_created:
                    report.resources_updated.append(site)
    log.info(
        "booked setup: attributes %d created, %d updated; resources %d created, %d updated",
        len(report.attributes_created),
        len(report.attributes_updated),
        len(report.resources_created),
        len(report.resources_updated),
    )
    return report


def new_resource(client: BookedClient, config: BookedConfig, site: str) -> dict[str, object]:
    """Every typed field LibreBooking's resource request needs (a missing one gives a 200
    with an empty body and a half-made row), for a resource named after the site."""
    schedules = client.schedules()
    if not schedules:
        raise BookedError("LibreBooking has no schedule to put PCC's resources on")
    default = next((s for s in schedules if s.get("isDefault")), schedules[0])
    body: dict[str, object] = {
        "name": site,
        "location": "",
        "contact": "",
        "notes": "",
        "minLength": None,
        "maxLength": None,
        "requiresApproval": False,
        "allowMultiday": True,
        "maxParticipants": None,
        "minNotice": None,
        "maxNotice": None,
        "description": f"{PCC_RESOURCE} {site}: virtual clusters booked here are started by PCC",
        "scheduleId": int(str(default.get("id"))),
        "autoAssignPermissions": True,
        "customAttributes": [],
        "sortOrder": 0,
        "statusId": 1,
        "statusReasonId": None,
        "autoReleaseMinutes": None,
        "requiresCheckIn": False,
        "color": "",
        "creditsPerSlot": None,
        "peakCreditsPerSlot": None,
        "maxConcurrentReservations": 100,
        "bufferTime": "",
        "groupIds": [],
        "icsUrl": None,
        "minNoticeAdd": "",
        "minNoticeDelete": "",
        "minNoticeUpdate": "",
        "typeId": None,
    }
    if config.sites_by == "attribute":
        found = [
            a
            for a in client.attributes(RESOURCE)
            if a.label.casefold() == config.attributes.pcc_site.casefold()
        ]
        if found:
            body["customAttributes"] = [{"attributeId": found[0].id, "attributeValue": site}]
    return body
