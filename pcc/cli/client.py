"""A client's backend: a controller's REST API (``/api/v1``) over HTTP with a bearer token.

The API's answers are the documents the local backend builds from the store, and its
errors (``{"error": {"type", "message"}}``) become the domain exceptions the service
raises, so a command prints the same and exits with the same status either way."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from pcc import __version__
from pcc.common.errors import (
    CapacityError,
    Conflict,
    Forbidden,
    NotFound,
    PccError,
    TemporaryError,
    Unauthenticated,
    UserInputError,
)
from pcc.common.timefmt import iso, parse_time
from pcc.controller.slots import Window

Doc = dict[str, Any]
TIMEOUT_S = 30.0


def api_error(status: int, body: Any, url: str) -> PccError:
    """The domain exception an error answer of the API stands for."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return PccError(
            f"{url} answered HTTP {status} without a PCC error document: is it a PCC controller's address?"
        )
    message: str = error["message"]
    if status == 404 and message == "Not Found":  # no such route, not a missing thing
        return UserInputError(f"{url} has no PCC API (HTTP 404): is it a PCC controller's address?")
    if status == 401:
        return Unauthenticated(
            f"{url} refused the token ({message}): make a new one on the controller's web page "
            f"or with `pcc tokens create`, then `pcc login --url {url}`"
        )
    if status == 403:
        return Forbidden(message)
    if status == 404:
        return NotFound(message)
    if status == 409:
        if error.get("type") != "CapacityError":
            return Conflict(message)
        window = error.get("next_window")
        if isinstance(window, dict):
            nxt = Window(parse_time(window["begin"]), parse_time(window["end"]))
            return CapacityError(message, next_window=nxt)
        return CapacityError(message, next_window=None)
    if status in (400, 422):
        return UserInputError(message)
    if status == 503:
        return TemporaryError(f"{url}: {message}")
    return PccError(f"{url} failed (HTTP {status}): {message}")


def _path(value: str) -> str:
    return quote(value, safe="")


class ApiBackend:
    """``acting``: ``--user`` (reserve for them; list theirs). Changing someone else's
    reservation needs ``admin`` (``--admin``), as in the local CLI, even with an admin's token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        acting: str | None = None,
        admin: bool = False,
        timeout: float = TIMEOUT_S,
    ) -> None:
        self.where = url
        self.url = url
        self.acting = acting
        self.admin = admin
        self.timeout = timeout
        self._me: Doc | None = None
        self._http = httpx.Client(
            base_url=url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "User-Agent": f"pcc/{__version__}",
            },
            timeout=timeout,
            follow_redirects=False,
        )

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        try:
            answer = self._http.request(method, "/api/v1" + path, json=body, params=params)
        except httpx.ConnectError as exc:
            raise PccError(
                f"cannot reach {self.url} ({exc}): is the URL right, and is `pcc serve` running there?"
            ) from None
        except httpx.TimeoutException:
            raise TemporaryError(f"{self.url} did not answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise PccError(f"talking to {self.url}: {type(exc).__name__}: {exc}") from None
        try:
            doc = answer.json()
        except ValueError:
            doc = None
        if answer.is_success and doc is not None:
            return doc
        if answer.is_redirect:  # never followed: the token would go along
            raise UserInputError(
                f"{self.url} redirects to {answer.headers.get('location', '?')}: "
                "give the controller's own address"
            )
        if answer.is_success:
            raise PccError(
                f"{self.url} answered HTTP {answer.status_code} with no JSON: "
                "is it a PCC controller's address?"
            )
        raise api_error(answer.status_code, doc, self.url)

    def close(self) -> None:
        self._http.close()

    def me(self) -> Doc:
        if self._me is None:
            self._me = self.call("GET", "/users/me")
        return self._me

    # -- reservations --------------------------------------------------------------------------
    def reserve(self, body: Doc) -> Doc:
        return self.call("POST", "/reservations", body=body)

    def reservations(self, state: str | None, mine: bool) -> list[Doc]:
        params: dict[str, Any] = {"mine": "true" if mine and not self.acting else "false"}
        if state:
            params["state"] = state
        rows: list[Doc] = self.call("GET", "/reservations", params=params)
        if self.acting and mine:  # `--user NAME`: theirs (an admin sees them)
            rows = [r for r in rows if r["owner"] == self.acting]
        return rows

    def reservation(self, rid: str) -> Doc:
        return self.call("GET", f"/reservations/{_path(rid)}")

    def events(self, rid: str) -> list[Doc]:
        return self.call("GET", f"/reservations/{_path(rid)}/events")

    def _changeable(self, rid: str) -> Doc:
        """The reservation, if it is the acting user's or ``--admin`` was given."""
        res = self.reservation(rid)
        if not self.admin and res["owner"] != (self.acting or self.me()["name"]):
            raise NotFound(f"no reservation {rid!r}")
        return res

    def cancel(self, rid: str) -> Doc:
        self._changeable(rid)
        return self.call("DELETE", f"/reservations/{_path(rid)}")

    def extend(self, rid: str, until: int) -> Doc:
        current = self._changeable(rid)
        if until <= parse_time(current["end"]):
            raise UserInputError("an extension must move the end later")
        return self.call("PATCH", f"/reservations/{_path(rid)}", body={"end": iso(until)})

    # -- sites and the calendar ------------------------------------------------------------
    def sites(self) -> list[Doc]:
        return self.call("GET", "/sites")

    def images(self) -> list[Doc]:
        return self.call("GET", "/images")

    def slots(self, body: Doc) -> Doc:
        return self.call("POST", "/slots/search", body={k: v for k, v in body.items() if v is not None})

    # -- users and tokens ------------------------------------------------------------------
    def users(self) -> list[Doc]:
        return self.call("GET", "/users")

    def add_user(self, name: str, email: str, ssh_key: str, role: str) -> Doc:
        body = {"name": name, "email": email, "ssh_key": ssh_key, "role": role}
        return self.call("POST", "/users", body=body)

    def update_user(self, name: str, *, password: str | None = None, role: str | None = None) -> Doc:
        body = {k: v for k, v in (("password", password), ("role", role)) if v is not None}
        return self.call("PATCH", f"/users/{_path(name)}", body=body)

    def tokens(self, user: str | None) -> list[Doc]:
        return self.call("GET", "/tokens", params={"user": user} if user else None)

    def create_token(self, user: str | None, expires_in: int | None, label: str) -> Doc:
        body = {"user": user, "expires_in": expires_in, "label": label}
        return self.call("POST", "/tokens", body={k: v for k, v in body.items() if v is not None})

    def revoke_token(self, token_id: int) -> Doc:
        return self.call("DELETE", f"/tokens/{token_id}")
