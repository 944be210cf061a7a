"""The operator's backend: the controller's own store on this host, through the service.

The operator's CLI owns the store, so it acts as an admin: it sees everyone's reservations
and manages users and tokens. It acts in the name of ``--user`` (else ``$PCC_USER``, else
the login name), and changes to someone else's reservation still need ``--admin``, so that
a typo in an id never cancels another user's cluster."""

from __future__ import annotations

import argparse
import getpass
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pcc.common.errors import UserInputError
from pcc.common.timefmt import iso, parse_time
from pcc.controller import views
from pcc.controller.model import State
from pcc.controller.service import Actor, Service, SiteRequest
from pcc.controller.settings import Settings
from pcc.controller.store import Store

Doc = dict[str, Any]


def site_requests(demands: Sequence[Mapping[str, Any]]) -> list[SiteRequest]:
    return [SiteRequest(d["site"], d["cpus"], d["memory_gb"]) for d in demands]


def _time(value: str | None) -> int | None:
    return parse_time(value) if value else None


class LocalBackend:
    def __init__(self, args: argparse.Namespace, acting: str | None, env: Mapping[str, str]) -> None:
        self.settings = Settings.from_env(args.state_dir, args.config)
        self.where = self.settings.where()
        self.name = acting or env.get("PCC_USER") or getpass.getuser()
        self.reader = Actor(self.name, admin=True)
        self.changer = Actor(self.name, admin=bool(getattr(args, "admin", False)))
        self._service: Service | None = None

    def service(self, create: bool = False) -> Service:
        """The service over this state directory's store; a store that does not exist is an
        error naming the directory and why it was chosen (unless ``create``)."""
        if self._service is None:
            if not create and not self.settings.database.exists():
                raise UserInputError(
                    f"no store at {self.settings.database}: {self.where}; run `pcc serve` (or `make run`) "
                    "with this state directory first, or point at another with --state-dir or "
                    "$PCC_STATE_DIR"
                )
            self._service = Service(self.settings, Store(self.settings.database))
        return self._service

    def me(self) -> Doc:
        return views.user(self.service().user(self.reader, self.name))

    # -- reservations --------------------------------------------------------------------------
    def reserve(self, body: Doc) -> Doc:
        res = self.service().reserve(
            self.reader,
            body["image"],
            site_requests(body["allocations"]),
            parse_time(body["begin"]),
            parse_time(body["end"]),
            title=body.get("title", ""),
            ssh_key=body.get("ssh_key") or "",
            owner=body.get("owner"),
        )
        return views.reservation(res)

    def reservations(self, state: str | None, mine: bool) -> list[Doc]:
        rows = self.service().reservations(self.reader, state=State(state) if state else None, mine=mine)
        return [views.reservation(r) for r in rows]

    def reservation(self, rid: str) -> Doc:
        return views.reservation(self.service().reservation(self.reader, rid))

    def events(self, rid: str) -> list[Doc]:
        return [views.event(e) for e in self.service().events(self.reader, rid)]

    def cancel(self, rid: str) -> Doc:
        return views.reservation(self.service().cancel(self.changer, rid))

    def extend(self, rid: str, until: int) -> Doc:
        return views.reservation(self.service().extend(self.changer, rid, until))

    # -- sites and the calendar ------------------------------------------------------------
    def sites(self) -> list[Doc]:
        return [views.site(r) for r in self.service().sites(self.reader)]

    def images(self) -> list[Doc]:
        return views.images(self.service().images(self.reader))

    def slots(self, body: Doc) -> Doc:
        windows = self.service().find_slots(
            self.reader,
            site_requests(body["sites"]),
            body["duration"],
            _time(body.get("not_before")),
            _time(body.get("not_after")),
            body.get("count", 3),
        )
        return {"windows": [{"begin": iso(w.begin), "end": iso(w.end)} for w in windows]}

    # -- users and tokens ------------------------------------------------------------------
    def users(self) -> list[Doc]:
        return [views.user(u) for u in self.service().users(self.reader)]

    def add_user(self, name: str, email: str, ssh_key: str, role: str) -> Doc:
        svc = self.service(create=True)
        return views.user(svc.add_user(self.reader, name, email, ssh_key, admin=role == "admin"))

    def update_user(self, name: str, *, password: str | None = None, role: str | None = None) -> Doc:
        admin = None if role is None else role == "admin"
        return views.user(self.service().update_user(self.reader, name, admin=admin, password=password))

    def tokens(self, user: str | None) -> list[Doc]:
        now = time.time()
        return [views.token(t, now) for t in self.service().tokens(self.reader, user)]

    def create_token(self, user: str | None, expires_in: int | None, label: str) -> Doc:
        now = time.time()
        secret, info = self.service().create_token(self.reader, user, expires_in, label, now)
        return views.token(info, now, secret)

    def revoke_token(self, token_id: int) -> Doc:
        return views.token(self.service().revoke_token(self.reader, token_id), time.time())
