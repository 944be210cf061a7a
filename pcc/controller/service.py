"""The controller's service layer: the only door. Every interface (the CLI, the REST API,
the web page, the LibreBooking connector) calls these typed methods, reads included, on
behalf of an :class:`Actor`; authorization lives here. The service validates at the
boundary, admits against the calendar and writes the store. It never talks to HTCondor or
to a site: the reconcile loop and the jobs do, and the probes keep the image catalog and
site health it reads."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pcc.common.errors import CapacityError, Conflict, Forbidden, NotFound, Unauthenticated, UserInputError
from pcc.common.keys import normalize_public_key
from pcc.common.names import IMAGE_NAME
from pcc.common.timefmt import iso
from pcc.controller import accounts
from pcc.controller.accounts import TokenInfo
from pcc.controller.admission import Booking, admit
from pcc.controller.model import (
    TERMINAL,
    Allocation,
    BookedLink,
    Event,
    IllegalTransition,
    Reservation,
    State,
    User,
)
from pcc.controller.settings import Settings
from pcc.controller.slots import SiteDemand, Step, Window, earliest_windows, free_steps
from pcc.controller.store import SiteRecord, Store

log = logging.getLogger(__name__)

USER_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
MAX_SPAN_S = 366 * 86_400  # the longest window a calendar question may cover, and a reservation
MAX_AHEAD_S = 10 * 365 * 86_400  # how far ahead a reservation may begin
MAX_TOKEN_S = 10 * 365 * 86_400  # the longest lifetime a token may be given (or none: no expiry)
BOOKING_REF = re.compile(r"^[A-Za-z0-9._-]{1,64}\Z")  # LibreBooking's reference numbers
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
    def __init__(self, settings: Settings, store: Store, sync_sites: bool = True) -> None:
        self.settings = settings
        self.store = store
        if sync_sites:  # (the API's per-thread services share the one `pcc serve` synced)
            store.sync_sites(settings.sites)

    # -- users -------------------------------------------------------------------------------
    def add_user(
        self, actor: Actor, name: str, email: str = "", ssh_key: str = "", admin: bool = False
    ) -> User:
        self._admin_only(actor, "add users")
        if not USER_NAME.match(name):
            raise UserInputError(
                f"invalid user name {name!r} (lower-case letters, digits, '_' and '-'; at most 32)"
            )
        user = User(name, self._email(email), self._key(ssh_key, name), admin)
        if self.store.user(name) is not None:
            raise Conflict(f"user {name!r} already exists")
        self.store.add_user(user)
        log.info("user %s added by %s%s", name, actor.name, " (admin)" if admin else "")
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

    def update_user(
        self,
        actor: Actor,
        name: str,
        *,
        email: str | None = None,
        ssh_key: str | None = None,
        admin: bool | None = None,
        password: str | None = None,
    ) -> User:
        """Change a user's email, key or password (the user or an admin) or role (an admin,
        never their own: an admin cannot lock the last door behind them by mistake)."""
        current = self.user(actor, name)
        fields: dict[str, object] = {}
        if email is not None:
            fields["email"] = self._email(email)
        if ssh_key is not None:
            fields["ssh_key"] = self._key(ssh_key, name)
        if admin is not None and admin != current.admin:
            self._admin_only(actor, "change roles")
            if name == actor.name:
                raise Forbidden("an admin cannot change their own role; ask another admin")
            fields["admin"] = admin
        if password is not None:
            fields["password_hash"] = accounts.hash_password(password)
        self.store.update_user(name, **fields)
        if "password_hash" in fields or fields.get("admin") is False:
            self.store.delete_sessions_of(name)  # a new password (or role) logs out old sessions
        if fields:
            log.info("user %s: %s changed by %s", name, ", ".join(sorted(fields)), actor.name)
        return self.user(actor, name)

    def set_password(self, actor: Actor, name: str, password: str) -> User:
        return self.update_user(actor, name, password=password)

    # -- credentials: web sessions and API tokens -------------------------------------------
    def login(self, name: str, password: str, now: float | None = None) -> tuple[str, User]:
        """Check a password; return a new web session's secret id (shown once) and the user.
        A wrong name and a wrong password are the same :class:`Unauthenticated`."""
        now = time.time() if now is None else now
        stored = self.store.password_hash(name) if USER_NAME.match(name) else None
        if not accounts.verify_password(stored or "", password) or stored is None:
            log.info("web login refused for %r", name[:40])
            raise Unauthenticated("wrong user name or password")
        user = self.store.user(name)
        assert user is not None
        secret = accounts.new_session_id()
        self.store.add_session(accounts.digest(secret), name, now, now + self.settings.api.session_s)
        log.info("user %s logged in to the web page", name)
        return secret, user

    def session(self, secret: str, now: float | None = None) -> Actor:
        """The actor of a web session (Unauthenticated when unknown or expired)."""
        now = time.time() if now is None else now
        name = self.store.session_user(accounts.digest(secret), now) if secret else None
        return self._actor_of(name, "your session has ended; log in again")

    def logout(self, secret: str) -> None:
        if secret:
            self.store.delete_session(accounts.digest(secret))

    def create_token(
        self,
        actor: Actor,
        user: str | None = None,
        expires_in: float | None = None,
        label: str = "",
        now: float | None = None,
    ) -> tuple[str, TokenInfo]:
        """A new API token for ``user`` (default: the actor; someone else's needs an admin).
        Returns the token, which is never shown again, and what may be shown of it."""
        now = time.time() if now is None else now
        owner = user or actor.name
        if owner != actor.name:
            self._admin_only(actor, "create tokens for others")
        self.user(actor, owner)
        if expires_in is not None and (not math.isfinite(expires_in) or expires_in <= 0):
            raise UserInputError("a token's lifetime must be > 0")
        if expires_in is not None and expires_in > MAX_TOKEN_S:
            raise UserInputError(f"a token's lifetime is at most {MAX_TOKEN_S // 86_400} days (or none)")
        if len(label) > 100 or any(ord(c) < 32 for c in label):
            raise UserInputError("a token's label is at most 100 printable characters")
        token = accounts.new_token()
        expires = now + expires_in if expires_in is not None else None
        tid = self.store.add_token(owner, accounts.digest(token), label, now, expires)
        log.info("token %d created for %s by %s", tid, owner, actor.name)
        info = self.store.token(tid)
        assert info is not None
        return token, info

    def tokens(self, actor: Actor, user: str | None = None) -> list[TokenInfo]:
        """A user's own tokens; an admin's view is everyone's (or ``user``'s)."""
        if user and user != actor.name:
            self._admin_only(actor, "list others' tokens")
        return self.store.tokens(user or (None if actor.admin else actor.name))

    def revoke_token(self, actor: Actor, token_id: int) -> TokenInfo:
        found = self.store.token(token_id)
        if found is None or not (actor.admin or found.user == actor.name):
            raise NotFound(f"no token {token_id}")
        if found.revoked is None:
            self.store.revoke_token(token_id, time.time())
            log.info("token %d of %s revoked by %s", token_id, found.user, actor.name)
        revoked = self.store.token(token_id)
        assert revoked is not None
        return revoked

    def authenticate(self, token: str, now: float | None = None) -> Actor:
        """The actor an API token stands for; unknown, expired or revoked: Unauthenticated."""
        now = time.time() if now is None else now
        info = self.store.token_by_digest(accounts.digest(token)) if token else None
        if info is None or not info.valid_at(now):
            raise Unauthenticated("missing, unknown, expired or revoked token")
        if info.last_used is None or now - info.last_used > 60:  # one write a minute at most
            self.store.touch_token(info.id, now)
        return self._actor_of(info.user, "missing, unknown, expired or revoked token")

    def _actor_of(self, name: str | None, message: str) -> Actor:
        user = self.store.user(name) if name else None
        if user is None:
            raise Unauthenticated(message)
        return Actor(user.name, user.admin)

    @staticmethod
    def _email(email: str) -> str:
        if email and not EMAIL.match(email):
            raise UserInputError(f"invalid email address {email!r}")
        return email

    @staticmethod
    def _key(ssh_key: str, name: str) -> str:
        return normalize_public_key(ssh_key, f"key of {name}") if ssh_key else ""

    # -- reads ---------------------------------------------------------------------------------
    def reservations(self, actor: Actor, state: State | None = None, mine: bool = False) -> list[Reservation]:
        """A user's own reservations; an admin's view is everyone's unless ``mine``."""
        owner = actor.name if (mine or not actor.admin) else None
        rows = self.store.reservations(owner)
        return [r for r in rows if state is None or r.state is state]

    def revision(self) -> int:
        """Changes whenever any reservation does (see :meth:`Store.revision`): what the API's
        cached listings are keyed by."""
        return self.store.revision()

    def reservation(self, actor: Actor, rid: str) -> Reservation:
        """One reservation; someone else's is refused like a missing one."""
        res = self.store.find_reservation(rid)
        if res is None or not actor.may_see(res):
            raise NotFound(f"no reservation {rid!r}")
        return res

    def calendar(self, actor: Actor, begin: int, end: int) -> list[Reservation]:
        """Every reservation overlapping ``[begin, end)``, as a shared schedule shows them
        (Booked's does too): the actor's own (an admin: all) in full; others' with only what
        a calendar shows (title, owner, window, state, CPUs and memory per site) and none
        of their keys, addresses or reasons."""
        if end <= begin:
            raise UserInputError("the calendar's end must be after its beginning")
        return [r if actor.may_see(r) else _public(r) for r in self.store.reservations_between(begin, end)]

    def events(self, actor: Actor, rid: str) -> list[Event]:
        return self.store.events(self.reservation(actor, rid).id)

    def sites(self, actor: Actor, now: float | None = None) -> list[SiteRecord]:
        """Every configured site with its last probe's health and what reservations hold of
        it now (any user may see sites)."""
        return [self._usage(r, now) for r in self.store.site_records(self.settings.sites)]

    def site(self, actor: Actor, name: str, now: float | None = None) -> SiteRecord:
        site = self.settings.site(name, NotFound)
        return self._usage(self.store.site_records([site])[0], now)

    def site_history(self, actor: Actor, name: str, limit: int = 50) -> list[Event]:
        """A site's health changes, newest first."""
        self.settings.site(name, NotFound)
        return self.store.site_events(name, limit)

    def _usage(self, record: SiteRecord, now: float | None) -> SiteRecord:
        at = time.time() if now is None else now
        held = [b for b in self._bookings(record.entry.name) if b.begin <= at < b.end]
        return dataclasses.replace(
            record,
            reserved_cpus=sum(b.cpus for b in held),
            reserved_memory_gb=sum(b.memory_gb for b in held),
        )

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
        booking: str | None = None,
    ) -> Reservation:
        """Admit and store a reservation. The calendar check and the insert are one SQLite
        ``BEGIN IMMEDIATE`` transaction: two admissions never both take the last CPUs.

        ``booking``, a LibreBooking reference number, links the reservation to that booking
        in the same transaction; a booking already linked gets its reservation back instead
        of a second one (so a repeated or concurrent poll never reserves twice)."""
        now = time.time() if now is None else now
        res = self._proposed(actor, image, sites, begin, end, title, ssh_key, owner, now)
        try:
            with self.store.immediate():
                link = self.store.booked_link(booking) if booking else None
                if link is not None and link.reservation:
                    return self.store.reservation(link.reservation)
                self._admit_all(sites, begin, end)
                saved = self.store.add_reservation(res)
                if booking:
                    self.store.put_booked_link(booking, reservation=saved.id, rejected="")
        except CapacityError as exc:
            raise self._with_next_window(exc, sites, begin, end) from None
        names = ", ".join(s.site for s in sites)
        log.info("reservation %s admitted for %s: %s at %s", saved.id, res.owner, image, names)
        return saved

    def check_fit(
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
    ) -> None:
        """A dry run of :meth:`reserve`: the same validation and admission, nothing stored.
        Returns when the request fits now; raises what ``reserve`` would (a CapacityError
        carries the next window that fits)."""
        now = time.time() if now is None else now
        self._proposed(actor, image, sites, begin, end, title, ssh_key, owner, now)
        try:
            self._admit_all(sites, begin, end)
        except CapacityError as exc:
            raise self._with_next_window(exc, sites, begin, end) from None

    def _proposed(
        self,
        actor: Actor,
        image: str,
        sites: Sequence[SiteRequest],
        begin: int,
        end: int,
        title: str,
        ssh_key: str,
        owner: str | None,
        now: float,
    ) -> Reservation:
        """The reservation a request asks for, validated (not yet admitted nor stored)."""
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
        if end - begin > MAX_SPAN_S:
            raise UserInputError(f"a reservation lasts at most {MAX_SPAN_S // 86_400} days")
        if begin > now + MAX_AHEAD_S:
            raise UserInputError(f"a reservation begins at most {MAX_AHEAD_S // 86_400} days from now")
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
        return Reservation(
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

    def _admit_all(self, sites: Sequence[SiteRequest], begin: int, end: int) -> None:
        for req in sites:
            self._admit(req.site, Booking(begin, end, req.cpus, req.memory_gb))

    def _with_next_window(
        self, exc: CapacityError, sites: Sequence[SiteRequest], begin: int, end: int
    ) -> CapacityError:
        found = self._windows(sites, end - begin, begin, None, 1)
        return CapacityError(exc.reason, next_window=found[0] if found else None)

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
        if until <= self.reservation(actor, rid).end:
            raise UserInputError("an extension must move the end later")
        return self.move_end(actor, rid, until)

    def move_end(self, actor: Actor, rid: str, end: int, now: float | None = None) -> Reservation:
        """Move the end, later (the calendar is checked again) or earlier (not before now nor
        before the beginning). A running cluster follows: its HOLD job's end is edited."""
        now = time.time() if now is None else now
        self.reservation(actor, rid)
        with self.store.immediate():  # read, check and write as one step
            res = self.store.reservation(rid)
            if res.cancelled or all(a.state in TERMINAL for a in res.allocations):
                raise Conflict(f"reservation {rid} is {res.state}; its end cannot move")
            if end <= res.begin:
                raise UserInputError("the end must be after the beginning")
            if end - res.begin > MAX_SPAN_S:
                raise UserInputError(f"a reservation lasts at most {MAX_SPAN_S // 86_400} days")
            if end < now:
                raise UserInputError("the end cannot move into the past")
            if end > res.end:
                for alloc in res.allocations:
                    self._admit(alloc.site, Booking(res.begin, end, alloc.cpus, alloc.memory_gb), exclude=rid)
            if end != res.end:
                self.store.set_end(rid, end)
        if end != res.end:
            log.info("reservation %s now ends at %s (by %s)", rid, iso(end), actor.name)
        return self.store.reservation(rid)

    # -- LibreBooking: the connector's links and its users ---------------------------------------
    def booked_links(self, actor: Actor) -> dict[str, BookedLink]:
        """Every booking the connector has seen, by reference number."""
        self._admin_only(actor, "read the LibreBooking links")
        return self.store.booked_links()

    def record_booked(self, actor: Actor, reference: str, **fields: Any) -> BookedLink:
        """Change what PCC keeps of a booking: ``reservation`` (None unlinks it, to book it
        again), ``fingerprint``, ``status`` (written back), ``rejected`` (why it is not one)."""
        self._admin_only(actor, "link LibreBooking bookings")
        allowed = {"reservation", "fingerprint", "status", "rejected"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"record_booked takes some of {sorted(allowed)}, got {sorted(fields)}")
        if not BOOKING_REF.match(reference):
            raise UserInputError(f"not a LibreBooking reference number: {reference[:60]!r}")
        return self.store.put_booked_link(reference, **fields)

    def calendar_user(self, actor: Actor, name: str, email: str, ssh_key: str) -> User:
        """The PCC user a calendar's user is: the PCC user of that name, else the one user
        with that email; else a new user named after them (their name, else their email's
        local part, made a valid PCC name), with their email and (if valid) their key."""
        self._admin_only(actor, "map calendar users")
        name = name.strip().lower()
        user = self.store.user(name) if USER_NAME.match(name) else None
        if user is None and email:
            user = self.store.user_by_email(email)
        if user is not None:
            return user
        plain = [_plain(name), _plain(email.split("@")[0])]
        candidates = [c[:32] for c in (*plain, *(f"u-{p}" for p in plain if p)) if c]
        new_name = next((c for c in candidates if USER_NAME.match(c) and not self.store.user(c)), None)
        if new_name is None:
            raise UserInputError(
                f"the calendar user {name[:60]!r} has no name PCC can use (lower-case letters, "
                "digits, '_' and '-'); an admin can add them with `pcc users add`"
            )
        valid_email = email if EMAIL.match(email) else ""
        try:
            key = self._key(ssh_key, new_name) if ssh_key else ""
        except UserInputError:
            key = ""  # a bad key in their profile is reported on the booking that needs it
        try:
            return self.add_user(actor, new_name, valid_email, key)
        except Conflict:  # created meanwhile (two polls at once)
            found = self.store.user(new_name)
            assert found is not None
            return found

    # -- the calendar: free capacity and slots ----------------------------------------------------
    def availability(self, actor: Actor, name: str, begin: int, end: int) -> list[Step]:
        """Free CPUs and memory at site ``name`` over ``[begin, end)``: a step function."""
        site = self.settings.site(name, NotFound)
        if end <= begin:
            raise UserInputError("`to` must be after `from`")
        if end - begin > MAX_SPAN_S:
            raise UserInputError(f"ask for at most {MAX_SPAN_S // 86_400} days at a time")
        return free_steps(site.cpus, site.memory_gb, self._bookings(site.name), begin, end)

    def find_slots(
        self,
        actor: Actor,
        sites: Sequence[SiteRequest],
        duration: int,
        not_before: int | None = None,
        not_after: int | None = None,
        count: int = 3,
        now: float | None = None,
    ) -> list[Window]:
        """The earliest windows of ``duration`` seconds where every request fits at its site
        at once, from ``not_before`` (default: now) and ending by ``not_after`` if given."""
        now = time.time() if now is None else now
        start = int(now) if not_before is None else max(not_before, int(now))
        names = [s.site for s in sites]
        if len(set(names)) != len(names):
            raise UserInputError(f"a site may appear once per search, got {names}")
        if not 0 < duration <= MAX_SPAN_S:
            raise UserInputError(f"a duration is more than 0 and at most {MAX_SPAN_S // 86_400} days")
        if not 1 <= count <= 20:
            raise UserInputError("ask for 1 to 20 windows")
        for req in sites:
            site = self.settings.site(req.site)
            if req.cpus <= 0 or not math.isfinite(req.memory_gb) or req.memory_gb <= 0:
                raise UserInputError(f"site {site.name}: CPUs and memory must be > 0")
        return self._windows(sites, duration, start, not_after, count)

    def _windows(
        self, sites: Sequence[SiteRequest], duration: int, start: int, not_after: int | None, count: int
    ) -> list[Window]:
        demands = []
        for req in sites:
            site = self.settings.site(req.site)
            bookings = tuple(self._bookings(site.name))
            demands.append(
                SiteDemand(site.name, site.cpus, site.memory_gb, bookings, req.cpus, req.memory_gb)
            )
        return earliest_windows(demands, duration, start, not_after, count)

    def _bookings(self, site: str, exclude: str | None = None) -> list[Booking]:
        return [Booking(*row) for row in self.store.holdings(site, exclude)]

    # -- helpers -------------------------------------------------------------------------------
    def _admit(self, site_name: str, new: Booking, exclude: str | None = None) -> None:
        """Raise a Conflict (a CapacityError) naming the site, the interval and the shortfall."""
        site = self.settings.site(site_name)
        admit(site.name, site.cpus, site.memory_gb, self._bookings(site.name, exclude), new)

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


def _plain(text: str) -> str:
    """``text`` as a PCC user name might be: lower case, runs of other characters as '-'."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")


def _public(res: Reservation) -> Reservation:
    """What anyone may see of someone else's reservation on the schedule."""
    allocations = tuple(
        dataclasses.replace(a, reason="", frontend="", public_ip="", ssh_port=None) for a in res.allocations
    )
    return dataclasses.replace(res, ssh_key="", dag_cluster=None, allocations=allocations)
