"""The reservation form (with its fit check and the next window that fits) and My
reservations (live state per site, the login command, extend and cancel).

Every button works as a plain form submit; with htmx the same buttons swap only the part
that changes. No ``from __future__ import annotations``: FastAPI reads these at runtime."""

import dataclasses
import re
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pcc.api.app import Services
from pcc.api.errors import status_of
from pcc.common.errors import CapacityError, Conflict, NotFound, UserInputError
from pcc.common.keys import normalize_public_key
from pcc.common.timefmt import parse_time
from pcc.controller.model import TERMINAL, Reservation, State
from pcc.controller.service import Service
from pcc.controller.slots import Window
from pcc.web.deps import PageRoute, page
from pcc.web.forms import ReserveForm, SiteRow, image_choices, parse_window
from pcc.web.schedule import span_text
from pcc.web.session import Viewer

RID = re.compile(r"^r\d{1,12}\Z")
EXTEND_STEPS = {"3600": "1 hour", "86400": "1 day"}
REFRESH_S = 10


@dataclass(frozen=True)
class Fit:
    """What the fit check says: it fits, or why not and the next window, or what is wrong."""

    fits: bool
    text: str = ""  # "fits": the window; else the reason or the error
    window: Window | None = None
    error: bool = False

    @property
    def window_text(self) -> str:
        return span_text(self.window.begin, self.window.end) if self.window else ""


def ssh_key(svc: Service, viewer: Viewer, form: ReserveForm) -> str:
    """The key the form gives (checked here, to word its errors for the page), or "" for
    the account's own."""
    if form.ssh_key:
        return normalize_public_key(form.ssh_key, "the SSH public key")
    if not svc.user(viewer.actor, viewer.name).ssh_key:
        raise UserInputError("your account has no SSH key: paste a public key into the form")
    return ""


def check(svc: Service, viewer: Viewer, form: ReserveForm, now: float) -> Fit:
    try:
        begin, end = form.times(now)
        svc.check_fit(
            viewer.actor,
            form.image,
            form.requests(),
            begin,
            end,
            title=form.title,
            ssh_key=ssh_key(svc, viewer, form),
            now=now,
        )
    except (UserInputError, Conflict) as exc:
        return refusal(exc)
    return Fit(True, span_text(begin, end))


def refusal(exc: UserInputError | Conflict) -> Fit:
    """Why a request cannot be reserved: short of capacity (with the next window that fits),
    or not valid as given."""
    if isinstance(exc, CapacityError):
        window = exc.details.get("next_window")
        return Fit(False, exc.reason, window if isinstance(window, Window) else None)
    return Fit(False, str(exc), error=True)


def is_live(res: Reservation) -> bool:
    return not res.cancelled and any(a.state not in TERMINAL for a in res.allocations)


def summary(rows: list[Reservation]) -> str:
    """What the live region says: each live reservation's state at each site."""
    live = [r for r in rows if is_live(r)]
    if not live:
        return "No live reservations."
    parts = [f"{r.id}: " + ", ".join(f"{a.state} at {a.site}" for a in r.allocations) for r in live]
    return "; ".join(parts) + "."


def router(services: Services, Who: Any, Post: Any) -> APIRouter:
    pages = APIRouter(route_class=PageRoute, include_in_schema=False, default_response_class=HTMLResponse)

    # -- the reservation form ---------------------------------------------------------------
    def form_context(svc: Service, viewer: Viewer, form: ReserveForm) -> dict[str, Any]:
        records = svc.sites(viewer.actor)
        images = image_choices(svc.images(viewer.actor), [row.site for row in form.rows])
        if form.image not in images and images:  # (the select offers only these)
            form = dataclasses.replace(form, image=images[0])
        user = svc.user(viewer.actor, viewer.name)
        key_hint = (user.ssh_key.split()[0] + " … " + user.ssh_key.split()[-1]) if user.ssh_key else ""
        return {"form": form, "records": records, "images": images, "key_hint": key_hint}

    def form_page(
        svc: Service, viewer: Viewer, form: ReserveForm, fit: Fit | None = None, status: int = 200
    ) -> Response:
        ctx = form_context(svc, viewer, form)
        return page("reserve.html", viewer, "reserve", status, title="Reserve a cluster", fit=fit, **ctx)

    def form_fragment(svc: Service, viewer: Viewer, form: ReserveForm, fit: Fit | None = None) -> Response:
        return page("_reserve_form.html", viewer, fit=fit, **form_context(svc, viewer, form))

    def first_site(svc: Service) -> str:
        return svc.settings.sites[0].name if svc.settings.sites else ""

    def act(svc: Service, viewer: Viewer, form: ReserveForm, action: str) -> tuple[ReserveForm, Fit | None]:
        """The form after one of its buttons other than Reserve: check, add or remove a site
        row, take a window (and check it), or "refresh" (a site was chosen: new images)."""
        if action == "check":
            return form, check(svc, viewer, form, time.time())
        if action == "add_site":
            return form.add_row(), None
        if action.startswith("remove:") and action[7:].isdigit():
            return form.remove_row(int(action[7:])), None
        if action.startswith("take:"):
            taken = form.take(parse_window(action[5:]))
            return taken, check(svc, viewer, taken, time.time())
        return form, None

    @pages.get("/reserve")
    def reserve_form(who: Who) -> Response:
        svc = services()
        return form_page(svc, who, ReserveForm(rows=(SiteRow(first_site(svc)),)))

    @pages.post("/reserve")
    def reserve_submit(posted: Post) -> Response:
        svc, who = services(), posted.viewer
        form = ReserveForm.parse(posted.form)
        action = posted.get("action", "reserve")
        if action != "reserve":
            changed, fit = act(svc, who, form, action)
            return form_page(svc, who, changed, fit)
        now = time.time()
        try:
            begin, end = form.times(now)
            res = svc.reserve(
                who.actor,
                form.image,
                form.requests(),
                begin,
                end,
                title=form.title,
                ssh_key=ssh_key(svc, who, form),
                now=now,
            )
        except (UserInputError, Conflict) as exc:
            return form_page(svc, who, form, refusal(exc), status=status_of(exc))
        return RedirectResponse(f"/reservations?made={res.id}", status_code=303)

    @pages.post("/reserve/check")
    def reserve_check(posted: Post) -> Response:
        """The fit check alone (htmx swaps it into the form's live region)."""
        svc = services()
        fit = check(svc, posted.viewer, ReserveForm.parse(posted.form), time.time())
        return page("_fit.html", posted.viewer, fit=fit)

    @pages.post("/reserve/form")
    def reserve_form_fragment(posted: Post) -> Response:
        """The form re-rendered after a button or a site choice (htmx swaps it in place)."""
        svc = services()
        form, fit = act(svc, posted.viewer, ReserveForm.parse(posted.form), posted.get("action", "refresh"))
        return form_fragment(svc, posted.viewer, form, fit)

    # -- my reservations --------------------------------------------------------------------
    def mine_page(
        viewer: Viewer,
        everyone: bool,
        notice: str = "",
        error: str = "",
        status: int = 200,
        partial: bool = False,
    ) -> Response:
        rows = services().reservations(viewer.actor, mine=not (everyone and viewer.admin))
        rows.reverse()  # newest first
        ctx = {
            "reservations": rows,
            "summary": summary(rows),
            "everyone": everyone and viewer.admin,
            "is_live": is_live,
            "running": State.RUNNING,
            "extend_steps": EXTEND_STEPS,
            "span_text": span_text,
            "refresh_s": REFRESH_S,
        }
        if partial:
            return page("_mine_partial.html", viewer, **ctx)
        title = "All reservations" if ctx["everyone"] else "My reservations"
        return page("mine.html", viewer, "mine", status, title=title, notice=notice, error=error, **ctx)

    @pages.get("/reservations")
    def mine(
        who: Who,
        made: str = "",
        cancelled: str = "",
        extended: str = "",
        partial: str = "",
        everyone: Annotated[str, Query(alias="all")] = "",
    ) -> Response:
        notice = ""
        if RID.match(made):
            notice = (
                f"Reservation {made} is made. It boots when it begins; its state shows here as it changes."
            )
        elif RID.match(cancelled):
            notice = f"Reservation {cancelled} is cancelled; running clusters are torn down."
        elif RID.match(extended):
            notice = f"Reservation {extended} now ends later."
        return mine_page(who, bool(everyone), notice, partial=bool(partial))

    @pages.post("/reservations/{rid}/extend")
    def extend(rid: str, posted: Post) -> Response:
        svc, who = services(), posted.viewer
        try:
            step = posted.get("add")
            if step:
                if step not in EXTEND_STEPS:
                    raise UserInputError(f"extend by one of {', '.join(EXTEND_STEPS.values())}")
                until = svc.reservation(who.actor, rid).end + int(step)
            else:
                text = posted.get("until")
                if not text:
                    raise UserInputError("give the new end")
                until = parse_time(text)
            svc.extend(who.actor, rid, until)
        except (UserInputError, Conflict) as exc:
            if isinstance(exc, NotFound):
                raise
            return mine_page(who, False, error=f"Could not extend {rid}: {exc}", status=status_of(exc))
        return RedirectResponse(f"/reservations?extended={rid}", status_code=303)

    @pages.post("/reservations/{rid}/cancel")
    def cancel(rid: str, posted: Post) -> Response:
        try:
            services().cancel(posted.viewer.actor, rid)
        except Conflict as exc:
            return mine_page(posted.viewer, False, error=f"Could not cancel {rid}: {exc}", status=409)
        return RedirectResponse(f"/reservations?cancelled={rid}", status_code=303)

    return pages
