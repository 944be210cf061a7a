"""The web page's routes: login and logout, the schedule and the site pages here; the
reservation form and My reservations in :mod:`pcc.web.reserve`; admin and tokens in
:mod:`pcc.web.admin`. Every page calls the service on behalf of the logged-in user.

No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from pcc.api.app import Services
from pcc.common.errors import Unauthenticated
from pcc.common.timefmt import human
from pcc.controller import accounts
from pcc.controller.settings import Settings
from pcc.controller.store import SiteRecord
from pcc.web import admin, reserve, schedule
from pcc.web.deps import PageRoute, dependencies, page
from pcc.web.session import (
    LOGIN_COOKIE,
    end_session,
    login_nonce,
    remember_login_nonce,
    safe_next,
    session_secret,
    start_session,
)

REFRESH_S = 30


@dataclass(frozen=True)
class SiteBlock:
    """One site's rows of the grid: its lanes of bars and its free-CPU strip."""

    record: SiteRecord
    lanes: list[list[schedule.Span[schedule.Bar]]]
    free: list[int]
    levels: list[int]


def router(services: Services, settings: Settings) -> APIRouter:
    pages = APIRouter(route_class=PageRoute, include_in_schema=False, default_response_class=HTMLResponse)
    Who, Post = dependencies(services)

    # -- login and logout -------------------------------------------------------------------
    def login_page(
        request: Request, next_: str, name: str = "", error: str = "", notice: str = "", status: int = 200
    ) -> Response:
        nonce, new = login_nonce(request)
        response = page(
            "login.html",
            None,
            status=status,
            title="Log in",
            csrf=accounts.csrf_token(nonce),
            next=safe_next(next_),
            name=name,
            error=error,
            notice=notice,
        )
        if new:
            remember_login_nonce(response, request, nonce)
        return response

    @pages.get("/login")
    def login_form(
        request: Request, next_: Annotated[str, Query(alias="next")] = "/", bye: str = ""
    ) -> Response:
        try:  # already logged in: straight on
            services().session(session_secret(request))
        except Unauthenticated:
            return login_page(request, next_, notice="You are logged out." if bye else "")
        return RedirectResponse(safe_next(next_), status_code=303)

    @pages.post("/login")
    async def login(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
        target = safe_next(str(form.get("next", "/")))
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        sent = str(form.get("csrf", ""))
        if not nonce or not accounts.same(sent, accounts.csrf_token(nonce)):
            return login_page(
                request, target, name, "The login form was out of date; please try again.", status=403
            )
        try:  # off the event loop (the hash is slow on purpose), with that thread's service
            secret, _user = await run_in_threadpool(lambda: services().login(name, password))
        except Unauthenticated as exc:
            return login_page(request, target, name, f"Could not log in: {exc}.", status=401)
        response = RedirectResponse(target, status_code=303)
        start_session(response, request, secret, settings.api.session_s)
        return response

    @pages.post("/logout")
    def logout(request: Request, posted: Post) -> Response:
        services().logout(session_secret(request))
        response = RedirectResponse("/login?bye=1", status_code=303)
        end_session(response, request)
        return response

    # -- the schedule -----------------------------------------------------------------------
    @pages.get("/")
    def schedule_page(
        request: Request,
        who: Who,
        view: str = "week",
        start: str = "",
        kind: Annotated[str, Query(alias="type")] = "",
        ent: str = "",
        free: str = "",
        partial: str = "",
    ) -> Response:
        svc = services()
        now = time.time()
        shown = schedule.make_view(view, schedule.parse_day(start, datetime.now(UTC).date()))
        wanted = schedule.parse_filter(kind, ent, free)
        visible = svc.calendar(who.actor, shown.begin, shown.end)  # others' too, as a calendar shows them
        records = svc.sites(who.actor, now)
        blocks = []
        for record in records:
            site = record.entry
            steps = svc.availability(who.actor, site.name, shown.begin, shown.end)
            free_cpus = schedule.strip(steps, shown.columns)
            if not wanted.keep(record, free_cpus, shown.columns, now):
                continue
            bars = schedule.bars_at(site.name, visible, who.name)
            blocks.append(
                SiteBlock(
                    record,
                    schedule.lanes(bars, shown.columns),
                    free_cpus,
                    [schedule.level(f, site.cpus) for f in free_cpus],
                )
            )
        params = {"view": shown.name, "start": start, "type": kind, "ent": ent, "free": free}

        def link(**changes: str) -> str:
            merged = {k: v for k, v in {**params, **changes}.items() if v}
            return "/?" + urlencode(merged) if merged else "/"

        shown_bars = sum(1 for b in blocks for lane in b.lanes for s in lane if s.item)
        context = {
            "view": shown,
            "blocks": blocks,
            "now": now,
            "as_of": human(now)[11:],
            "summary": f"{len(blocks)} of {len(records)} sites shown, with {shown_bars} reservation bars.",
            "refresh_s": REFRESH_S,
        }
        if partial:
            return page("_grid_partial.html", who, **context)
        return page(
            "schedule.html",
            who,
            "schedule",
            title="Schedule",
            **context,
            filter=wanted,
            start=start,
            link=link,
            partial_url=link(partial="1"),
            view_names=[(name, label) for name, (_, _, label) in schedule.VIEWS.items()],
            unit={"day": "day", "week": "week", "2weeks": "two weeks"}[shown.name],
            deployment_types=sorted({r.entry.deployment_type for r in records if r.entry.deployment_type}),
        )

    # -- sites ------------------------------------------------------------------------------
    @pages.get("/sites")
    def sites_page(who: Who) -> Response:
        return page("sites.html", who, "sites", title="Sites", records=services().sites(who.actor))

    @pages.get("/sites/{name}")
    def site_page(who: Who, name: str) -> Response:
        svc = services()
        record = svc.site(who.actor, name)
        week = schedule.make_view("week", datetime.now(UTC).date())
        steps = svc.availability(who.actor, name, week.begin, week.end)
        free_cpus = schedule.strip(steps, week.columns)
        return page(
            "site.html",
            who,
            "sites",
            title=f"Site {name}",
            record=record,
            history=svc.site_history(who.actor, name),
            week=week,
            free_cpus=free_cpus,
            levels=[schedule.level(f, record.entry.cpus) for f in free_cpus],
        )

    pages.include_router(reserve.router(services, Who, Post))
    pages.include_router(admin.router(services, Who, Post))
    return pages
