"""A client of LibreBooking's web-services API (``/Web/Services/index.php``), as one admin
service account. It signs in when it must (and again when a session lapses), bounds every
call by a timeout and a size, and turns LibreBooking's failure modes into two exceptions:
:class:`BookedError` (unreachable, 5xx, or an answer that is not the JSON expected,
including its 200-with-an-empty-body) and :class:`BookedRefused` (a 4xx it explained).
The password and the session token are never logged."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from pcc.booked.config import BookedConfig
from pcc.booked.wire import (
    AttributeDef,
    BookedError,
    BookedRefused,
    Detail,
    Listed,
    Person,
    Resource,
    ident,
    items,
    mapping,
    text,
)
from pcc.common.timefmt import iso

log = logging.getLogger(__name__)

MAX_ANSWER = 16 * 1024 * 1024


class BookedClient:
    def __init__(self, config: BookedConfig, user: str | None = None, password: str | None = None) -> None:
        self.config = config
        self._user = user or config.user
        self._password = password or config.password()
        self._http = httpx.Client(
            base_url=config.services_url,
            timeout=config.timeout_s,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )
        self._session: dict[str, str] | None = None
        self.user_id = ""

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BookedClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the session ---------------------------------------------------------------------------
    def sign_in(self) -> None:
        doc = self._call(
            "POST", "/Authentication/Authenticate", {"username": self._user, "password": self._password}
        )
        doc = mapping(doc, "Authenticate")
        if not doc.get("isAuthenticated"):
            raise BookedRefused(
                f"LibreBooking at {self.config.url} refused the user {self._user!r}: wrong name or password "
                "([booked] user and password)",
                401,
            )
        self.user_id = ident(doc, "userId", "Authenticate")
        self._session = {
            "X-Booked-SessionToken": text(doc, "sessionToken", "Authenticate"),
            "X-Booked-UserId": self.user_id,
        }

    def request(
        self, method: str, path: str, body: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        """A signed-in call; one fresh sign-in when LibreBooking says the session is gone."""
        if self._session is None:
            self.sign_in()
        try:
            return self._call(method, path, body, params, self._session)
        except BookedRefused as exc:
            if exc.status != 401:
                raise
        self.sign_in()
        return self._call(method, path, body, params, self._session)

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        where = f"LibreBooking {method} {path}"
        try:
            reply = self._http.request(method, path, json=body, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise BookedError(
                f"{where}: {type(exc).__name__}: {exc or 'no answer'} ({self.config.url})"
            ) from None
        if len(reply.content) > MAX_ANSWER:
            raise BookedError(f"{where}: an answer of {len(reply.content)} bytes is more than PCC reads")
        doc: Any = None
        if reply.content.strip():
            try:
                doc = reply.json()
            except ValueError:
                doc = None
        if reply.status_code == 401:
            raise BookedRefused(f"{where}: not signed in (401)", 401)
        if 400 <= reply.status_code < 500:
            raise BookedRefused(f"{where}: {reply.status_code}: {_messages(doc)}", reply.status_code)
        if reply.status_code >= 300 or doc is None:
            kind = "no JSON" if reply.status_code < 300 else f"status {reply.status_code}"
            raise BookedError(f"{where}: answered with {kind} (LibreBooking's log says why)")
        return doc

    # -- custom attributes -----------------------------------------------------------------------
    def attributes(self, category: int) -> list[AttributeDef]:
        doc = mapping(self.request("GET", f"/Attributes/Category/{category}"), "attributes")
        return [AttributeDef.read(a, category) for a in items(doc, "attributes", "attributes")]

    def create_attribute(self, body: Mapping[str, Any]) -> str:
        doc = mapping(self.request("POST", "/Attributes/", dict(body)), "attribute created")
        return ident(doc, "attributeId", "attribute created")

    def update_attribute(self, attribute_id: str, body: Mapping[str, Any]) -> None:
        self.request("POST", f"/Attributes/{attribute_id}", dict(body))

    # -- resources and schedules ----------------------------------------------------------------
    def resources(self) -> list[Resource]:
        doc = mapping(self.request("GET", "/Resources/"), "resources")
        return [Resource.read(r) for r in items(doc, "resources", "resources")]

    def create_resource(self, body: Mapping[str, Any]) -> str:
        doc = mapping(self.request("POST", "/Resources/", dict(body)), "resource created")
        return ident(doc, "resourceId", "resource created")

    def update_resource(self, resource_id: str, body: Mapping[str, Any]) -> None:
        self.request("POST", f"/Resources/{resource_id}", dict(body))

    def schedules(self) -> list[Mapping[str, Any]]:
        doc = mapping(self.request("GET", "/Schedules/"), "schedules")
        return items(doc, "schedules", "schedules")

    # -- users -------------------------------------------------------------------------------------
    def person(self, user_id: str) -> Person:
        return Person.read(self.request("GET", f"/Users/{user_id}"))

    # -- reservations ------------------------------------------------------------------------------
    def bookings(self, start: float, end: float) -> list[Listed]:
        params = {"startDateTime": iso(start), "endDateTime": iso(end)}
        doc = mapping(self.request("GET", "/Reservations/", params=params), "reservations")
        return [Listed.read(r) for r in items(doc, "reservations", "reservations")]

    def booking(self, reference: str) -> Detail | None:
        """One booking in full; None when LibreBooking has no such booking (deleted)."""
        try:
            return Detail.read(self.request("GET", f"/Reservations/{reference}"))
        except BookedRefused as exc:
            if exc.status == 404:
                return None
            raise

    def update_booking(self, reference: str, body: Mapping[str, Any]) -> None:
        self.request("POST", f"/Reservations/{reference}", dict(body), params={"updateScope": "full"})


def _messages(doc: Any) -> str:
    """LibreBooking's reasons for a 4xx (``message`` and ``errors``), as one line."""
    if not isinstance(doc, Mapping):
        return "no reason given"
    parts = [str(doc.get("message") or "")]
    errors = doc.get("errors")
    if isinstance(errors, list):
        parts += [str(e) for e in errors]
    line = "; ".join(p for p in parts if p) or "no reason given"
    return line[:500]
