"""The REST API's routes: each one authenticates, calls one service method, and returns the
document :mod:`pcc.controller.views` builds (so the CLI's ``-o json`` and the API agree)."""

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from pcc.api import schemas
from pcc.api.app import Services
from pcc.api.errors import ERROR_STATUSES
from pcc.api.listings import Json, Listings
from pcc.common.errors import Unauthenticated, UserInputError
from pcc.common.timefmt import iso, parse_duration
from pcc.controller import views
from pcc.controller.model import State
from pcc.controller.service import Actor, SiteRequest

bearer = HTTPBearer(auto_error=False, description="an API token (`pcc tokens create` prints one)")
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": schemas.ErrorDoc, "description": text}
    for code, text in zip(
        ERROR_STATUSES,
        (
            "bad request",
            "no, unknown, expired or revoked token",
            "not allowed",
            "no such thing (or not yours)",
            "conflicts with the calendar or the state",
            "invalid document",
        ),
        strict=True,
    )
}
DEFAULT_SPAN_S = 7 * 86_400
TokenId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # what SQLite's INTEGER holds


def seconds(value: int | str) -> int:
    """A duration given as seconds or as text like 90m."""
    if isinstance(value, int):
        return value
    try:
        return parse_duration(value)
    except OverflowError:  # more days than a timedelta holds
        raise UserInputError(f"not a duration: {value!r} (far too long)") from None


def epoch(when: datetime) -> int:
    return int(when.timestamp())


def router(services: Services) -> APIRouter:
    api = APIRouter(prefix="/api/v1", responses=ERRORS)
    listings = Listings()

    # On the event loop, not in a worker thread: it is two indexed reads (and, once a minute
    # per token, a write that never waits for the lock), and the hop to a thread would cost
    # more than the work. The routes themselves stay synchronous, in the thread pool.
    async def actor(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Actor:
        if creds is None:
            raise Unauthenticated(
                "send Authorization: Bearer <token> (make a token with `pcc tokens create`)"
            )
        return services().authenticate(creds.credentials)

    Who = Annotated[Actor, Depends(actor)]

    # -- reservations --------------------------------------------------------------------------
    # The reads clients poll run on the event loop, as `actor` does: a listing kept at the
    # store's current revision is one lookup, and one reservation two indexed reads; only a
    # listing to build goes to a worker thread (an admin's of every reservation takes long).
    @api.get("/reservations", response_model=list[schemas.ReservationDoc], tags=["reservations"])
    async def list_reservations(who: Who, state: State | None = None, mine: bool = False) -> Response:
        """Your reservations (an admin sees everyone's unless ``mine``), oldest first."""

        def build() -> list[dict[str, Any]]:
            return [views.reservation(r) for r in services().reservations(who, state=state, mine=mine)]

        return await listings.get((who.name, who.admin, state, mine), services().revision(), build)

    @api.post("/reservations", response_model=schemas.ReservationDoc, status_code=201, tags=["reservations"])
    def create_reservation(who: Who, doc: schemas.ReservationIn) -> Response:
        """Reserve: the document GET returns (server-owned fields ignored), with ``end`` or
        ``duration`` and optionally ``ssh_key``. 409 says what collides and the next window."""
        now = time.time()
        begin = int(now) if doc.begin == "now" else epoch(doc.begin)  # type: ignore[arg-type]
        if (doc.end is None) == (doc.duration is None):
            raise UserInputError("give exactly one of end and duration")
        end = epoch(doc.end) if doc.end is not None else begin + seconds(doc.duration)  # type: ignore[arg-type]
        res = services().reserve(
            who,
            doc.image,
            [SiteRequest(a.site, a.cpus, a.memory_gb) for a in doc.allocations],
            begin,
            end,
            title=doc.title,
            ssh_key=doc.ssh_key or "",
            owner=doc.owner,
            now=now,
        )
        return Json(
            views.reservation(res), status_code=201, headers={"Location": f"/api/v1/reservations/{res.id}"}
        )

    @api.get("/reservations/{rid}", response_model=schemas.ReservationDoc, tags=["reservations"])
    async def get_reservation(who: Who, rid: str) -> Response:
        return Json(views.reservation(services().reservation(who, rid)))

    @api.patch("/reservations/{rid}", response_model=schemas.ReservationDoc, tags=["reservations"])
    def patch_reservation(who: Who, rid: str, doc: schemas.ReservationPatch) -> Response:
        """Move the end: later (the calendar is checked again) or earlier."""
        return Json(views.reservation(services().move_end(who, rid, epoch(doc.end))))

    @api.delete("/reservations/{rid}", response_model=schemas.ReservationDoc, tags=["reservations"])
    def delete_reservation(who: Who, rid: str) -> Response:
        """Cancel; running clusters are torn down."""
        return Json(views.reservation(services().cancel(who, rid)))

    @api.get("/reservations/{rid}/events", response_model=list[schemas.EventDoc], tags=["reservations"])
    def reservation_events(who: Who, rid: str) -> Response:
        return Json([views.event(e) for e in services().events(who, rid)])

    # -- the calendar --------------------------------------------------------------------------
    @api.post("/slots/search", response_model=schemas.SlotsDoc, tags=["calendar"])
    def search_slots(who: Who, doc: schemas.SlotSearch) -> Response:
        """The earliest windows in which the whole request fits at every site at once."""
        windows = services().find_slots(
            who,
            [SiteRequest(s.site, s.cpus, s.memory_gb) for s in doc.sites],
            seconds(doc.duration),
            epoch(doc.not_before) if doc.not_before else None,
            epoch(doc.not_after) if doc.not_after else None,
            doc.count,
        )
        return Json({"windows": [{"begin": iso(w.begin), "end": iso(w.end)} for w in windows]})

    # -- sites and images ----------------------------------------------------------------------
    @api.get("/sites", response_model=list[schemas.SiteDoc], tags=["sites"])
    def list_sites(who: Who) -> Response:
        return Json([views.site(r) for r in services().sites(who)])

    @api.get("/sites/{name}", response_model=schemas.SiteDoc, tags=["sites"])
    def get_site(who: Who, name: str) -> Response:
        return Json(views.site(services().site(who, name)))

    @api.get("/sites/{name}/availability", response_model=schemas.AvailabilityDoc, tags=["sites"])
    def availability(
        who: Who,
        name: str,
        from_: Annotated[schemas.When | None, Query(alias="from")] = None,
        to: schemas.When | None = None,
    ) -> Response:
        """Free CPUs and memory over ``[from, to)`` (default: the next 7 days) as steps."""
        begin = epoch(from_) if from_ else int(time.time())
        end = epoch(to) if to else begin + DEFAULT_SPAN_S
        svc = services()
        site = svc.site(who, name).entry
        steps = svc.availability(who, name, begin, end)
        return Json(views.availability(site, steps))

    @api.get("/images", response_model=list[schemas.ImageDoc], tags=["sites"])
    def list_images(who: Who) -> Response:
        """Each site's images, as its probes last reported them."""
        return Json(views.images(services().images(who)))

    # -- users and tokens ----------------------------------------------------------------------
    @api.get("/users/me", response_model=schemas.UserDoc, tags=["users"])
    def me(who: Who) -> Response:
        return Json(views.user(services().user(who, who.name)))

    @api.get("/users", response_model=list[schemas.UserDoc], tags=["users"])
    def list_users(who: Who) -> Response:
        """Admin: every user."""
        return Json([views.user(u) for u in services().users(who)])

    @api.post("/users", response_model=schemas.UserDoc, status_code=201, tags=["users"])
    def create_user(who: Who, doc: schemas.UserIn) -> Response:
        """Admin: add a user (with a web password if given)."""
        svc = services()
        user = svc.add_user(who, doc.name, doc.email, doc.ssh_key, admin=doc.role == "admin")
        if doc.password is not None:
            user = svc.set_password(who, user.name, doc.password)
        return Json(views.user(user), status_code=201)

    @api.get("/users/{name}", response_model=schemas.UserDoc, tags=["users"])
    def get_user(who: Who, name: str) -> Response:
        return Json(views.user(services().user(who, name)))

    @api.patch("/users/{name}", response_model=schemas.UserDoc, tags=["users"])
    def patch_user(who: Who, name: str, doc: schemas.UserPatch) -> Response:
        """Change email, key or password (yourself or an admin) or role (an admin)."""
        user = services().update_user(
            who,
            name,
            email=doc.email,
            ssh_key=doc.ssh_key,
            admin=None if doc.role is None else doc.role == "admin",
            password=doc.password,
        )
        return Json(views.user(user))

    @api.get("/tokens", response_model=list[schemas.TokenDoc], tags=["tokens"])
    def list_tokens(who: Who, user: str | None = None) -> Response:
        """Your tokens (an admin: everyone's, or ``user``'s); never the tokens themselves."""
        now = time.time()
        return Json([views.token(t, now) for t in services().tokens(who, user)])

    @api.post("/tokens", response_model=schemas.NewTokenDoc, status_code=201, tags=["tokens"])
    def create_token(who: Who, doc: schemas.TokenIn) -> Response:
        """A new token, shown this once."""
        now = time.time()
        lifetime = seconds(doc.expires_in) if doc.expires_in is not None else None
        secret, info = services().create_token(who, doc.user, lifetime, doc.label, now)
        return Json(views.token(info, now, secret), status_code=201)

    @api.delete("/tokens/{token_id}", response_model=schemas.TokenDoc, tags=["tokens"])
    def revoke_token(who: Who, token_id: TokenId) -> Response:
        return Json(views.token(services().revoke_token(who, token_id), time.time()))

    return api
