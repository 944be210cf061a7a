"""The controller's service layer: what the CLI (and later the API and web page) may ask for.
It validates at the boundary, admits against the calendar, and writes the store; HTCondor
and the sites are reached by the reconcile loop and the jobs, never from here."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pcc.calendar import Booking, admit
from pcc.errors import PccError, UserInputError
from pcc.model import TERMINAL, Allocation, IllegalTransition, Reservation, State, User
from pcc.settings import Settings
from pcc.site.context import normalize_public_key
from pcc.site.names import IMAGE_NAME
from pcc.store import Store

log = logging.getLogger(__name__)

USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
IMAGE_CACHE_S = 300.0
EMAIL = re.compile(r"^[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,253}\Z")
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?\Z")


def parse_time(text: str, now: float | None = None) -> int:
    """ISO 8601 (naive means UTC), ``now``, or ``now+DURATION``; epoch seconds."""
    now = time.time() if now is None else now
    text = text.strip()
    if text == "now":
        return int(now)
    if text.startswith("now+"):
        return int(now + parse_duration(text[4:]))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserInputError(
            f"not a time: {text!r} (use ISO 8601 like 2026-12-01T09:00Z, or now+15m)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def parse_duration(text: str) -> int:
    match = _DURATION.match(text.strip())
    if not text.strip() or not match or not any(match.groups()):
        raise UserInputError(f"not a duration: {text!r} (use e.g. 90m, 2h, 1d12h, 30s)")
    d, h, m, s = (int(g or 0) for g in match.groups())
    return int(timedelta(days=d, hours=h, minutes=m, seconds=s).total_seconds())


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


class Service:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        store.sync_sites(settings.sites)

    # -- users ---------------------------------------------------------------------------------
    def add_user(self, name: str, email: str, ssh_key: str) -> User:
        if not USER_NAME.match(name):
            raise UserInputError(f"invalid user name {name!r}")
        if email and not EMAIL.match(email):
            raise UserInputError(f"invalid email address {email!r}")
        user = User(name, email, normalize_public_key(ssh_key, f"key of {name}") if ssh_key else "")
        self.store.add_user(user)
        return user

    # -- reservations ------------------------------------------------------------------------
    def reserve(self, *args: Any, **kwargs: Any) -> Reservation:
        """Admit and store a reservation; one admission at a time, across processes."""
        with self._admission():
            return self._reserve(*args, **kwargs)

    def _reserve(
        self,
        owner: str,
        image: str,
        sites: list[SiteRequest],
        begin: int,
        end: int,
        title: str = "",
        ssh_key: str = "",
        now: float | None = None,
    ) -> Reservation:
        now = time.time() if now is None else now
        if not USER_NAME.match(owner):
            raise UserInputError(f"invalid user name {owner!r}")
        if not IMAGE_NAME.match(image):
            raise UserInputError(f"invalid image name {image!r}")
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
            if req.cpus <= 0 or req.memory_gb <= 0:
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
            existing = [
                Booking(r.begin, r.end, a.cpus, a.memory_gb)
                for a, r in self.store.bookings_at(site.name)
                if not r.cancelled
            ]
            admit(
                site.name, site.cpus, site.memory_gb, existing, Booking(begin, end, req.cpus, req.memory_gb)
            )
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
        saved = self.store.add_reservation(res)
        log.info("reservation %s admitted: %s at %s", saved.id, image, ", ".join(names))
        return saved

    def cancel(self, rid: str, by: str | None = None) -> Reservation:
        res = self.store.reservation(rid)
        self._owner_check(res, by)
        if all(a.state in TERMINAL for a in res.allocations):
            raise UserInputError(f"reservation {rid} is already {res.state}")
        self.store.cancel(rid)
        for alloc in res.allocations:
            if alloc.state in (State.REQUESTED, State.SCHEDULED) and alloc.id is not None:
                # It may have started booting meanwhile: then the DAG's removal tears it down.
                with contextlib.suppress(IllegalTransition):
                    self.store.transition(alloc.id, State.CANCELLED, f"cancelled by {by or res.owner}")
        log.info("reservation %s cancelled", rid)
        return self.store.reservation(rid)

    def extend(self, rid: str, until: int, by: str | None = None) -> Reservation:
        with self._admission():
            return self._extend(rid, until, by)

    def _extend(self, rid: str, until: int, by: str | None = None) -> Reservation:
        res = self.store.reservation(rid)
        self._owner_check(res, by)
        if res.cancelled or all(a.state in TERMINAL for a in res.allocations):
            raise UserInputError(f"reservation {rid} is {res.state}; it cannot be extended")
        if until <= res.end:
            raise UserInputError("an extension must move the end later")
        for alloc in res.allocations:
            site = self.settings.site(alloc.site)
            existing = [
                Booking(r.begin, r.end, a.cpus, a.memory_gb)
                for a, r in self.store.bookings_at(site.name, exclude=rid)
                if not r.cancelled
            ]
            admit(
                site.name,
                site.cpus,
                site.memory_gb,
                existing,
                Booking(res.begin, until, alloc.cpus, alloc.memory_gb),
            )
        self.store.set_end(rid, until)
        log.info("reservation %s extended to %s", rid, until)
        return self.store.reservation(rid)

    def _check_image(self, site_name: str, image: str) -> None:
        """Is ``image`` in the site's repository? Asks the site (bounded by the SSH timeout)
        unless it answered within IMAGE_CACHE_S. A site that cannot be asked and never answered
        does not block a reservation (its boot will report), but a known catalog is enforced."""
        images = self.store.site_images(site_name, max_age=IMAGE_CACHE_S)
        if images is None:
            from pcc.sitelink import run_pragma

            t = self.settings.timings
            try:
                result = run_pragma(
                    self.settings.site(site_name),
                    ["list", "repository"],
                    timeout=t.ssh_timeout_s,
                    connect_timeout=t.ssh_timeout_s,
                )
                if result.ok:
                    images = [i["name"] for i in result.result or []]
                    self.store.set_site_images(site_name, images)
            except PccError as exc:
                log.warning("site %s: cannot list its images (%s); using what it last said", site_name, exc)
            if images is None:
                images = self.store.site_images(site_name, max_age=None)
        if images is not None and image not in images:
            known = ", ".join(sorted(images)) or "none"
            raise UserInputError(f"unknown image {image!r} at site {site_name} (it has: {known})")

    @contextlib.contextmanager
    def _admission(self) -> Iterator[None]:
        """Check the calendar and write as one step, across processes (an exclusive lock)."""
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.settings.state_dir / "admission.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _owner_check(res: Reservation, by: str | None) -> None:
        if by is not None and by != res.owner:
            raise UserInputError(f"reservation {res.id} belongs to {res.owner}")
