"""Schema versions and migrations: a store written before versions (the checked-in fixture)
migrates without losing a row, a fresh store starts at the latest version, and the runner
applies each step once, atomically, and refuses stores newer than the code."""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pcc.common.errors import ConfigError
from pcc.controller import schema
from pcc.controller.model import State, User
from pcc.controller.schema import LATEST, MIGRATIONS, Migration, migrate, sql, user_version
from pcc.controller.store import Store

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "store-v0.sqlite"
V0_TABLES = (
    "users",
    "sites",
    "reservations",
    "allocations",
    "site_images",
    "site_health",
    "notices",
    "events",
)


def connect(path: Path | str) -> sqlite3.Connection:
    return sqlite3.connect(str(path), isolation_level=None)


def columns(conn: sqlite3.Connection) -> dict[str, list[str]]:
    return {t: [c[1] for c in conn.execute(f'pragma table_info("{t}")')] for t in V0_TABLES}


def rows(
    conn: sqlite3.Connection, only: dict[str, list[str]] | None = None
) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (of the columns ``only`` names: later versions add some)."""
    picked = only or {t: ["*"] for t in V0_TABLES}
    return {
        t: conn.execute(
            f"select {', '.join(c if c == '*' else f'{chr(34)}{c}{chr(34)}' for c in picked[t])} "
            f'from "{t}" order by rowid'
        ).fetchall()
        for t in V0_TABLES
    }


def master(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("select type, name, tbl_name, sql from sqlite_master order by name").fetchall()


@pytest.fixture
def v0(tmp_path: Path) -> Path:
    """A copy of the store written by the code from before versions (never the file itself)."""
    path = tmp_path / "v0" / "pcc.db"
    path.parent.mkdir()
    shutil.copy(FIXTURE, path)
    return path


def test_the_fixture_is_a_store_from_before_versions(v0: Path) -> None:
    conn = connect(v0)
    assert user_version(conn) == 0
    assert {t: len(r) for t, r in rows(conn).items()} == {
        "users": 3,
        "sites": 2,
        "reservations": 6,
        "allocations": 8,
        "site_images": 2,
        "site_health": 2,
        "notices": 5,
        "events": 29,
    }
    assert not FIXTURE.with_name(FIXTURE.name + "-wal").exists()


def test_a_store_from_before_versions_migrates_without_losing_a_row(v0: Path) -> None:
    conn = connect(v0)
    before, old_columns = rows(conn), columns(conn)
    conn.close()

    store = Store(v0)

    assert user_version(store.db.conn) == LATEST
    assert rows(store.db.conn, old_columns) == before  # every row of every table, column for column
    # Version 3's columns: nobody is an admin and nobody has a password until one is set.
    assert store.db.execute("select count(*) from users where admin or password_hash != ''").fetchone() == (
        0,
    )
    assert store.users() == [
        User("alice", "alice@lab.example", "ssh-ed25519 AAAAalice alice@lab"),
        User("bob", "bob@lab.example"),
        User("carol"),
    ]
    reservations = store.reservations()
    assert [(r.id, r.owner, r.title, r.cancelled, r.dag_cluster, r.state) for r in reservations] == [
        ("r00001", "alice", "two sites", False, 41, State.RUNNING),
        ("r00002", "bob", "later", False, None, State.REQUESTED),
        ("r00003", "alice", "", False, 42, State.STOPPED),
        ("r00004", "bob", "Ünïcode — title", False, 43, State.FAILED),
        ("r00005", "carol", "oops", True, None, State.CANCELLED),
        ("r00006", "alice", "extended", False, 44, State.SCHEDULED),
    ]
    assert reservations[2].ssh_key == "ssh-ed25519 AAAAother"
    assert reservations[5].end - reservations[5].begin == 2 * 86_400
    allocations = [a for r in reservations for a in r.allocations]
    reason = "boot job failed: domain never reported its address in 600 s"
    assert [
        (
            a.id,
            a.reservation,
            a.site,
            a.state,
            a.reason,
            a.frontend,
            a.public_ip,
            a.ssh_port,
            a.nodes_up,
            a.nodes_total,
        )
        for a in allocations
    ] == [
        (1, "r00001", "a", State.RUNNING, "", "pcc-r00001-a-fe", "203.0.113.10", 22001, 2, 2),
        (2, "r00001", "b", State.RUNNING, "", "pcc-r00001-b-fe", "203.0.113.20", 22002, 1, 2),
        (3, "r00002", "a", State.REQUESTED, "", "", "", None, 0, 0),
        (4, "r00003", "b", State.STOPPED, "", "pcc-r00003-b-fe", "203.0.113.30", 22003, 1, 1),
        (5, "r00004", "a", State.FAILED, reason, "", "", None, 0, 0),
        (6, "r00004", "b", State.CANCELLED, "", "", "", None, 0, 0),
        (7, "r00005", "a", State.CANCELLED, "", "", "", None, 0, 0),
        (8, "r00006", "b", State.SCHEDULED, "", "", "", None, 0, 0),
    ]
    assert [(a.cpus, a.memory_gb, a.ent) for a in reservations[0].allocations] == [
        (2, 1.5, False),
        (3, 3.0, False),
    ]
    events = store.events()
    assert len(events) == 29
    assert [(e.from_state, e.to_state) for e in store.events("r00003")] == [
        ("", "requested"),
        ("requested", "scheduled"),
        ("scheduled", "booting"),
        ("booting", "running"),
        ("running", "stopping"),
        ("stopping", "stopped"),
    ]
    assert (events[19].reservation, events[19].to_state, events[19].why) == ("r00004", "failed", reason)
    assert [(e.site, e.from_state, e.to_state) for e in events if not e.reservation] == [
        ("a", "", "up"),
        ("b", "", "up"),
        ("b", "up", "degraded"),
    ]
    assert store.site_catalog("a") == (("tiny", "ubuntu-24.04"), 1_764_000_035.0)
    assert store.site_catalog("b") == (("tiny",), 1_764_000_036.0)
    health = store.site_health()
    assert (health["b"]["health"], health["b"]["reason"]) == ("degraded", "libvirt: 1 of 2 hosts unreachable")
    assert store.notice_sent("r00001", "a", "running", "webhook")
    assert store.notice_sent("r00004", "a", "failed", "email")
    assert not store.notice_sent("r00002", "a", "running", "email")
    # Version 4's: no booking is linked yet, and no site has said where it stages images.
    assert store.booked_links() == {} and {h["staging_dir"] for h in health.values()} == {""}


def test_the_migrated_store_goes_on_working(v0: Path) -> None:
    store = Store(v0)
    res = store.reservation("r00006")
    alloc = res.allocations[0]
    assert alloc.id is not None
    assert store.transition(alloc.id, State.BOOTING, "boot job started")
    assert store.next_id() == ("r00007", 7)
    store.db.conn.execute("insert into cursors (name, value) values ('notices', 29)")
    with pytest.raises(sqlite3.IntegrityError):
        store.db.conn.execute("insert into cursors (name) values ('metrics')")


def test_version_1_is_exactly_the_schema_from_before_versions(v0: Path) -> None:
    old = connect(v0)
    schema_before, rows_before = master(old), rows(old)
    assert migrate(old, MIGRATIONS[:1]) == 1
    assert master(old) == schema_before  # recognised and stamped: not one change
    assert rows(old) == rows_before

    fresh = connect(":memory:")
    migrate(fresh, MIGRATIONS[:1])
    assert master(fresh) == schema_before  # and a new store at 1 is what the old code made


def test_a_store_the_oldest_code_made_gets_the_tables_added_since(tmp_path: Path) -> None:
    conn = connect(tmp_path / "pcc.db")  # the first store had neither catalog, health nor notices
    for table in ("users", "sites", "reservations", "allocations", "events"):
        for statement in schema.V1_TABLES[table]:
            conn.execute(statement)
    conn.execute("drop index idx_events_reservation")  # and a crash can lose an index
    conn.close()
    store = Store(tmp_path / "pcc.db")
    fresh = Store(tmp_path / "fresh.db")
    assert master(store.db.conn) == master(fresh.db.conn)


def test_a_table_that_is_not_pccs_is_refused_not_stamped(tmp_path: Path) -> None:
    conn = connect(tmp_path / "other.db")
    conn.execute('create table "users" (id integer primary key, login text)')
    conn.close()
    with pytest.raises(ConfigError, match=r"other\.db: its table 'users' is not the one PCC creates"):
        Store(tmp_path / "other.db")
    assert user_version(connect(tmp_path / "other.db")) == 0


def test_a_fresh_store_is_created_at_the_latest_version(tmp_path: Path) -> None:
    store = Store(tmp_path / "pcc.db")
    assert user_version(store.db.conn) == LATEST == len(MIGRATIONS)
    assert set(V0_TABLES) | {"cursors"} <= set(store.db.table_names())
    assert "idx_allocations_state" in {i.name for i in store.db["allocations"].indexes}


def test_opening_an_up_to_date_store_again_changes_nothing(tmp_path: Path) -> None:
    first = Store(tmp_path / "pcc.db")
    first.add_user(User("alice"))
    dump = list(first.db.conn.iterdump())
    first.db.conn.close()
    again = Store(tmp_path / "pcc.db")
    assert list(again.db.conn.iterdump()) == dump
    assert user_version(again.db.conn) == LATEST
    # It only reads: it works through a connection that cannot write.
    readonly = sqlite3.connect(f"file:{tmp_path / 'pcc.db'}?mode=ro", uri=True, isolation_level=None)
    assert migrate(readonly) == LATEST


def test_a_store_newer_than_the_code_is_refused_with_its_name(tmp_path: Path) -> None:
    Store(tmp_path / "pcc.db").db.conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    with pytest.raises(ConfigError) as exc:
        Store(tmp_path / "pcc.db")
    message = str(exc.value)
    assert str(tmp_path / "pcc.db") in message
    assert f"schema version {LATEST + 1}, newer than this PCC knows (up to {LATEST})" in message


def test_each_migration_runs_once(tmp_path: Path) -> None:
    runs: Counter[int] = Counter()

    def counted(m: Migration) -> Migration:
        def apply(conn: sqlite3.Connection) -> None:
            runs[m.version] += 1
            m.apply(conn)

        return Migration(m.version, m.summary, apply)

    steps = [counted(m) for m in MIGRATIONS]
    conn = connect(tmp_path / "pcc.db")
    assert migrate(conn, steps[:1]) == 1
    assert migrate(conn, steps) == LATEST  # goes on from 1: does not run 1 again
    assert migrate(conn, steps) == LATEST
    assert migrate(connect(tmp_path / "pcc.db"), steps) == LATEST
    assert runs == Counter(dict.fromkeys(range(1, LATEST + 1), 1))


def test_a_failed_migration_leaves_the_store_at_the_version_before(tmp_path: Path) -> None:
    Store(tmp_path / "pcc.db").add_user(User("alice"))
    broken = Migration(
        LATEST + 1,
        "a table made twice",
        sql('create table "scratch" (id text primary key)', 'create table "scratch" (id text)'),
    )
    conn = connect(tmp_path / "pcc.db")
    with pytest.raises(ConfigError) as exc:
        migrate(conn, (*MIGRATIONS, broken))
    assert str(tmp_path / "pcc.db") in str(exc.value)
    assert f"migration to schema version {LATEST + 1} (a table made twice) failed" in str(exc.value)
    assert f"left at version {LATEST}" in str(exc.value)
    assert not conn.in_transaction
    assert user_version(conn) == LATEST
    assert "scratch" not in {r[0] for r in conn.execute("select name from sqlite_master")}
    assert conn.execute("select name from users").fetchall() == [("alice",)]


def test_migrations_are_numbered_in_order() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    conn = connect(":memory:")
    with pytest.raises(ValueError, match="numbered 1, 2"):
        migrate(conn, (MIGRATIONS[1], MIGRATIONS[0]))
    assert user_version(conn) == 0


def test_a_step_another_process_applied_meanwhile_is_not_applied_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Store(tmp_path / "pcc.db")  # the other process: it migrated between our read and our lock
    real, stale = schema.user_version, [0]

    def reads(conn: sqlite3.Connection) -> int:
        return stale.pop() if stale else real(conn)  # the first read, outside the lock: stale

    monkeypatch.setattr(schema, "user_version", reads)
    ran: list[int] = []
    steps = [Migration(m.version, m.summary, lambda conn, v=m.version: ran.append(v)) for m in MIGRATIONS]
    assert migrate(connect(tmp_path / "pcc.db"), steps) == LATEST
    assert ran == []


def test_a_version_3_store_with_rows_gains_booking_links_and_staging_dirs(tmp_path: Path) -> None:
    conn = connect(tmp_path / "pcc.db")
    assert migrate(conn, MIGRATIONS[:3]) == 3
    conn.execute(
        "insert into site_health (site, health, reason, last_probe, last_good, probe_seconds, "
        "pragma_version) values ('a', 'up', '', 1.0, 1.0, 0.2, '0.3.0')"
    )
    conn.close()
    store = Store(tmp_path / "pcc.db")
    assert user_version(store.db.conn) == LATEST
    assert store.site_health()["a"]["pragma_version"] == "0.3.0"
    store.record_health("a", "up", "", 2.0, 0.1, staging_dir="/var/tmp/pragma")
    store.record_health("a", "up", "", 3.0, 0.1)  # an answer without it keeps the last one
    assert store.site_health()["a"]["staging_dir"] == "/var/tmp/pragma"
    store.put_booked_link("ref1", rejected="short of CPUs")
    assert store.booked_link("ref1").rejected == "short of CPUs"  # type: ignore[union-attr]


def test_a_version_4_store_with_rows_gains_a_revision_that_every_change_moves(tmp_path: Path) -> None:
    conn = connect(tmp_path / "pcc.db")
    assert migrate(conn, MIGRATIONS[:4]) == 4
    conn.execute("insert into users (name) values ('alice')")
    conn.execute(
        'insert into reservations (id, seq, owner, image, begin, "end", created, cancelled) '
        "values ('r1', 1, 'alice', 'tiny', 10, 20, 5, 0)"
    )
    conn.close()
    store = Store(tmp_path / "pcc.db")
    assert user_version(store.db.conn) == LATEST
    assert store.find_reservation("r1") is not None  # the row survived
    seen = [store.revision()]

    def moved() -> bool:
        seen.append(store.revision())
        return seen[-1] > seen[-2]

    other = connect(tmp_path / "pcc.db")  # another connection (another process, say)
    other.execute(
        "insert into allocations (reservation, site, cpus, memory_gb, ent, state, reason, nodes_up, "
        "nodes_total, updated) values ('r1', 'a', 1, 1.0, 0, 'requested', '', 0, 1, 5)"
    )
    assert moved()
    other.execute("update allocations set state = 'scheduled' where reservation = 'r1'")
    assert moved()
    other.execute("update reservations set title = 'renamed' where id = 'r1'")
    assert moved()
    other.execute("delete from allocations where reservation = 'r1'")
    assert moved()
    other.execute("update users set email = 'a@example.org' where name = 'alice'")
    assert not moved()  # only reservations and allocations count
