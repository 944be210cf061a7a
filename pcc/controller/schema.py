"""The store's schema, versioned: ``PRAGMA user_version`` says which of :data:`MIGRATIONS` a
store file has had, and :func:`migrate` brings it to the latest, one transaction per step.

It exists so that the schema can change (API tokens, user roles, external references) under
stores already in use, instead of a controller finding a table without the column it needs.
Before versions, the store created each missing table on open and left ``user_version`` at 0;
version 1 is exactly that schema, so a store written then is checked (its tables must be the
ones PCC made) and stamped 1 without changes.

How to add a migration
----------------------
1. Write a function ``_vN(conn)`` (or use :func:`sql` for plain statements) that takes a store
   from version N-1 to N, and append ``Migration(N, "what it does", _vN)`` to
   :data:`MIGRATIONS`. Never edit a migration that has shipped: stores in the field have run
   it; change the schema with a new one.
2. The runner opens the transaction (``BEGIN IMMEDIATE``), runs the function, sets
   ``user_version`` to N and commits; a failure rolls the step back and leaves the store at
   N-1. So a migration must not commit, must not use ``executescript`` (it commits), and
   should not use ``IF NOT EXISTS``: at version N-1 the things it creates do not exist, and if
   they do, failing loudly is right.
3. Adding a column: ``ALTER TABLE t ADD COLUMN c TYPE [NOT NULL DEFAULT v]`` (a NOT NULL
   column needs a default; a REFERENCES column must default to NULL). Backfill with UPDATE in
   the same function. A new table (API tokens, say) is a CREATE TABLE, with its indexes.
   Rebuilding a table (changing a column or constraint: SQLite's create-copy-drop-rename)
   needs foreign keys off, which cannot change inside a transaction; none does yet, so the
   first that does adds a flag to :class:`Migration` that makes :func:`migrate` set
   ``PRAGMA foreign_keys=OFF`` before ``BEGIN`` and run ``PRAGMA foreign_key_check`` before
   ``COMMIT``, then turn them on again.
4. Update the code reading the table, add a test that migrates a store at N-1 with rows in
   it, and the fixture tests (tests/unit/test_schema.py) keep checking that a store written
   before versions still migrates.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from pcc.common.errors import ConfigError

Step = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class Migration:
    """One step: ``apply`` takes a store from ``version - 1`` to ``version``."""

    version: int
    summary: str
    apply: Step


def sql(*statements: str) -> Step:
    """A migration step that runs ``statements`` in order."""

    def run(conn: sqlite3.Connection) -> None:
        for statement in statements:
            conn.execute(statement)

    return run


# -- version 1: the schema as it was before versions ----------------------------------------
# The statements sqlite-utils 4.2.1 generated for Store._schema at commit e47c690, verbatim
# (SQLite stores them without the IF NOT EXISTS, so sqlite_master reads exactly as before).
V1_TABLES: dict[str, tuple[str, ...]] = {
    "users": (
        'CREATE TABLE IF NOT EXISTS "users" (\n'
        '   "name" TEXT PRIMARY KEY,\n'
        '   "email" TEXT,\n'
        '   "ssh_key" TEXT,\n'
        '   "created" REAL\n'
        ")",
    ),
    "sites": (
        'CREATE TABLE IF NOT EXISTS "sites" (\n'
        '   "name" TEXT PRIMARY KEY,\n'
        '   "host" TEXT,\n'
        '   "port" INTEGER,\n'
        '   "user" TEXT,\n'
        '   "cpus" INTEGER,\n'
        '   "memory_gb" REAL,\n'
        '   "deployment_type" TEXT,\n'
        '   "ent" INTEGER\n'
        ")",
    ),
    "reservations": (
        'CREATE TABLE IF NOT EXISTS "reservations" (\n'
        '   "id" TEXT PRIMARY KEY,\n'
        '   "seq" INTEGER,\n'
        '   "owner" TEXT NOT NULL,\n'
        '   "title" TEXT,\n'
        '   "image" TEXT NOT NULL,\n'
        '   "begin" INTEGER NOT NULL,\n'
        '   "end" INTEGER NOT NULL,\n'
        '   "created" INTEGER,\n'
        '   "ssh_key" TEXT,\n'
        '   "cancelled" INTEGER DEFAULT 0,\n'
        '   "dag_cluster" INTEGER\n'
        ")",
        'CREATE UNIQUE INDEX IF NOT EXISTS "idx_reservations_seq"\n    ON "reservations" ("seq")',
    ),
    "allocations": (
        'CREATE TABLE IF NOT EXISTS "allocations" (\n'
        '   "id" INTEGER PRIMARY KEY,\n'
        '   "reservation" TEXT REFERENCES "reservations"("id"),\n'
        '   "site" TEXT,\n'
        '   "cpus" INTEGER,\n'
        '   "memory_gb" REAL,\n'
        '   "ent" INTEGER,\n'
        '   "state" TEXT,\n'
        '   "reason" TEXT,\n'
        '   "frontend" TEXT,\n'
        '   "public_ip" TEXT,\n'
        '   "ssh_port" INTEGER,\n'
        '   "nodes_up" INTEGER,\n'
        '   "nodes_total" INTEGER,\n'
        '   "updated" REAL\n'
        ")",
        'CREATE UNIQUE INDEX IF NOT EXISTS "idx_allocations_reservation_site"\n'
        '    ON "allocations" ("reservation", "site")',
    ),
    "site_images": (
        'CREATE TABLE IF NOT EXISTS "site_images" (\n'
        '   "site" TEXT PRIMARY KEY,\n'
        '   "images" TEXT,\n'
        '   "updated" REAL\n'
        ")",
    ),
    "site_health": (
        'CREATE TABLE IF NOT EXISTS "site_health" (\n'
        '   "site" TEXT PRIMARY KEY,\n'
        '   "health" TEXT,\n'
        '   "reason" TEXT,\n'
        '   "last_probe" REAL,\n'
        '   "last_good" REAL,\n'
        '   "probe_seconds" REAL\n'
        ")",
    ),
    "notices": (
        'CREATE TABLE IF NOT EXISTS "notices" (\n'
        '   "reservation" TEXT,\n'
        '   "site" TEXT,\n'
        '   "kind" TEXT,\n'
        '   "channel" TEXT,\n'
        '   "sent" REAL,\n'
        '   PRIMARY KEY ("reservation", "site", "kind", "channel")\n'
        ")",
    ),
    "events": (
        'CREATE TABLE IF NOT EXISTS "events" (\n'
        '   "id" INTEGER PRIMARY KEY,\n'
        '   "time" REAL,\n'
        '   "reservation" TEXT,\n'
        '   "site" TEXT,\n'
        '   "from_state" TEXT,\n'
        '   "to_state" TEXT,\n'
        '   "why" TEXT\n'
        ")",
        'CREATE INDEX IF NOT EXISTS "idx_events_reservation"\n    ON "events" ("reservation")',
    ),
}

Shape = tuple[tuple[object, ...], ...]


def table_shape(conn: sqlite3.Connection, table: str) -> dict[str, Shape]:
    """What a table is, as SQLite sees it (not how its CREATE was spelled): its columns (name,
    declared type, not-null, default, position in the primary key), its foreign keys and its
    named indexes (name, unique, columns)."""
    columns = tuple(
        (r[1], r[2].upper(), r[3], r[4], r[5]) for r in conn.execute(f'PRAGMA table_xinfo("{table}")')
    )
    foreign = tuple(sorted((r[2], r[3], r[4]) for r in conn.execute(f'PRAGMA foreign_key_list("{table}")')))
    indexes = []
    for r in conn.execute(f'PRAGMA index_list("{table}")'):
        if r[3] != "c":  # made by a PRIMARY KEY or UNIQUE constraint: part of the columns
            continue
        cols = tuple(c[2] for c in conn.execute(f'PRAGMA index_info("{r[1]}")'))
        indexes.append((r[1], r[2], cols))
    return {"columns": columns, "foreign keys": foreign, "indexes": tuple(sorted(indexes))}


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("select name from sqlite_master where type = 'table'")}


def _v1(conn: sqlite3.Connection) -> None:
    """Create the tables a store lacks (as the store did on open before versions); check that
    the ones it has are PCC's, as PCC made them, so that a foreign file is not stamped."""
    reference = sqlite3.connect(":memory:")
    try:
        present = _tables(conn)
        for table, statements in V1_TABLES.items():
            if table in present:
                for statement in statements:
                    reference.execute(statement)
                have, want = table_shape(conn, table), table_shape(reference, table)
                differ = [aspect for aspect in ("columns", "foreign keys") if have[aspect] != want[aspect]]
                named = {index[0]: index for index in have["indexes"]}
                # An index it lacks is created below; one it has must be the same; others may stay.
                differ += [f"index {i[0]}" for i in want["indexes"] if named.get(i[0], i) != i]
                if differ:
                    raise ConfigError(
                        f"its table {table!r} is not the one PCC creates ({', '.join(differ)} differ: "
                        f"columns {[c[0] for c in have['columns']]}): not a PCC store, or one changed "
                        "by hand"
                    )
            for statement in statements:
                conn.execute(statement)
    finally:
        reference.close()


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "the schema from before versions (users, sites, reservations, ...)", _v1),
    Migration(
        2,
        "allocations indexed by state; cursors for jobs that follow the events table",
        sql(
            'CREATE INDEX "idx_allocations_state"\n    ON "allocations" ("state")',
            'CREATE TABLE "cursors" (\n   "name" TEXT PRIMARY KEY,\n   "value" INTEGER NOT NULL\n)',
        ),
    ),
    Migration(
        3,
        "accounts: users' role and password hash; API tokens and web sessions (hashes only); "
        "what a site's probe reported; reservations indexed by owner",
        sql(
            'ALTER TABLE "users" ADD COLUMN "admin" INTEGER NOT NULL DEFAULT 0',
            'ALTER TABLE "users" ADD COLUMN "password_hash" TEXT NOT NULL DEFAULT \'\'',
            'CREATE TABLE "tokens" (\n'
            '   "id" INTEGER PRIMARY KEY,\n'
            '   "user" TEXT NOT NULL REFERENCES "users"("name"),\n'
            '   "digest" TEXT NOT NULL UNIQUE,\n'
            "   \"label\" TEXT NOT NULL DEFAULT '',\n"
            '   "created" REAL NOT NULL,\n'
            '   "expires" REAL,\n'
            '   "last_used" REAL,\n'
            '   "revoked" REAL\n'
            ")",
            'CREATE INDEX "idx_tokens_user" ON "tokens" ("user")',
            'CREATE TABLE "sessions" (\n'
            '   "digest" TEXT PRIMARY KEY,\n'
            '   "user" TEXT NOT NULL REFERENCES "users"("name"),\n'
            '   "created" REAL NOT NULL,\n'
            '   "expires" REAL NOT NULL\n'
            ")",
            'ALTER TABLE "site_health" ADD COLUMN "pragma_version" TEXT NOT NULL DEFAULT \'\'',
            'CREATE INDEX "idx_reservations_owner" ON "reservations" ("owner")',
        ),
    ),
    Migration(
        4,
        "LibreBooking bookings linked to reservations; a site's staging directory",
        sql(
            'CREATE TABLE "booked_links" (\n'
            '   "reference" TEXT PRIMARY KEY,\n'
            '   "reservation" TEXT UNIQUE REFERENCES "reservations"("id"),\n'
            "   \"fingerprint\" TEXT NOT NULL DEFAULT '',\n"
            "   \"status\" TEXT NOT NULL DEFAULT '',\n"
            "   \"rejected\" TEXT NOT NULL DEFAULT '',\n"
            '   "created" REAL NOT NULL,\n'
            '   "updated" REAL NOT NULL\n'
            ")",
            'ALTER TABLE "site_health" ADD COLUMN "staging_dir" TEXT NOT NULL DEFAULT \'\'',
        ),
    ),
    Migration(
        5,
        "a revision number of the reservations and their allocations, counted by triggers: "
        "readers (the API's cached listings) see whether anything changed with one read",
        sql(
            'CREATE TABLE "revisions" (\n   "name" TEXT PRIMARY KEY,\n   "value" INTEGER NOT NULL\n)',
            "INSERT INTO \"revisions\" VALUES ('reservations', 0)",
            *(
                f'CREATE TRIGGER "{table}_{event.lower()}_revision" AFTER {event} ON "{table}" BEGIN '
                'UPDATE "revisions" SET "value" = "value" + 1 WHERE "name" = \'reservations\'; END'
                for table in ("reservations", "allocations")
                for event in ("INSERT", "UPDATE", "DELETE")
            ),
        ),
    ),
)
LATEST = MIGRATIONS[-1].version


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def store_file(conn: sqlite3.Connection) -> str:
    """The file behind ``conn``'s main database, for messages (``:memory:`` when none)."""
    for _seq, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return file or ":memory:"
    return ":memory:"


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One ``BEGIN IMMEDIATE`` transaction on ``conn``: committed, or rolled back on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _check_sequence(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, not {versions}")


def migrate(conn: sqlite3.Connection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the store on ``conn`` (in autocommit mode, no transaction open) to the last of
    ``migrations``, one ``BEGIN IMMEDIATE`` transaction per step, and return its version.

    A store already there is only read. The version is read again under the write lock, so
    two processes opening one store at once apply each step once. A store newer than the
    code, or a step that fails, is a :class:`ConfigError` naming the file; a failed step
    leaves the store at the version before it."""
    _check_sequence(migrations)
    latest = len(migrations)
    path = store_file(conn)
    while True:
        current = user_version(conn)
        if current > latest:
            raise ConfigError(
                f"{path}: the store is at schema version {current}, newer than this PCC knows "
                f"(up to {latest}); it was written by a newer PCC: run that, or restore a backup "
                "taken before the upgrade"
            )
        if current == latest:
            return current
        with immediate(conn):
            if user_version(conn) != current:  # another process migrated it meanwhile
                continue
            step = migrations[current]
            try:
                step.apply(conn)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from exc
            except sqlite3.Error as exc:
                raise ConfigError(
                    f"{path}: migration to schema version {step.version} ({step.summary}) failed: "
                    f"{exc}; the store is left at version {current}"
                ) from exc
            conn.execute(f"PRAGMA user_version = {step.version}")
