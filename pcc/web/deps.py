"""The web pages' FastAPI dependencies: who is looking (from the session cookie), posted
forms with their CSRF token checked, and a route class that turns PCC's errors into pages
(a login redirect, or a friendly page with the right status; never a traceback).

No ``from __future__ import annotations`` here: FastAPI reads these annotations at runtime."""

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.responses import RedirectResponse, Response

from pcc.api.app import Services
from pcc.api.errors import status_of
from pcc.common.errors import Forbidden, PccError, Unauthenticated
from pcc.controller import accounts
from pcc.web import render
from pcc.web.session import Viewer, csrf_matches, login_url, session_secret

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Posted:
    """A form posted by a logged-in viewer, its CSRF token checked."""

    viewer: Viewer
    form: FormData

    def get(self, name: str, default: str = "") -> str:
        value = self.form.get(name, default)
        return value.strip() if isinstance(value, str) else default


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def dependencies(services: Services) -> tuple[Any, Any]:
    """``(Who, Post)``: annotations for a route's viewer and its posted form."""

    def viewer(request: Request) -> Viewer:
        secret = session_secret(request)
        actor = services().session(secret)
        found = Viewer(actor, accounts.csrf_token(secret))
        request.state.viewer = found
        return found

    async def form(request: Request) -> FormData:
        return await request.form()

    def posted(
        request: Request,
        who: Annotated[Viewer, Depends(viewer)],
        data: Annotated[FormData, Depends(form)],
    ) -> Posted:
        sent = data.get("csrf")
        token = sent if isinstance(sent, str) and sent else request.headers.get("x-csrf-token", "")
        if not csrf_matches(token, session_secret(request)):
            raise Forbidden(
                "this form's security token is missing or out of date; reload the page and try again"
            )
        return Posted(who, data)

    return Annotated[Viewer, Depends(viewer)], Annotated[Posted, Depends(posted)]


def page(
    template: str, viewer: Viewer | None, active: str = "", status: int = 200, **context: Any
) -> Response:
    """A whole page (or a fragment) with the layout's context."""
    return render.html(template, {"viewer": viewer, "active": active, **context}, status)


def to_login(request: Request) -> Response:
    target = login_url(request)
    if is_htmx(request):  # htmx follows this header instead of swapping the answer in
        return Response(status_code=401, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, exc: PccError) -> Response:
    status = status_of(exc)
    if status >= 500:
        log.error("web page %s: %s: %s", request.url.path, type(exc).__name__, exc)
    viewer = getattr(request.state, "viewer", None)
    titles = {403: "Not allowed", 404: "Not found", 409: "Conflict", 400: "Cannot do that"}
    return page(
        "error.html",
        viewer,
        status=status,
        title=titles.get(status, "Something went wrong"),
        message=str(exc),
    )


class PageRoute(APIRoute):
    """A route whose PCC errors become pages: not logged in -> the login page; the rest a
    page saying what went wrong, with the API's status for that error."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthenticated:
                return to_login(request)
            except PccError as exc:
                return error_page(request, exc)

        return run
