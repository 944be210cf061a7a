"""Accounts on the web page: the admin's users page (add, change role, reset password) and
the tokens pages (a user's own at /tokens; everyone's at /admin/tokens). A new token is
shown once, in the page that answers its form, and never again.

No ``from __future__ import annotations``: FastAPI reads these annotations at runtime."""

import re
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from pcc.api.app import Services
from pcc.api.errors import status_of
from pcc.common.errors import Conflict, Forbidden, NotFound, UserInputError
from pcc.common.timefmt import parse_duration
from pcc.controller import accounts
from pcc.controller.accounts import TokenInfo
from pcc.web.deps import PageRoute, Posted, page
from pcc.web.session import Viewer

NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")
NOTICES = {
    "added": "User {} is added.",
    "role": "The role of {} is changed.",
    "password": "The password of {} is set; their old sessions are logged out.",
}


def token_state(t: TokenInfo, now: float) -> str:
    if t.revoked is not None:
        return "revoked"
    if t.expires is not None and now >= t.expires:
        return "expired"
    return "valid"


def router(services: Services, Who: Any, Post: Any) -> APIRouter:
    pages = APIRouter(route_class=PageRoute, include_in_schema=False, default_response_class=HTMLResponse)

    # -- users ------------------------------------------------------------------------------
    def users_page(
        viewer: Viewer, notice: str = "", error: str = "", status: int = 200, **form: str
    ) -> Response:
        users = services().users(viewer.actor)  # Forbidden for a non-admin: a 403 page
        return page(
            "admin_users.html",
            viewer,
            "admin",
            status,
            title="Users",
            users=users,
            notice=notice,
            error=error,
            new=form,
        )

    @pages.get("/admin/users")
    def users(who: Who, added: str = "", role: str = "", password: str = "") -> Response:
        notice = ""
        for key, value in (("added", added), ("role", role), ("password", password)):
            if NAME.match(value):
                notice = NOTICES[key].format(value)
        return users_page(who, notice)

    @pages.post("/admin/users")
    def add_user(posted: Post) -> Response:
        svc, who = services(), posted.viewer
        fields = {k: posted.get(k) for k in ("name", "email", "ssh_key", "role")}
        svc.users(who.actor)  # an admin's page: refuse others before anything else
        try:
            password = posted.get("password")
            if password:  # refused before the user exists, not after
                accounts.check_password_rules(password)
            user = svc.add_user(
                who.actor, fields["name"], fields["email"], fields["ssh_key"], admin=fields["role"] == "admin"
            )
            if password:
                svc.set_password(who.actor, user.name, password)
        except (UserInputError, Conflict) as exc:
            return users_page(who, error=f"Could not add the user: {exc}", status=status_of(exc), **fields)
        return RedirectResponse(f"/admin/users?added={user.name}", status_code=303)

    @pages.post("/admin/users/{name}/role")
    def change_role(name: str, posted: Post) -> Response:
        svc, who = services(), posted.viewer
        svc.users(who.actor)
        try:
            svc.update_user(who.actor, name, admin=posted.get("role") == "admin")
        except (UserInputError, Conflict) as exc:
            if isinstance(exc, NotFound):
                raise
            return users_page(who, error=f"Could not change the role of {name}: {exc}", status=status_of(exc))
        return RedirectResponse(f"/admin/users?role={name}", status_code=303)

    @pages.post("/admin/users/{name}/password")
    def reset_password(name: str, posted: Post) -> Response:
        svc, who = services(), posted.viewer
        svc.users(who.actor)
        try:
            svc.set_password(who.actor, name, posted.get("password"))
        except (UserInputError, Conflict) as exc:
            if isinstance(exc, NotFound):
                raise
            return users_page(
                who, error=f"Could not set the password of {name}: {exc}", status=status_of(exc)
            )
        return RedirectResponse(f"/admin/users?password={name}", status_code=303)

    # -- tokens -----------------------------------------------------------------------------
    def tokens_page(
        viewer: Viewer,
        everyone: bool,
        notice: str = "",
        error: str = "",
        created: tuple[str, TokenInfo] | None = None,
        status: int = 200,
    ) -> Response:
        svc = services()
        if everyone:
            svc.users(viewer.actor)  # the admin's page: Forbidden for others
        now = time.time()
        rows = svc.tokens(viewer.actor) if everyone else svc.tokens(viewer.actor, viewer.name)
        return page(
            "tokens.html",
            viewer,
            "admin" if everyone else "tokens",
            status,
            title="All API tokens" if everyone else "Your API tokens",
            tokens=sorted(rows, key=lambda t: -t.id),
            states={t.id: token_state(t, now) for t in rows},
            everyone=everyone,
            users=[u.name for u in svc.users(viewer.actor)] if everyone else [],
            base="/admin/tokens" if everyone else "/tokens",
            notice=notice,
            error=error,
            created=created,
        )

    def revoked_notice(revoked: str) -> str:
        return f"Token {revoked} is revoked." if revoked.isdigit() else ""

    def create(posted: Posted, everyone: bool) -> Response:
        svc, who = services(), posted.viewer
        if everyone:
            svc.users(who.actor)
        try:
            text = posted.get("expires_in")
            lifetime = parse_duration(text) if text else None
            user = posted.get("user") if everyone else None
            created = svc.create_token(who.actor, user or None, lifetime, posted.get("label"))
        except (UserInputError, Conflict) as exc:
            if isinstance(exc, Forbidden):
                raise
            return tokens_page(
                who, everyone, error=f"Could not create the token: {exc}", status=status_of(exc)
            )
        return tokens_page(who, everyone, created=created, status=201)

    def revoke(posted: Posted, token_id: str, everyone: bool) -> Response:
        if everyone:
            services().users(posted.viewer.actor)
        if not token_id.isdigit():
            raise NotFound(f"no token {token_id!r}")
        services().revoke_token(posted.viewer.actor, int(token_id))
        return RedirectResponse(
            f"{'/admin/tokens' if everyone else '/tokens'}?revoked={token_id}", status_code=303
        )

    @pages.get("/tokens")
    def own_tokens(who: Who, revoked: str = "") -> Response:
        return tokens_page(who, False, revoked_notice(revoked))

    @pages.post("/tokens")
    def create_own_token(posted: Post) -> Response:
        return create(posted, False)

    @pages.post("/tokens/{token_id}/revoke")
    def revoke_own_token(token_id: str, posted: Post) -> Response:
        return revoke(posted, token_id, False)

    @pages.get("/admin/tokens")
    def all_tokens(who: Who, revoked: str = "") -> Response:
        return tokens_page(who, True, revoked_notice(revoked))

    @pages.post("/admin/tokens")
    def create_token_for(posted: Post) -> Response:
        return create(posted, True)

    @pages.post("/admin/tokens/{token_id}/revoke")
    def revoke_any_token(token_id: str, posted: Post) -> Response:
        return revoke(posted, token_id, True)

    return pages
