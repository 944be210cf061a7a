"""The controller's service layer: the only door. Every interface (the CLI, the REST API,
the web page, the LibreBooking connector) calls these typed methods, reads included, on
behalf of an :class:`Actor`; authorization lives here. The service validates at the
boundary, admits against the calendar and writes the store. It never talks to HTCondor or
to a site: the reconcile loop and the jobs do, and the probes keep the image catalog and
site health it reads."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pcc.common.errors import Conflict, Forbidden, NotFound, UserInputError
from pcc.common.keys import normalize_public_key
from pcc.common.names import IMAGE_NAME
from pcc.controller.admission import Booking, admit
from pcc.controller.model import TERMINAL, Allocation, Event, IllegalTransition, Reservation, State, User
from pcc.controller.settings import Settings
from pcc.controller.store import SiteRecord, Store

log = logging.getLogger(__name__)

USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\Z")


@dataclass(frozen=True)
class Actor:
    """Who asks. A user sees and changes only their own reservations; an admin all of them.
    The operator's CLI on the controller's host (which owns the store) is an admin."""

    name: str
    admin: bool = False

    def may_see(self, res: Reservation) -> bool:
        return self.admin or res.owner == self.name


@dataclass(frozen=True)
class SiteRequest:
    site: str
    cpus: int
    memory_gb: float

    @classmethod
    def parse(cls, text: str) -> SiteRequest:
        """``NAME:CPUS[:MEM_GB]``"""
        parts = text.split(":")
        if len(parts) not in (2, 3):
            raise UserInputError(f"--site {text!r}: expected NAME:CPUS[:MEM_GB]")
        try:
            cpus = int(parts[1])
            mem = float(parts[2]) if len(parts) == 3 else 1.0
        except ValueError:
            raise UserInputError(
                f"--site {text!r}: CPUS must be a whole number and MEM_GB a number"
            ) from None
        return cls(parts[0], cpus, mem)


@dataclass(frozen=True)
class SiteImages:
    """A site's image catalog as its probes last saw it (``images`` None: never reported)."""

    site: str
    images: tuple[str, ...] | None
    updated: float | None


class Service:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        store.sync_sites(settings.sites)

    # -- users ---------------------------------------------------------------------------------
    def add_user(self, actor: Actor, name: str, email: str = "", ssh_key: str = "") -> User:
        self._admin_only(actor, "add users")
        if not USER_NAME.match(name):
            raise UserInputError(f"invalid user name {name!r}")
        if email and not EMAIL.match(email):
            raise UserInputError(f"invalid email address {email!r}")
        user = User(name, email, normalize_public_key(ssh_key, f"key of {name}") if ssh_key else "")
        if self.store.user(name) is not None:
            raise Conflict(f"user {name!r} already exists")
        self.store.add_user(user)
        log.info("user %s added by %s", name, actor.name)
        return user

    def users(self, actor: Actor) -> list[User]:
        self._admin_only(actor, "list users")
        return self.store.users()

    def user(self, actor: Actor, name: str) -> User:
        if not (actor.admin or actor.name == name):
            raise NotFound(f"no user {name!r}")
        found = self.store.user(name)
        if found is None:
            raise NotFound(f"no user {name!r}")
        return found

    # -- reads ---------------------------------------------------------------------------------
    def reservations(self, actor: Actor, state: State | None = None, mine: bool = False) -> list[Reservation]:
        """A user's own reservations; an admin's view is everyone's unless ``mine``."""
        owner = actor.name if (mine or not actor.admin) else None
        rows = self.store.reservations(owner)
        return [r for r in rows if state is None or r.state is state]

    def reservation(self, actor: Actor, rid: str) -> Reservation:
        """One reservation; someone else's is refused like a missing one."""
        res = self.store.find_reservation(rid)
        if res is None or not actor.may_see(res):
            raise NotFound(f"no reservation {rid!r}")
        return res

    def events(self, actor: Actor, rid: str) -> list[Event]:
        return self.store.events(self.reservation(actor, rid).id)

    def sites(self, actor: Actor) -> list[SiteRecord]:
        """Every configured site with its last probe's health (any user may see sites)."""
        return self.store.site_records(self.settings.sites)

    def site(self, actor: Actor, name: str) -> SiteRecord:
        site = self.settings.site(name, NotFound)
        return self.store.site_records([site])[0]

    def images(self, actor: Actor) -> list[SiteImages]:
        """Each site's image catalog as the probes keep it; never asks a site."""
        out = []
        for site in self.settings.sites:
            found = self.store.site_catalog(site.name)
            out.append(SiteImages(site.name, *found) if found else SiteImages(site.name, None, None))
        return out

    # -- reservations ------------------------------------------------------------------------
    def reserve(
        self,
        actor: Actor,
        image: str,
        sites: Sequence[SiteRequest],
        begin: int,
        end: int,
        *,
        title: str = "",
        ssh_key: str = "",
        owner: str | None = None,
        now: float | None = None,
    ) -> Reservation:
        """Admit and store a reservation. The calendar check and the insert are one SQLite
        ``BEGIN IMMEDIATE`` transaction: two admissions never both take the last CPUs."""
        now = time.time() if now is None else now
        owner = owner or actor.name
        if owner != actor.name and not actor.admin:
            raise Forbidden(f"{actor.name} may not reserve for {owner}")
        if not USER_NAME.match(owner):
            raise UserInputError(f"invalid user name {owner!r}")
        if not IMAGE_NAME.match(image):
            raise UserInputError(f"invalid image name {image!r}")
        if len(title) > 200 or any(ord(c) < 32 for c in title):
            raise UserInputError("a title is at most 200 printable characters")
        if not sites:
            raise UserInputError("name at least one site (--site NAME:CPUS[:MEM_GB])")
        if end <= begin:
            raise UserInputError("the reservation must end after it begins")
        if begin < now - 60:
            raise UserInputError("the reservation begins in the past")
        names = [s.site for s in sites]
        if len(set(names)) != len(names):
            raise UserInputError(f"a site may appear once per reservation, got {names}")
        user = self.store.user(owner)
        key = ssh_key or (user.ssh_key if user else "")
        if not key:
            raise UserInputError(f"no SSH key for {owner}: pass --key FILE or add one with `pcc users add`")
        key = normalize_public_key(key, "--key")
        for req in sites:
            site = self.settings.site(req.site)
            if req.cpus <= 0 or not math.isfinite(req.memory_gb) or req.memory_gb <= 0:
                raise UserInputError(
                    f"site {site.name}: CPUs and memory must be > 0 "
                    f"(got {req.cpus} CPUs, {req.memory_gb:g} GB)"
                )
            if req.cpus > site.cpus or req.memory_gb > site.memory_gb:
                raise UserInputError(
                    f"site {site.name} has {site.cpus} CPUs and {site.memory_gb:g} GB in all; "
                    f"asked {req.cpus} CPUs and {req.memory_gb:g} GB"
                )
            self._check_image(site.name, image)
        res = Reservation(
            id="",
            owner=owner,
            title=title,
            image=image,
            begin=begin,
            end=end,
            created=int(now),
            ssh_key=key,
            allocations=tuple(Allocation("", s.site, s.cpus, s.memory_gb) for s in sites),
        )
        with self.store.immediate():
            for req in sites:
                self._admit(req.site, Booking(begin, end, req.cpus, req.memory_gb))
            saved = self.store.add_reservation(res)
        log.info("reservation %s admitted for %s: %s at %s", saved.id, owner, image, ", ".join(names))
        return saved

    def cancel(self, actor: Actor, rid: str) -> Reservation:
        res = self.reservation(actor, rid)
        if res.cancelled or all(a.state in TERMINAL for a in res.allocations):
            raise Conflict(f"reservation {rid} is already {res.state}")
        self.store.cancel(rid)
        for alloc in res.allocations:
            if alloc.state in (State.REQUESTED, State.SCHEDULED) and alloc.id is not None:
                # It may have started booting meanwhile: then the DAG's removal tears it down.
                with contextlib.suppress(IllegalTransition):
                    self.store.transition(alloc.id, State.CANCELLED, f"cancelled by {actor.name}")
        log.info("reservation %s cancelled by %s", rid, actor.name)
        return self.store.reservation(rid)

    def extend(self, actor: Actor, rid: str, until: int) -> Reservation:
        """Move the end later; the calendar is checked again (a Conflict says what collides)."""
        self.reservation(actor, rid)
        with self.store.immediate():  # read, check and write as one step
            res = self.store.reservation(rid)
            if res.cancelled or all(a.state in TERMINAL for a in res.allocations):
                raise Conflict(f"reservation {rid} is {res.state}; it cannot be extended")
            if until <= res.end:
                raise UserInputError("an extension must move the end later")
            for alloc in res.allocations:
                self._admit(alloc.site, Booking(res.begin, until, alloc.cpus, alloc.memory_gb), exclude=rid)
            self.store.set_end(rid, until)
        log.info("reservation %s extended to %s by %s", rid, until, actor.name)
        return self.store.reservation(rid)

    # -- helpers -------------------------------------------------------------------------------
    def _admit(self, site_name: str, new: Booking, exclude: str | None = None) -> None:
        """Raise a Conflict (a CapacityError) naming the site, the interval and the shortfall."""
        site = self.settings.site(site_name)
        existing = [
            Booking(r.begin, r.end, a.cpus, a.memory_gb)
            for a, r in self.store.bookings_at(site.name, exclude)
        ]
        admit(site.name, site.cpus, site.memory_gb, existing, new)

    def _check_image(self, site_name: str, image: str) -> None:
        """Is ``image`` in the site's repository, as its probes last reported it?"""
        found = self.store.site_catalog(site_name)
        if found is None:
            raise UserInputError(
                f"site {site_name} has not reported its images yet (no probe has answered); "
                "try again once `pcc sites` shows it up"
            )
        images, _updated = found
        if image not in images:
            known = ", ".join(images) or "none"
            raise UserInputError(f"unknown image {image!r} at site {site_name} (it has: {known})")

    @staticmethod
    def _admin_only(actor: Actor, what: str) -> None:
        if not actor.admin:
            raise Forbidden(f"only an admin may {what}")
