"""Where `pcc`'s user commands go: the controller's store on this host (:class:`LocalBackend`,
the operator's CLI) or a controller's REST API (:class:`ApiBackend`, a scientist's laptop).

Both answer with the JSON documents of :mod:`pcc.controller.views` (what the API returns),
and both raise the domain exceptions of :mod:`pcc.common.errors`, so the commands, their
output and their exit codes are the same either way. Each backend is imported only when
chosen: a client never imports the controller's store, and the operator never needs httpx.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any, Protocol

Doc = dict[str, Any]


class Backend(Protocol):
    """The user commands' one door. Bodies and answers are the API's documents
    (:mod:`pcc.api.schemas`); times are ISO 8601 strings, durations whole seconds."""

    where: str  # for messages: the state directory or the URL

    def me(self) -> Doc: ...

    # -- reservations --------------------------------------------------------------------------
    def reserve(self, body: Doc) -> Doc:
        """``body``: a ReservationIn (image, begin, end, title, allocations, ssh_key, owner)."""
        ...

    def reservations(self, state: str | None, mine: bool) -> list[Doc]: ...

    def reservation(self, rid: str) -> Doc: ...

    def events(self, rid: str) -> list[Doc]: ...

    def cancel(self, rid: str) -> Doc: ...

    def extend(self, rid: str, until: int) -> Doc:
        """Move the end to ``until`` (epoch seconds), which must be later than it is."""
        ...

    # -- sites and the calendar ------------------------------------------------------------
    def sites(self) -> list[Doc]: ...

    def images(self) -> list[Doc]: ...

    def slots(self, body: Doc) -> Doc:
        """``body``: a SlotSearch (sites, duration, not_before, not_after, count)."""
        ...

    # -- users and tokens ------------------------------------------------------------------
    def users(self) -> list[Doc]: ...

    def add_user(self, name: str, email: str, ssh_key: str, role: str) -> Doc: ...

    def update_user(self, name: str, *, password: str | None = None, role: str | None = None) -> Doc: ...

    def tokens(self, user: str | None) -> list[Doc]: ...

    def create_token(self, user: str | None, expires_in: int | None, label: str) -> Doc:
        """A NewTokenDoc: the token's document and, this once, the token itself."""
        ...

    def revoke_token(self, token_id: int) -> Doc: ...


def open_backend(
    args: argparse.Namespace, acting: str | None = None, env: Mapping[str, str] | None = None
) -> Backend:
    """The API's backend when a URL is given (``--url``, ``$PCC_URL``, or client.toml),
    else the local store's. ``acting`` is ``--user`` where a command has it ("act as")."""
    from pcc.cli import config

    env = os.environ if env is None else env
    url = config.api_url(args, env)
    if url is None:
        from pcc.cli.local import LocalBackend

        return LocalBackend(args, acting, env)
    from pcc.cli.client import ApiBackend

    token = config.find_token(url, env)
    return ApiBackend(url, token, acting=acting, admin=bool(getattr(args, "admin", False)))
