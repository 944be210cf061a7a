"""Measure the REST API's latency under 100 concurrent clients on loopback: a store with
10,000 reservations of 100 users at 4 sites, served by `pcc serve`'s app (ApiServer: uvicorn,
one Python process) in a subprocess, and the clients (one keep-alive connection each, in
asyncio) in this one. Prints n, p50, p99, max, throughput and the server's CPU time per
request for each kind of request; it is not a test.

    .venv/bin/python bench/api_latency.py [--clients 100] [--reads 3000] [--posts 200] [--pace 1]

The reservations are written straight into the tables (as bench/reconcile_scale.py does),
bypassing admission: the bench measures serving them, not making them. The POSTs do go
through admission (at sites large enough that they all fit).

Two loads: "closed", every client sends its next request as soon as the last is answered
(100 always in flight: latency is then about 100 / throughput, by Little's law), and
paced, every client sends one request every --pace seconds, or twice that for the listing
(100 people or scripts polling).
The clients speak HTTP/1.1 by hand: httpx.AsyncClient with 100 connections spends more CPU
per request than the server does, on the same two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("PCC_STATE_DIR", str(REPO / ".state"))  # the install `make` made

from pcc.common.timefmt import iso  # noqa: E402
from pcc.controller.service import Actor, Service  # noqa: E402
from pcc.controller.settings import ApiConfig, Settings, SiteEntry  # noqa: E402
from pcc.controller.store import Store  # noqa: E402

ROOT = Actor("root", admin=True)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAbc123 bench@lab"
SITES = ("s1", "s2", "s3", "s4")


def settings_for(state: Path) -> Settings:
    sites = tuple(
        SiteEntry(name, "127.0.0.9", 22, "pragma", state / "id", state / "known_hosts", 100_000, 100_000.0)
        for name in SITES
    )
    return Settings(state_dir=state, sites=sites, api=ApiConfig("127.0.0.1", 0))


def seed(state: Path, users: int, reservations: int) -> dict[str, object]:
    """Users u000.. (and the admin boss) with a token each, and ``reservations`` spread over
    them: 90% finished (stopped, in the past), 10% booked ahead (requested), one or two
    sites each, with their events."""
    settings = settings_for(state)
    svc = Service(settings, Store(settings.database))
    store = svc.store
    for name in SITES:
        store.set_site_images(name, ["tiny"])
    names = [f"u{i:03d}" for i in range(users)]
    tokens = {}
    for name in [*names, "boss"]:
        svc.add_user(ROOT, name, "", KEY, admin=name == "boss")
        tokens[name] = svc.create_token(ROOT, user=name, label="bench")[0]
    now = int(time.time())
    rng = random.Random(10)
    rows, allocs, events = [], [], []
    owned: dict[str, list[str]] = {n: [] for n in names}
    for i in range(reservations):
        rid = f"r{i + 1:05d}"
        owner = names[i % users]
        owned[owner].append(rid)
        past = rng.random() < 0.9
        begin = (
            now - rng.randrange(86_400, 180 * 86_400) if past else now + rng.randrange(86_400, 60 * 86_400)
        )
        end = begin + rng.choice((1800, 3600, 4 * 3600, 86_400))
        rows.append(
            {
                "id": rid,
                "seq": i + 1,
                "owner": owner,
                "title": f"run {i}",
                "image": "tiny",
                "begin": begin,
                "end": end,
                "created": begin - 3600,
                "ssh_key": KEY,
                "cancelled": 0,
            }
        )
        for site in rng.sample(SITES, rng.choice((1, 1, 2))):
            state_ = "stopped" if past else "requested"
            allocs.append(
                {
                    "reservation": rid,
                    "site": site,
                    "cpus": rng.choice((1, 2, 4, 8)),
                    "memory_gb": rng.choice((0.5, 1.0, 4.0)),
                    "ent": 0,
                    "state": state_,
                    "reason": "",
                    "nodes_up": 0,
                    "nodes_total": 2,
                    "updated": begin,
                }
            )
            for before, after in (("", "requested"), ("requested", "scheduled"))[: 1 if not past else 2]:
                events.append(
                    {
                        "time": begin,
                        "reservation": rid,
                        "site": site,
                        "from_state": before,
                        "to_state": after,
                        "why": "bench",
                    }
                )
    with store.immediate():
        store.db["reservations"].insert_all(rows, batch_size=5000)
        store.db["allocations"].insert_all(allocs, batch_size=5000)
        store.db["events"].insert_all(events, batch_size=5000)
    return {"tokens": tokens, "owned": owned}


@dataclass
class Figures:
    label: str
    latencies: list[float]
    seconds: float
    server_cpu_s: float

    def row(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))]
        return (
            f"{self.label:<52} {len(ms):>6} {statistics.median(ms):>8.1f} {p99:>8.1f} {ms[-1]:>8.1f} "
            f"{len(ms) / self.seconds:>7.0f} {self.server_cpu_s * 1000 / len(ms):>8.2f}"
        )


class Connection:
    """One keep-alive HTTP/1.1 connection, spoken by hand: httpx.AsyncClient with 100
    connections costs more CPU per request than the server does, and the client shares
    the machine with it. (uvicorn always answers with a Content-Length here.)"""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    reconnects = 0  # keep-alive connections the server had closed (idle) when a request went

    async def request(self, method: str, path: str, token: str, doc: object = None) -> tuple[int, bytes]:
        body = json.dumps(doc).encode() if doc is not None else b""
        head = (
            f"{method} /api/v1{path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        for _attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            assert self.reader is not None
            self.writer.write(head.encode() + body)
            first = await self.reader.readline()
            if first:
                break
            self.close()  # closed before it read the request: send it again, as browsers do
            self.writer = None
            Connection.reconnects += 1
        status = int(first.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# A request: (client number, its request number) -> (method, path, token, document).
Request = Callable[[int, int], tuple[str, str, str, object]]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def churn(database: Path, every: float) -> None:
    """Change one allocation every ``every`` seconds, as a busy controller's loop does: each
    change moves the store's revision, so listings kept by the API must be built again."""
    import sqlite3

    conn = sqlite3.connect(database, isolation_level=None)
    try:
        while True:
            conn.execute("update allocations set updated = updated + 1 where id = abs(random()) % 10000 + 1")
            await asyncio.sleep(every)
    finally:
        conn.close()


async def load(
    url: str,
    server: int,
    clients: int,
    total: int,
    request: Request,
    pace: float | None,
    label: str,
    changes: tuple[Path, float] | None = None,
) -> Figures:
    """``total`` requests from ``clients`` concurrent connections; each client sends its next
    request when the last is answered (closed), or every ``pace`` seconds; with ``changes``
    (the store, seconds) the store changes that often meanwhile."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connections = [Connection(host, int(port)) for _ in range(clients)]
    latencies: list[float] = []
    per_client = max(1, total // clients)
    rng = random.Random(clients)

    async def client(k: int, count: int) -> None:
        if pace:
            await asyncio.sleep(rng.random() * pace)  # spread the clients' phases
        for i in range(count):
            method, path, token, doc = request(k, i)
            t0 = time.perf_counter()
            status, body = await connections[k].request(method, path, token, doc)
            latencies.append(time.perf_counter() - t0)
            if status >= 300:
                raise SystemExit(f"{label}: {status} {body[:300]!r}")
            if pace:
                await asyncio.sleep(max(0.0, pace - (time.perf_counter() - t0)))

    writer = asyncio.create_task(churn(*changes)) if changes else None
    try:
        await asyncio.gather(*(client(k, 1) for k in range(clients)))  # connect, warm
        latencies.clear()
        cpu0, started = cpu_seconds(server), time.perf_counter()
        await asyncio.gather(*(client(k, per_client) for k in range(clients)))
        return Figures(label, latencies, time.perf_counter() - started, cpu_seconds(server) - cpu0)
    finally:
        if writer is not None:
            writer.cancel()
        for c in connections:
            c.close()


def serve(state: Path) -> None:
    """The child: `pcc serve`'s API server over the seeded store, until stdin closes."""
    from pcc.api.server import ApiServer

    server = ApiServer(settings_for(state))
    print(server.start(), flush=True)
    sys.stdin.read()
    server.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--reservations", type=int, default=10_000)
    ap.add_argument("--reads", type=int, default=3000, help="requests per read measurement")
    ap.add_argument("--posts", type=int, default=200)
    ap.add_argument("--pace", type=float, default=1.0, help="seconds between a paced client's requests")
    ap.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        state = Path(tmp)
        t0 = time.perf_counter()
        seeded = seed(state, args.users, args.reservations)
        tokens: dict[str, str] = seeded["tokens"]  # type: ignore[assignment]
        owned: dict[str, list[str]] = seeded["owned"]  # type: ignore[assignment]
        took = time.perf_counter() - t0
        print(f"seeded {args.reservations} reservations of {args.users} users in {took:.1f} s")
        child = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(state)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None and child.stdin is not None
        url = child.stdout.readline().strip()
        try:
            run(url, child.pid, args, tokens, owned, settings_for(state).database)
        finally:
            child.stdin.close()
            child.wait(timeout=30)
    return 0


def run(
    url: str,
    server: int,
    args: argparse.Namespace,
    tokens: dict[str, str],
    owned: dict[str, list[str]],
    database: Path,
) -> None:
    users = sorted(owned)
    mine = len(owned[users[0]])

    def token(k: int) -> str:
        return tokens[users[k % len(users)]]

    def list_mine(k: int, i: int) -> tuple[str, str, str, object]:
        return "GET", "/reservations", token(k), None

    def get_one(k: int, i: int) -> tuple[str, str, str, object]:
        rids = owned[users[k % len(users)]]
        return "GET", f"/reservations/{rids[(i * 7 + k) % len(rids)]}", token(k), None

    def list_all(k: int, i: int) -> tuple[str, str, str, object]:
        return "GET", "/reservations", tokens["boss"], None

    ahead = (int(time.time()) // 3600 + 24 * 90) * 3600

    def post(k: int, i: int) -> tuple[str, str, str, object]:
        begin = ahead + (k * 1000 + i) * 60
        doc = {
            "image": "tiny",
            "begin": iso(begin),
            "end": iso(begin + 3600),
            "allocations": [{"site": SITES[(k + i) % len(SITES)], "cpus": 2, "memory_gb": 1.0}],
        }
        return "POST", "/reservations", token(k), doc

    n, pace = args.clients, args.pace
    busy = (database, 0.1)  # the store changes 10 times a second: nearly every listing is built
    cases: list[tuple[str, int, int, Request, float | None, tuple[Path, float] | None]] = [
        (f"GET /reservations (a user's {mine}), closed", n, args.reads, list_mine, None, None),
        ("GET /reservations/{id}, closed", n, args.reads, get_one, None, None),
        (f"GET /reservations, each client 1 per {pace:g} s", n, n * 10, list_mine, pace, None),
        (f"GET /reservations, each client 1 per {2 * pace:g} s", n, n * 5, list_mine, 2 * pace, None),
        (f"GET /reservations/{{id}}, each client 1 per {pace:g} s", n, n * 10, get_one, pace, None),
        (f"  the same, store changing 10/s: list 1 per {pace:g} s", n, n * 10, list_mine, pace, busy),
        (f"  the same, store changing 10/s: list 1 per {2 * pace:g} s", n, n * 5, list_mine, 2 * pace, busy),
        ("  the same, store changing 10/s: list, closed", n, args.reads, list_mine, None, busy),
        ("POST /reservations, 10 clients, closed", 10, args.posts, post, None, None),
        (f"GET /reservations as admin (all {args.reservations}), 1 client", 1, 10, list_all, None, None),
        ("  the same, store changing 10/s", 1, 10, list_all, None, busy),
    ]
    print(f"\n{'':<52} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'req/s':>7} {'srv ms/req':>10}")
    for label, clients, total, request, paced, changes in cases:
        figures = asyncio.run(load(url, server, clients, total, request, paced, label, changes))
        print(figures.row(), flush=True)
    if Connection.reconnects:
        print(
            f"({Connection.reconnects} requests found their idle connection closed by the server; sent again)"
        )


if __name__ == "__main__":
    sys.exit(main())
