"""Web sessions as cookies, CSRF tokens and safe redirects. The session cookie holds the
secret :meth:`Service.login` returned (HttpOnly, SameSite=Strict; Secure over https); every
form posts the session's CSRF token (an HMAC of the secret, never stored). The login form,
before there is a session, is protected the same way by a short-lived pre-session cookie."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from pcc.controller import accounts
from pcc.controller.service import Actor

SESSION_COOKIE = "pcc_session"
LOGIN_COOKIE = "pcc_login"
LOGIN_COOKIE_S = 3600


@dataclass(frozen=True)
class Viewer:
    """Who looks at a page: the actor, and the CSRF token their forms carry."""

    actor: Actor
    csrf: str

    @property
    def name(self) -> str:
        return self.actor.name

    @property
    def admin(self) -> bool:
        return self.actor.admin


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _clear(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(
        name, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


def start_session(response: Response, request: Request, secret: str, max_age: float) -> None:
    _set(response, request, SESSION_COOKIE, secret, int(max_age))
    _clear(response, request, LOGIN_COOKIE)


def end_session(response: Response, request: Request) -> None:
    _clear(response, request, SESSION_COOKIE)


def session_secret(request: Request) -> str:
    return request.cookies.get(SESSION_COOKIE, "")


def login_nonce(request: Request) -> tuple[str, bool]:
    """The login form's pre-session value, and whether it is new (then set it as a cookie)."""
    found = request.cookies.get(LOGIN_COOKIE, "")
    return (found, False) if found else (secrets.token_urlsafe(24), True)


def remember_login_nonce(response: Response, request: Request, nonce: str) -> None:
    _set(response, request, LOGIN_COOKIE, nonce, LOGIN_COOKIE_S)


def csrf_matches(sent: str, secret: str) -> bool:
    return bool(sent and secret) and accounts.same(sent, accounts.csrf_token(secret))


def safe_next(target: str) -> str:
    """A redirect target after login: a path on this site, never another origin."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in target):
        return "/"
    return target


def login_url(request: Request) -> str:
    """Where to send someone who is not logged in (back here afterwards, for a GET)."""
    if request.method != "GET" or request.query_params.get("partial"):
        return "/login"
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login" if here == "/" else f"/login?next={quote(here, safe='')}"
