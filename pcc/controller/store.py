"""The store: users, sites, reservations, allocations and the append-only events table, in
SQLite through sqlite-utils. Every allocation state change goes through :meth:`Store.transition`,
which checks the state machine and records the event in the same transaction."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from pcc.common.errors import NotFound, UserInputError
from pcc.controller import metrics, schema
from pcc.controller.accounts import TokenInfo
from pcc.controller.model import (
    HOLDING,
    TERMINAL,
    Allocation,
    BookedLink,
    Event,
    Reservation,
    State,
    User,
    check_transition,
)
from pcc.controller.settings import SiteEntry

BUSY_TIMEOUT_S = 30  # how long a statement waits for another connection's write lock
# One lock per store file for this process's BEGIN IMMEDIATE transactions: threads (the API's,
# the loop) then queue on it and each is woken as soon as the last commits, instead of
# polling SQLite's lock with its busy handler's growing sleeps (POST p99 over a second with
# 10 concurrent clients; bench/api_latency.py). Other processes still meet SQLite's lock.
_WRITERS: dict[str, threading.Lock] = {}
_WRITERS_LOCK = threading.Lock()


def _writer_lock(path: Path | str) -> threading.Lock:
    key = str(Path(path).resolve())
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(key, threading.Lock())


@dataclass(frozen=True)
class SiteRecord:
    """A configured site and what its probes last said of it."""

    entry: SiteEntry
    health: str  # up | degraded | down | unknown (never probed)
    reason: str = ""
    last_probe: float | None = None
    last_good: float | None = None
    images: tuple[str, ...] | None = None  # None: never reported
    pragma_version: str = ""  # the site tool's, as its last answer said
    staging_dir: str = ""  # where the site stages images (its temporary directory)
    reserved_cpus: int = 0  # held by reservations at the moment the record was read
    reserved_memory_gb: float = 0.0


class Store:
    def __init__(self, path: Path | str) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        self.db = sqlite_utils.Database(conn)
        self._writer = _writer_lock(path)
        self._schema()

    @contextlib.contextmanager
    def immediate(self) -> Iterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction (the write lock taken at once, so a check and
        the write it allows are atomic across processes); nested uses join the outer one."""
        if self.db.conn.in_transaction:
            yield
            return
        with self._writer, schema.immediate(self.db.conn):
            yield

    def _schema(self) -> None:
        """Bring the file to the latest schema version (see :mod:`pcc.controller.schema`)."""
        schema.migrate(self.db.conn)

    # -- users -------------------------------------------------------------------------------
    def add_user(self, user: User) -> None:
        if self.db["users"].count_where("name = ?", [user.name]):
            raise UserInputError(f"user {user.name!r} already exists")
        self.db["users"].insert(
            {
                "name": user.name,
                "email": user.email,
                "ssh_key": user.ssh_key,
                "created": time.time(),
                "admin": int(user.admin),
            }
        )

    @staticmethod
    def _user(r: dict[str, Any]) -> User:
        return User(r["name"], r["email"] or "", r["ssh_key"] or "", bool(r["admin"]))

    def users(self) -> list[User]:
        return [self._user(r) for r in self.db["users"].rows_where(order_by="name")]

    def user_by_email(self, email: str) -> User | None:
        rows = list(self.db["users"].rows_where("lower(email) = lower(?) and email != ''", [email], limit=2))
        return self._user(rows[0]) if len(rows) == 1 else None

    def user(self, name: str) -> User | None:
        # Plain SQL: every API call reads its user, and sqlite-utils' table lookup would
        # first list the schema's tables and views.
        row = self.db.execute(
            "select name, email, ssh_key, admin from users where name = ?", [name]
        ).fetchone()
        return User(row[0], row[1] or "", row[2] or "", bool(row[3])) if row else None

    def update_user(self, name: str, **fields: Any) -> None:
        """Set some of email, ssh_key, admin, password_hash of an existing user."""
        allowed = {"email", "ssh_key", "admin", "password_hash"}
        assert set(fields) <= allowed, set(fields) - allowed
        if fields:
            self.db["users"].update(name, {k: int(v) if k == "admin" else v for k, v in fields.items()})

    def password_hash(self, name: str) -> str | None:
        """The user's argon2 hash ("" when none is set; None: no such user)."""
        row = self.db.execute("select password_hash from users where name = ?", [name]).fetchone()
        return None if row is None else row[0]

    # -- API tokens and web sessions (digests only; see accounts.py) ---------------------------
    @staticmethod
    def _token(r: Sequence[Any]) -> TokenInfo:
        return TokenInfo(*r)

    _TOKEN_COLUMNS = "id, user, label, created, expires, last_used, revoked"

    def add_token(self, user: str, digest: str, label: str, created: float, expires: float | None) -> int:
        cur = self.db.execute(
            "insert into tokens (user, digest, label, created, expires) values (?, ?, ?, ?, ?)",
            [user, digest, label, created, expires],
        )
        return int(cur.lastrowid or 0)

    def token_by_digest(self, digest: str) -> TokenInfo | None:
        row = self.db.execute(
            f"select {self._TOKEN_COLUMNS} from tokens where digest = ?", [digest]
        ).fetchone()
        return self._token(row) if row else None

    def token(self, token_id: int) -> TokenInfo | None:
        row = self.db.execute(f"select {self._TOKEN_COLUMNS} from tokens where id = ?", [token_id]).fetchone()
        return self._token(row) if row else None

    def tokens(self, user: str | None = None) -> list[TokenInfo]:
        where, args = ("where user = ?", [user]) if user else ("", [])
        rows = self.db.execute(f"select {self._TOKEN_COLUMNS} from tokens {where} order by id", args)
        return [self._token(r) for r in rows.fetchall()]

    def revoke_token(self, token_id: int, when: float) -> None:
        self.db.execute("update tokens set revoked = ? where id = ? and revoked is null", [when, token_id])

    def touch_token(self, token_id: int, when: float) -> None:
        """Note a token's use, unless another writer holds the store: it is only a hint, and
        the API authenticates on its event loop, which must never wait for the write lock
        (a later call notes it then)."""
        conn = self.db.conn
        if conn.in_transaction:
            conn.execute("update tokens set last_used = ? where id = ?", [when, token_id])
            return
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            conn.execute("update tokens set last_used = ? where id = ?", [when, token_id])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")

    def add_session(self, digest: str, user: str, created: float, expires: float) -> None:
        with self.immediate():
            self.db.execute("delete from sessions where expires <= ?", [created])
            self.db.execute(
                "insert into sessions (digest, user, created, expires) values (?, ?, ?, ?)",
                [digest, user, created, expires],
            )

    def session_user(self, digest: str, now: float) -> str | None:
        row = self.db.execute(
            "select user from sessions where digest = ? and expires > ?", [digest, now]
        ).fetchone()
        return row[0] if row else None

    def delete_session(self, digest: str) -> None:
        self.db.execute("delete from sessions where digest = ?", [digest])

    def delete_sessions_of(self, user: str) -> None:
        self.db.execute("delete from sessions where user = ?", [user])

    # -- sites -------------------------------------------------------------------------------
    def sync_sites(self, sites: Sequence[SiteEntry]) -> None:
        """The configuration is the truth for sites; the table mirrors it for queries."""
        rows = [
            {
                "name": s.name,
                "host": s.host,
                "port": s.port,
                "user": s.user,
                "cpus": s.cpus,
                "memory_gb": s.memory_gb,
                "deployment_type": s.deployment_type,
                "ent": int(s.ent),
            }
            for s in sites
        ]
        with self.immediate():
            self.db["sites"].delete_where()
            if rows:
                self.db["sites"].insert_all(rows)

    def set_site_images(self, site: str, images: Sequence[str]) -> None:
        row = {"site": site, "images": json.dumps(sorted(images)), "updated": time.time()}
        self.db["site_images"].upsert(row, pk="site")

    def site_catalog(self, site: str) -> tuple[tuple[str, ...], float] | None:
        """The site's image names as its probes last reported them, and when (None: never)."""
        row = self.db.execute("select images, updated from site_images where site = ?", [site]).fetchone()
        if row is None:
            return None
        return tuple(json.loads(row[0])), float(row[1])

    def site_records(self, sites: Sequence[SiteEntry]) -> list[SiteRecord]:
        """Configured sites with their last probe's verdict and catalog."""
        health = self.site_health()
        out = []
        for site in sites:
            h = health.get(site.name) or {}
            catalog = self.site_catalog(site.name)
            out.append(
                SiteRecord(
                    site,
                    health=h.get("health") or "unknown",
                    reason=h.get("reason") or "",
                    last_probe=h.get("last_probe"),
                    last_good=h.get("last_good"),
                    images=catalog[0] if catalog else None,
                    pragma_version=h.get("pragma_version") or "",
                    staging_dir=h.get("staging_dir") or "",
                )
            )
        return out

    def record_health(
        self,
        site: str,
        health: str,
        reason: str,
        when: float,
        seconds: float,
        pragma_version: str = "",
        staging_dir: str = "",
    ) -> str | None:
        """Store a probe's verdict; a change of health is an event. Returns the previous
        health when it changed (``""`` for a site's first probe), else None. A probe that got
        no answer keeps the site tool's version the last answer reported."""
        with self.immediate():
            rows = list(self.db["site_health"].rows_where("site = ?", [site]))
            before = rows[0]["health"] if rows else ""
            version = pragma_version or (rows[0]["pragma_version"] if rows else "")
            staging = staging_dir or (rows[0]["staging_dir"] if rows else "")
            last_good = when if health != "down" else (rows[0]["last_good"] if rows else None)
            self.db["site_health"].upsert(
                {
                    "site": site,
                    "health": health,
                    "reason": reason,
                    "last_probe": when,
                    "last_good": last_good,
                    "probe_seconds": seconds,
                    "pragma_version": version,
                    "staging_dir": staging,
                },
                pk="site",
            )
            if before != health:
                self.db["events"].insert(
                    {
                        "time": when,
                        "reservation": "",
                        "site": site,
                        "from_state": before,
                        "to_state": health,
                        "why": reason or "probe answered",
                    }
                )
        return before if before != health else None

    def site_health(self) -> dict[str, dict[str, Any]]:
        return {r["site"]: r for r in self.db["site_health"].rows}

    def notice_sent(self, reservation: str, site: str, kind: str, channel: str) -> bool:
        return bool(
            self.db["notices"].count_where(
                "reservation = ? and site = ? and kind = ? and channel = ?",
                [reservation, site, kind, channel],
            )
        )

    def mark_notice(self, reservation: str, site: str, kind: str, channel: str) -> None:
        self.db["notices"].insert(
            {"reservation": reservation, "site": site, "kind": kind, "channel": channel, "sent": time.time()},
            ignore=True,
        )

    # -- LibreBooking links -------------------------------------------------------------------
    @staticmethod
    def _link(r: dict[str, Any]) -> BookedLink:
        return BookedLink(r["reference"], r["reservation"], r["fingerprint"], r["status"], r["rejected"])

    def booked_links(self) -> dict[str, BookedLink]:
        return {r["reference"]: self._link(r) for r in self.db["booked_links"].rows}

    def booked_link(self, reference: str) -> BookedLink | None:
        rows = list(self.db["booked_links"].rows_where("reference = ?", [reference]))
        return self._link(rows[0]) if rows else None

    def put_booked_link(self, reference: str, **fields: Any) -> BookedLink:
        """Create or change the link of booking ``reference`` (only the ``fields`` given)."""
        now = time.time()
        with self.immediate():
            if self.booked_link(reference) is None:
                self.db["booked_links"].insert(
                    {"reference": reference, "created": now, "updated": now, **fields}
                )
            else:
                self.db["booked_links"].update(reference, {**fields, "updated": now})
        found = self.booked_link(reference)
        assert found is not None
        return found

    def delete_booked_link(self, reference: str) -> None:
        self.db.execute("delete from booked_links where reference = ?", [reference])

    # -- reservations ------------------------------------------------------------------------
    def next_id(self) -> tuple[str, int]:
        row = self.db.execute("select coalesce(max(seq), 0) + 1 from reservations").fetchone()
        return f"r{row[0]:05d}", int(row[0])

    def add_reservation(self, res: Reservation, why: str = "reservation admitted") -> Reservation:
        """Insert a reservation and its allocations (state ``requested``) in one transaction
        (the caller's, when it holds one: the service admits and inserts atomically)."""
        db = self.db
        with self.immediate():
            rid, seq = self.next_id()
            db["reservations"].insert(
                {
                    "id": rid,
                    "seq": seq,
                    "owner": res.owner,
                    "title": res.title,
                    "image": res.image,
                    "begin": res.begin,
                    "end": res.end,
                    "created": res.created,
                    "ssh_key": res.ssh_key,
                    "cancelled": 0,
                }
            )
            now = time.time()
            for a in res.allocations:
                db["allocations"].insert(
                    {
                        "reservation": rid,
                        "site": a.site,
                        "cpus": a.cpus,
                        "memory_gb": a.memory_gb,
                        "ent": int(a.ent),
                        "state": State.REQUESTED.value,
                        "reason": "",
                        "nodes_up": 0,
                        "nodes_total": 0,
                        "updated": now,
                    }
                )
                db["events"].insert(
                    {
                        "time": now,
                        "reservation": rid,
                        "site": a.site,
                        "from_state": "",
                        "to_state": State.REQUESTED.value,
                        "why": why,
                    }
                )
        return self.reservation(rid)

    @staticmethod
    def _allocation(r: dict[str, Any]) -> Allocation:
        return Allocation(
            reservation=r["reservation"],
            site=r["site"],
            cpus=r["cpus"],
            memory_gb=r["memory_gb"],
            ent=bool(r["ent"]),
            state=State(r["state"]),
            reason=r["reason"] or "",
            frontend=r["frontend"] or "",
            public_ip=r["public_ip"] or "",
            ssh_port=r["ssh_port"],
            nodes_up=r["nodes_up"] or 0,
            nodes_total=r["nodes_total"] or 0,
            id=r["id"],
        )

    def _load(self, where: str = "1", args: Sequence[Any] = (), ids: str = "") -> list[Reservation]:
        """Reservations matching ``where`` (on ``r``, the reservations table) with their
        allocations: one query with a join, in id order. ``ids``, a query of reservation
        ids, drives the query instead (its cost then follows that query, not the table)."""
        source = f"({ids}) w join reservations r on r.id = w.id" if ids else "reservations r"
        sql = f"""
            select r.id as r_id, r.owner, r.title, r.image, r.begin, r."end", r.created, r.ssh_key,
                   r.cancelled, r.dag_cluster, a.*
            from {source} left join allocations a on a.reservation = r.id
            where {where} order by r.seq, a.id"""
        out: list[Reservation] = []
        current: dict[str, Any] | None = None
        allocs: list[Allocation] = []
        cursor = self.db.execute(sql, list(args))
        columns = [d[0] for d in cursor.description]
        for values in cursor.fetchall():
            row = dict(zip(columns, values, strict=True))
            if current is None or current["r_id"] != row["r_id"]:
                if current is not None:
                    out.append(self._reservation(current, allocs))
                current, allocs = row, []
            if row["id"] is not None:
                allocs.append(self._allocation(row))
        if current is not None:
            out.append(self._reservation(current, allocs))
        return out

    @staticmethod
    def _reservation(row: dict[str, Any], allocations: Sequence[Allocation]) -> Reservation:
        return Reservation(
            id=row["r_id"],
            owner=row["owner"],
            title=row["title"] or "",
            image=row["image"],
            begin=row["begin"],
            end=row["end"],
            created=row["created"],
            ssh_key=row["ssh_key"] or "",
            cancelled=bool(row["cancelled"]),
            dag_cluster=row["dag_cluster"],
            allocations=tuple(allocations),
        )

    def revision(self) -> int:
        """A number that changes whenever a reservation or an allocation is added, changed or
        removed, by any connection or process (triggers count it): one indexed read tells a
        reader whether what it built from them is still current."""
        return int(self.db.execute("select value from revisions where name = 'reservations'").fetchone()[0])

    def find_reservation(self, rid: str) -> Reservation | None:
        found = self._load("r.id = ?", [rid])
        return found[0] if found else None

    def reservation(self, rid: str) -> Reservation:
        found = self.find_reservation(rid)
        if found is None:
            raise NotFound(f"no reservation {rid!r}")
        return found

    def reservations(self, owner: str | None = None) -> list[Reservation]:
        return self._load("r.owner = ?", [owner]) if owner else self._load()

    def reservations_between(self, begin: int, end: int) -> list[Reservation]:
        """Reservations whose window overlaps ``[begin, end)``."""
        return self._load('r.begin < ? and r."end" > ?', [end, begin])

    def live_reservations(self, also: Iterable[str] = ()) -> list[Reservation]:
        """Reservations with an allocation that is not in a final state, plus those named in
        ``also`` (e.g. with jobs still in the queue): the reconcile loop's working set, read
        in one query whose cost follows the live reservations, not the history."""
        live = [s.value for s in State if s not in TERMINAL]  # `in`, so the state index serves
        extra = sorted(set(also))
        ids = (
            f"select distinct reservation as id from allocations where state in ({','.join('?' * len(live))})"
        )
        if extra:
            ids += f" union select id from reservations where id in ({','.join('?' * len(extra))})"
        return self._load(args=[*live, *extra], ids=ids)

    def existing_ids(self, ids: Iterable[str]) -> set[str]:
        """Which of ``ids`` are reservations in this store."""
        wanted = sorted(set(ids))
        if not wanted:
            return set()
        rows = self.db.execute(
            f"select id from reservations where id in ({','.join('?' * len(wanted))})", wanted
        ).fetchall()
        return {r[0] for r in rows}

    def bookings_at(self, site: str, exclude: str | None = None) -> list[tuple[Allocation, Reservation]]:
        """Allocations at ``site`` that hold capacity (not of cancelled reservations), with
        their reservations."""
        held = [s.value for s in HOLDING]
        marks = ",".join("?" * len(held))
        ids = f"select distinct reservation as id from allocations where site = ? and state in ({marks})"
        out = []
        for res in self._load("r.cancelled = 0", [site, *held], ids=ids):
            if res.id == exclude:
                continue
            out.extend((a, res) for a in res.allocations if a.site == site and a.state in HOLDING)
        return out

    def holdings(self, site: str, exclude: str | None = None) -> list[tuple[int, int, int, float]]:
        """What :meth:`bookings_at` holds, as ``(begin, end, cpus, memory_gb)`` rows in the
        same order, read in one query without building the reservations (admission and the
        sites' usage need no more)."""
        held = [s.value for s in HOLDING]
        rows = self.db.execute(
            f"""select r.begin, r."end", a.cpus, a.memory_gb
                from allocations a join reservations r on r.id = a.reservation
                where a.site = ? and a.state in ({",".join("?" * len(held))}) and r.cancelled = 0
                  and r.id is not ?
                order by r.seq, a.id""",
            [site, *held, exclude],
        )
        return rows.fetchall()

    def state_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """Allocations by state, and reservations by overall state (for the gauges)."""
        allocs = dict(self.db.execute("select state, count(*) from allocations group by state").fetchall())
        by_res: dict[str, int] = {}
        rows = self.db.execute(
            "select reservation, group_concat(state) from allocations group by reservation"
        )
        for _rid, states in rows.fetchall():
            overall = Reservation(
                "",
                "",
                "",
                "",
                0,
                0,
                0,
                allocations=tuple(Allocation("", "", 0, 0.0, state=State(s)) for s in states.split(",")),
            ).state
            by_res[overall.value] = by_res.get(overall.value, 0) + 1
        return allocs, by_res

    def set_dag(self, rid: str, cluster: int | None) -> None:
        self.db["reservations"].update(rid, {"dag_cluster": cluster})

    def cancel(self, rid: str) -> None:
        self.db["reservations"].update(rid, {"cancelled": 1})

    def set_end(self, rid: str, end: int) -> None:
        self.db["reservations"].update(rid, {"end": end})

    # -- allocations ---------------------------------------------------------------------------
    def transition(self, alloc_id: int, target: State, why: str, **fields: Any) -> bool:
        """Move an allocation to ``target`` (checked), recording the event; other fields may be
        updated alongside. Returns False when it already is in ``target`` (idempotent)."""
        db = self.db
        with self.immediate():
            row = db["allocations"].get(alloc_id)
            current = State(row["state"])
            if current is target:
                if fields:
                    db["allocations"].update(alloc_id, fields)
                return False
            check_transition(current, target)
            now = time.time()
            db["allocations"].update(alloc_id, {**fields, "state": target.value, "updated": now})
            db["events"].insert(
                {
                    "time": now,
                    "reservation": row["reservation"],
                    "site": row["site"],
                    "from_state": current.value,
                    "to_state": target.value,
                    "why": why,
                }
            )
        metrics.TRANSITIONS.labels(current.value, target.value).inc()
        return True

    def update_allocation(self, alloc_id: int, **fields: Any) -> None:
        if "state" in fields:
            raise ValueError("state changes go through transition()")
        self.db["allocations"].update(alloc_id, fields)

    def events(self, rid: str | None = None) -> list[Event]:
        where, args = ("reservation = ?", [rid]) if rid else (None, [])
        return [
            Event(r["time"], r["reservation"], r["site"], r["from_state"], r["to_state"], r["why"])
            for r in self.db["events"].rows_where(where, args, order_by="id")
        ]

    def site_events(self, site: str, limit: int = 50) -> list[Event]:
        """A site's own events (health changes, not reservations'), newest first."""
        rows = self.db.execute(
            "select time, reservation, site, from_state, to_state, why from events "
            "where reservation = '' and site = ? order by id desc limit ?",
            [site, limit],
        ).fetchall()
        return [Event(*r) for r in rows]

    # -- cursors (scheduled jobs that follow the events table) --------------------------------
    def last_event_id(self) -> int:
        return int(self.db.execute("select coalesce(max(id), 0) from events").fetchone()[0])

    def reservations_with_events_after(self, event_id: int) -> set[str]:
        """Reservations that have an event newer than ``event_id`` (an index range scan)."""
        rows = self.db.execute(
            "select distinct reservation from events where id > ? and reservation != ''", [event_id]
        ).fetchall()
        return {r[0] for r in rows}

    def cursor(self, name: str) -> int:
        row = self.db.execute("select value from cursors where name = ?", [name]).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, value: int) -> None:
        self.db.execute(
            "insert into cursors (name, value) values (?, ?) "
            "on conflict(name) do update set value = excluded.value",
            [name, value],
        )
