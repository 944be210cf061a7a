"""The connector job: each poll reads LibreBooking's bookings of PCC resources and, through
the service, makes them reservations (as their owners: admission, policies and
authorization apply as for anyone), follows their changes and deletions, and writes PCC's
state back into each booking's Status attribute and each site's figures into its resource.

Every step is idempotent and recorded when it succeeds: a booking is linked to its
reservation in the transaction that admits it, a Status is recorded once LibreBooking took
it. A poll that fails half way (LibreBooking down, an answer PCC cannot read) leaves what it
did recorded and what it did not for the next poll; the reconcile loop never waits for it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pcc.booked import plan
from pcc.booked.client import BookedClient
from pcc.booked.config import BookedConfig, describe
from pcc.booked.status import rejected_text, rejection_reason, status_text
from pcc.booked.wire import BookedError, BookedRefused, Detail, Listed, Resource
from pcc.common.errors import Conflict, NotFound, UserInputError
from pcc.common.timefmt import iso
from pcc.controller.model import TERMINAL, BookedLink, Reservation, State
from pcc.controller.service import Actor, Service

log = logging.getLogger(__name__)

VERIFY_EVERY = 10  # every this many polls, live bookings' Status is read back and restored
FINAL = ("Stopped", "Failed")  # Status texts of reservations in a final state
START_SLACK_S = 60  # a start this recent is still the booking's own (the service's slack too)
LOOKBACK_S = 3600.0  # bookings that began this long ago are still listed (and followed)
CONNECTOR = Actor("booked-connector", admin=True)
PCC_RESOURCE = "PCC site"  # how the description of a resource `pcc booked setup` made begins


@dataclass
class PollReport:
    """What one poll did (for logs, `pcc booked sync` and tests)."""

    bookings: int = 0
    created: list[str] = field(default_factory=list)  # reservation ids
    rejected: list[str] = field(default_factory=list)  # booking references
    moved: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    statuses: int = 0  # Status attributes written
    resources: int = 0  # resources whose figures were written
    problems: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(
            self.created or self.rejected or self.moved or self.cancelled or self.statuses or self.resources
        )


def live(res: Reservation) -> bool:
    return not res.cancelled and any(a.state not in TERMINAL for a in res.allocations)


class Connector:
    def __init__(
        self,
        config: BookedConfig,
        service: Service,
        client: Callable[[BookedConfig], BookedClient] = BookedClient,
    ) -> None:
        self.config = config
        self.service = service
        self.names = config.attributes
        self._client = client
        self.polls = 0  # polls made by this connector (serve keeps one for its lifetime)

    def poll(self, now: float | None = None) -> PollReport:
        """One pass over LibreBooking. Raises BookedError when LibreBooking cannot be read
        (the job logs it; the next poll retries); a booking PCC cannot take is Rejected."""
        now = time.time() if now is None else now
        self.polls += 1
        report = PollReport()
        with self._client(self.config) as client:
            resources = client.resources()
            site_of = plan.sites_of(resources, self.config, (s.name for s in self.service.settings.sites))
            listed: dict[str, list[Listed]] = {}
            for item in client.bookings(now - LOOKBACK_S, now + self.config.lookahead_s):
                if item.resource_id in site_of:
                    listed.setdefault(item.reference, []).append(item)
            report.bookings = len(listed)
            links = self.service.booked_links(CONNECTOR)
            for reference, group in listed.items():
                self._follow(client, reference, group, links.get(reference), site_of, now, report)
            for reference, link in links.items():
                if reference not in listed and link.reservation:
                    self._gone_from_list(client, link, site_of, now, report)
            self._write_statuses(client, report)
            self._write_figures(client, resources, site_of, report)
        if report.changed or report.problems:
            log.info(
                "booked: %d bookings; %d reservations made, %d rejected, %d ends moved, %d cancelled; "
                "%d statuses and %d resources written%s",
                report.bookings,
                len(report.created),
                len(report.rejected),
                len(report.moved),
                len(report.cancelled),
                report.statuses,
                report.resources,
                f"; problems: {'; '.join(report.problems)[:300]}" if report.problems else "",
            )
        return report

    # -- one booking --------------------------------------------------------------------------------
    def _follow(
        self,
        client: BookedClient,
        reference: str,
        group: list[Listed],
        link: BookedLink | None,
        site_of: Mapping[str, str],
        now: float,
        report: PollReport,
    ) -> None:
        first = group[0]
        seen = plan.fingerprint((g.resource_id for g in group), first.start, first.end)
        if link is None or link.reservation is None:
            # New, or not admitted before: read it whole and try again (capacity may have
            # freed, the user may have fixed the form), until it has begun: then its Status
            # keeps the reason it was refused while it could still have been admitted.
            if link is not None and link.rejected and first.start < now - START_SLACK_S:
                return
            detail = client.booking(reference)
            if detail is not None:
                self._admit(client, detail, site_of, now, report)
            return
        if link.fingerprint == seen:
            return
        detail = client.booking(reference)
        if detail is not None:
            self._changed(detail, link, site_of, now, report)

    def _gone_from_list(
        self,
        client: BookedClient,
        link: BookedLink,
        site_of: Mapping[str, str],
        now: float,
        report: PollReport,
    ) -> None:
        """A linked booking the list no longer shows: deleted, moved out of the window, or
        ended. Only LibreBooking's own answer for it decides."""
        assert link.reservation is not None
        try:
            res = self.service.reservation(CONNECTOR, link.reservation)
        except NotFound:
            return
        if not live(res):
            return
        detail = client.booking(link.reference)
        if detail is None:
            self._cancel(res, link, "the booking was deleted in LibreBooking", report)
        elif _seen(detail, site_of) != link.fingerprint:
            self._changed(detail, link, site_of, now, report)

    def _admit(
        self, client: BookedClient, detail: Detail, site_of: Mapping[str, str], now: float, report: PollReport
    ) -> None:
        reference = detail.reference
        seen = _seen(detail, site_of)
        before = self.service.booked_links(CONNECTOR).get(reference)
        try:
            person = client.person(detail.owner_id)
            ask = plan.ask_of(detail, site_of, self.names)
            key = person.value(self.names.ssh_key)
            user = self.service.calendar_user(CONNECTOR, person.username, person.email, key)
            res = self.service.reserve(
                Actor(user.name),
                ask.image,
                ask.sites,
                # Begun already (PCC was down): the rest of its window.
                detail.start if detail.start >= now - START_SLACK_S else int(now),
                detail.end,
                title="".join(
                    c if c.isprintable() else " " for c in detail.title or f"LibreBooking {reference}"
                )[:200],
                ssh_key=key,
                now=now,
                booking=reference,
            )
        except (UserInputError, Conflict) as exc:
            reason = rejection_reason(exc)
            if before is not None and (before.rejected, before.fingerprint) == (reason, seen):
                return  # refused again, for the same reason: nothing to say
            self.service.record_booked(CONNECTOR, reference, fingerprint=seen, rejected=reason)
            report.rejected.append(reference)
            log.info("booked %s: rejected: %s", reference, reason)
            return
        self.service.record_booked(CONNECTOR, reference, fingerprint=seen, rejected="")
        report.created.append(res.id)
        log.info(
            "booked %s: reservation %s for %s (%s at %s)",
            reference,
            res.id,
            res.owner,
            res.image,
            ", ".join(a.site for a in res.allocations),
        )

    def _changed(
        self, detail: Detail, link: BookedLink, site_of: Mapping[str, str], now: float, report: PollReport
    ) -> None:
        """Someone moved a linked booking. A new end moves the reservation's end; a new start
        or other resources, before the cluster boots, make it a new reservation."""
        assert link.reservation is not None
        res = self.service.reservation(CONNECTOR, link.reservation)
        owner = Actor(res.owner)
        seen = _seen(detail, site_of)
        same_sites = sorted(site_of[r] for r in detail.resource_ids if r in site_of) == sorted(
            a.site for a in res.allocations
        )
        refused = ""
        before = plan.Seen.parse(link.fingerprint)
        if detail.start != before.start or not same_sites:
            if res.state in (State.REQUESTED, State.SCHEDULED):
                self._cancel(res, link, "the booking moved in LibreBooking; booked again", report)
                self.service.record_booked(CONNECTOR, link.reference, reservation=None, status="")
                return  # the next poll books it again, as new
            refused = "a cluster that has begun booting keeps its start and sites"
        elif detail.end != res.end:
            try:
                self.service.move_end(owner, res.id, detail.end, now=now)
                report.moved.append(res.id)
                log.info("booked %s: reservation %s now ends at %s", link.reference, res.id, iso(detail.end))
            except (UserInputError, Conflict) as exc:
                refused = f"the end could not move: {rejection_reason(exc)}"
        if refused:
            log.info("booked %s: %s", link.reference, refused)
        self.service.record_booked(CONNECTOR, link.reference, fingerprint=seen, rejected=refused, status="")

    def _cancel(self, res: Reservation, link: BookedLink, why: str, report: PollReport) -> None:
        try:
            self.service.cancel(Actor(res.owner), res.id)
        except Conflict:
            return  # it ended meanwhile
        report.cancelled.append(res.id)
        log.info("booked %s: reservation %s cancelled: %s", link.reference, res.id, why)

    # -- writing back -------------------------------------------------------------------------------
    def desired_status(self, link: BookedLink) -> str | None:
        if link.reservation is None:
            return rejected_text(link.rejected) if link.rejected else None
        try:
            res = self.service.reservation(CONNECTOR, link.reservation)
        except NotFound:
            return None
        text = status_text(res)
        if link.rejected:
            text += f" ({link.rejected})"
        return text

    def _write_statuses(self, client: BookedClient, report: PollReport) -> None:
        """Write each booking's Status where PCC's state moved on since the last write; every
        VERIFY_EVERY polls, read back the live ones too: LibreBooking lets a booking's owner
        change or clear the attribute, so what PCC wrote is checked, not trusted."""
        verify = self.polls % VERIFY_EVERY == 0
        for link in self.service.booked_links(CONNECTOR).values():
            if link.status.startswith(FINAL):
                continue  # its reservation is over for good: its Status never changes again
            wanted = self.desired_status(link)
            if wanted is None or (wanted == link.status and not (verify and link.reservation)):
                continue
            try:
                detail = client.booking(link.reference)
                if detail is not None and detail.value(self.names.status) != wanted:
                    if wanted == link.status:
                        log.info(
                            "booked %s: its Status was changed there; PCC's is written again", link.reference
                        )
                    attribute = detail.attributes.get(self.names.status)
                    if attribute is None:
                        raise UserInputError(
                            f"the booking has no {self.names.status!r} attribute: run `pcc booked setup`"
                        )
                    client.update_booking(link.reference, update_body(detail, {attribute.id: wanted}))
                    report.statuses += 1
            except (BookedRefused, UserInputError) as exc:
                report.problems.append(f"{link.reference}: status not written: {exc}")
                continue
            self.service.record_booked(CONNECTOR, link.reference, status=wanted)

    def _write_figures(
        self, client: BookedClient, resources: list[Resource], site_of: Mapping[str, str], report: PollReport
    ) -> None:
        records = {r.entry.name: r for r in self.service.sites(CONNECTOR)}
        for resource in resources:
            site = site_of.get(resource.id)
            if site is None or site not in records:
                continue
            changes = plan.changed_values(resource, plan.resource_values(records[site], self.names))
            if not changes:
                continue
            try:
                client.update_resource(resource.id, resource_body(resource, changes))
                report.resources += 1
            except BookedRefused as exc:
                report.problems.append(f"resource {resource.name}: figures not written: {exc}")


def _seen(detail: Detail, site_of: Mapping[str, str]) -> str:
    """A booking's fingerprint as its list items give it: its PCC resources and times."""
    return plan.fingerprint((r for r in detail.resource_ids if r in site_of), detail.start, detail.end)


def update_body(detail: Detail, values: Mapping[str, str]) -> dict[str, object]:
    """The full body of ``POST /Reservations/{ref}?updateScope=full`` that keeps the booking
    as it is but for the attribute ``values`` (by attribute id): LibreBooking replaces the
    whole reservation, so everything it has is sent back."""
    raw = detail.raw
    # Unset (or empty) attributes are left out: an empty value would meet their format check.
    attributes = {a.id: a.value for a in detail.attributes.values() if a.value}
    attributes.update(values)
    resources = list(detail.resource_ids)
    body: dict[str, object] = {
        "resourceId": resources[0],
        "resources": resources[1:],
        "startDateTime": raw.get("startDate"),
        "endDateTime": raw.get("endDate"),
        "title": raw.get("title") or "",
        "description": raw.get("description") or "",
        "userId": detail.owner_id,
        "customAttributes": [{"attributeId": k, "attributeValue": v} for k, v in attributes.items()],
        "participants": _ids(raw.get("participants")),
        "invitees": _ids(raw.get("invitees")),
        "allowParticipation": bool(raw.get("allowParticipation")),
        "termsAccepted": True,
    }
    for key in ("startReminder", "endReminder", "accessories", "recurrenceRule"):
        if raw.get(key):
            body[key] = raw[key]
    return body


def resource_body(resource: Resource, values: Mapping[str, str]) -> dict[str, object]:
    """The full body of ``POST /Resources/{id}``: the resource as it is, the attributes
    (by label) changed."""
    body = {
        k: v
        for k, v in resource.raw.items()
        if k not in ("links", "message", "customAttributes", "resourceId")
    }
    attributes = {a.id: (a.value or "") for a in resource.attributes.values()}
    for label, value in values.items():
        found = resource.attributes.get(label)
        if found is not None:
            attributes[found.id] = value
    body["customAttributes"] = [{"attributeId": k, "attributeValue": v} for k, v in attributes.items()]
    # LibreBooking's GET does not say whether new users get permission for the resource, and
    # an update without it says no. A resource PCC made keeps yes; others are the site's to set.
    body["autoAssignPermissions"] = str(resource.raw.get("description") or "").startswith(PCC_RESOURCE)
    return body


def _ids(value: object) -> list[object]:
    if isinstance(value, list):
        return [v.get("userId") if isinstance(v, dict) else v for v in value]
    return []


def run_connector(connector: Connector) -> PollReport | None:
    """The scheduled job's body: LibreBooking down or answering garbage is one warning (the
    next poll retries); anything else is for serve's guard to log with its traceback."""
    log.debug("booked: polling %s", describe(connector.config))
    try:
        return connector.poll()
    except (BookedError, BookedRefused) as exc:
        log.warning("booked: LibreBooking cannot be read (%s); the next poll retries", exc)
        return None
